-- `attempts_contact (contact_id)` repeats the leading column of the unique key
-- `attempts_contact_direction_no_key (contact_id, direction, attempt_no)`, which serves every lookup by
-- contact (and the cascade from contacts). Each attempt row version (four per call) paid for both.
DROP INDEX attempts_contact;
