-- Version 5: aggregates that do not scan. Triggers append deltas in the same transaction as
-- every change (jobs by queue and status: +1/-1 as rows are inserted, change status or are
-- deleted; events by kind and the run-time and queue-latency histograms: +1 per observation,
-- never taken back), and the store folds the deltas into pj_agg now and then. A read sums
-- pj_agg and the few deltas not folded yet: exact at any moment. Keys: jobs|QUEUE|STATUS,
-- events|KIND, run|BUCKET, run|count, run|sum, queue|BUCKET, queue|count, queue|sum (buckets are
-- the index of the first bound of HISTOGRAM_BOUNDS a value fits, 14 for larger).

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

CREATE OR REPLACE FUNCTION pj_jobs_agg() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO pj_agg_delta (key, n) VALUES ('jobs|' || NEW.queue || '|' || NEW.status, 1);
        IF NEW.queue_ms IS NOT NULL THEN
            INSERT INTO pj_agg_delta (key, n) VALUES
                ('queue|' || pj_bucket(NEW.queue_ms), 1), ('queue|count', 1), ('queue|sum', NEW.queue_ms);
        END IF;
        RETURN NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO pj_agg_delta (key, n) VALUES ('jobs|' || OLD.queue || '|' || OLD.status, -1);
        RETURN NULL;
    END IF;
    IF OLD.status <> NEW.status OR OLD.queue <> NEW.queue THEN
        INSERT INTO pj_agg_delta (key, n) VALUES
            ('jobs|' || OLD.queue || '|' || OLD.status, -1), ('jobs|' || NEW.queue || '|' || NEW.status, 1);
    END IF;
    IF OLD.queue_ms IS NULL AND NEW.queue_ms IS NOT NULL THEN
        INSERT INTO pj_agg_delta (key, n) VALUES
            ('queue|' || pj_bucket(NEW.queue_ms), 1), ('queue|count', 1), ('queue|sum', NEW.queue_ms);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION pj_jobs_agg_run() RETURNS trigger AS $$
BEGIN
    INSERT INTO pj_agg_delta (key, n) VALUES
        ('run|' || pj_bucket(NEW.run_ms), 1), ('run|count', 1), ('run|sum', NEW.run_ms);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION pj_events_agg() RETURNS trigger AS $$
BEGIN
    INSERT INTO pj_agg_delta (key, n) VALUES ('events|' || NEW.kind, 1);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS pj_jobs_agg ON pj_jobs;

CREATE TRIGGER pj_jobs_agg AFTER INSERT OR DELETE ON pj_jobs
    FOR EACH ROW EXECUTE FUNCTION pj_jobs_agg();

DROP TRIGGER IF EXISTS pj_jobs_agg_update ON pj_jobs;

CREATE TRIGGER pj_jobs_agg_update AFTER UPDATE OF status, queue, queue_ms ON pj_jobs
    FOR EACH ROW EXECUTE FUNCTION pj_jobs_agg();

DROP TRIGGER IF EXISTS pj_jobs_agg_run ON pj_jobs;

CREATE TRIGGER pj_jobs_agg_run AFTER UPDATE OF run_ms ON pj_jobs
    FOR EACH ROW WHEN (NEW.run_ms IS NOT NULL) EXECUTE FUNCTION pj_jobs_agg_run();

DROP TRIGGER IF EXISTS pj_events_agg ON pj_events;

CREATE TRIGGER pj_events_agg AFTER INSERT ON pj_events
    FOR EACH ROW EXECUTE FUNCTION pj_events_agg();

INSERT INTO pj_agg (key, n) SELECT 'jobs|' || queue || '|' || status, COUNT(*) FROM pj_jobs GROUP BY queue, status;

INSERT INTO pj_agg (key, n) SELECT 'events|' || kind, COUNT(*) FROM pj_events GROUP BY kind;

INSERT INTO pj_agg (key, n) SELECT 'run|' || pj_bucket(run_ms), COUNT(*) FROM pj_jobs WHERE run_ms IS NOT NULL GROUP BY 1;

INSERT INTO pj_agg (key, n) SELECT 'run|count', COUNT(*) FROM pj_jobs WHERE run_ms IS NOT NULL;

INSERT INTO pj_agg (key, n) SELECT 'run|sum', COALESCE(SUM(run_ms), 0) FROM pj_jobs WHERE run_ms IS NOT NULL;

INSERT INTO pj_agg (key, n) SELECT 'queue|' || pj_bucket(queue_ms), COUNT(*) FROM pj_jobs WHERE queue_ms IS NOT NULL GROUP BY 1;

INSERT INTO pj_agg (key, n) SELECT 'queue|count', COUNT(*) FROM pj_jobs WHERE queue_ms IS NOT NULL;

INSERT INTO pj_agg (key, n) SELECT 'queue|sum', COALESCE(SUM(queue_ms), 0) FROM pj_jobs WHERE queue_ms IS NOT NULL;
