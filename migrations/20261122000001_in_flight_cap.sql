-- The claim statement locks its campaign row (FOR NO KEY UPDATE, which foreign-key checks do not
-- wait for) so concurrent claimers of one campaign, on any replica, take turns. The in-flight count
-- must then be read AFTER that lock: a statement's own snapshot predates the wait and would miss the
-- claims the previous holder just committed, letting each replica fill the whole cap. A VOLATILE
-- function takes a fresh snapshot for each query it runs, so calling this one from the claim
-- statement, after the locking CTE, counts what is really in flight. PL/pgSQL, so it is never inlined.
CREATE FUNCTION contacts_in_flight(p_campaign_id BIGINT) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT count(*) FROM contacts
            WHERE campaign_id = p_campaign_id AND state IN ('claimed', 'calling'));
END
$$;
