-- What middleware attached to a job on enqueue (JSON object of strings); NULL when none.
ALTER TABLE pj_jobs ADD COLUMN metadata TEXT;
