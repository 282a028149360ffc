//! `/openapi.json`: the API's OpenAPI 3 document, generated from the handlers and types.

use axum::Json;
use utoipa::OpenApi;

use super::jobs;

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "pubsub-jobs", description = "Background jobs on Google Cloud Pub/Sub: submit, poll, cancel."),
    paths(
        jobs::submit, jobs::get_job, jobs::events, super::live::logs, super::live::stream, jobs::list, jobs::cancel, jobs::queues, jobs::outbox,
        super::actions::retry, super::actions::delete, super::actions::cancel, super::actions::bulk,
        super::actions::count, super::actions::stats, super::actions::classes,
        super::periodic::list, super::periodic::pause, super::periodic::resume, super::periodic::run_now,
        super::metrics::metrics, super::healthz
    ),
    components(schemas(
        jobs::SubmitRequest, jobs::UniqueRequest, jobs::JobResource, super::live::LogsResponse, crate::store::JobLog,
        crate::store::Progress, jobs::JobLinks, jobs::EventsResponse, jobs::JobList,
        jobs::QueueCounts, jobs::QueuesResponse, jobs::OutboxResponse, super::periodic::PeriodicResource,
        super::periodic::PeriodicList, super::ErrorBody, super::ErrorDetail,
        crate::store::JobStatus, crate::store::EventKind, crate::store::JobEvent,
        crate::store::JobCount, crate::store::MinuteCount, crate::store::ProcessInfo,
        super::actions::Deleted, crate::admin::jobs::BulkAction, super::actions::BulkRequest,
        crate::admin::jobs::BulkReport, super::actions::Percentiles, super::actions::StatsResponse,
        super::actions::ClassInfo
    )),
    security(("bearer" = [])),
    modifiers(&BearerAuth, &CommonAnswers)
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

/// The answers every operation may give besides its own: `401` without a valid token (when
/// tokens are configured; not `/healthz`), `421` for a host not served, `403` for a
/// state-changing request from another origin, `408` for a body that arrived too slowly, `503`
/// when the store does not answer.
struct CommonAnswers;

impl utoipa::Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let open = path == "/healthz";
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.delete, true),
                (&mut item.put, true),
                (&mut item.patch, true),
            ];
            for (op, changes) in operations {
                let Some(op) = op.as_mut() else { continue };
                let answers = &mut op.responses.responses;
                let mut add = |code: &str, description: &str| {
                    answers
                        .entry(code.to_string())
                        .or_insert_with(|| error(description).into());
                };
                if !open {
                    add(
                        "401",
                        "Tokens are configured and the request carries no valid bearer token",
                    );
                    add("503", "The store or Pub/Sub does not answer");
                }
                add(
                    "421",
                    "The Host is not served (without tokens only IP addresses and localhost are)",
                );
                if changes {
                    add("403", "A state-changing request from another origin");
                    add(
                        "408",
                        "The request body did not arrive within the body timeout",
                    );
                }
            }
        }
    }
}

/// The OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3 JSON")))]
pub(crate) async fn spec() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
