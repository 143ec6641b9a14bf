-- Customers call back and get texts (issue: callback number, SMS fallback).
--
-- An inbound call from a contact is an attempt of direction `inbound`: it carries the CallSid, the token
-- its menus use and the keypress results, exactly like our calls, but it is born `finished` (nothing
-- awaits its end: no reconciliation, no lease, no 24 h limit — `requested_at` stays NULL) and is numbered
-- apart from our attempts, so the contact's `attempt_seq` (which settling matches on) never moves for it.
ALTER TABLE attempts ADD COLUMN direction TEXT NOT NULL DEFAULT 'outbound'
    CHECK (direction IN ('outbound', 'inbound'));
ALTER TABLE attempts DROP CONSTRAINT attempts_contact_id_attempt_no_key;
ALTER TABLE attempts ADD CONSTRAINT attempts_contact_direction_no_key UNIQUE (contact_id, direction, attempt_no);
-- Serves the caller lookup (newest contact with this number). Phones never change: inserts pay for it,
-- updates stay HOT.
CREATE INDEX contacts_phone ON contacts (phone, created_at);

-- One SMS per contact at most (a contact belongs to one campaign), queued in the same transaction that
-- ends the contact with an outcome the campaign's `[sms] after` names (trigger below), so none is lost.
-- pending: waits for `send_after` (the callee's window); sending: leased by a sender, committed just
-- before the POST; accepted: Twilio answered with a MessageSid, `status` follows its callbacks; unknown:
-- the POST's fate is unknown — never re-sent (at most one text), a callback may still bind it;
-- skipped: never sent (DNC, opted out, campaign canceled); rejected: Twilio refused it.
CREATE TABLE messages (
    id               BIGSERIAL PRIMARY KEY,
    contact_id       BIGINT NOT NULL UNIQUE REFERENCES contacts (id) ON DELETE CASCADE,
    campaign_id      BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    phone            TEXT NOT NULL,
    trigger_outcome  TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sending', 'accepted', 'unknown', 'skipped', 'rejected')),
    send_after       TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    body             TEXT,
    from_phone       TEXT,
    message_sid      TEXT UNIQUE,
    -- Twilio's MessageStatus, forward only: queued < sending < sent < delivered | undelivered | failed.
    status           TEXT,
    status_rank      SMALLINT NOT NULL DEFAULT 0,
    error_code       INTEGER,
    reason           TEXT,
    requested_at     TIMESTAMPTZ,
    status_at        TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX messages_due ON messages (send_after, id) WHERE state = 'pending';
CREATE INDEX messages_leased ON messages (lease_expires_at) WHERE state = 'sending';
CREATE INDEX messages_phone ON messages (phone, created_at);
CREATE INDEX messages_campaign ON messages (campaign_id);

-- Every delivery callback once: a duplicate (same message, same status) is stored once.
CREATE TABLE message_events (
    id          BIGSERIAL PRIMARY KEY,
    message_id  BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    message_sid TEXT NOT NULL,
    status      TEXT NOT NULL,
    params      JSONB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (message_sid, status)
);
CREATE INDEX message_events_message ON message_events (message_id);

-- A result may come from an SMS reply: it names the message instead of an attempt.
ALTER TABLE results ALTER COLUMN attempt_id DROP NOT NULL;
ALTER TABLE results ADD COLUMN message_id BIGINT REFERENCES messages (id) ON DELETE CASCADE;
ALTER TABLE results ADD CONSTRAINT results_source CHECK ((attempt_id IS NULL) <> (message_id IS NULL));
CREATE UNIQUE INDEX results_message ON results (message_id, result) WHERE message_id IS NOT NULL;

CREATE FUNCTION messages_queue_fallback() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO messages (contact_id, campaign_id, phone, trigger_outcome)
    SELECT NEW.id, NEW.campaign_id, NEW.phone, NEW.final_outcome
    FROM campaigns k
    WHERE k.id = NEW.campaign_id AND k.status <> 'canceled'
      AND k.spec ? 'sms' AND jsonb_typeof(k.spec -> 'sms') = 'object'
      AND (k.spec -> 'sms' -> 'after') ? NEW.final_outcome
    ON CONFLICT (contact_id) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_sms_fallback AFTER UPDATE OF state ON contacts FOR EACH ROW
    WHEN (NEW.state IN ('done', 'exhausted') AND OLD.state NOT IN ('done', 'exhausted', 'invalid', 'blocked', 'canceled')
          AND NEW.final_outcome IS NOT NULL)
    EXECUTE FUNCTION messages_queue_fallback();

-- The result event names its channel; an SMS reply has no attempt.
CREATE OR REPLACE FUNCTION webhook_outbox_result() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c RECORD;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE campaign_id = NEW.campaign_id) THEN
        RETURN NULL;
    END IF;
    SELECT id, external_id, phone INTO c FROM contacts WHERE id = NEW.contact_id FOR NO KEY UPDATE;
    INSERT INTO webhook_outbox (campaign_id, contact_id, event_type, payload)
    VALUES (NEW.campaign_id, NEW.contact_id,
            CASE WHEN NEW.result = 'opted_out' THEN 'contact.opted_out' ELSE 'contact.result' END,
            jsonb_build_object(
                'campaign_id', NEW.campaign_id, 'contact_id', NEW.contact_id, 'external_id', c.external_id,
                'phone', c.phone, 'result', NEW.result, 'menu', NEW.menu, 'digits', NEW.digits,
                'attempt', (SELECT attempt_no FROM attempts WHERE id = NEW.attempt_id),
                'channel', CASE WHEN NEW.message_id IS NOT NULL THEN 'sms'
                                WHEN (SELECT direction FROM attempts WHERE id = NEW.attempt_id) = 'inbound'
                                    THEN 'inbound_call'
                                ELSE 'call' END,
                'occurred_at', webhook_rfc3339(NEW.created_at)));
    RETURN NULL;
END
$$;
