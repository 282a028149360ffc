//! The Overview page (`/ui/`): queues, executions per minute, latency, the outbox, processes.

use super::*;

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
