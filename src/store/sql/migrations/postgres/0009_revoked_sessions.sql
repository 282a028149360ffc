-- Version 9: dashboard sessions signed out before they expire. A session cookie is checked
-- against this table on every dashboard request, so a sign-out holds on every `worker api`
-- sharing the store; rows past their session's expiry are deleted at the next sign-out.
CREATE TABLE IF NOT EXISTS pj_revoked_sessions (
    id TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
