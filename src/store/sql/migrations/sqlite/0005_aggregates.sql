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
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
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

CREATE TRIGGER IF NOT EXISTS pj_jobs_agg_insert AFTER INSERT ON pj_jobs
BEGIN
    INSERT INTO pj_agg_delta (key, n) VALUES ('jobs|' || NEW.queue || '|' || NEW.status, 1);
END;

CREATE TRIGGER IF NOT EXISTS pj_jobs_agg_status AFTER UPDATE OF status ON pj_jobs
WHEN OLD.status <> NEW.status OR OLD.queue <> NEW.queue
BEGIN
    INSERT INTO pj_agg_delta (key, n) VALUES ('jobs|' || OLD.queue || '|' || OLD.status, -1);
    INSERT INTO pj_agg_delta (key, n) VALUES ('jobs|' || NEW.queue || '|' || NEW.status, 1);
END;

CREATE TRIGGER IF NOT EXISTS pj_jobs_agg_delete AFTER DELETE ON pj_jobs
BEGIN
    INSERT INTO pj_agg_delta (key, n) VALUES ('jobs|' || OLD.queue || '|' || OLD.status, -1);
END;

CREATE TRIGGER IF NOT EXISTS pj_events_agg AFTER INSERT ON pj_events
BEGIN
    INSERT INTO pj_agg_delta (key, n) VALUES ('events|' || NEW.kind, 1);
END;

CREATE TRIGGER IF NOT EXISTS pj_jobs_agg_run AFTER UPDATE OF status ON pj_jobs
WHEN NEW.status IN ('succeeded', 'failed') AND OLD.status <> NEW.status AND NEW.run_ms IS NOT NULL
BEGIN
    INSERT INTO pj_agg_delta (key, n) VALUES ('run|' || CASE WHEN NEW.run_ms <= 5 THEN '0' WHEN NEW.run_ms <= 10 THEN '1' WHEN NEW.run_ms <= 25 THEN '2' WHEN NEW.run_ms <= 50 THEN '3' WHEN NEW.run_ms <= 100 THEN '4' WHEN NEW.run_ms <= 250 THEN '5' WHEN NEW.run_ms <= 500 THEN '6' WHEN NEW.run_ms <= 1000 THEN '7' WHEN NEW.run_ms <= 2500 THEN '8' WHEN NEW.run_ms <= 5000 THEN '9' WHEN NEW.run_ms <= 10000 THEN '10' WHEN NEW.run_ms <= 30000 THEN '11' WHEN NEW.run_ms <= 60000 THEN '12' WHEN NEW.run_ms <= 300000 THEN '13' ELSE '14' END, 1);
    INSERT INTO pj_agg_delta (key, n) VALUES ('run|sum', NEW.run_ms);
END;

CREATE TRIGGER IF NOT EXISTS pj_jobs_agg_queue_insert AFTER INSERT ON pj_jobs
WHEN NEW.queue_ms IS NOT NULL
BEGIN
    INSERT INTO pj_agg_delta (key, n) VALUES ('queue|' || CASE WHEN NEW.queue_ms <= 5 THEN '0' WHEN NEW.queue_ms <= 10 THEN '1' WHEN NEW.queue_ms <= 25 THEN '2' WHEN NEW.queue_ms <= 50 THEN '3' WHEN NEW.queue_ms <= 100 THEN '4' WHEN NEW.queue_ms <= 250 THEN '5' WHEN NEW.queue_ms <= 500 THEN '6' WHEN NEW.queue_ms <= 1000 THEN '7' WHEN NEW.queue_ms <= 2500 THEN '8' WHEN NEW.queue_ms <= 5000 THEN '9' WHEN NEW.queue_ms <= 10000 THEN '10' WHEN NEW.queue_ms <= 30000 THEN '11' WHEN NEW.queue_ms <= 60000 THEN '12' WHEN NEW.queue_ms <= 300000 THEN '13' ELSE '14' END, 1);
    INSERT INTO pj_agg_delta (key, n) VALUES ('queue|sum', NEW.queue_ms);
