-- A running execution's latest progress (JSON: done, total, message, attempt, at), cleared when
-- an execution starts; and the lines jobs log, at most 1,000 per job, numbered from 0.
ALTER TABLE pj_jobs ADD COLUMN progress TEXT;
CREATE TABLE pj_job_logs (
    job_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (job_id, n)
);
