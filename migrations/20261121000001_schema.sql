-- The dialer's schema. Statuses are TEXT with CHECK constraints (not PG enums) so the literals stay in the
-- SQL text of every hot statement and the partial indexes below are chosen by the planner.

CREATE TABLE campaigns (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL,
    caller_id       TEXT NOT NULL,                       -- E.164 `From`
    status          TEXT NOT NULL DEFAULT 'draft'
                    CHECK (status IN ('draft', 'running', 'paused', 'completed', 'canceled')),
    status_reason   TEXT,                                -- why it was paused (e.g. Twilio 21210) or canceled
    timezone        TEXT NOT NULL,                       -- default IANA zone for contacts without one
    cps             DOUBLE PRECISION NOT NULL CHECK (cps > 0),          -- per-campaign calls/s
    account_cps_share DOUBLE PRECISION NOT NULL DEFAULT 1.0
                    CHECK (account_cps_share > 0 AND account_cps_share <= 1),
    max_in_flight   INTEGER NOT NULL CHECK (max_in_flight > 0),
    max_attempts    INTEGER NOT NULL CHECK (max_attempts > 0),
    retry_policy    JSONB NOT NULL,                      -- per outcome: {busy: {delay_s, max}, ...}
    calling_window  JSONB NOT NULL,                      -- {start, end, days, holidays}
    limits          JSONB NOT NULL DEFAULT '{}',         -- {max_calls_per_number_24h, one_per_external_id}
    amd_mode        TEXT NOT NULL DEFAULT 'off' CHECK (amd_mode IN ('off', 'enable', 'detect_message_end')),
    ring_timeout_s  INTEGER NOT NULL DEFAULT 30,
    script          JSONB NOT NULL,
    recurrence_cron TEXT,
    recurrence_tz   TEXT,
    spec            JSONB NOT NULL,                      -- the campaign file as given, for export/audit
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX campaigns_running ON campaigns (id) WHERE status = 'running';

CREATE TABLE contacts (
    id               BIGSERIAL PRIMARY KEY,
    campaign_id      BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    phone            TEXT NOT NULL,                       -- E.164
    timezone         TEXT,                                -- IANA; NULL means the campaign's
    external_id      TEXT,                                -- parcel / appointment reference
    attributes       JSONB NOT NULL DEFAULT '{}',
    -- pending: waits for next_attempt_at; claimed: leased by a dialer, attempt row exists, not yet sent;
    -- calling: a call was requested and its end is awaited; the rest are terminal.
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'claimed', 'calling',
                                      'done', 'exhausted', 'invalid', 'blocked', 'canceled')),
    attempts_made    INTEGER NOT NULL DEFAULT 0,          -- calls actually requested from Twilio
    attempt_seq      INTEGER NOT NULL DEFAULT 0,          -- attempt rows created (numbers the next one)
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    final_outcome    TEXT,
    final_reason     TEXT,
    result           TEXT,                                -- keypress result (confirmed, reschedule:morning…)
    last_call_at     TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, phone),
    -- Terminal states and finished_at go together, so a contact can't look done without saying when.
    CHECK ((state IN ('done', 'exhausted', 'invalid', 'blocked', 'canceled')) = (finished_at IS NOT NULL))
);

-- Serves the claim: due pending contacts of one campaign in due order.
CREATE INDEX contacts_due ON contacts (campaign_id, next_attempt_at, id) WHERE state = 'pending';
-- Serves lease rescue.
CREATE INDEX contacts_leased ON contacts (lease_expires_at) WHERE state IN ('claimed', 'calling');
CREATE INDEX contacts_campaign_state ON contacts (campaign_id, state);
CREATE INDEX contacts_external ON contacts (external_id) WHERE external_id IS NOT NULL;

CREATE TABLE attempts (
    id                BIGSERIAL PRIMARY KEY,
    contact_id        BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    campaign_id       BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    attempt_no        INTEGER NOT NULL,
    phone             TEXT NOT NULL,
    -- claimed: row made at claim, nothing sent; dialing: committed just before the POST (fate unknown
    -- until it returns); created: Twilio answered with a CallSid; parked: the POST's fate is unknown and
    -- must be reconciled before any redial; finished: a terminal status is known; not_created: proven
    -- never created (safe to dial again as a new attempt).
    state             TEXT NOT NULL DEFAULT 'claimed'
                      CHECK (state IN ('claimed', 'dialing', 'created', 'parked', 'finished', 'not_created')),
    lease_owner       TEXT,
    call_sid          TEXT UNIQUE,
    call_status       TEXT,                               -- Twilio's last CallStatus (monotonic by rank)
    status_rank       SMALLINT NOT NULL DEFAULT 0,
    outcome           TEXT,
    result            TEXT,
    requested_at      TIMESTAMPTZ,                        -- the POST was about to be sent
    answered_at       TIMESTAMPTZ,
    ended_at          TIMESTAMPTZ,
    duration_s        INTEGER,
    answered_by       TEXT,
    sip_response_code INTEGER,
    twilio_error_code INTEGER,
    error_message     TEXT,
    queue_time_ms     INTEGER,
    last_event_at     TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (contact_id, attempt_no),
    CHECK ((state IN ('finished', 'not_created')) = (finished_at IS NOT NULL))
);

-- Serves reconciliation: attempts whose end is still unknown.
CREATE INDEX attempts_open ON attempts (requested_at) WHERE state IN ('dialing', 'created', 'parked');
-- Serves the rolling 24 h per-number limit across campaigns.
CREATE INDEX attempts_phone_requested ON attempts (phone, requested_at) WHERE requested_at IS NOT NULL;
CREATE INDEX attempts_contact ON attempts (contact_id);

CREATE TABLE call_events (
    id                BIGSERIAL PRIMARY KEY,
    attempt_id        BIGINT NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    call_sid          TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('status', 'amd')),
    sequence_number   INTEGER NOT NULL,
    call_status       TEXT,
    idempotency_token TEXT,
    params            JSONB NOT NULL,
    received_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A retried or duplicated callback is stored once.
    UNIQUE (call_sid, kind, sequence_number)
);
CREATE UNIQUE INDEX call_events_idempotency ON call_events (idempotency_token) WHERE idempotency_token IS NOT NULL;
CREATE INDEX call_events_attempt ON call_events (attempt_id);

CREATE TABLE results (
    id          BIGSERIAL PRIMARY KEY,
    attempt_id  BIGINT NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    contact_id  BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    menu        TEXT NOT NULL,
    digits      TEXT NOT NULL,
    result      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (attempt_id, menu, result)
);
CREATE INDEX results_campaign ON results (campaign_id);

CREATE TABLE dnc (
    id          BIGSERIAL PRIMARY KEY,
    phone       TEXT NOT NULL,
    campaign_id BIGINT REFERENCES campaigns (id) ON DELETE CASCADE,   -- NULL: every campaign
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL,                                      -- cli, import, keypress, api
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX dnc_global ON dnc (phone) WHERE campaign_id IS NULL;
CREATE UNIQUE INDEX dnc_campaign ON dnc (phone, campaign_id) WHERE campaign_id IS NOT NULL;

-- Live dialer replicas. Each takes account CPS / live replicas (see README, "Scaling out").
CREATE TABLE dialer_nodes (
    node_id      TEXT PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
