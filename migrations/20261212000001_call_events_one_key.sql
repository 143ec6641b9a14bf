-- Issue 18, callbacks: each stored event wrote four index entries (the surrogate `id`, the delivery key
-- `(call_sid, kind, sequence_number)`, `attempt_id` for lookups and the cascade, and the idempotency token),
-- and the insert was the costliest statement of a callback batch. An event is stored only under the
-- attempt its CallSid is bound to (a CallSid binds one attempt, once), so `(attempt_id, kind,
-- sequence_number)` identifies a delivery exactly as the CallSid did, and as the key it also serves the
-- lookups by attempt and the cascade. Nothing reads the surrogate id.
ALTER TABLE call_events DROP CONSTRAINT call_events_call_sid_kind_sequence_number_key;
DROP INDEX call_events_attempt;
ALTER TABLE call_events DROP COLUMN id;
ALTER TABLE call_events ADD PRIMARY KEY (attempt_id, kind, sequence_number);

-- `params` is kept for audit and read whole: `json` stores the text as Twilio sent it (validated), where
-- `jsonb` parsed it into a binary tree on every insert for lookups nobody makes.
ALTER TABLE call_events ALTER COLUMN params TYPE json USING params::json;
