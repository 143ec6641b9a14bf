//! The facts the compliance audit needs about every call of a campaign, in one statement.

use super::{Result, Store};
use serde::Serialize;

use crate::domain::compliance::{audit, AuditEntry, CallRecord, ContactZone, ZoneSource};
use crate::domain::{Tz, E164};

/// `dialer compliance audit` and `GET /api/v1/campaigns/{id}/audit`: every call of a campaign re-checked
/// against its rules.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditReport {
    pub campaign_id: i64,
    pub calls: usize,
    /// Calls that broke at least one rule; a compliant campaign has none.
    pub violations: usize,
    pub entries: Vec<AuditEntry>,
}

impl Store {
    /// Audits every call of the campaign with the rules it has now (a window changed mid-campaign is
    /// applied to the calls before the change too: the audit errs towards reporting).
    pub async fn compliance_audit(&self, campaign_id: i64) -> Result<AuditReport> {
        let campaign = self.campaigns_get(campaign_id).await?;
        let calls = self.audit_calls(campaign_id, campaign.timezone).await?;
        let entries = audit(&campaign.policy(), &calls);
        let violations = entries.iter().filter(|e| !e.violations.is_empty()).count();
        Ok(AuditReport { campaign_id, calls: entries.len(), violations, entries })
    }

    /// Every call the campaign requested (attempts that were never created are not calls), oldest
    /// first, with what the rules need as of the moment it was requested: calls to the same number in the
    /// 24 h before (any campaign), a DNC entry that applied already, and whether another contact with the
    /// same reference had been reached. `campaign_tz` stands in for contacts stored before zones were.
    pub async fn audit_calls(&self, campaign_id: i64, campaign_tz: Tz) -> Result<Vec<CallRecord>> {
        let rows = sqlx::query!(
            r#"SELECT a.id, a.contact_id, a.phone AS "phone: E164", c.zones AS "zones!: Vec<Tz>",
                      c.zone_source AS "zone_source: ZoneSource", c.region, a.requested_at AS "requested_at!",
                      (SELECT count(*) FROM attempts x
                       WHERE x.phone = a.phone AND x.id <> a.id AND x.state <> 'not_created'
                         AND x.requested_at >= a.requested_at - interval '24 hours'
                         AND x.requested_at <= a.requested_at) AS "calls_24h_before!",
                      (SELECT min(d.created_at) FROM dnc d
                       WHERE d.phone = a.phone AND (d.campaign_id IS NULL OR d.campaign_id = a.campaign_id)
                         AND d.created_at < a.requested_at) AS dnc_since,
                      (c.external_id IS NOT NULL AND EXISTS (
                          SELECT 1 FROM contacts o JOIN attempts oa ON oa.contact_id = o.id
                          WHERE o.external_id = c.external_id AND o.id <> c.id
                            AND oa.outcome IN ('answered_result', 'answered_no_result', 'voicemail')
                            AND COALESCE(oa.answered_at, oa.ended_at) < a.requested_at)) AS "reference_reached_before!"
               FROM attempts a JOIN contacts c ON c.id = a.contact_id
               WHERE a.campaign_id = $1 AND a.requested_at IS NOT NULL AND a.state <> 'not_created'
               ORDER BY a.requested_at, a.id"#,
            campaign_id
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| CallRecord {
                attempt_id: r.id,
                contact_id: r.contact_id,
                phone: r.phone,
                zone: ContactZone::from_stored(r.zones, Some(r.zone_source), r.region, campaign_tz),
                requested_at: r.requested_at,
                calls_24h_before: r.calls_24h_before,
                dnc_since: r.dnc_since,
                reference_reached_before: r.reference_reached_before,
            })
            .collect())
    }
}
