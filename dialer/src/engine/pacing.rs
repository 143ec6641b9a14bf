//! Pacing: governor GCRA (strict, burst 1) for the account CPS and each campaign's CPS.
//!
//! Each pacer also keeps the send times of its last `floor(rate)` calls and never lets a call go before
//! the oldest of them is more than a second (plus `PACING_MARGIN_MS`) old. GCRA alone spaces calls by
//! 1/rate; the window guard makes "never more than CPS calls in any one-second window" hold even when a
//! rate change swaps the limiter or the scheduler wakes late.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

fn limiter(rate: f64) -> Arc<DefaultDirectRateLimiter> {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let quota = Quota::with_period(period).expect("positive period").allow_burst(NonZeroU32::MIN);
    let l = RateLimiter::direct(quota);
    // Start with the first cell used, so a swapped-in limiter can't send right after the old one did.
    let _ = l.check();
    Arc::new(l)
}

/// A strict pacer whose rate can change (replicas joining or leaving).
pub struct Pacer {
    state: Mutex<(f64, Arc<DefaultDirectRateLimiter>)>,
    /// Send times of the last floor(rate) calls (the window guard).
    window: tokio::sync::Mutex<VecDeque<Instant>>,
    /// How much longer than a second the window guard waits.
    margin: Duration,
}

impl Pacer {
    pub fn new(rate: f64, margin: Duration) -> Self {
        Self { state: Mutex::new((rate, limiter(rate))), window: tokio::sync::Mutex::new(VecDeque::new()), margin }
    }

    pub fn rate(&self) -> f64 {
        self.state.lock().expect("pacer lock").0
    }

    /// Changes the rate when it moved by more than 0.5 %.
    pub fn set_rate(&self, rate: f64) {
        let mut s = self.state.lock().expect("pacer lock");
        if (s.0 - rate).abs() > s.0 * 0.005 {
            *s = (rate, limiter(rate));
        }
    }

    /// Spaces calls at the rate (GCRA, burst 1). Taken before the pre-POST commit, so a call that then
    /// commits `dialing` is sent at once: no attempt waits long as `dialing` behind a pacer.
    pub async fn pace(&self) {
        let l = self.state.lock().expect("pacer lock").1.clone();
        l.until_ready().await;
    }

    /// [`Pacer::pace`], then [`admit`] through this pacer's window alone.
    #[cfg(test)]
    pub async fn until_ready(&self) {
        self.pace().await;
        admit(&[self]).await;
    }
}

/// Lets one call go through the one-second window guard of every pacer it is counted by (its campaign's,
/// then the account's), right before the POST: the send time is recorded in all of them at once, so
/// each level holds "never more than floor(rate) calls in any second (+ margin)" for the times the calls
/// really left. The windows are always locked in the order given (campaign before account), so workers
/// of different campaigns cannot deadlock; callers of one campaign are served one at a time.
pub async fn admit(pacers: &[&Pacer]) {
    let mut windows = Vec::with_capacity(pacers.len());
    for p in pacers {
        windows.push((p, p.window.lock().await));
    }
    loop {
        let now = Instant::now();
        let mut wait_until: Option<Instant> = None;
        for (p, sent) in windows.iter_mut() {
            let cap = (p.rate().floor() as usize).max(1);
            while sent.len() > cap {
                sent.pop_front();
            }
            if sent.len() == cap {
                let free_at = *sent.front().expect("non-empty") + Duration::from_secs(1) + p.margin;
                if free_at <= now {
                    sent.pop_front();
                } else {
                    wait_until = Some(wait_until.map_or(free_at, |t: Instant| t.max(free_at)));
                }
            }
        }
        match wait_until {
            Some(t) => tokio::time::sleep_until(t.into()).await,
            None => break,
        }
    }
    let now = Instant::now();
    for (_, sent) in windows.iter_mut() {
        sent.push_back(now);
    }
}

