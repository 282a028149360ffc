//! The dashboard's pages and forms. Each reads the store through the same functions as the JSON
//! API (`jobs.rs`, `actions.rs`, `periodic.rs`) and renders HTML with every value escaped. Forms
//! post back here and redirect (303) to a page that shows the outcome.

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

fn layout<'a>(state: &ApiState, title: &'a str, nav: &'a str, flash: Option<String>) -> Layout<'a> {
    Layout {
        title,
        nav,
        signed_in: !state.config.tokens.is_empty(),
        live: true,
        flash,
    }
}

fn html(l: Layout<'_>, body: &str) -> Response {
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

// ---------------------------------------------------------------- overview

/// `/ui/`: queues, executions per minute, latency, the outbox, processes.
pub(crate) async fn overview(State(state): State<ApiState>) -> PageResult {
    let now = Utc::now();
    let stats = actions::stats_of(&state).await?;
    let mut b = String::new();
    let ok: u64 = stats.throughput.iter().map(|m| m.succeeded).sum();
    let bad: u64 = stats.throughput.iter().map(|m| m.failed).sum();
    let outbox_age = stats
        .outbox
        .oldest_age_seconds
        .map(|s| format!("oldest {}", span((s * 1000.0) as i64)))
        .unwrap_or_else(|| "none waiting".into());
    let _ = write!(
        b,
        "<section class=\"cards\" aria-label=\"Figures\">\
         <div class=\"card\"><div class=\"muted\">Succeeded, last hour</div><div class=\"v\">{}</div></div>\
         <div class=\"card\"><div class=\"muted\">Failed, last hour</div><div class=\"v\">{}</div></div>\
         <div class=\"card\"><div class=\"muted\">Queue latency p50 / p99</div><div class=\"v\">{} / {}</div></div>\
         <div class=\"card\"><div class=\"muted\">Run time p50 / p99</div><div class=\"v\">{} / {}</div></div>\
         <div class=\"card\"><div class=\"muted\">Outbox unpublished</div><div class=\"v\">{}</div><div class=\"muted\">{}</div></div>\
         </section>",
        num(ok),
        num(bad),
        seconds(stats.queue_latency.p50_seconds),
        seconds(stats.queue_latency.p99_seconds),
        seconds(stats.run_time.p50_seconds),
        seconds(stats.run_time.p99_seconds),
        num(stats.outbox.unpublished),
        esc(&outbox_age),
    );
    let _ = write!(
        b,
        "<h2>Executions per minute</h2>{}",
        chart(&stats.throughput, now)
    );
    b.push_str("<h2>Queues</h2>");
    if stats.queues.is_empty() {
        b.push_str("<p class=\"muted\">No jobs in the store yet.</p>");
    } else {
        b.push_str("<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Queue</th>");
        for s in JobStatus::ALL {
            let _ = write!(b, "<th scope=\"col\" class=\"num\">{}</th>", s.as_str());
        }
        b.push_str("<th scope=\"col\" class=\"num\">total</th></tr></thead><tbody>");
        for q in &stats.queues {
            let _ = write!(
                b,
                "<tr><th scope=\"row\"><a href=\"/ui/jobs{}\">{}</a></th>",
                query(&[("queue", Some(&q.queue))]),
                esc(&q.queue)
            );
            for s in JobStatus::ALL {
                let n = q.counts.get(s.as_str()).copied().unwrap_or(0);
                if n == 0 {
                    b.push_str("<td class=\"num muted\">0</td>");
                } else {
                    let _ = write!(
                        b,
                        "<td class=\"num\"><a href=\"/ui/jobs{}\">{}</a></td>",
                        query(&[("queue", Some(&q.queue)), ("status", Some(s.as_str()))]),
                        num(n)
                    );
                }
            }
            let _ = write!(b, "<td class=\"num\">{}</td></tr>", num(q.total));
        }
        b.push_str("</tbody></table></div>");
    }
    b.push_str("<h2>Processes</h2>");
    if stats.processes.is_empty() {
        b.push_str(
            "<p class=\"muted\">No worker, API server or relay reported in the last minute.</p>",
        );
    } else {
        b.push_str("<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Kind</th><th scope=\"col\">Queue</th><th scope=\"col\">Host</th><th scope=\"col\">PID</th><th scope=\"col\">Up</th><th scope=\"col\">Last seen</th></tr></thead><tbody>");
        for p in &stats.processes {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ago</td></tr>",
                esc(&p.kind),
                esc(p.queue.as_deref().unwrap_or("-")),
                esc(&p.host),
                p.pid,
                span((now - p.started_at).num_milliseconds()),
                span((now - p.seen_at).num_milliseconds().max(0)),
            );
        }
        b.push_str("</tbody></table></div>");
    }
    Ok(html(layout(&state, "Overview", "/ui/", None), &b))
}

