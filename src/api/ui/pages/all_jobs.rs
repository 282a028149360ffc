//! The Jobs page (`/ui/jobs`).

use super::*;

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
