//! The Enqueue page (`/ui/enqueue`).

use super::*;

/// The Enqueue form's fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EnqueueForm {
    job_class: Option<String>,
    arguments: Option<String>,
    queue: Option<String>,
    delay: Option<String>,
}

pub(super) fn enqueue_page(
    state: &ApiState,
    f: &EnqueueForm,
    error: Option<(&str, &str)>,
) -> Response {
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
        metadata: Default::default(),
        unique: None,
        require_worker: false,
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
