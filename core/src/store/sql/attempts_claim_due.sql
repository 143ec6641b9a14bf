-- attempts_claim_due: claims up to $2 due contacts of running campaign $1 for lease owner $3 for $4
-- seconds, and makes their attempt rows (state `claimed`, the column default), in ONE round trip.
-- Index: contacts_due (campaign_id, next_attempt_at, id) WHERE state = 'pending'.
-- The benches EXPLAIN this very file; there is no second copy.
WITH turn AS (
    -- Claimers of one campaign take turns, so the in-flight cap holds across replicas; the count is
    -- read by a VOLATILE function after the lock (migration 20261122000001 says why).
    SELECT c.id, c.max_in_flight FROM campaigns c WHERE c.id = $1 AND c.status = 'running'
    FOR NO KEY UPDATE
), room AS (
    SELECT GREATEST(0, LEAST($2, turn.max_in_flight - contacts_in_flight(turn.id))) AS n FROM turn
), due AS (
    SELECT id FROM contacts
    WHERE campaign_id = $1 AND state = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT COALESCE((SELECT n FROM room), 0)  -- no row: not running, claim nothing
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE contacts c
    SET state = 'claimed', lease_owner = $3,
        lease_expires_at = now() + make_interval(secs => $4),
        attempt_seq = c.attempt_seq + 1, updated_at = now()
    -- `= ANY(ARRAY(...))` rather than a join: the planner can't see through the LIMIT
    -- expression, guesses 10 % of the table and hash-joins a full scan (3.6 s at 10M rows,
    -- BENCHMARKS.md); as an array it probes the primary key.
    WHERE c.id = ANY (ARRAY(SELECT id FROM due))
    RETURNING c.id, c.campaign_id, c.phone, c.zones, c.zone_source, c.region, c.external_id, c.attempt_seq,
              c.attempts_made, c.next_attempt_at
), made AS (
    INSERT INTO attempts (contact_id, campaign_id, attempt_no, phone, lease_owner)
    SELECT id, campaign_id, attempt_seq, phone, $3 FROM claimed
    RETURNING id, contact_id
)
SELECT made.id AS "attempt_id!", claimed.id AS "contact_id!", claimed.campaign_id AS "campaign_id!",
       claimed.attempt_seq AS "attempt_no!", claimed.phone AS "phone!: E164",
       claimed.zones AS "zones!: Vec<Tz>", claimed.zone_source AS "zone_source!: ZoneSource", claimed.region,
       claimed.external_id,
       claimed.attempts_made AS "attempts_made!", claimed.next_attempt_at AS "next_attempt_at!"
FROM made JOIN claimed ON claimed.id = made.contact_id
ORDER BY claimed.next_attempt_at, claimed.id
