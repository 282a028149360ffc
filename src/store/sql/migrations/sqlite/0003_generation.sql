-- Version 3: the generation of the last start (bumped by a retry from the morgue), so a
-- redelivered duplicate of a finished job is skipped while an operator's retry runs.

ALTER TABLE pj_jobs ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
