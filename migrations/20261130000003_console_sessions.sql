-- Console sessions: a person logged in to /console with an API key. The cookie holds a random session id;
-- only its SHA-256 is kept (like api_keys). The CSRF token is per session and sent back in every form.
-- Revoking or deleting the key ends its sessions: the lookup joins the live key, and the rows cascade.
CREATE TABLE console_sessions (
    id_hash    BYTEA PRIMARY KEY,
    api_key_id BIGINT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
