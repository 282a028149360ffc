//! Lists: pages newest first, filters by class and text, scheduled jobs soonest due first.

use super::*;

/// Pages are newest first, each job once, filtered by queue and status.
pub async fn list_pages_newest_first(s: &dyn JobStore, queue: &str) {
    let mut ids = Vec::new();
    for n in 0..5 {
        let job = new_job(queue, n);
        s.submit(job.clone()).await.expect("submit");
        ids.push(job.id);
    }
    s.start(start_of(&new_job(queue, 99), 1))
        .await
        .expect("start");
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .list(ListQuery {
                status: Some(JobStatus::Pending),
                queue: Some(queue.into()),
                limit: 2,
                cursor: cursor.take(),
                ..Default::default()
            })
            .await
            .expect("list");
        assert!(page.jobs.len() <= 2);
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every pending job once, newest first");
}

/// A list read with `cut_values_at` cuts long arguments, results and errors (a string ending
/// in `…`, the field named in `truncated`) and leaves short ones whole; a full read and `get`
/// return every value whole.
pub async fn list_views_cut_large_values(s: &dyn JobStore, queue: &str) {
    let long = "é".repeat(5000);
    let mut big = new_job(queue, 1);
    big.arguments = serde_json::json!({ "blob": long });
    let small = new_job(queue, 2);
    s.submit(big.clone()).await.expect("submit");
    s.submit(small.clone()).await.expect("submit");
    s.start(start_of(&big, 1)).await.expect("start");
    let failed = Transition::Failed {
        error: format!("boom {long}"),
        run: std::time::Duration::from_millis(1),
        result: Some(serde_json::json!({ "partial": long })),
    };
    s.finish(big.id, 1, failed).await.expect("finish");
    let query = |cut| ListQuery {
        queue: Some(queue.into()),
        limit: 10,
        cut_values_at: cut,
        ..Default::default()
    };
    let page = s.list(query(Some(100))).await.expect("list");
    let read = |id| {
        page.jobs
            .iter()
            .find(|j| j.id == id)
            .expect("listed")
            .clone()
    };
    let cut = read(big.id);
    assert_eq!(cut.truncated, ["arguments", "result", "last_error"]);
    let text = |v: &serde_json::Value| v.as_str().expect("a cut value is a string").to_string();
    for value in [
        text(&cut.arguments),
        text(cut.result.as_ref().expect("result")),
    ] {
        assert_eq!(
            value.chars().count(),
            101,
            "100 characters and the ellipsis"
        );
        assert!(value.ends_with('…'), "{value}");
    }
    let error = cut.last_error.expect("error");
    assert!(
        error.starts_with("boom é") && error.chars().count() == 101,
        "{error}"
    );
    let whole = read(small.id);
    assert!(whole.truncated.is_empty());
    assert_eq!(whole.arguments, small.arguments, "a short value is whole");
    let full = s.list(query(None)).await.expect("list");
    let full = full.jobs.iter().find(|j| j.id == big.id).expect("listed");
    assert!(full.truncated.is_empty());
    assert_eq!(full.arguments, big.arguments);
    let got = s.get(big.id).await.expect("get").expect("found");
    assert_eq!(got.arguments, big.arguments);
    assert_eq!(got.last_error.map(|e| e.chars().count()), Some(5005));
}