// ---------------------------------------------------------------- job lists

/// The query string of a list's filters (no cursor).
fn filter_query(p: &ListParams, extra: &[(&str, Option<&str>)]) -> String {
    let mut pairs: Vec<(&str, Option<&str>)> = vec![
        ("status", p.status.as_deref()),
        ("queue", p.queue.as_deref()),
        ("class", p.class.as_deref()),
        ("q", p.q.as_deref()),
    ];
    pairs.extend_from_slice(extra);
    query(&pairs)
}

/// How a list page looks.
struct ListPage<'a> {
    title: &'a str,
    nav: &'a str,
    path: &'a str,
    /// The statuses the status filter offers (empty: it is fixed by the page).
    statuses: &'a [JobStatus],
    /// Show the due time instead of the enqueue time.
    due: bool,
    /// Show the last error.
    errors: bool,
    /// Bulk actions offered for the filtered jobs.
    bulk: &'a [BulkAction],
    /// Per-row actions.
    row_actions: &'a [&'a str],
    /// Offer the class and text filters (not in due order, which reads one index).
    class_and_text: bool,
}

fn select(name: &str, label: &str, options: &[String], current: Option<&str>) -> String {
    let mut s = format!("<label>{label}<select name=\"{name}\"><option value=\"\">any</option>");
    for o in options {
        let sel = if Some(o.as_str()) == current {
            " selected"
        } else {
            ""
        };
        let _ = write!(s, "<option value=\"{0}\"{sel}>{0}</option>", esc(o));
    }
    s.push_str("</select></label>");
    s
}

async fn list_page(state: &ApiState, lp: ListPage<'_>, p: ListParams, done: &Done) -> PageResult {
    let q: ListQuery = p.to_query()?;
    let page = state.store.list(q.clone()).await?;
    let count = state.store.count(&q).await?;
    let mut classes: Vec<String> = actions::class_list(state)
        .into_iter()
        .map(|c| c.job_class)
        .collect();
    if let Some(c) = &q.job_class {
        if !classes.contains(c) {
            classes.push(c.clone());
        }
    }
    let mut b = String::new();
    // Filters: a GET form, so every filtered view is a link.
    let _ = write!(
        b,
        "<form class=\"filters\" method=\"get\" action=\"{}\" role=\"search\">",
        lp.path
    );
    if lp.statuses.is_empty() {
        if let Some(s) = &p.status {
            let _ = write!(
                b,
                "<input type=\"hidden\" name=\"status\" value=\"{}\">",
                esc(s)
            );
        }
    } else {
        let statuses: Vec<String> = lp.statuses.iter().map(|s| s.as_str().to_string()).collect();
        b.push_str(&select("status", "Status", &statuses, p.status.as_deref()));
    }
    let _ = write!(
        b,
        "<label>Queue<input name=\"queue\" value=\"{}\" size=\"12\"></label>",
        esc(p.queue.as_deref().unwrap_or("")),
    );
    if lp.class_and_text {
        let _ = write!(
            b,
            "{}<label>Text in arguments or error<input type=\"search\" name=\"q\" value=\"{}\" size=\"18\"></label>",
            select("class", "Class", &classes, p.class.as_deref()),
            esc(p.q.as_deref().unwrap_or("")),
        );
    }
    let _ = write!(
        b,
        "<button type=\"submit\">Filter</button> <a href=\"{}{}\">Clear</a></form>",
        lp.path,
        if lp.class_and_text {
            String::new()
        } else {
            query(&[("status", p.status.as_deref())])
        },
    );
    let counted = if count.exact {
        format!("{} jobs", num(count.count))
    } else {
        format!(
            "at least {} jobs (counted over the newest {})",
            num(count.count),
            num(u64::from(crate::store::SCAN_WINDOW))
        )
    };
    let _ = write!(
        b,
        "<p class=\"count\" aria-live=\"polite\">{}</p>",
        esc(&counted)
    );
    if !lp.bulk.is_empty() && count.count > 0 {
        b.push_str("<div class=\"actions\">");
        for a in lp.bulk {
            let _ = write!(
                b,
                "<a class=\"button\" href=\"/ui/bulk{}\">{} all {}</a>",
                filter_query(&p, &[("action", Some(a.as_str())), ("back", Some(lp.path))]),
                match a {
                    BulkAction::Retry => "Retry",
                    BulkAction::Cancel => "Cancel",
                    BulkAction::Delete => "Delete",
                },
                if q.status.is_some()
                    || q.queue.is_some()
                    || q.job_class.is_some()
                    || q.text.is_some()
                {
                    "matching"
                } else {
                    "listed"
                }
            );
        }
        b.push_str("</div>");
    }
    if page.jobs.is_empty() {
        b.push_str("<p class=\"muted\">No jobs match.</p>");
    } else {
        let when = if lp.due {
            "Due"
        } else if lp.errors {
            "Died"
        } else {
            "Enqueued"
        };
        let _ = write!(
            b,
            "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">Class</th>\
             <th scope=\"col\">Queue</th><th scope=\"col\">Status</th><th scope=\"col\" class=\"num\">Attempts</th>\
             <th scope=\"col\">{when}</th><th scope=\"col\">{}</th>{}</tr></thead><tbody>",
            if lp.errors { "Reason" } else { "Arguments" },
            if lp.row_actions.is_empty() { "" } else { "<th scope=\"col\">Actions</th>" }
        );
        let now = Utc::now();
        let back = format!("{}{}", lp.path, filter_query(&p, &[]));
        for j in &page.jobs {
            let id = j.id.to_string();
            let when = if lp.due {
                match j.scheduled_at {
                    Some(at) => format!(
                        "{} <span class=\"muted\">(in {})</span>",
                        time(Some(at)),
                        span((at - now).num_milliseconds().max(0))
                    ),
                    None => time(None),
                }
            } else if lp.errors {
                time(j.finished_at.or(Some(j.updated_at)))
            } else {
                time(Some(j.enqueued_at))
            };
            let detail = if lp.errors {
                esc(j.last_error.as_deref().unwrap_or(""))
            } else {
                esc(&j.arguments.to_string())
            };
            let _ = write!(
                b,
                "<tr><td><a href=\"/ui/jobs/{id}\"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td>{when}</td><td class=\"args\" title=\"{detail}\">{detail}</td>",
                short(&id),
                esc(&j.job_class),
                esc(&j.queue),
                badge(j.status.as_str()),
                j.attempts,
            );
            if !lp.row_actions.is_empty() {
                b.push_str("<td>");
                for a in lp.row_actions {
                    let _ = write!(b, "{} ", action_button(&id, a, &back));
                }
                b.push_str("</td>");
            }
            b.push_str("</tr>");
        }
        b.push_str("</tbody></table></div>");
    }
    b.push_str("<nav class=\"pager\" aria-label=\"Pages\">");
    if p.cursor.is_some() {
        let _ = write!(
            b,
            "<a href=\"{}{}\">First page</a>",
            lp.path,
            filter_query(&p, &[])
        );
    }
    if let Some(c) = &page.next_cursor {
        let _ = write!(
            b,
            "<a href=\"{}{}\" rel=\"next\">Next page</a>",
            lp.path,
            filter_query(&p, &[("cursor", Some(c))])
        );
    }
    b.push_str("</nav>");
    Ok(html(layout(state, lp.title, lp.nav, done.flash()), &b))
}

