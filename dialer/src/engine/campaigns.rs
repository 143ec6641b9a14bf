//! A running campaign as the engine needs it, parsed once from its row.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dialer_core::domain::compliance::{CallPolicy, ContactZone};
use dialer_core::domain::{AmdMode, CallingWindow, Tz, E164};
use dialer_core::store::CampaignRow;

use super::pacing::Pacer;

pub struct LiveCampaign {
    pub id: i64,
    pub label: String,
    pub caller_id: E164,
    pub timezone: Tz,
    /// Window, profiles and limits; the window is replaced when changed through the API while the
    /// campaign runs ([`Self::set_window`]).
    policy: std::sync::RwLock<CallPolicy>,
    pub amd: AmdMode,
    pub ring_timeout_s: u32,
    pub pacer: Pacer,
    /// Claims handed to the dispatcher and not yet through its pre-POST check (queued or waiting for
    /// the pacer). The scheduler claims only while this is under what the pacer lets through in a third
    /// of the lease, so no claim expires while it waits here.
    pub held: AtomicUsize,
    /// Moving average of the pre-POST commit's duration, µs: how far ahead a call books its send time.
    commit_us: AtomicU64,
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
            policy: std::sync::RwLock::new(row.policy()),
            amd: row.amd_mode,
            ring_timeout_s: row.ring_timeout_s.max(5) as u32,
            pacer: Pacer::new(share / live.max(1) as f64, margin),
            held: AtomicUsize::new(0),
            commit_us: AtomicU64::new(10_000),
        }))
    }

    /// How far ahead of now to book a send time: four times the usual pre-POST commit and 5 ms, or half
    /// the campaign's spacing if longer, within the pacers' lead, so a call is rarely woken after its slot
    /// (it would have to book again, and at a low CPS a missed slot is a whole second).
    pub fn commit_lead(&self) -> std::time::Duration {
        let us = self.commit_us.load(Ordering::Relaxed);
        let half_spacing = std::time::Duration::from_secs_f64(0.5 / self.pacer.rate().max(0.001));
        std::time::Duration::from_micros(us * 4 + 5_000).max(half_spacing).min(super::pacing::LEAD)
    }

    /// Counts one pre-POST commit's duration into [`Self::commit_lead`].
    pub fn commit_took(&self, d: std::time::Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        // Racy read-modify-write on purpose: an average that loses a sample now and then is fine.
        let old = self.commit_us.load(Ordering::Relaxed);
        self.commit_us.store((old * 7 + us) / 8, Ordering::Relaxed);
    }

    fn policy(&self) -> std::sync::RwLockReadGuard<'_, CallPolicy> {
        self.policy.read().unwrap_or_else(|e| e.into_inner())
    }

    /// When every calling rule is next open in every zone of the callee (`now` if they are).
    pub fn next_opening(
        &self,
        zone: &ContactZone,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.policy().next_opening(zone, now)
    }

    /// The dispatcher's check before the commit ([`CallPolicy::closed_until`]).
    pub fn closed_until(
        &self,
        zone: &ContactZone,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.policy().closed_until(zone, now)
    }

    /// Calls allowed to the callee's number in 24 h (the campaign's limit or the state's).
    pub fn max_calls_24h(&self, zone: &ContactZone) -> Option<i32> {
        self.policy().max_calls_24h(zone)
    }

    pub fn one_per_reference(&self) -> bool {
        self.policy().one_per_reference()
    }

    /// Takes a window changed while the campaign runs; the next claim and dispatch check use it.
    pub fn set_window(&self, window: &CallingWindow) {
        let mut p = self.policy.write().unwrap_or_else(|e| e.into_inner());
        if p.window != *window {
            p.set_window(window.clone());
        }
    }

    /// The callee's zones (the campaign's for contacts stored before zones were resolved).
    pub fn zone_of(&self, a: &dialer_core::store::ClaimedAttempt) -> ContactZone {
        a.zone(self.timezone)
    }
}
