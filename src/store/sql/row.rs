//! Row decoding: the one place a database row becomes a [`JobRecord`] and a value becomes a
//! column (times as epoch milliseconds, JSON as text).

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::{EventKind, JobEvent, JobRecord, OutboxMessage, StoreError, Unpublished};

/// The columns [`job_from_row`] reads, in `SELECT` order.
pub(super) const JOB_COLUMNS: &str = "id, job_class, queue, status, attempts, arguments, enqueued_at, scheduled_at, started_at, finished_at, updated_at, last_error, result, dedup_key, version, seq, published_at, generation, metadata, progress";

pub(super) fn json_text(v: &serde_json::Value) -> String {
    v.to_string()
}

/// A job's metadata as a column: `NULL` when there is none.
pub(super) fn metadata_text(m: &crate::envelope::Metadata) -> Option<String> {
    if m.is_empty() {
        return None;
    }
    serde_json::to_string(m).ok()
}

pub(super) fn parse_json(what: &'static str, s: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// The columns of a list read whose arguments, result and last error are cut at `n`
/// characters, each with a `*_cut` flag (see [`job_from_row`]).
pub(super) fn cut_job_columns(n: u32) -> String {
    let cut = |c: &str| {
        format!(
            "CASE WHEN LENGTH({c}) > {n} THEN SUBSTR({c}, 1, {n}) ELSE {c} END AS {c}, \
             CAST(CASE WHEN LENGTH({c}) > {n} THEN 1 ELSE 0 END AS BIGINT) AS {c}_cut"
        )
    };
    format!(
        "id, job_class, queue, status, attempts, {}, enqueued_at, scheduled_at, started_at, finished_at, updated_at, {}, {}, dedup_key, version, seq, published_at, generation, metadata, progress",
        cut("arguments"),
        cut("last_error"),
        cut("result")
    )
}

/// The columns of a list read: [`JOB_COLUMNS`], or with `cut`, [`cut_job_columns`].
pub(super) fn list_columns(cut: Option<u32>) -> std::borrow::Cow<'static, str> {
    match cut {
        Some(n) => cut_job_columns(n).into(),
        None => JOB_COLUMNS.into(),
    }
}

/// A job row of [`JOB_COLUMNS`] or [`cut_job_columns`]: a cut value becomes a string ending in
/// `…`, named in [`JobRecord::truncated`].
pub(super) fn job_from_row(row: &AnyRow) -> Result<JobRecord, StoreError> {
    let get_err = |e: sqlx::Error| StoreError::Database {
        operation: "read job",
        source: Box::new(e),
    };
    let id: String = row.try_get("id").map_err(get_err)?;
    let status: String = row.try_get("status").map_err(get_err)?;
    let arguments: String = row.try_get("arguments").map_err(get_err)?;
    let result: Option<String> = row.try_get("result").map_err(get_err)?;
    let metadata = match row
        .try_get::<Option<String>, _>("metadata")
        .map_err(get_err)?
    {
        Some(m) => serde_json::from_str(&m).map_err(|e| StoreError::Corrupt {
            what: "metadata",
            detail: e.to_string(),
        })?,
        None => Default::default(),
    };
    let progress = match row
        .try_get::<Option<String>, _>("progress")
        .map_err(get_err)?
    {
        Some(p) => Some(serde_json::from_str(&p).map_err(|e| StoreError::Corrupt {
            what: "progress",
            detail: e.to_string(),
        })?),
        None => None,
    };
    let mut last_error: Option<String> = row.try_get("last_error").map_err(get_err)?;
    let mut truncated = Vec::new();
    let mut cut = |column: &str| {
        let flagged = row
            .try_get::<i64, _>(format!("{column}_cut").as_str())
            .is_ok_and(|f| f == 1);
        if flagged {
            truncated.push(column.to_string());
        }
        flagged
    };
    let cut_text = |s: String| serde_json::Value::String(s + "…");
    let arguments = if cut("arguments") {
        cut_text(arguments)
    } else {
        parse_json("arguments", &arguments)?
    };
    let result = if cut("result") {
        result.map(cut_text)
    } else {
        result.map(|r| parse_json("result", &r)).transpose()?
    };
    if cut("last_error") {
        last_error = last_error.map(|e| e + "…");
    }
    Ok(JobRecord {
        id: id.parse().map_err(|e: uuid::Error| StoreError::Corrupt {
            what: "job id",
            detail: e.to_string(),
        })?,
        job_class: row.try_get("job_class").map_err(get_err)?,
        queue: row.try_get("queue").map_err(get_err)?,
        status: status.parse().map_err(|detail| StoreError::Corrupt {
            what: "status",
            detail,
        })?,
        attempts: row.try_get::<i64, _>("attempts").map_err(get_err)? as u32,
        arguments,
        metadata,
        progress,
        enqueued_at: from_ms(row.try_get("enqueued_at").map_err(get_err)?),
        scheduled_at: row
            .try_get::<Option<i64>, _>("scheduled_at")
            .map_err(get_err)?
            .map(from_ms),
        started_at: row
            .try_get::<Option<i64>, _>("started_at")
            .map_err(get_err)?
            .map(from_ms),
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")
            .map_err(get_err)?
            .map(from_ms),
        updated_at: from_ms(row.try_get("updated_at").map_err(get_err)?),
        last_error,
        result,
        dedup_key: row.try_get("dedup_key").map_err(get_err)?,
        version: row.try_get("version").map_err(get_err)?,
        generation: row.try_get::<i64, _>("generation").map_err(get_err)? as u32,
        published_at: row
            .try_get::<Option<i64>, _>("published_at")
            .map_err(get_err)?
            .map(from_ms),
        truncated,
    })
}

