//! What the list pages share (Jobs, Scheduled, Morgue): filters, the table, cursor pages, bulk buttons.

use super::*;

/// The query string of a list's filters (no cursor).
pub(super) fn filter_query(p: &ListParams, extra: &[(&str, Option<&str>)]) -> String {
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
pub(super) struct ListPage<'a> {
    pub(super) title: &'a str,
    pub(super) nav: &'a str,
    pub(super) path: &'a str,
    /// The statuses the status filter offers (empty: it is fixed by the page).
    pub(super) statuses: &'a [JobStatus],
    /// Show the due time instead of the enqueue time.
    pub(super) due: bool,
    /// Show the last error.
    pub(super) errors: bool,
    /// Bulk actions offered for the filtered jobs.
    pub(super) bulk: &'a [BulkAction],
    /// Per-row actions.
    pub(super) row_actions: &'a [&'a str],
    /// Offer the class and text filters (not in due order, which reads one index).
    pub(super) class_and_text: bool,
}

pub(super) fn select(name: &str, label: &str, options: &[String], current: Option<&str>) -> String {
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

pub(super) async fn list_page(
    state: &ApiState,
    lp: ListPage<'_>,
    p: ListParams,
    done: &Done,
) -> PageResult {
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
                match &j.arguments {
                    // Cut by the list read: the text as it was, ending in `…`.
                    serde_json::Value::String(s)
                        if j.truncated.iter().any(|f| f == "arguments") =>
                    {
                        esc(s)
                    }
                    args => esc(&args.to_string()),
                }
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
pub(super) fn action_button(id: &str, action: &str, back: &str) -> String {
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
    pub(super) fn split(self) -> (ListParams, Done) {
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
