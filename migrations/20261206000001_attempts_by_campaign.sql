-- Serves a campaign's most recent attempts (the console's live table, `GET …/attempts`). Both columns are
-- set at insert and never change, so the attempt's later updates stay HOT.
CREATE INDEX attempts_campaign_recent ON attempts (campaign_id, id);
