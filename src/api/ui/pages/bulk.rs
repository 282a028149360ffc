//! Bulk actions: the confirmation page and the action.

use super::*;

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
    let back = safe_back(f.back.as_deref(), "/ui/jobs");
    let out = actions::bulk_apply(&state, action, p.to_query()?).await?;
    let sep = if back.contains('?') { '&' } else { '?' };
    Ok(Redirect::to(&format!(
        "{back}{sep}done=bulk-{}&n={}&skipped={}",
        action.as_str(),
        out.done,
        out.skipped
    ))
    .into_response())
}
