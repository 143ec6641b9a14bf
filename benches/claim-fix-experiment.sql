-- Experiment for BENCHMARKS.md (scale): attempts_claim_due with the UPDATE joined through the primary key
-- (`c.id = ANY (ARRAY(SELECT id FROM due))`) instead of `FROM due WHERE c.id = due.id`, campaign 1, rolled back.
-- Run against a kept scale database: psql -X "$URL/bench_scale_10000000" -f benches/claim-fix-experiment.sql
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) WITH room AS (
     SELECT GREATEST(0, LEAST(200, c.max_in_flight - (
         SELECT count(*) FROM contacts x
         WHERE x.campaign_id = c.id AND x.state IN ('claimed', 'calling')))) AS n
     FROM campaigns c WHERE c.id = 1 AND c.status = 'running'
 ), due AS (
     SELECT id FROM contacts
     WHERE campaign_id = 1 AND state = 'pending' AND next_attempt_at <= now()
     ORDER BY next_attempt_at, id
     LIMIT COALESCE((SELECT n FROM room), 0)
     FOR UPDATE SKIP LOCKED
 ), claimed AS (
     UPDATE contacts c
     SET state = 'claimed', lease_owner = 'bench',
         lease_expires_at = now() + make_interval(secs => 120),
         attempt_seq = c.attempt_seq + 1, updated_at = now()
     WHERE c.id = ANY (ARRAY(SELECT id FROM due))
     RETURNING c.id, c.campaign_id, c.phone, c.timezone, c.external_id, c.attempt_seq,
               c.attempts_made, c.next_attempt_at
 ), made AS (
     INSERT INTO attempts (contact_id, campaign_id, attempt_no, phone, lease_owner)
     SELECT id, campaign_id, attempt_seq, phone, 'bench' FROM claimed
     RETURNING id, contact_id
 )
 SELECT made.id AS attempt_id, claimed.id AS contact_id, claimed.campaign_id,
        claimed.attempt_seq AS attempt_no, claimed.phone, claimed.timezone, claimed.external_id,
        claimed.attempts_made, claimed.next_attempt_at
 FROM made JOIN claimed ON claimed.id = made.contact_id
 ORDER BY claimed.next_attempt_at, claimed.id;
ROLLBACK;