/// A one-button form posting an action on job `id`, coming back to `back`.
fn action_button(id: &str, action: &str, back: &str) -> String {
    let (label, class) = match action {
        "retry" => ("Retry now", "primary"),
        "cancel" => ("Cancel", "danger"),
        _ => ("Delete", "danger"),
    };
    format!(
        "<form class=\"inline\" method=\"post\" action=\"/ui/jobs/{id}/{action}\">\
         <input type=\"hidden\" name=\"back\" value=\"{}\">\
         <button type=\"submit\" class=\"{class}\" aria-label=\"{label} job {}\">{label}</button></form>",
        esc(back),
        short(id),
    )
}

/// Page parameters: the list filters and the outcome of the last action.
#[derive(Debug, Deserialize)]
pub(crate) struct ListPageParams {
    status: Option<String>,
    queue: Option<String>,
    class: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
    n: Option<u64>,
    skipped: Option<u64>,
}

impl ListPageParams {
    fn split(self) -> (ListParams, Done) {
        (
            ListParams {
                status: self.status,
                queue: self.queue,
                class: self.class,
                q: self.q,
                order: None,
                limit: Some(50),
                cursor: self.cursor,
            },
            Done {
                done: self.done,
                n: self.n,
                skipped: self.skipped,
            },
        )
    }
}

/// `/ui/jobs`: every job, filtered by status, queue, class and text.
pub(crate) async fn jobs(
    State(state): State<ApiState>,
    Query(p): Query<ListPageParams>,
) -> PageResult {
    let (p, done) = p.split();
    let bulk: &[BulkAction] = match p.status.as_deref() {
        Some("pending" | "scheduled" | "retrying") => &[BulkAction::Cancel],
        Some("failed" | "discarded" | "cancelled") => &[BulkAction::Retry, BulkAction::Delete],
        Some("succeeded") => &[BulkAction::Delete],
        _ => &[],
    };
    list_page(
        &state,
        ListPage {
            title: "Jobs",
            nav: "/ui/jobs",
            path: "/ui/jobs",
            statuses: &JobStatus::ALL,
            due: false,
            errors: false,
            bulk,
            row_actions: &[],
            class_and_text: true,
        },
        p,
        &done,
    )
    .await
}

