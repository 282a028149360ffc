-- Version 1: the state row per job, the append-only event log, dedup keys.
-- Times are epoch milliseconds; JSON is TEXT. Statements end with ';' (the runner splits on it).

CREATE TABLE IF NOT EXISTS pj_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_class TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    arguments TEXT NOT NULL,
    enqueued_at BIGINT NOT NULL,
    scheduled_at BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL,
    last_error TEXT,
    result TEXT,
    dedup_key TEXT,
    run_ms BIGINT,
    queue_ms BIGINT,
    version BIGINT NOT NULL DEFAULT 1
);

CREATE INDEX IF NOT EXISTS pj_jobs_status ON pj_jobs (status, seq);

CREATE INDEX IF NOT EXISTS pj_jobs_queue ON pj_jobs (queue, seq);

CREATE TABLE IF NOT EXISTS pj_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    error TEXT,
    detail TEXT
);

CREATE INDEX IF NOT EXISTS pj_events_job ON pj_events (job_id, seq);

CREATE TABLE IF NOT EXISTS pj_dedup (
    key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
