-- Version 7: what the dashboard reads.
-- Jobs by class, newest first (the Jobs page's class filter).
CREATE INDEX IF NOT EXISTS pj_jobs_class ON pj_jobs (job_class, seq);

-- Executions finished per minute, in the aggregates: min|MINUTE|succeeded and min|MINUTE|failed
-- (MINUTE: epoch minutes), grouped per statement with the events' other deltas; the prune lease
-- holder deletes keys older than two hours.
CREATE OR REPLACE FUNCTION pj_events_agg() RETURNS trigger AS $$
BEGIN
    INSERT INTO pj_agg_delta (key, n)
    SELECT key, SUM(d) FROM (
        SELECT 'events|' || kind AS key, 1 AS d FROM n
        UNION ALL SELECT 'min|' || (at / 60000) || '|' || kind, 1 FROM n WHERE kind IN ('succeeded', 'failed')
    ) AS deltas GROUP BY key;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

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