END;

CREATE TRIGGER IF NOT EXISTS pj_jobs_agg_queue_update AFTER UPDATE OF queue_ms ON pj_jobs
WHEN OLD.queue_ms IS NULL AND NEW.queue_ms IS NOT NULL
BEGIN
    INSERT INTO pj_agg_delta (key, n) VALUES ('queue|' || CASE WHEN NEW.queue_ms <= 5 THEN '0' WHEN NEW.queue_ms <= 10 THEN '1' WHEN NEW.queue_ms <= 25 THEN '2' WHEN NEW.queue_ms <= 50 THEN '3' WHEN NEW.queue_ms <= 100 THEN '4' WHEN NEW.queue_ms <= 250 THEN '5' WHEN NEW.queue_ms <= 500 THEN '6' WHEN NEW.queue_ms <= 1000 THEN '7' WHEN NEW.queue_ms <= 2500 THEN '8' WHEN NEW.queue_ms <= 5000 THEN '9' WHEN NEW.queue_ms <= 10000 THEN '10' WHEN NEW.queue_ms <= 30000 THEN '11' WHEN NEW.queue_ms <= 60000 THEN '12' WHEN NEW.queue_ms <= 300000 THEN '13' ELSE '14' END, 1);
    INSERT INTO pj_agg_delta (key, n) VALUES ('queue|sum', NEW.queue_ms);
END;

INSERT INTO pj_agg (key, n) SELECT 'jobs|' || queue || '|' || status, COUNT(*) FROM pj_jobs GROUP BY queue, status;

INSERT INTO pj_agg (key, n) SELECT 'events|' || kind, COUNT(*) FROM pj_events GROUP BY kind;

INSERT INTO pj_agg (key, n) SELECT 'run|' || CASE WHEN run_ms <= 5 THEN '0' WHEN run_ms <= 10 THEN '1' WHEN run_ms <= 25 THEN '2' WHEN run_ms <= 50 THEN '3' WHEN run_ms <= 100 THEN '4' WHEN run_ms <= 250 THEN '5' WHEN run_ms <= 500 THEN '6' WHEN run_ms <= 1000 THEN '7' WHEN run_ms <= 2500 THEN '8' WHEN run_ms <= 5000 THEN '9' WHEN run_ms <= 10000 THEN '10' WHEN run_ms <= 30000 THEN '11' WHEN run_ms <= 60000 THEN '12' WHEN run_ms <= 300000 THEN '13' ELSE '14' END, COUNT(*) FROM pj_jobs WHERE run_ms IS NOT NULL GROUP BY 1;

INSERT INTO pj_agg (key, n) SELECT 'run|sum', COALESCE(SUM(run_ms), 0) FROM pj_jobs WHERE run_ms IS NOT NULL;

INSERT INTO pj_agg (key, n) SELECT 'queue|' || CASE WHEN queue_ms <= 5 THEN '0' WHEN queue_ms <= 10 THEN '1' WHEN queue_ms <= 25 THEN '2' WHEN queue_ms <= 50 THEN '3' WHEN queue_ms <= 100 THEN '4' WHEN queue_ms <= 250 THEN '5' WHEN queue_ms <= 500 THEN '6' WHEN queue_ms <= 1000 THEN '7' WHEN queue_ms <= 2500 THEN '8' WHEN queue_ms <= 5000 THEN '9' WHEN queue_ms <= 10000 THEN '10' WHEN queue_ms <= 30000 THEN '11' WHEN queue_ms <= 60000 THEN '12' WHEN queue_ms <= 300000 THEN '13' ELSE '14' END, COUNT(*) FROM pj_jobs WHERE queue_ms IS NOT NULL GROUP BY 1;

INSERT INTO pj_agg (key, n) SELECT 'queue|sum', COALESCE(SUM(queue_ms), 0) FROM pj_jobs WHERE queue_ms IS NOT NULL;
