//! A running campaign as the engine needs it, parsed once from its row.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use dialer_core::domain::campaign::Limits;
use dialer_core::domain::{AmdMode, CallingWindow, Tz, E164};
use dialer_core::store::CampaignRow;

use super::pacing::Pacer;

pub struct LiveCampaign {
    pub id: i64,
    pub label: String,
    pub caller_id: E164,
    pub timezone: Tz,
    /// Replaced when the campaign's window is changed through the API while it runs ([`Self::set_window`]).
    window: std::sync::RwLock<CallingWindow>,
    pub limits: Limits,
    pub amd: AmdMode,
    pub ring_timeout_s: u32,
    pub pacer: Pacer,
    /// Claims handed to the dispatcher and not yet through its pre-POST check (queued or waiting for
    /// the pacer). The scheduler claims only while this is under what the pacer lets through in a third
    /// of the lease, so no claim expires while it waits here.
    pub held: AtomicUsize,
}

impl LiveCampaign {
    /// `share` is the campaign's part of the account CPS ([`super::pacing::fair_shares`]); this replica
    /// paces at `share / live`.
    pub fn from_row(
        row: &CampaignRow,
        share: f64,
        live: i64,
        margin: std::time::Duration,
    ) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            id: row.id,
            label: row.id.to_string(),
            caller_id: row.caller_id.clone(),
            timezone: row.timezone,
            window: std::sync::RwLock::new(row.calling_window.0.clone()),
            limits: row.limits.0.clone(),
            amd: row.amd_mode,
            ring_timeout_s: row.ring_timeout_s.max(5) as u32,
            pacer: Pacer::new(share / live.max(1) as f64, margin),
            held: AtomicUsize::new(0),
        }))
    }

    /// When the calling window next opens in `tz` (`now` if it is open).
    pub fn next_opening(
        &self,
        tz: chrono_tz::Tz,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.window.read().unwrap_or_else(|e| e.into_inner()).next_opening(tz, now)
    }

    /// Takes a window changed while the campaign runs; the next claim and dispatch check use it.
    pub fn set_window(&self, window: &CallingWindow) {
        let mut w = self.window.write().unwrap_or_else(|e| e.into_inner());
        if *w != *window {
            *w = window.clone();
        }
    }

    /// The contact's zone, else the campaign's.
    pub fn zone_of(&self, contact_tz: Option<Tz>) -> chrono_tz::Tz {
        contact_tz.unwrap_or(self.timezone).get()
    }
}
