-- Version 6 (SQLite): the aggregates' triggers add to pj_agg directly instead of appending
-- deltas. SQLite has one writer at a time, so the hot rows PostgreSQL's deltas avoid cost nothing
-- here, while a delta row per change (inserted, later summed and deleted) was most of a job's
-- writes. pj_agg stays exact in the same transaction as every change; pj_agg_delta stays (empty)
-- so that reads and folds are the same on both dialects. Keys as in version 5.

INSERT INTO pj_agg (key, n) SELECT key, SUM(n) FROM pj_agg_delta WHERE true GROUP BY key
ON CONFLICT (key) DO UPDATE SET n = pj_agg.n + excluded.n;

DELETE FROM pj_agg_delta;

DROP TRIGGER IF EXISTS pj_jobs_agg_insert;

DROP TRIGGER IF EXISTS pj_jobs_agg_status;

DROP TRIGGER IF EXISTS pj_jobs_agg_delete;

DROP TRIGGER IF EXISTS pj_events_agg;

DROP TRIGGER IF EXISTS pj_jobs_agg_run;

DROP TRIGGER IF EXISTS pj_jobs_agg_queue_insert;

DROP TRIGGER IF EXISTS pj_jobs_agg_queue_update;

CREATE TRIGGER pj_jobs_agg_insert AFTER INSERT ON pj_jobs
BEGIN
    INSERT INTO pj_agg (key, n) VALUES ('jobs|' || NEW.queue || '|' || NEW.status, 1) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER pj_jobs_agg_status AFTER UPDATE OF status ON pj_jobs
WHEN OLD.status <> NEW.status OR OLD.queue <> NEW.queue
BEGIN
    INSERT INTO pj_agg (key, n) VALUES ('jobs|' || OLD.queue || '|' || OLD.status, -1) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
    INSERT INTO pj_agg (key, n) VALUES ('jobs|' || NEW.queue || '|' || NEW.status, 1) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER pj_jobs_agg_delete AFTER DELETE ON pj_jobs
BEGIN
    INSERT INTO pj_agg (key, n) VALUES ('jobs|' || OLD.queue || '|' || OLD.status, -1) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER pj_events_agg AFTER INSERT ON pj_events
BEGIN
    INSERT INTO pj_agg (key, n) VALUES ('events|' || NEW.kind, 1) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER pj_jobs_agg_run AFTER UPDATE OF status ON pj_jobs
WHEN NEW.status IN ('succeeded', 'failed') AND OLD.status <> NEW.status AND NEW.run_ms IS NOT NULL
BEGIN
    INSERT INTO pj_agg (key, n) VALUES ('run|' || CASE WHEN NEW.run_ms <= 5 THEN '0' WHEN NEW.run_ms <= 10 THEN '1' WHEN NEW.run_ms <= 25 THEN '2' WHEN NEW.run_ms <= 50 THEN '3' WHEN NEW.run_ms <= 100 THEN '4' WHEN NEW.run_ms <= 250 THEN '5' WHEN NEW.run_ms <= 500 THEN '6' WHEN NEW.run_ms <= 1000 THEN '7' WHEN NEW.run_ms <= 2500 THEN '8' WHEN NEW.run_ms <= 5000 THEN '9' WHEN NEW.run_ms <= 10000 THEN '10' WHEN NEW.run_ms <= 30000 THEN '11' WHEN NEW.run_ms <= 60000 THEN '12' WHEN NEW.run_ms <= 300000 THEN '13' ELSE '14' END, 1) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
    INSERT INTO pj_agg (key, n) VALUES ('run|sum', NEW.run_ms) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER pj_jobs_agg_queue_insert AFTER INSERT ON pj_jobs
WHEN NEW.queue_ms IS NOT NULL
BEGIN
    INSERT INTO pj_agg (key, n) VALUES ('queue|' || CASE WHEN NEW.queue_ms <= 5 THEN '0' WHEN NEW.queue_ms <= 10 THEN '1' WHEN NEW.queue_ms <= 25 THEN '2' WHEN NEW.queue_ms <= 50 THEN '3' WHEN NEW.queue_ms <= 100 THEN '4' WHEN NEW.queue_ms <= 250 THEN '5' WHEN NEW.queue_ms <= 500 THEN '6' WHEN NEW.queue_ms <= 1000 THEN '7' WHEN NEW.queue_ms <= 2500 THEN '8' WHEN NEW.queue_ms <= 5000 THEN '9' WHEN NEW.queue_ms <= 10000 THEN '10' WHEN NEW.queue_ms <= 30000 THEN '11' WHEN NEW.queue_ms <= 60000 THEN '12' WHEN NEW.queue_ms <= 300000 THEN '13' ELSE '14' END, 1) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
    INSERT INTO pj_agg (key, n) VALUES ('queue|sum', NEW.queue_ms) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER pj_jobs_agg_queue_update AFTER UPDATE OF queue_ms ON pj_jobs
WHEN OLD.queue_ms IS NULL AND NEW.queue_ms IS NOT NULL
BEGIN
    INSERT INTO pj_agg (key, n) VALUES ('queue|' || CASE WHEN NEW.queue_ms <= 5 THEN '0' WHEN NEW.queue_ms <= 10 THEN '1' WHEN NEW.queue_ms <= 25 THEN '2' WHEN NEW.queue_ms <= 50 THEN '3' WHEN NEW.queue_ms <= 100 THEN '4' WHEN NEW.queue_ms <= 250 THEN '5' WHEN NEW.queue_ms <= 500 THEN '6' WHEN NEW.queue_ms <= 1000 THEN '7' WHEN NEW.queue_ms <= 2500 THEN '8' WHEN NEW.queue_ms <= 5000 THEN '9' WHEN NEW.queue_ms <= 10000 THEN '10' WHEN NEW.queue_ms <= 30000 THEN '11' WHEN NEW.queue_ms <= 60000 THEN '12' WHEN NEW.queue_ms <= 300000 THEN '13' ELSE '14' END, 1) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
    INSERT INTO pj_agg (key, n) VALUES ('queue|sum', NEW.queue_ms) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n;
END;
