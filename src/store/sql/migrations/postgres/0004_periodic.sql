-- Version 4: periodic jobs. Each entry's definition and state, and one row per claimed tick:
-- the primary key (name, tick_at) is what makes each tick enqueued once across schedulers.

CREATE TABLE IF NOT EXISTS pj_periodic (
    name TEXT PRIMARY KEY,
    schedule TEXT NOT NULL,
    timezone TEXT NOT NULL,
    job_class TEXT NOT NULL,
    queue TEXT NOT NULL,
    arguments TEXT NOT NULL,
    paused BIGINT NOT NULL DEFAULT 0,
    last_tick_at BIGINT,
    last_job_id TEXT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS pj_periodic_ticks (
    name TEXT NOT NULL,
    tick_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    job_id TEXT,
    detail TEXT,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (name, tick_at)
);

CREATE INDEX IF NOT EXISTS pj_periodic_ticks_claimed ON pj_periodic_ticks (claimed_at);
