//! The Scheduled page (`/ui/scheduled`): jobs due later and failed jobs waiting for their retry.

use super::*;

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
pub(super) async fn with_prefix(resp: Response, prefix: &str) -> Response {
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