/// `/ui/scheduled`: jobs due later, and failed jobs waiting for their retry, with due times.
pub(crate) async fn scheduled(
    State(state): State<ApiState>,
    Query(p): Query<ListPageParams>,
) -> PageResult {
    let (mut p, done) = p.split();
    if !matches!(p.status.as_deref(), Some("retrying")) {
        p.status = Some("scheduled".into());
    }
    // Soonest due first, through the due-time index.
    p.order = Some("due".into());
    p.class = None;
    p.q = None;
    let tabs = format!(
        "<nav class=\"actions\" aria-label=\"Which\"><a href=\"/ui/scheduled\"{}>Scheduled</a><a href=\"/ui/scheduled?status=retrying\"{}>Retrying</a></nav>",
        if p.status.as_deref() == Some("scheduled") { " aria-current=\"page\"" } else { "" },
        if p.status.as_deref() == Some("retrying") { " aria-current=\"page\"" } else { "" },
    );
    let resp = list_page(
        &state,
        ListPage {
            title: "Scheduled and retrying",
            nav: "/ui/scheduled",
            path: "/ui/scheduled",
            statuses: &[],
            due: true,
            errors: p.status.as_deref() == Some("retrying"),
            bulk: &[BulkAction::Cancel],
            row_actions: &["cancel"],
            class_and_text: false,
        },
        p,
        &done,
    )
    .await?;
    Ok(with_prefix(resp, &tabs).await)
}

/// Inserts `prefix` at the start of a rendered page's `#live` part.
async fn with_prefix(resp: Response, prefix: &str) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let text = String::from_utf8_lossy(&bytes).replacen(
        "<div id=\"live\">",
        &format!("<div id=\"live\">{prefix}"),
        1,
    );
    Response::from_parts(parts, axum::body::Body::from(text))
}

/// `/ui/morgue`: jobs whose retries are spent, with the reason and source queue.
pub(crate) async fn morgue(
    State(state): State<ApiState>,
    Query(p): Query<ListPageParams>,
) -> PageResult {
    let (mut p, done) = p.split();
    p.status = Some("morgued".into());
    list_page(
        &state,
        ListPage {
            title: "Morgue",
            nav: "/ui/morgue",
            path: "/ui/morgue",
            statuses: &[],
            due: false,
            errors: true,
            bulk: &[BulkAction::Retry, BulkAction::Delete],
            row_actions: &["retry", "delete"],
            class_and_text: true,
        },
        p,
        &done,
    )
    .await
}

// ---------------------------------------------------------------- one job

/// `/ui/jobs/{id}`: everything about one job, its timeline, and the actions its state allows.
pub(crate) async fn job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> PageResult {
    let id = jobs::parse_id(&id)?;
    let j = state
        .store
        .get(id)
        .await?
        .ok_or_else(|| jobs::not_found(id))?;
    let events = state.store.events(id).await?;
    let mut b = String::new();
    let ids = j.id.to_string();
    b.push_str("<div class=\"actions\">");
    let back = format!("/ui/jobs/{ids}");
    if j.status.is_cancellable() {
        b.push_str(&action_button(&ids, "cancel", &back));
    }
    if matches!(
        j.status,
        JobStatus::Failed | JobStatus::Morgued | JobStatus::Discarded | JobStatus::Cancelled
    ) {
        b.push_str(&action_button(&ids, "retry", &back));
    }
    if j.status.is_finished() || j.status == JobStatus::Failed {
        b.push_str(&action_button(&ids, "delete", "/ui/jobs"));
    }
    b.push_str("</div>");
    let _ = write!(
        b,
        "<dl class=\"facts\"><dt>Id</dt><dd><code>{ids}</code></dd><dt>Status</dt><dd id=\"status\">{}</dd>\
         <dt>Class</dt><dd>{}</dd><dt>Queue</dt><dd><a href=\"/ui/jobs{}\">{}</a></dd>\
         <dt>Attempts</dt><dd>{}</dd><dt>Generation</dt><dd>{}</dd>\
         <dt>Enqueued</dt><dd>{}</dd><dt>Due</dt><dd>{}</dd><dt>Started</dt><dd>{}</dd><dt>Finished</dt><dd>{}</dd>{}</dl>",
        badge(j.status.as_str()),
        esc(&j.job_class),
        query(&[("queue", Some(&j.queue))]),
        esc(&j.queue),
        j.attempts,
        j.generation,
        time(Some(j.enqueued_at)),
        time(j.scheduled_at),
        time(j.started_at),
        time(j.finished_at),
        j.dedup_key
            .as_deref()
            .map(|k| format!("<dt>Dedup key</dt><dd><code>{}</code></dd>", esc(k)))
            .unwrap_or_default(),
    );
    let pretty =
        |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    let _ = write!(
        b,
        "<h2>Arguments</h2><pre id=\"arguments\">{}</pre>",
        esc(&pretty(&j.arguments))
    );
    if let Some(r) = &j.result {
        let _ = write!(b, "<h2>Result</h2><pre>{}</pre>", esc(&pretty(r)));
    }
    if let Some(e) = &j.last_error {
        let _ = write!(
            b,
            "<h2>Last error</h2><pre class=\"error\">{}</pre>",
            esc(e)
        );
    }
    b.push_str("<h2>Timeline</h2>");
    b.push_str(&timeline(&j, &events));
    let title = format!("{} {}", j.job_class, short(&ids));
    Ok(html(layout(&state, &title, "/ui/jobs", done.flash()), &b))
}

