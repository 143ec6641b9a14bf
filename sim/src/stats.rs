//! Aggregates over the call and message records (`GET /sim/stats`). The call figures (creates, CPS
//! windows, duplicates, concurrency) count outbound calls only: inbound calls are not the dialer's doing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::messages::{MessageDirection, MessageStatus};
use super::state::{CallDirection, Sim};

/// The largest number of timestamps (milliseconds) inside any window `[t, t + window_ms)`.
/// Sorts `times` in place; two pointers, O(n log n).
pub fn peak_in_window(times: &mut [i64], window_ms: i64) -> usize {
    times.sort_unstable();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= window_ms {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// Counts the keys that occur more than once.
pub fn duplicate_pairs<K: std::hash::Hash + Eq>(keys: impl IntoIterator<Item = K>) -> usize {
    let mut seen: HashMap<K, u32> = HashMap::new();
    for k in keys {
        *seen.entry(k).or_default() += 1;
    }
    seen.values().filter(|&&n| n > 1).count()
}

/// `GET /sim/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    pub calls_created: usize,
    /// Most creates whose `created_at` falls inside any one-second window `[t, t+1s)`.
    pub peak_calls_per_second: usize,
    /// Most calls leaving the CPS queue (`started_at`) inside any one-second window.
    pub peak_starts_per_second: usize,
    /// Most calls out of the queue and not yet ended at the same time.
    pub peak_concurrent_calls: i64,
    /// (To, Url) pairs created more than once (inline-TwiML calls are keyed by their TwiML text). Legs to
    /// operators (`client:NAME`) are not numbers and never count here.
    pub duplicate_to_url_pairs: usize,
    /// Numbers (To) called more than once (legs to `client:NAME` operators do not count).
    pub duplicate_to_numbers: usize,
    /// StatusCallback and async AMD callback requests sent, retries and duplicates included.
    pub callbacks_sent: u64,
    /// Of those, the ones that got an error or a non-2xx answer.
    pub callbacks_failed: u64,
    /// StatusCallbacks dropped by `--fault-lost`.
    pub callbacks_lost: u64,
    /// StatusCallbacks sent twice by `--fault-duplicate`.
    pub callbacks_duplicated: u64,
    /// TwiML requests (Url, Gather/Record/Dial actions, Redirect) sent / failed.
    pub webhooks_sent: u64,
    pub webhooks_failed: u64,
    /// Current status → number of calls.
    pub by_status: BTreeMap<String, usize>,
    pub by_answered_by: BTreeMap<String, usize>,
    /// The longest `queue_time_ms` of any call.
    pub max_queue_time_ms: u64,
    /// Create requests answered with a Twilio error, by code: 20429 (rate limited: random, burst or
    /// concurrency), 21215 (no geo permission), 20500 (injected 5xx, which may still have created a call),
    /// 21211 (bad `To`)… Every code but 20500 created nothing.
    #[serde(default)]
    pub create_errors: BTreeMap<u32, u64>,
    /// Inbound calls (`POST /sim/calls/inbound`); not in any figure above.
    #[serde(default)]
    pub inbound_calls: usize,
    /// Messages created through the REST API.
    #[serde(default)]
    pub messages_created: usize,
    /// Inbound messages (`POST /sim/messages/inbound`).
    #[serde(default)]
    pub messages_received: usize,
    /// Current status of the created (outbound) messages → number of messages.
    #[serde(default)]
    pub messages_by_status: BTreeMap<String, usize>,
    /// Message creates answered with a Twilio error, by code (21211, 21408, 21602, 21604, 20429…).
    #[serde(default)]
    pub message_create_errors: BTreeMap<u32, u64>,
}

pub(crate) fn compute(sim: &Sim) -> SimStats {
    let (calls, inbound): (Vec<_>, Vec<_>) =
        sim.store.all().into_iter().partition(|c| c.req.direction == CallDirection::OutboundApi);
    // Operator legs (`client:NAME`) ring the same people again and again: no number dialled twice there.
    let numbers: Vec<_> = calls.iter().filter(|c| c.req.to.number().is_some()).collect();
    let messages = sim.messages.all();
    let mut messages_by_status = BTreeMap::new();
    let mut messages_received = 0;
    for m in &messages {
        match m.direction() {
            MessageDirection::OutboundApi => {
                let s: MessageStatus = m.status();
                *messages_by_status.entry(s.as_str().to_string()).or_insert(0) += 1;
            }
            MessageDirection::Inbound => messages_received += 1,
        }
    }
    let mut created = Vec::with_capacity(calls.len());
    let mut started = Vec::with_capacity(calls.len());
    let mut by_status = BTreeMap::new();
    let mut by_answered_by = BTreeMap::new();
    let mut max_queue_time_ms = 0;
    for c in &calls {
        let s = c.snapshot();
        created.push(c.created_at.timestamp_millis());
        if let Some(t) = s.started_at {
            started.push(t.timestamp_millis());
        }
        *by_status.entry(s.status.as_str().to_string()).or_insert(0) += 1;
        if let Some(a) = s.answered_by {
            *by_answered_by.entry(a.as_str().to_string()).or_insert(0) += 1;
        }
        max_queue_time_ms = max_queue_time_ms.max(s.queue_time_ms.unwrap_or(0));
    }
    let c = &sim.counters;
    SimStats {
        calls_created: calls.len(),
        peak_calls_per_second: peak_in_window(&mut created, 1000),
        peak_starts_per_second: peak_in_window(&mut started, 1000),
        peak_concurrent_calls: c.peak_active_calls.load(Ordering::Relaxed),
        duplicate_to_url_pairs: duplicate_pairs(
            numbers.iter().map(|c| (c.req.to.as_str(), c.req.url.as_deref().or(c.req.twiml.as_deref()).unwrap_or(""))),
        ),
        duplicate_to_numbers: duplicate_pairs(numbers.iter().map(|c| c.req.to.as_str())),
        callbacks_sent: c.callbacks_sent.load(Ordering::Relaxed),
        callbacks_failed: c.callbacks_failed.load(Ordering::Relaxed),
        callbacks_lost: c.callbacks_lost.load(Ordering::Relaxed),
        callbacks_duplicated: c.callbacks_duplicated.load(Ordering::Relaxed),
        webhooks_sent: c.webhooks_sent.load(Ordering::Relaxed),
        webhooks_failed: c.webhooks_failed.load(Ordering::Relaxed),
        by_status,
        by_answered_by,
        max_queue_time_ms,
        create_errors: super::state::lock(&c.create_errors).clone(),
        inbound_calls: inbound.len(),
        messages_created: messages.len() - messages_received,
        messages_received,
        messages_by_status,
        message_create_errors: super::state::lock(&c.message_create_errors).clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_half_open_and_exact() {
        assert_eq!(peak_in_window(&mut [], 1000), 0);
        assert_eq!(peak_in_window(&mut [5], 1000), 1);
        // 0..=1000 step 200: six stamps, but [t, t+1000) holds five.
        assert_eq!(peak_in_window(&mut [0, 200, 400, 600, 800, 1000], 1000), 5);
        assert_eq!(peak_in_window(&mut [1000, 0, 999, 1, 2], 1000), 4);
        assert_eq!(peak_in_window(&mut [0, 0, 0, 5000], 1000), 3);
        assert_eq!(peak_in_window(&mut [0, 1500, 1600, 2400, 2499, 2500], 1000), 4);
    }

    #[test]
    fn duplicates_count_pairs_not_calls() {
        assert_eq!(duplicate_pairs(["a", "b", "a", "a", "c", "c"]), 2);
        assert_eq!(duplicate_pairs(Vec::<&str>::new()), 0);
    }
}
