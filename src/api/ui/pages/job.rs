//! The Job page (`/ui/jobs/{id}`): one job, its timeline, and its actions.

use super::*;

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
    let logs = state
        .store
        .logs(id, None, crate::store::MAX_STORED_LOG_LINES as u32)
        .await?;
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
    if let Some(p) = &j.progress {
        let bar = if p.total > 0 {
            format!(
                "<progress id=\"progress\" value=\"{}\" max=\"{}\">{}%</progress> ",
                p.done.min(p.total),
                p.total,
                p.done.min(p.total) * 100 / p.total
            )
        } else {
            "<progress id=\"progress\"></progress> ".to_string()
        };
        let _ = write!(
            b,
            "<h2>Progress</h2><p>{bar}{} of {} <span class=\"muted\">(attempt {}, {})</span>: {}</p>",
            p.done,
            if p.total > 0 { p.total.to_string() } else { "?".into() },
            p.attempt,
            time(Some(p.at)),
            esc(&p.message)
        );
    }
    if !logs.is_empty() {
        const TAIL: usize = 50;
        let from = logs.len().saturating_sub(TAIL);
        let _ = write!(
            b,
            "<h2>Log</h2><p class=\"muted\">{} lines{}</p><pre id=\"log\">",
            logs.len(),
            if from > 0 {
                format!(", the last {TAIL}")
            } else {
                String::new()
            }
        );
        for l in &logs[from..] {
            let _ = writeln!(b, "[{}] {}", l.attempt, esc(&l.line));
        }
        b.push_str("</pre>");
    }
    if !j.metadata.is_empty() {
        b.push_str("<h2>Metadata</h2><dl id=\"metadata\">");
        for (k, v) in &j.metadata {
            let _ = write!(b, "<dt>{}</dt><dd><code>{}</code></dd>", esc(k), esc(v));
        }
        b.push_str("</dl>");
    }
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
pub(super) fn timeline(j: &JobRecord, events: &[crate::store::JobEvent]) -> String {
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
pub(super) fn safe_back(back: Option<&str>, fallback: &str) -> String {
    match back {
        // Visible ASCII only: anything else (a control character, a space) could not stand in
        // a Location header, and the redirect would fail after the action ran.
        Some(b)
            if b.starts_with("/ui")
                && !b.starts_with("//")
                && !b.contains('\\')
                && b.bytes().all(|c| c.is_ascii_graphic()) =>
        {
            b.to_string()
        }
        _ => fallback.to_string(),
    }
}

/// `back` with `done=...` appended.
pub(super) fn with_done(back: &str, done: &str) -> String {
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
            jobs::cancel_one(&state, id).await?;
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

#[cfg(test)]
mod tests {
    use super::safe_back;

    #[test]
    fn only_visible_ascii_dashboard_paths_are_gone_back_to() {
        for (given, want) in [
            ("/ui/jobs?queue=a", "/ui/jobs?queue=a"),
            ("/ui/jobs\r\nSet-Cookie: x=1", "/ui/"),
            ("/ui/jobs\u{0}", "/ui/"),
            ("/ui/jobs with space", "/ui/"),
            ("/ui/jöbs", "/ui/"),
            ("//evil.example/ui", "/ui/"),
            ("/ui\\..\\x", "/ui/"),
            ("https://evil.example/ui", "/ui/"),
        ] {
            assert_eq!(safe_back(Some(given), "/ui/"), want, "{given:?}");
        }
    }
}