/// Events oldest first, with the time of day, the gap since the previous one, run times and
/// retry due times.
fn timeline(j: &JobRecord, events: &[crate::store::JobEvent]) -> String {
    let mut b = String::from("<ol class=\"timeline\">");
    let mut prev: Option<DateTime<Utc>> = None;
    for e in events {
        let gap = prev
            .map(|p| {
                format!(
                    " <span class=\"muted\">+{}</span>",
                    span((e.at - p).num_milliseconds())
                )
            })
            .unwrap_or_default();
        prev = Some(e.at);
        let mut extra = String::new();
        if let Some(d) = &e.detail {
            if let Some(ms) = d.get("run_ms").and_then(|v| v.as_i64()) {
                let _ = write!(extra, " · ran {}", span(ms));
            }
            if let Some(at) = d
                .get("scheduled_at")
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<DateTime<Utc>>().ok())
            {
                let _ = write!(
                    extra,
                    " · due {} (+{})",
                    clock(at),
                    span((at - e.at).num_milliseconds())
                );
            }
            if d.get("retry").and_then(|v| v.as_bool()) == Some(true) {
                let _ = write!(
                    extra,
                    " · retried by an operator (generation {})",
                    d.get("generation").and_then(|v| v.as_u64()).unwrap_or(0)
                );
            }
        }
        let attempt = if e.attempt > 0 && e.kind != EventKind::Cancelled {
            format!(" · attempt {}", e.attempt)
        } else {
            String::new()
        };
        let _ = write!(
            b,
            "<li><strong>{}</strong> {}{gap}{attempt}{extra}{}</li>",
            esc(e.kind.as_str()),
            clock(e.at),
            e.error
                .as_deref()
                .map(|err| format!("<div class=\"error\"><code>{}</code></div>", esc(err)))
                .unwrap_or_default()
        );
    }
    if events.is_empty() {
        let _ = write!(
            b,
            "<li class=\"muted\">No events recorded for {}.</li>",
            esc(&j.id.to_string())
        );
    }
    b.push_str("</ol>");
    b
}

/// Where an action form returns.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Back {
    back: Option<String>,
}

/// A path on the dashboard, or `/ui/jobs` (never another site).
fn safe_back(back: Option<&str>, fallback: &str) -> String {
    match back {
        Some(b) if b.starts_with("/ui") && !b.starts_with("//") && !b.contains('\\') => {
            b.to_string()
        }
        _ => fallback.to_string(),
    }
}

/// `back` with `done=...` appended.
fn with_done(back: &str, done: &str) -> String {
    let sep = if back.contains('?') { '&' } else { '?' };
    format!("{back}{sep}done={}", url_enc(done))
}

/// `POST /ui/jobs/{id}/{retry|cancel|delete}`.
pub(crate) async fn job_action(
    State(state): State<ApiState>,
    Path((id, action)): Path<(String, String)>,
    Form(back): Form<Back>,
) -> PageResult {
    let id = jobs::parse_id(&id)?;
    let page = format!("/ui/jobs/{id}");
    let back = safe_back(back.back.as_deref(), &page);
    let done = match action.as_str() {
        "retry" => {
            actions::retry_one(&state, id).await?;
            "retried"
        }
        "cancel" => {
            actions::cancel_one(&state, id).await?;
            "cancelled"
        }
        "delete" => {
            actions::delete_one(&state, id).await?;
            "deleted"
        }
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}: retry, cancel or delete"),
            )
            .into())
        }
    };
    Ok(Redirect::to(&with_done(&back, done)).into_response())
}

// ---------------------------------------------------------------- bulk

