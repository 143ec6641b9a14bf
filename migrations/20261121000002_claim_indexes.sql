-- Serves the claim's in-flight count for one campaign (was a scan of every campaign's leased contacts).
CREATE INDEX contacts_in_flight ON contacts (campaign_id) WHERE state IN ('claimed', 'calling');