/// Every id of the jobs `q` lists, page after page.
pub(super) async fn list_all(s: &dyn JobStore, mut q: ListQuery) -> Vec<Uuid> {
    let mut out = Vec::new();
    q.limit = q.limit.max(1);
    loop {
        let page = s.list(q.clone()).await.expect("list");
        out.extend(page.jobs.iter().map(|j| j.id));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

/// Filters by class and by text in the arguments or the last error (case-insensitive, `%` and
/// `_` taken literally) combine with queue and status, page newest first, and count the same.
pub async fn filters_by_class_and_text(s: &dyn JobStore, queue: &str) {
    let class_a = format!("{queue}-A");
    let class_b = format!("{queue}-B");
    let mut made = Vec::new();
    for (class, tag) in [
        (&class_a, "Alpha_1%"),
        (&class_a, "alpha-1"),
        (&class_b, "ALPHA_1% again"),
        (&class_a, "beta"),
    ] {
        let mut j = new_job(queue, made.len() as u32);
        j.job_class = class.clone();
        j.arguments = serde_json::json!({ "tag": tag });
        s.submit(j.clone()).await.expect("submit");
        made.push(j);
    }
    // The last one fails with an error worth finding.
    s.start(start_of(&made[3], 1)).await.expect("start");
    let failed = Transition::Failed {
        error: "Boom: Disk Full".into(),
        run: Duration::from_millis(5),
        result: None,
    };
    s.finish(made[3].id, 1, failed).await.expect("finish");
    let q = |class: Option<&str>, text: Option<&str>, status: Option<JobStatus>| ListQuery {
        queue: Some(queue.to_string()),
        job_class: class.map(str::to_string),
        text: text.map(str::to_string),
        status,
        limit: 2,
        ..Default::default()
    };
    let ids = |idx: &[usize]| -> Vec<Uuid> { idx.iter().rev().map(|i| made[*i].id).collect() };
    let cases = [
        (q(Some(&class_a), None, None), ids(&[0, 1, 3])),
        (q(Some(&class_b), None, None), ids(&[2])),
        (q(None, Some("alpha_1%"), None), ids(&[0, 2])),
        (q(Some(&class_a), Some("ALPHA_1%"), None), ids(&[0])),
        (q(None, Some("disk full"), None), ids(&[3])),
        (q(None, None, Some(JobStatus::Failed)), ids(&[3])),
        (
            q(Some(&class_a), None, Some(JobStatus::Pending)),
            ids(&[0, 1]),
        ),
        (q(None, Some("no such text"), None), vec![]),
    ];
    for (query, want) in cases {
        let got = list_all(s, query.clone()).await;
        assert_eq!(got, want, "{query:?}");
        let count = s.count(&query).await.expect("count");
        assert_eq!(count.count, want.len() as u64, "count of {query:?}");
        assert!(count.exact, "a small store counts exactly: {query:?}");
    }
    // A class alone, across queues, counts through its index.
    let only_class = ListQuery {
        job_class: Some(class_a.clone()),
        ..Default::default()
    };
    assert_eq!(s.count(&only_class).await.expect("count").count, 3);
}

/// Scheduled (and retrying) jobs list soonest due first, ties in enqueue order, page after page.
pub async fn scheduled_jobs_list_soonest_due_first(s: &dyn JobStore, queue: &str) {
    let now = Utc::now();
    let mut made = Vec::new();
    for (n, secs) in [50i64, 10, 30, 10, 40, 10].into_iter().enumerate() {
        let mut j = new_job(queue, n as u32);
        j.scheduled_at = Some(now + chrono::Duration::seconds(secs));
        s.submit(j.clone()).await.expect("submit");
        made.push(j);
    }
    s.submit(new_job(queue, 99))
        .await
        .expect("submit a pending job");
    let due = |status| ListQuery {
        status: Some(status),
        queue: Some(queue.to_string()),
        order: ListOrder::DueFirst,
        limit: 2,
        ..Default::default()
    };
    let got = list_all(s, due(JobStatus::Scheduled)).await;
    let want: Vec<Uuid> = [1, 3, 5, 2, 4, 0].iter().map(|i| made[*i].id).collect();
    assert_eq!(got, want, "soonest due first, ties in enqueue order");
    // A retrying job waits for its retry's due time.
    let retried = &made[0];
    s.start(start_of(retried, 1)).await.expect("start");
    let failed = Transition::Failed {
        error: "x".into(),
        run: Duration::from_millis(1),
        result: None,
    };
    s.finish(retried.id, 1, failed).await.expect("finish");
    let retry = Transition::RetryScheduled {
        at: now + chrono::Duration::seconds(20),
    };
    s.finish(retried.id, 1, retry).await.expect("finish");
    assert_eq!(
        list_all(s, due(JobStatus::Retrying)).await,
        vec![retried.id]
    );
    assert_eq!(
        list_all(s, due(JobStatus::Scheduled)).await,
        want[..5].to_vec()
    );
}