/// An event row (`kind, attempt, at, error, detail`).
pub(super) fn event_from_row(r: &AnyRow) -> Result<JobEvent, StoreError> {
    let get_err = |e: sqlx::Error| StoreError::Database {
        operation: "read event",
        source: Box::new(e),
    };
    let kind: String = r.try_get("kind").map_err(get_err)?;
    let detail: Option<String> = r.try_get("detail").map_err(get_err)?;
    Ok(JobEvent {
        kind: EventKind::parse(&kind).ok_or(StoreError::Corrupt {
            what: "event kind",
            detail: kind.clone(),
        })?,
        attempt: r.try_get::<i64, _>("attempt").map_err(get_err)? as u32,
        at: from_ms(r.try_get("at").map_err(get_err)?),
        error: r.try_get("error").map_err(get_err)?,
        detail: detail.map(|d| parse_json("detail", &d)).transpose()?,
    })
}

/// A time as stored: epoch milliseconds.
pub(super) fn ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// A stored time back from epoch milliseconds.
pub(super) fn from_ms(v: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// A claimed outbox row (`id, outbox_topic, outbox_data, outbox_attributes`).
pub(super) fn unpublished_from_row(r: &AnyRow) -> Result<Unpublished, StoreError> {
    let get_err = |e: sqlx::Error| StoreError::Database {
        operation: "read outbox row",
        source: Box::new(e),
    };
    let id: String = r.try_get("id").map_err(get_err)?;
    let data: Option<String> = r.try_get("outbox_data").map_err(get_err)?;
    let attributes: Option<String> = r.try_get("outbox_attributes").map_err(get_err)?;
    Ok(Unpublished {
        id: id.parse().map_err(|e: uuid::Error| StoreError::Corrupt {
            what: "job id",
            detail: e.to_string(),
        })?,
        message: OutboxMessage {
            topic: r
                .try_get::<Option<String>, _>("outbox_topic")
                .map_err(get_err)?
                .unwrap_or_default(),
            data: data.unwrap_or_default().into_bytes(),
            attributes: attributes
                .map(|a| serde_json::from_str(&a))
                .transpose()
                .map_err(|e| StoreError::Corrupt {
                    what: "outbox attributes",
                    detail: e.to_string(),
                })?
                .unwrap_or_default(),
        },
    })
}
