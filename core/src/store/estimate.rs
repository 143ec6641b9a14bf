//! What `campaign estimate` reads: the contacts still to be called, the mean length of the script's
//! variables in their attributes, and (for `--learn`) the outcomes of the campaign's finished attempts.
//! Read-only.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{CampaignRow, Result, Store, StoreError};
use crate::domain::campaign::SmsFallback;
use crate::domain::compliance::{ContactZone, ZoneSource};
use crate::domain::script::Script;
use crate::domain::{Tz, E164};
use crate::estimate::{
    estimate, EstimateCampaign, EstimateContact, EstimateError, EstimateInput, EstimateMix, EstimateReport,
    EstimateSettings, MixSource, ObservedAttempts, PriceTable, SmsPlan, MIN_LEARN_ATTEMPTS,
};

/// Which outcome mix an estimate of a stored campaign uses.
#[derive(Debug, Clone)]
pub enum MixChoice {
    Default,
    /// A mix file or a mix in the request.
    Given(Box<EstimateMix>),
    /// Learned from the campaign's finished attempts; the default when there are too few.
    Learn,
}

/// How to estimate a stored campaign.
#[derive(Debug, Clone)]
pub struct EstimateOptions {
    pub start: DateTime<Utc>,
    pub mix: MixChoice,
    pub prices: PriceTable,
    /// `ACCOUNT_CPS` and `PACING_MARGIN_MS` of the configuration the dialer runs with.
    pub account_cps: f64,
    pub pacing_margin: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EstimateFailure {
    /// The campaign does not exist, or the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The mix, the price table or the campaign cannot be simulated; names the field.
    #[error(transparent)]
    Input(#[from] EstimateError),
}

impl CampaignRow {
    /// What the simulation needs of the campaign as stored (its live values: CPS, window, retry policy…).
    pub fn estimate_campaign(&self) -> std::result::Result<EstimateCampaign, EstimateError> {
        let script: Script = serde_json::from_value(self.script.clone())
            .map_err(|e| EstimateError::Input(format!("campaign {}: stored script: {e}", self.id)))?;
        Ok(EstimateCampaign {
            cps: self.cps,
            account_cps_share: self.account_cps_share,
            max_in_flight: self.max_in_flight,
            max_attempts: self.max_attempts,
            retry: self.retry_policy.0.clone(),
            amd: self.amd_mode,
            ring_timeout_s: self.ring_timeout_s,
            policy: self.policy(),
            script,
            timezone: self.timezone,
            // The `[sms]` fallback lives only in the stored campaign file.
            sms: self
                .spec
                .get("sms")
                .filter(|v| !v.is_null())
                .map(|v| serde_json::from_value::<SmsFallback>(v.clone()))
                .transpose()
                .map_err(|e| EstimateError::Input(format!("campaign {}: stored sms: {e}", self.id)))?
                .as_ref()
                .map(SmsPlan::from_fallback),
        })
    }
}

impl Store {
    /// The campaign's contacts not yet in a terminal state, in the scheduler's order. `campaign_tz` stands
    /// in for contacts stored before zones were.
    pub async fn estimate_contacts(&self, campaign_id: i64, campaign_tz: Tz) -> Result<Vec<EstimateContact>> {
        let rows = sqlx::query!(
            r#"SELECT phone AS "phone: E164", zones AS "zones!: Vec<Tz>", zone_source AS "zone_source: ZoneSource",
                      region, external_id
               FROM contacts
               WHERE campaign_id = $1 AND state IN ('pending', 'claimed', 'calling')
               ORDER BY next_attempt_at, id"#,
            campaign_id
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| EstimateContact {
                phone: r.phone,
                zone: ContactZone::from_stored(r.zones, Some(r.zone_source), r.region, campaign_tz),
                external_id: r.external_id,
            })
            .collect())
    }

    /// Mean characters of each of `variables` in the campaign's contacts' attributes (variables no contact
    /// has are left out).
    pub async fn estimate_variable_chars(
        &self,
        campaign_id: i64,
        variables: &[String],
    ) -> Result<BTreeMap<String, f64>> {
        let rows = sqlx::query!(
            r#"SELECT v AS "variable!", avg(char_length(c.attributes ->> v))::float8 AS "chars"
               FROM contacts c, unnest($2::text[]) AS v
               WHERE c.campaign_id = $1 AND c.attributes ? v
               GROUP BY v"#,
            campaign_id,
            variables
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(|r| r.chars.map(|c| (r.variable, c))).collect())
    }

    /// The campaign's finished attempts by outcome, and their mean ring time.
    pub async fn estimate_observed(&self, campaign_id: i64) -> Result<ObservedAttempts> {
        let by_outcome = sqlx::query!(
            r#"SELECT outcome AS "outcome!", count(*) AS "n!"
               FROM attempts
               WHERE campaign_id = $1 AND outcome IS NOT NULL
               GROUP BY outcome"#,
            campaign_id
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.outcome, r.n))
        .collect();
        let mean_ring_s = sqlx::query_scalar!(
            r#"SELECT avg(extract(epoch FROM answered_at - requested_at))::float8
               FROM attempts
               WHERE campaign_id = $1 AND answered_at IS NOT NULL AND requested_at IS NOT NULL"#,
            campaign_id
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(ObservedAttempts { by_outcome, mean_ring_s })
    }
}

impl Store {
    /// Estimates a stored campaign's contacts still to be called. Reads only; changes nothing.
    pub async fn campaigns_estimate(
        &self,
        campaign_id: i64,
        options: EstimateOptions,
    ) -> std::result::Result<EstimateReport, EstimateFailure> {
        let row = self.campaigns_get(campaign_id).await?;
        let campaign = row.estimate_campaign()?;
        let contacts = self.estimate_contacts(campaign_id, row.timezone).await?;
        let variable_chars = self.estimate_variable_chars(campaign_id, &campaign.script.variables).await?;
        let mut note = None;
        let (mix, source) = match options.mix {
            MixChoice::Default => (EstimateMix::default(), MixSource::Default),
            MixChoice::Given(m) => (*m, MixSource::File),
            MixChoice::Learn => {
                let observed = self.estimate_observed(campaign_id).await?;
                match observed.learn(&EstimateMix::default()) {
                    Some(m) => {
                        note = Some(format!("outcome shares learned from {} finished attempts", observed.finished()));
                        (m, MixSource::Learned)
                    }
                    None => {
                        note = Some(format!(
                            "too few finished attempts to learn from ({}, at least {MIN_LEARN_ATTEMPTS} needed): the default mix was used",
                            observed.finished()
                        ));
                        (EstimateMix::default(), MixSource::Default)
                    }
                }
            }
        };
        let mut settings = EstimateSettings::new(options.start, options.account_cps);
        settings.pacing_margin = options.pacing_margin;
        settings.variable_chars = variable_chars;
        settings.seed = campaign_id as u64;
        let prices = options.prices;
        // A million contacts take seconds of CPU: off the async workers.
        let report = tokio::task::spawn_blocking(move || {
            estimate(&EstimateInput {
                campaign_id: Some(campaign_id),
                campaign: &campaign,
                contacts: &contacts,
                mix: &mix,
                mix_source: source,
                prices: &prices,
                settings: &settings,
            })
        })
        .await
        .map_err(|e| EstimateError::Input(format!("the simulation stopped: {e}")))?;
        let mut report = report?;
        if let Some(n) = note {
            report.assumptions.insert(0, n);
        }
        Ok(report)
    }
}
