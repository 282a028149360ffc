-- Version 5: aggregates that do not scan. Triggers append deltas in the same transaction as
-- every change (jobs by queue and status: +1/-1 as rows are inserted, change status or are
-- deleted; events by kind and the run-time and queue-latency histograms: +1 per observation,
-- never taken back), and the store folds the deltas into pj_agg now and then. A read sums
-- pj_agg and the few deltas not folded yet: exact at any moment. Keys: jobs|QUEUE|STATUS,
-- events|KIND, run|BUCKET, run|sum, queue|BUCKET, queue|sum (buckets are
-- the index of the first bound of HISTOGRAM_BOUNDS a value fits, 14 for larger; a histogram's
-- count is the sum of its buckets). A run-time
-- observation is an execution's end: status becoming succeeded or failed with its run_ms.

CREATE TABLE IF NOT EXISTS pj_agg (
    key TEXT PRIMARY KEY,
    n BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS pj_agg_delta (
    seq BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL,
    n BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS pj_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS pj_jobs_finished ON pj_jobs (status, finished_at);

CREATE INDEX IF NOT EXISTS pj_dedup_expires ON pj_dedup (expires_at);

CREATE OR REPLACE FUNCTION pj_bucket(ms BIGINT) RETURNS TEXT AS $$
    SELECT CASE WHEN ms <= 5 THEN '0' WHEN ms <= 10 THEN '1' WHEN ms <= 25 THEN '2' WHEN ms <= 50 THEN '3' WHEN ms <= 100 THEN '4' WHEN ms <= 250 THEN '5' WHEN ms <= 500 THEN '6' WHEN ms <= 1000 THEN '7' WHEN ms <= 2500 THEN '8' WHEN ms <= 5000 THEN '9' WHEN ms <= 10000 THEN '10' WHEN ms <= 30000 THEN '11' WHEN ms <= 60000 THEN '12' WHEN ms <= 300000 THEN '13' ELSE '14' END
$$ LANGUAGE SQL IMMUTABLE;

-- Statement-level triggers with transition tables: one insert of grouped deltas per statement,
-- however many rows it touched (a worker's batch touches hundreds).
CREATE OR REPLACE FUNCTION pj_jobs_agg_ins() RETURNS trigger AS $$
BEGIN
    INSERT INTO pj_agg_delta (key, n)
    SELECT key, SUM(d) FROM (
        SELECT 'jobs|' || queue || '|' || status AS key, 1 AS d FROM n
        UNION ALL SELECT 'queue|' || pj_bucket(queue_ms), 1 FROM n WHERE queue_ms IS NOT NULL
        UNION ALL SELECT 'queue|sum', queue_ms FROM n WHERE queue_ms IS NOT NULL
    ) AS deltas GROUP BY key;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION pj_jobs_agg_del() RETURNS trigger AS $$
BEGIN
    INSERT INTO pj_agg_delta (key, n)
    SELECT 'jobs|' || queue || '|' || status, -COUNT(*) FROM o GROUP BY queue, status;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION pj_jobs_agg_upd() RETURNS trigger AS $$
BEGIN
    INSERT INTO pj_agg_delta (key, n)
    SELECT key, SUM(d) FROM (
        SELECT 'jobs|' || o.queue || '|' || o.status AS key, -1 AS d
            FROM o JOIN n ON n.seq = o.seq WHERE o.status <> n.status OR o.queue <> n.queue
        UNION ALL SELECT 'jobs|' || n.queue || '|' || n.status, 1
            FROM o JOIN n ON n.seq = o.seq WHERE o.status <> n.status OR o.queue <> n.queue
        UNION ALL SELECT 'queue|' || pj_bucket(n.queue_ms), 1
            FROM o JOIN n ON n.seq = o.seq WHERE o.queue_ms IS NULL AND n.queue_ms IS NOT NULL
        UNION ALL SELECT 'queue|sum', n.queue_ms
            FROM o JOIN n ON n.seq = o.seq WHERE o.queue_ms IS NULL AND n.queue_ms IS NOT NULL
        UNION ALL SELECT 'run|' || pj_bucket(n.run_ms), 1
            FROM o JOIN n ON n.seq = o.seq
            WHERE n.status IN ('succeeded', 'failed') AND o.status <> n.status AND n.run_ms IS NOT NULL
        UNION ALL SELECT 'run|sum', n.run_ms
            FROM o JOIN n ON n.seq = o.seq
            WHERE n.status IN ('succeeded', 'failed') AND o.status <> n.status AND n.run_ms IS NOT NULL
    ) AS deltas GROUP BY key;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION pj_events_agg() RETURNS trigger AS $$
BEGIN
    INSERT INTO pj_agg_delta (key, n) SELECT 'events|' || kind, COUNT(*) FROM n GROUP BY kind;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS pj_jobs_agg_ins ON pj_jobs;

CREATE TRIGGER pj_jobs_agg_ins AFTER INSERT ON pj_jobs
    REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION pj_jobs_agg_ins();

DROP TRIGGER IF EXISTS pj_jobs_agg_upd ON pj_jobs;

CREATE TRIGGER pj_jobs_agg_upd AFTER UPDATE ON pj_jobs
    REFERENCING OLD TABLE AS o NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION pj_jobs_agg_upd();

DROP TRIGGER IF EXISTS pj_jobs_agg_del ON pj_jobs;

CREATE TRIGGER pj_jobs_agg_del AFTER DELETE ON pj_jobs
    REFERENCING OLD TABLE AS o FOR EACH STATEMENT EXECUTE FUNCTION pj_jobs_agg_del();

DROP TRIGGER IF EXISTS pj_events_agg ON pj_events;

CREATE TRIGGER pj_events_agg AFTER INSERT ON pj_events
    REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION pj_events_agg();

INSERT INTO pj_agg (key, n) SELECT 'jobs|' || queue || '|' || status, COUNT(*) FROM pj_jobs GROUP BY queue, status;

INSERT INTO pj_agg (key, n) SELECT 'events|' || kind, COUNT(*) FROM pj_events GROUP BY kind;

INSERT INTO pj_agg (key, n) SELECT 'run|' || pj_bucket(run_ms), COUNT(*) FROM pj_jobs WHERE run_ms IS NOT NULL GROUP BY 1;

INSERT INTO pj_agg (key, n) SELECT 'run|sum', COALESCE(SUM(run_ms), 0) FROM pj_jobs WHERE run_ms IS NOT NULL;

INSERT INTO pj_agg (key, n) SELECT 'queue|' || pj_bucket(queue_ms), COUNT(*) FROM pj_jobs WHERE queue_ms IS NOT NULL GROUP BY 1;

INSERT INTO pj_agg (key, n) SELECT 'queue|sum', COALESCE(SUM(queue_ms), 0) FROM pj_jobs WHERE queue_ms IS NOT NULL;
