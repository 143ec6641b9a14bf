-- The management API: API keys, idempotent requests, and one contact per external reference per campaign.

-- Only a SHA-256 of each key is kept (keys are 256 random bits, so a slow hash adds nothing); `prefix`
-- is the key's first characters, shown in lists so people can tell their keys apart.
CREATE TABLE api_keys (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL UNIQUE,
    scopes       TEXT[] NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

-- A request made with an `Idempotency-Key` header: its first answer, replayed for the same key and body.
-- The row is inserted first in the request's own transaction, so a concurrent replay waits for it.
CREATE TABLE idempotency_keys (
    api_key_id   BIGINT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    status       SMALLINT NOT NULL,
    response     JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- A parcel or appointment is one contact in a campaign: pushing it again is a duplicate, never a second call.
CREATE UNIQUE INDEX contacts_campaign_external ON contacts (campaign_id, external_id) WHERE external_id IS NOT NULL;