/// How the account CPS is shared among running campaigns: by weight (`account_cps_share`), each capped by
/// its own limit (`min(cps, account CPS × share)`), and what a capped campaign cannot use goes to the
/// others (water-filling). `campaigns` is (cap, weight) per campaign; returns each one's rate, in order.
/// Every replica computes the same split from the same running campaigns, then divides by live replicas.
pub fn fair_shares(account_cps: f64, campaigns: &[(f64, f64)]) -> Vec<f64> {
    let mut rate = vec![0.0; campaigns.len()];
    let mut open: Vec<usize> = (0..campaigns.len()).collect();
    let mut left = account_cps;
    while !open.is_empty() && left > 1e-9 {
        let weights: f64 = open.iter().map(|&i| campaigns[i].1.max(1e-9)).sum();
        let capped: Vec<usize> =
            open.iter().copied().filter(|&i| campaigns[i].0 <= left * campaigns[i].1.max(1e-9) / weights).collect();
        if capped.is_empty() {
            for &i in &open {
                rate[i] = left * campaigns[i].1.max(1e-9) / weights;
            }
            break;
        }
        for &i in &capped {
            rate[i] = campaigns[i].0;
            left -= campaigns[i].0;
        }
        open.retain(|i| !capped.contains(i));
    }
    rate
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Max events in any half-open one-second window.
    fn peak(times: &[Instant]) -> usize {
        let mut best = 0;
        let mut i = 0;
        for j in 0..times.len() {
            while times[j].duration_since(times[i]) >= Duration::from_secs(1) {
                i += 1;
            }
            best = best.max(j - i + 1);
        }
        best
    }

    #[test]
    fn the_account_cps_is_split_by_weight_and_what_a_capped_campaign_leaves_goes_to_the_others() {
        // Two equal campaigns, each allowed the whole account: half each.
        assert_eq!(fair_shares(2.0, &[(2.0, 1.0), (2.0, 1.0)]), vec![1.0, 1.0]);
        // Weights 3:1.
        assert_eq!(fair_shares(8.0, &[(8.0, 0.75), (8.0, 0.25)]), vec![6.0, 2.0]);
        // One capped at 1: the other takes the rest.
        assert_eq!(fair_shares(10.0, &[(1.0, 1.0), (50.0, 1.0)]), vec![1.0, 9.0]);
        // Everyone capped below the account: each gets its cap, the rest stays unused.
        assert_eq!(fair_shares(100.0, &[(5.0, 1.0), (10.0, 1.0)]), vec![5.0, 10.0]);
        // Never more than the account in total.
        let r = fair_shares(1.0, &[(1.0, 1.0), (1.0, 1.0), (1.0, 1.0)]);
        assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{r:?}");
        assert!(fair_shares(1.0, &[]).is_empty());
    }

    #[tokio::test]
    async fn two_levels_admitted_together_hold_both_windows() {
        let account = Pacer::new(10.0, Duration::from_millis(5));
        let a = Pacer::new(6.0, Duration::from_millis(5));
        let b = Pacer::new(6.0, Duration::from_millis(5));
        let (mut ta, mut tb, mut all) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..30 {
            let c = if i % 2 == 0 { &a } else { &b };
            admit(&[c, &account]).await;
            let t = Instant::now();
            all.push(t);
            if i % 2 == 0 {
                ta.push(t)
            } else {
                tb.push(t)
            }
        }
        assert!(peak(&all) <= 10, "account peak {}", peak(&all));
        assert!(peak(&ta) <= 6 && peak(&tb) <= 6, "campaign peaks {} {}", peak(&ta), peak(&tb));
    }

    #[tokio::test]
    async fn the_window_guard_holds_across_a_rate_change() {
        let p = Arc::new(Pacer::new(20.0, Duration::from_millis(5)));
        let mut times = Vec::new();
        for i in 0..45 {
            if i == 15 {
                p.set_rate(40.0); // a replica left: the share doubles
            }
            if i == 30 {
                p.set_rate(20.0);
            }
            p.until_ready().await;
            times.push(Instant::now());
        }
        assert!(peak(&times) <= 40, "peak {}", peak(&times));
        // After dropping back to 20, any window starting at or after the drop holds at most 20.
        let tail = &times[30..];
        let mut i = 0;
        for j in 0..tail.len() {
            while tail[j].duration_since(tail[i]) >= Duration::from_secs(1) {
                i += 1;
            }
            assert!(j - i < 40);
        }
    }
}