/// A bulk action's form: the action and the list's filters.
#[derive(Debug, Deserialize)]
pub(crate) struct BulkForm {
    action: String,
    status: Option<String>,
    queue: Option<String>,
    class: Option<String>,
    q: Option<String>,
    back: Option<String>,
}

impl BulkForm {
    fn parts(&self) -> Result<(BulkAction, ListParams), ApiError> {
        let action = BulkAction::parse(&self.action).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "no bulk action {:?}: retry, cancel or delete",
                self.action
            ))
            .field("action")
        })?;
        Ok((
            action,
            ListParams {
                status: self.status.clone(),
                queue: self.queue.clone(),
                class: self.class.clone(),
                q: self.q.clone(),
                order: None,
                limit: None,
                cursor: None,
            },
        ))
    }
}

/// `GET /ui/bulk`: what a bulk action would touch, and the button that does it.
pub(crate) async fn bulk_confirm(
    State(state): State<ApiState>,
    Query(f): Query<BulkForm>,
) -> PageResult {
    let (action, p) = f.parts()?;
    let q = p.to_query()?;
    let count = state.store.count(&q).await?;
    let back = safe_back(f.back.as_deref(), "/ui/jobs");
    let mut describe = Vec::new();
    for (k, v) in [
        ("status", &q.status.map(|s| s.to_string())),
        ("queue", &q.queue),
        ("class", &q.job_class),
        ("text", &q.text),
    ] {
        if let Some(v) = v {
            describe.push(format!("{k} <code>{}</code>", esc(v)));
        }
    }
    let n = if count.exact {
        num(count.count.min(actions::BULK_LIMIT))
    } else {
        format!("at least {}", num(count.count.min(actions::BULK_LIMIT)))
    };
    let mut b = format!(
        "<p>{} <strong>{n}</strong> jobs{}{}.</p>",
        match action {
            BulkAction::Retry => "Retry",
            BulkAction::Cancel => "Cancel",
            BulkAction::Delete => "Delete",
        },
        if describe.is_empty() {
            String::new()
        } else {
            format!(" with {}", describe.join(", "))
        },
        if count.count > actions::BULK_LIMIT {
            " (at most 10,000 per run)"
        } else {
            ""
        },
    );
    b.push_str("<p class=\"muted\">Jobs in another state are skipped.</p>");
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/ui/bulk\"><input type=\"hidden\" name=\"action\" value=\"{}\">",
        action.as_str()
    );
    for (k, v) in [
        ("status", &p.status),
        ("queue", &p.queue),
        ("class", &p.class),
        ("q", &p.q),
        ("back", &Some(back.clone())),
    ] {
        if let Some(v) = v {
            let _ = write!(
                b,
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                esc(v)
            );
        }
    }
    let _ = write!(
        b,
        "<div class=\"actions\"><button type=\"submit\" class=\"danger\" id=\"confirm\">Yes, {} them</button>\
         <a href=\"{}\">No, go back</a></div></form>",
        action.as_str(),
        esc(&back)
    );
    let mut l = layout(&state, "Confirm", "", None);
    l.live = false;
    Ok(html(l, &b))
}

/// `POST /ui/bulk`: applies it, back to the list with what was done.
pub(crate) async fn bulk_apply(
    State(state): State<ApiState>,
    Form(f): Form<BulkForm>,
) -> PageResult {
    let (action, p) = f.parts()?;
    let out = actions::bulk_apply(&state, action, p.to_query()?).await?;
    let back = safe_back(f.back.as_deref(), "/ui/jobs");
    let sep = if back.contains('?') { '&' } else { '?' };
    Ok(Redirect::to(&format!(
        "{back}{sep}done=bulk-{}&n={}&skipped={}",
        action.as_str(),
        out.done,
        out.skipped
    ))
    .into_response())
}

// ---------------------------------------------------------------- periodic

