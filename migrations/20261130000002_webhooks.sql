-- Signed result webhooks (Standard Webhooks) delivered from a transactional outbox.

-- One endpoint per campaign. `secret` is the `whsec_<base64>` string the receiver verifies with; it is shown
-- once when set or rotated and never returned by a read.
CREATE TABLE webhook_endpoints (
    campaign_id BIGINT PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per event, written by the transaction that commits the fact it reports. `id` orders a contact's
-- events; `msg_id` is the Standard Webhooks `webhook-id`, the same on every retry so receivers deduplicate.
--
-- Lifecycle: due (next_attempt_at <= now()) → claimed (attempts + 1, lease_until and next_attempt_at moved
-- to the lease's end, so a deliverer killed mid-send leaves it due again when the lease runs out) →
-- delivered (delivered_at), or failed (next_attempt_at = backoff) and, once `retry_from` is older than the
-- maximum age, dead (dead_at). A replay clears dead_at/delivered_at and restarts the age window.
CREATE TABLE webhook_outbox (
    id              BIGSERIAL PRIMARY KEY,
    msg_id          TEXT NOT NULL UNIQUE DEFAULT ('msg_' || replace(gen_random_uuid()::text, '-', '')),
    campaign_id     BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    contact_id      BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL CHECK (event_type IN ('contact.result', 'contact.finished', 'contact.opted_out')),
    payload         JSONB NOT NULL,                      -- the body's `data` object
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    retry_from      TIMESTAMPTZ NOT NULL DEFAULT now(),  -- start of the retry window (created or replayed)
    attempts        INTEGER NOT NULL DEFAULT 0,          -- deliveries tried; also fences late acks
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until     TIMESTAMPTZ,                         -- claimed by a deliverer until then
    delivered_at    TIMESTAMPTZ,
    last_status     INTEGER,                             -- the receiver's last HTTP status
    last_error      TEXT,
    dead_at         TIMESTAMPTZ,                         -- gave up (replayable)
    CHECK (delivered_at IS NULL OR dead_at IS NULL)
);

-- Serves the claim: open events in due order.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at, id) WHERE delivered_at IS NULL AND dead_at IS NULL;
-- Serves per-contact ordering: "is there an older open event of this contact?"; and the backlog gauge.
CREATE INDEX webhook_outbox_contact_open ON webhook_outbox (contact_id, id)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
-- Serves the dead gauge and replay of a campaign's dead events.
CREATE INDEX webhook_outbox_dead ON webhook_outbox (campaign_id, id) WHERE dead_at IS NOT NULL;
-- Serves listing a campaign's deliveries by id (seek paging).
CREATE INDEX webhook_outbox_campaign ON webhook_outbox (campaign_id, id);

-- Events are written by triggers rather than by each store function: a contact reaches a terminal state on
-- many paths (settle, DNC block at claim, country rejection, cancel, stragglers, opt-out while pending…) and a
-- future path cannot forget to report it. Each trigger's WHEN clause keeps the hot path cheap (a claim or a
-- retry never calls the function), and the function writes only when the campaign has an endpoint (one
-- primary-key probe). Idempotent replays write nothing: a result is inserted once per (attempt, menu,
-- result) (ON CONFLICT DO NOTHING fires no INSERT trigger) and a contact enters a terminal state once (the
-- WHEN clause needs a non-terminal OLD.state).
--
-- Ordering: an event's id is taken while its transaction holds the contact's row lock (the UPDATE that
-- finished it, or the lock the results trigger takes), so one contact's events get ids in commit order and
-- the deliverer, which sends only a contact's oldest open event, sends them in the order they happened.

-- RFC 3339 in UTC whatever the session's TimeZone.
CREATE FUNCTION webhook_rfc3339(t TIMESTAMPTZ) RETURNS TEXT LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION webhook_outbox_contact_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_endpoints WHERE campaign_id = NEW.campaign_id) THEN
        INSERT INTO webhook_outbox (campaign_id, contact_id, event_type, payload)
        VALUES (NEW.campaign_id, NEW.id, 'contact.finished', jsonb_build_object(
            'campaign_id', NEW.campaign_id, 'contact_id', NEW.id, 'external_id', NEW.external_id,
            'phone', NEW.phone, 'state', NEW.state, 'outcome', NEW.final_outcome, 'reason', NEW.final_reason,
            'result', NEW.result, 'attempts_made', NEW.attempts_made,
            'finished_at', webhook_rfc3339(NEW.finished_at)));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_finished_webhook AFTER UPDATE OF state ON contacts FOR EACH ROW
    WHEN (NEW.state IN ('done', 'exhausted', 'invalid', 'blocked', 'canceled')
          AND OLD.state NOT IN ('done', 'exhausted', 'invalid', 'blocked', 'canceled'))
    EXECUTE FUNCTION webhook_outbox_contact_finished();

-- Imports write `pending` contacts today; a contact born terminal is reported too.
CREATE TRIGGER contacts_inserted_finished_webhook AFTER INSERT ON contacts FOR EACH ROW
    WHEN (NEW.state IN ('done', 'exhausted', 'invalid', 'blocked', 'canceled'))
    EXECUTE FUNCTION webhook_outbox_contact_finished();

CREATE FUNCTION webhook_outbox_result() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c RECORD;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE campaign_id = NEW.campaign_id) THEN
        RETURN NULL;
    END IF;
    -- The contact's row lock orders this event against the contact's finished event (see above). Callers
    -- lock the attempt before (results_record, results_opt_out), as settling does: attempt, then contact.
    SELECT id, external_id, phone INTO c FROM contacts WHERE id = NEW.contact_id FOR NO KEY UPDATE;
    INSERT INTO webhook_outbox (campaign_id, contact_id, event_type, payload)
    VALUES (NEW.campaign_id, NEW.contact_id,
            CASE WHEN NEW.result = 'opted_out' THEN 'contact.opted_out' ELSE 'contact.result' END,
            jsonb_build_object(
                'campaign_id', NEW.campaign_id, 'contact_id', NEW.contact_id, 'external_id', c.external_id,
                'phone', c.phone, 'result', NEW.result, 'menu', NEW.menu, 'digits', NEW.digits,
                'attempt', (SELECT attempt_no FROM attempts WHERE id = NEW.attempt_id),
                'occurred_at', webhook_rfc3339(NEW.created_at)));
    RETURN NULL;
END
$$;

CREATE TRIGGER results_webhook AFTER INSERT ON results FOR EACH ROW EXECUTE FUNCTION webhook_outbox_result();
