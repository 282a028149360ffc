//! `/openapi.json`: the API's OpenAPI 3 document, generated from the handlers and types.

use axum::Json;
use utoipa::OpenApi;

use super::jobs;

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "pubsub-jobs", description = "Background jobs on Google Cloud Pub/Sub: submit, poll, cancel."),
    paths(
        jobs::submit, jobs::get_job, jobs::events, jobs::list, jobs::cancel, jobs::queues, jobs::outbox,
        super::actions::retry, super::actions::delete, super::actions::cancel, super::actions::bulk,
        super::actions::count, super::actions::stats, super::actions::classes,
        super::periodic::list, super::periodic::pause, super::periodic::resume, super::periodic::run_now,
        super::metrics::metrics, super::healthz
    ),
    components(schemas(
        jobs::SubmitRequest, jobs::JobResource, jobs::JobLinks, jobs::EventsResponse, jobs::JobList,
        jobs::QueueCounts, jobs::QueuesResponse, jobs::OutboxResponse, super::periodic::PeriodicResource,
        super::periodic::PeriodicList, super::ErrorBody, super::ErrorDetail,
        crate::store::JobStatus, crate::store::EventKind, crate::store::JobEvent,
        crate::store::JobCount, crate::store::MinuteCount, crate::store::ProcessInfo,
        super::actions::Deleted, crate::admin::jobs::BulkAction, super::actions::BulkRequest,
        crate::admin::jobs::BulkReport, super::actions::Percentiles, super::actions::StatsResponse,
        super::actions::ClassInfo
    )),
    modifiers(&BearerAuth)
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3 JSON")))]
pub(crate) async fn spec() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