/// `/ui/periodic`: entries with their schedule, next and last run; pause, resume, run now.
pub(crate) async fn periodic(
    State(state): State<ApiState>,
    Query(done): Query<Done>,
) -> PageResult {
    let entries = state.store.periodic_entries().await?;
    let now = Utc::now();
    let mut b = String::new();
    if entries.is_empty() {
        b.push_str("<p class=\"muted\">No periodic entries: workers register theirs when started with <code>--cron</code>.</p>");
    } else {
        b.push_str("<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Entry</th><th scope=\"col\">Schedule</th>\
                    <th scope=\"col\">Class</th><th scope=\"col\">Queue</th><th scope=\"col\">Next run</th>\
                    <th scope=\"col\">Last run</th><th scope=\"col\">State</th><th scope=\"col\">Actions</th></tr></thead><tbody>");
        for e in &entries {
            let d = &e.definition;
            let next = crate::periodic::next_run(d, now);
            let name = url_enc(&d.name);
            let toggle = if e.paused { "resume" } else { "pause" };
            let last = match (e.last_tick_at, e.last_job_id) {
                (Some(at), Some(id)) => {
                    format!("{} <a href=\"/ui/jobs/{id}\">job</a>", time(Some(at)))
                }
                (Some(at), None) => time(Some(at)),
                _ => time(None),
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td><code>{}</code> {}</td><td>{}</td><td>{}</td><td>{}</td><td>{last}</td><td>{}</td>\
                 <td><form class=\"inline\" method=\"post\" action=\"/ui/periodic/{name}/{toggle}\"><button type=\"submit\">{}</button></form> \
                 <form class=\"inline\" method=\"post\" action=\"/ui/periodic/{name}/run\"><button type=\"submit\">Run now</button></form></td></tr>",
                esc(&d.name),
                esc(&d.schedule),
                esc(&d.timezone),
                esc(&d.job_class),
                esc(&d.queue),
                if e.paused { "<span class=\"muted\">paused</span>".to_string() } else { time(next) },
                if e.paused { badge("paused") } else { badge("active") },
                if e.paused { "Resume" } else { "Pause" },
            );
        }
        b.push_str("</tbody></table></div>");
    }
    Ok(html(
        layout(&state, "Periodic", "/ui/periodic", done.flash()),
        &b,
    ))
}

/// `POST /ui/periodic/{name}/{pause|resume|run}`.
pub(crate) async fn periodic_action(
    State(state): State<ApiState>,
    Path((name, action)): Path<(String, String)>,
) -> PageResult {
    let done = match action.as_str() {
        "pause" => {
            periodic::set_paused_entry(&state, &name, true).await?;
            "paused"
        }
        "resume" => {
            periodic::set_paused_entry(&state, &name, false).await?;
            "resumed"
        }
        "run" => {
            let rec = periodic::run_entry(&state, &name).await?;
            return Ok(Redirect::to(&format!("/ui/jobs/{}?done=ran", rec.id)).into_response());
        }
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}: pause, resume or run"),
            )
            .into())
        }
    };
    Ok(Redirect::to(&format!("/ui/periodic?done={done}")).into_response())
}

// ---------------------------------------------------------------- enqueue

/// The Enqueue form's fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EnqueueForm {
    job_class: Option<String>,
    arguments: Option<String>,
    queue: Option<String>,
    delay: Option<String>,
}

fn enqueue_page(state: &ApiState, f: &EnqueueForm, error: Option<(&str, &str)>) -> Response {
    let classes = actions::class_list(state);
    let field_error = |name: &str| -> (String, String) {
        match error {
            Some((field, msg))
                if field == name || (name == "arguments" && field.starts_with("arguments")) =>
            {
                (
                    format!(" aria-invalid=\"true\" aria-describedby=\"{name}-error\""),
                    format!(
                        "<span class=\"error\" id=\"{name}-error\" role=\"alert\">{}</span>",
                        esc(msg)
                    ),
                )
            }
            _ => (String::new(), String::new()),
        }
    };
    let mut b =
        String::from("<form class=\"stack\" method=\"post\" action=\"/ui/enqueue\" novalidate>");
    let (attr, err) = field_error("job_class");
    let _ = write!(b, "<label for=\"job_class\">Job class</label><select id=\"job_class\" name=\"job_class\"{attr}>");
    for c in &classes {
        let sel = if f.job_class.as_deref() == Some(c.job_class.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            b,
            "<option value=\"{0}\"{sel}>{0}</option>",
            esc(&c.job_class)
        );
    }
    let _ = write!(b, "</select>{err}");
    let (attr, err) = field_error("arguments");
    let _ = write!(
        b,
        "<label for=\"arguments\">Arguments (JSON)</label><textarea id=\"arguments\" name=\"arguments\" spellcheck=\"false\"{attr}>{}</textarea>{err}",
        esc(f.arguments.as_deref().unwrap_or("{}"))
    );
    let (attr, err) = field_error("queue");
    let _ = write!(
        b,
        "<label for=\"queue\">Queue (empty: the class's own)</label><input id=\"queue\" name=\"queue\" value=\"{}\"{attr}>{err}",
        esc(f.queue.as_deref().unwrap_or(""))
    );
    let (attr, err) = field_error("wait_seconds");
    let _ = write!(
        b,
        "<label for=\"delay\">Delay in seconds (empty: now)</label><input id=\"delay\" name=\"delay\" inputmode=\"decimal\" value=\"{}\"{attr}>{err}",
        esc(f.delay.as_deref().unwrap_or(""))
    );
    if let Some((field, msg)) = error {
        if !["job_class", "queue", "wait_seconds"].contains(&field)
            && !field.starts_with("arguments")
        {
            let _ = write!(b, "<p class=\"error\" role=\"alert\">{}</p>", esc(msg));
        }
    }
    b.push_str("<div><button type=\"submit\" class=\"primary\" id=\"submit\">Enqueue</button></div></form>");
    let mut l = layout(state, "Enqueue a job", "/ui/enqueue", None);
    l.live = false;
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    (status, Html(page(l, &b))).into_response()
}

