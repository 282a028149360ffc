-- Version 8: scheduled and retrying jobs, soonest due first (the dashboard's Scheduled page,
-- `GET /v1/jobs?order=due`). One partial index per status, so that the jobs that never wait
-- (most) never enter them; a query names the status as a literal to use its index.
CREATE INDEX IF NOT EXISTS pj_jobs_due_scheduled ON pj_jobs (scheduled_at, seq) WHERE status = 'scheduled';

CREATE INDEX IF NOT EXISTS pj_jobs_due_retrying ON pj_jobs (scheduled_at, seq) WHERE status = 'retrying';
