-- Version 7: what the dashboard reads.
-- Jobs by class, newest first (the Jobs page's class filter).
CREATE INDEX IF NOT EXISTS pj_jobs_class ON pj_jobs (job_class, seq);

-- Executions finished per minute, in the aggregates: min|MINUTE|succeeded and min|MINUTE|failed
-- (MINUTE: epoch minutes), one upsert per finished execution; the prune lease holder deletes
-- keys older than two hours.
CREATE TRIGGER IF NOT EXISTS pj_events_agg_minute AFTER INSERT ON pj_events
WHEN NEW.kind IN ('succeeded', 'failed')
BEGIN
    INSERT INTO pj_agg (key, n) VALUES ('min|' || (NEW.at / 60000) || '|' || NEW.kind, 1) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
END;

-- Processes using the store (workers, API servers, relays), each reporting every 10 seconds.
CREATE TABLE IF NOT EXISTS pj_processes (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    queue TEXT,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL
);
