//! What an estimate reports (`dialer campaign estimate --json`, `POST /api/v1/campaigns/{id}/estimate`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::mix::{EstimateMix, MixSource};

/// The expected course and cost of a campaign, from a simulation in virtual time. Nothing was dialled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EstimateReport {
    /// The campaign, when it is a stored one.
    pub campaign_id: Option<i64>,
    pub start: DateTime<Utc>,
    /// When the last call is expected to end.
    pub finish: DateTime<Utc>,
    /// `finish - start`, seconds.
    pub duration_s: f64,
    pub contacts: u64,
    /// Calls (attempts dialled).
    pub calls: u64,
    /// Calls by outcome (`answered_result`, `voicemail`, `busy`, …).
    pub calls_by_outcome: BTreeMap<String, u64>,
    /// Billed minutes (every started minute of an answered call), total and by outcome.
    pub minutes: u64,
    pub minutes_by_outcome: BTreeMap<String, u64>,
    /// Contacts by how they end (`done`, `exhausted`, `invalid`, `blocked`, and `never_callable` for a
    /// contact whose calling hours never open).
    pub contacts_by_final_state: BTreeMap<String, u64>,
    /// Answered calls hour by hour from the start.
    pub answer_curve: Vec<CurveHour>,
    /// Calls answered by a person, by the hour of the day in the campaign's zone (24 entries, 00–23).
    pub answered_by_local_hour: Vec<u64>,
    /// Text messages sent after the last attempt (the campaign's `[sms]` fallback), and their segments.
    pub sms: u64,
    pub sms_segments: u64,
    pub cost: CostBreakdown,
    pub mix_source: MixSource,
    /// The mix the simulation drew from.
    pub mix: EstimateMix,
    /// Call durations were divided by this (1 outside tests and the demo).
    pub time_factor: f64,
    /// What the estimate assumed, in words.
    pub assumptions: Vec<String>,
}

/// One hour of the answer curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurveHour {
    /// The hour's start.
    pub from: DateTime<Utc>,
    /// Its hour of the day in the campaign's zone.
    pub local_hour: u32,
    /// Calls started in it.
    pub calls: u64,
    /// Of those, answered by a person.
    pub answered: u64,
}

/// The cost, by component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostBreakdown {
    pub currency: String,
    pub total: f64,
    pub voice: f64,
    pub sms: f64,
    /// Voice cost by outcome.
    pub voice_by_outcome: BTreeMap<String, f64>,
    /// Voice cost by the rate's country and number type (`JP mobile`).
    pub voice_by_rate: BTreeMap<String, f64>,
    /// Answered calls to numbers the price table has no rate for (priced at 0).
    pub unpriced_calls: u64,
    /// The price table's source and date.
    pub prices_source: String,
    pub prices_date: String,
}
