-- Recurring campaigns open once per occurrence across every replica: each replica computes the latest
-- occurrence of the cron and records it with a compare-and-set on this column (campaigns_open_occurrence),
-- so only the first replica to see an occurrence acts on it. NULL: none yet (occurrences count from
-- created_at, so a campaign created now does not open for earlier ones).
ALTER TABLE campaigns ADD COLUMN recurrence_last_at TIMESTAMPTZ;

-- AMD mode `async` (AsyncAmd: the script starts at once, the result arrives at /amd/{token}).
ALTER TABLE campaigns DROP CONSTRAINT campaigns_amd_mode_check,
    ADD CONSTRAINT campaigns_amd_mode_check CHECK (amd_mode IN ('off', 'enable', 'detect_message_end', 'async'));
