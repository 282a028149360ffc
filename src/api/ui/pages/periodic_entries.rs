//! The Periodic page (`/ui/periodic`) and its actions.

use super::*;

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
