-- Issue 18, fewer index entries per call: every claim and pre-POST update of a contact changes its state,
-- so none is HOT and each writes an entry into every index whose predicate the new version meets. One
-- partial index over leased contacts, keyed by campaign, now serves both the claim's in-flight count
-- (campaign_id prefix) and lease rescue (it scans only leased contacts, few by construction).
DROP INDEX contacts_in_flight;
DROP INDEX contacts_leased;
CREATE INDEX contacts_leased ON contacts (campaign_id, lease_expires_at) WHERE state IN ('claimed', 'calling');

-- Progress callbacks (ringing, in-progress) change no indexed column of the attempt: with room left on
-- its page they are HOT updates (no index entry at all) instead of a copy elsewhere and one per index.
ALTER TABLE attempts SET (fillfactor = 70);
