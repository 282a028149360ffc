-- Version 2: the outbox. A recorded enqueue is written unpublished with the message to publish;
-- the publish, or else the relay, marks it published. Rows from before are all published.

ALTER TABLE pj_jobs ADD COLUMN published_at BIGINT;

ALTER TABLE pj_jobs ADD COLUMN outbox_topic TEXT;

ALTER TABLE pj_jobs ADD COLUMN outbox_data TEXT;

ALTER TABLE pj_jobs ADD COLUMN outbox_attributes TEXT;

ALTER TABLE pj_jobs ADD COLUMN outbox_claimed_until BIGINT;

UPDATE pj_jobs SET published_at = enqueued_at;

CREATE INDEX IF NOT EXISTS pj_jobs_unpublished ON pj_jobs (enqueued_at) WHERE published_at IS NULL;