/// `GET /ui/enqueue`.
pub(crate) async fn enqueue_form(
    State(state): State<ApiState>,
    Query(f): Query<EnqueueForm>,
) -> Response {
    enqueue_page(&state, &f, None)
}

/// `POST /ui/enqueue`: checked as `POST /v1/jobs` checks a submit; errors at their field.
pub(crate) async fn enqueue(
    State(state): State<ApiState>,
    Form(f): Form<EnqueueForm>,
) -> PageResult {
    let arguments: serde_json::Value =
        match serde_json::from_str(f.arguments.as_deref().unwrap_or("{}")) {
            Ok(v) => v,
            Err(e) => {
                return Ok(enqueue_page(
                    &state,
                    &f,
                    Some(("arguments", &format!("not JSON: {e}"))),
                ))
            }
        };
    let wait_seconds = match f.delay.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => match d.parse::<f64>() {
            Ok(w) => Some(w),
            Err(_) => {
                return Ok(enqueue_page(
                    &state,
                    &f,
                    Some(("wait_seconds", &format!("{d:?} is not a number of seconds"))),
                ))
            }
        },
    };
    let req = SubmitRequest {
        job_class: f.job_class.clone().unwrap_or_default(),
        arguments,
        queue: f
            .queue
            .clone()
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty()),
        wait_seconds,
        scheduled_at: None,
        dedup_key: None,
        dedup_window_seconds: None,
    };
    let (env, dedup) = match jobs::prepare(&state, req) {
        Ok(x) => x,
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let field = e.field.clone().unwrap_or_default();
            return Ok(enqueue_page(&state, &f, Some((&field, &e.message))));
        }
        Err(e) => return Err(e.into()),
    };
    let submission = state
        .client
        .submit(env, dedup)
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to(&format!("/ui/jobs/{}?done=enqueued", submission.job_id)).into_response())
}

// ---------------------------------------------------------------- sign in

/// The sign-in form's fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginForm {
    token: Option<String>,
    next: Option<String>,
}

fn login_page(next: &str, error: bool) -> Response {
    let err = if error {
        "<p class=\"error\" id=\"token-error\" role=\"alert\">That token is not one of this API's.</p>"
    } else {
        ""
    };
    let invalid = if error {
        " aria-invalid=\"true\" aria-describedby=\"token-error\""
    } else {
        ""
    };
    let body = format!(
        "<form class=\"stack\" method=\"post\" action=\"/ui/login\">\
         <label for=\"token\">API token</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus{invalid}>{err}\
         <input type=\"hidden\" name=\"next\" value=\"{}\"><div><button type=\"submit\" class=\"primary\">Sign in</button></div></form>",
        esc(next)
    );
    let l = Layout {
        title: "Sign in",
        nav: "",
        signed_in: false,
        live: false,
        flash: None,
    };
    let status = if error {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (status, Html(page(l, &body))).into_response()
}

/// `GET /ui/login`.
pub(crate) async fn login_form(
    State(state): State<ApiState>,
    Query(f): Query<LoginForm>,
) -> Response {
    if state.config.tokens.is_empty() {
        return Redirect::to("/ui/").into_response();
    }
    login_page(&safe_back(f.next.as_deref(), "/ui/"), false)
}

/// `POST /ui/login`: a valid token starts a session and returns to the page asked for.
pub(crate) async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_back(f.next.as_deref(), "/ui/");
    if state.config.tokens.is_empty() {
        return Redirect::to(&next).into_response();
    }
    let given = f.token.as_deref().unwrap_or("").trim().to_string();
    let ok = state
        .config
        .tokens
        .iter()
        .any(|t| crate::api::constant_time_eq(t.as_bytes(), given.as_bytes()));
    if !ok {
        tracing::warn!(
            event = "ui.sign_in_refused",
            "dashboard sign-in with a wrong token"
        );
        return login_page(&next, true);
    }
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = session::set_cookie(
        &session::issue(&state.session_key, Utc::now().timestamp()),
        secure,
    );
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /ui/logout`.
pub(crate) async fn logout() -> Response {
    let mut resp = Redirect::to("/ui/login").into_response();
    if let Ok(v) = session::clear_cookie().parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// The last 8 hex digits of a job id: its random part (a UUIDv7 starts with the time, which
/// jobs enqueued together share).
fn short(id: &str) -> &str {
    &id[id.len().saturating_sub(8)..]
}
