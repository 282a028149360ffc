//! The dashboard's pages and forms, one file per page. Each reads the store through the same
//! functions as the JSON API (`jobs.rs`, `actions.rs`, `periodic.rs`) and renders HTML with every
//! value escaped. Forms post back here and redirect (303) to a page that shows the outcome. This
//! file holds what every page shares: the error page, the layout, the outcome of the last action.

mod all_jobs;
mod bulk;
mod enqueue;
mod job;
mod list;
mod login;
mod morgue;
mod overview;
mod periodic_entries;
mod scheduled;

use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::html::{
    badge, chart, clock, esc, num, page, query, seconds, span, time, url_enc, Layout,
};
use super::session;
use crate::api::actions::{self, BulkAction};
use crate::api::jobs::{self, ListParams, SubmitRequest};
use crate::api::{periodic, ApiError, ApiState};
use crate::store::{EventKind, JobRecord, JobStatus, ListQuery};

/// An error shown as a page, with its status.
pub(crate) struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.status.is_server_error() {
            tracing::error!(status = e.status.as_u16(), error = %e.message, "dashboard request failed");
        }
        let body = format!(
            "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/ui/\">Back to the overview</a></p>",
            esc(&e.message)
        );
        let title = e.status.canonical_reason().unwrap_or("Error");
        let html = page(
            Layout {
                title,
                nav: "",
                signed_in: false,
                live: false,
                flash: None,
            },
            &body,
        );
        (e.status, Html(html)).into_response()
    }
}

type PageResult = Result<Response, PageError>;

pub(super) fn layout<'a>(
    state: &ApiState,
    title: &'a str,
    nav: &'a str,
    flash: Option<String>,
) -> Layout<'a> {
    Layout {
        title,
        nav,
        signed_in: !state.config.tokens.is_empty(),
        live: true,
        flash,
    }
}

pub(super) fn html(l: Layout<'_>, body: &str) -> Response {
    Html(page(l, body)).into_response()
}

/// What the page was redirected with after an action: fixed messages, numbers parsed.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
    n: Option<u64>,
    skipped: Option<u64>,
}

impl Done {
    fn flash(&self) -> Option<String> {
        let n = self.n.unwrap_or(0);
        let skipped = self.skipped.unwrap_or(0);
        let msg = match self.done.as_deref()? {
            "retried" => "Retried: the job runs again.".to_string(),
            "cancelled" => "Cancelled: the job will not run.".to_string(),
            "deleted" => "Deleted.".to_string(),
            "enqueued" => "Enqueued.".to_string(),
            "paused" => "Paused.".to_string(),
            "resumed" => "Resumed.".to_string(),
            "ran" => "Enqueued the entry's job.".to_string(),
            "bulk-retry" => format!("Retried {} jobs ({} skipped).", num(n), num(skipped)),
            "bulk-cancel" => format!("Cancelled {} jobs ({} skipped).", num(n), num(skipped)),
            "bulk-delete" => format!("Deleted {} jobs ({} skipped).", num(n), num(skipped)),
            _ => return None,
        };
        Some(esc(&msg))
    }
}

pub(crate) use all_jobs::jobs;
// What the pages share with each other (each page file sees it through `use super::*`).
use job::safe_back;
use list::*;

pub(crate) use bulk::{bulk_apply, bulk_confirm};
pub(crate) use enqueue::{enqueue, enqueue_form};
pub(crate) use job::{job, job_action};
pub(crate) use login::{login, login_form, logout};
pub(crate) use morgue::morgue;
pub(crate) use overview::overview;
pub(crate) use periodic_entries::{periodic, periodic_action};
pub(crate) use scheduled::scheduled;

/// The last 8 hex digits of a job id: its random part (a UUIDv7 starts with the time, which
/// jobs enqueued together share).
pub(super) fn short(id: &str) -> &str {
    &id[id.len().saturating_sub(8)..]
}
