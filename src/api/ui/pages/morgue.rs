//! The Morgue page (`/ui/morgue`).

use super::*;

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
