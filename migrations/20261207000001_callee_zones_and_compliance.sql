-- The callee's own zone, resolved once at import (issue: a contact without a zone was called in the
-- campaign's zone, e.g. 06:00 in Los Angeles). `zones` holds every candidate zone the rules must be open
-- in; `zone_source` says where they came from; `region` is the US state of the number, for state rules.
-- Rows from before keep what they were called on: their own zone, or (empty `zones`) the campaign's.
ALTER TABLE contacts
    ADD COLUMN zones TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN zone_source TEXT NOT NULL DEFAULT 'campaign' CHECK (zone_source IN ('given', 'number', 'campaign')),
    ADD COLUMN region TEXT;
UPDATE contacts SET zones = ARRAY[timezone], zone_source = 'given' WHERE timezone IS NOT NULL;

-- Compliance profiles, business name and zone fallback ({profiles, business_name, zone_fallback}).
ALTER TABLE campaigns ADD COLUMN compliance JSONB NOT NULL DEFAULT '{}';
