-- Talk to a person (issue: operators in the browser, a waiting room, announcements).
--
-- An operator is a console login (an API key) with a Twilio Client identity. `available` is the
-- operator's own choice (available or away); `engaged` is what the system has them doing (idle, ringing
-- for a caller, busy talking). Only an available, idle operator is rung; the longest idle first
-- (`engaged_at`), as an ACD would.
CREATE TABLE operators (
    id           BIGSERIAL PRIMARY KEY,
    api_key_id   BIGINT NOT NULL UNIQUE REFERENCES api_keys (id) ON DELETE CASCADE,
    -- The Twilio Client identity (`client:alice`), also the access token's identity.
    identity     TEXT NOT NULL UNIQUE CHECK (identity ~ '^[A-Za-z0-9_.@-]{1,121}$'),
    available    BOOLEAN NOT NULL DEFAULT false,
    engaged      TEXT NOT NULL DEFAULT 'idle' CHECK (engaged IN ('idle', 'ringing', 'busy')),
    engaged_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Rings not answered in a row; a missed ring sets the operator away.
    missed       INTEGER NOT NULL DEFAULT 0,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX operators_idle ON operators (engaged_at) WHERE available AND engaged = 'idle';

-- A callee who asked for a person, one row per attempt (pressing the key again reuses it).
-- waiting: in the conference (the waiting room), nobody rung; ringing: one operator's leg rings
-- (`ring_no` counts rings, so a late callback of an earlier leg changes nothing); connected: an
-- operator answered; ended: the operator's conversation is over. Terminal without an operator:
-- abandoned (hung up while waiting), offered (taken out of the room after the hold limit and asked
-- whether to be called back), callback_requested / no_operator (their answer).
-- `leg_open` marks an operator leg that may still ring after the transfer moved on: the dialer cancels it.
CREATE TABLE transfers (
    attempt_id        BIGINT PRIMARY KEY REFERENCES attempts (id) ON DELETE CASCADE,
    contact_id        BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    campaign_id       BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    menu              TEXT NOT NULL,
    digits            TEXT NOT NULL,
    state             TEXT NOT NULL DEFAULT 'waiting'
                      CHECK (state IN ('waiting', 'ringing', 'connected', 'ended', 'abandoned', 'offered',
                                       'callback_requested', 'no_operator')),
    hold_until        TIMESTAMPTZ NOT NULL,
    ring_s            INTEGER NOT NULL,
    conference_sid    TEXT,
    ring_no           INTEGER NOT NULL DEFAULT 0,
    ring_operator_id  BIGINT REFERENCES operators (id) ON DELETE SET NULL,
    ring_started_at   TIMESTAMPTZ,
    leg_sid           TEXT,
    leg_open          BOOLEAN NOT NULL DEFAULT false,
    operator_id       BIGINT REFERENCES operators (id) ON DELETE SET NULL,
    -- Kept as text so results still name who answered after an operator is removed.
    operator_identity TEXT,
    requested_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    answered_at       TIMESTAMPTZ,
    ended_at          TIMESTAMPTZ,
    CHECK ((state IN ('connected', 'ended')) = (answered_at IS NOT NULL))
);
CREATE INDEX transfers_open ON transfers (requested_at) WHERE state IN ('waiting', 'ringing');
CREATE INDEX transfers_legs ON transfers (attempt_id) WHERE leg_open;
CREATE INDEX transfers_campaign ON transfers (campaign_id);
-- The results export names who answered a contact's call and for how long.
CREATE INDEX transfers_contact ON transfers (contact_id) WHERE answered_at IS NOT NULL;

-- Announcements from the console into a live call or a waiting room: what was said, by whom, and
-- whether Twilio took the request.
CREATE TABLE announcements (
    id           BIGSERIAL PRIMARY KEY,
    attempt_id   BIGINT NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    text         TEXT NOT NULL CHECK (length(text) BETWEEN 1 AND 1000),
    -- The API key's name of who sent it.
    sent_by      TEXT NOT NULL,
    -- conference: AnnounceUrl on the conference; call: the live call redirected to it and back.
    via          TEXT NOT NULL CHECK (via IN ('conference', 'call')),
    error        TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX announcements_attempt ON announcements (attempt_id);
