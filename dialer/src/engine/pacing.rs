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

    /// Waits until one more call may go. Callers are served one at a time (tokio's mutex is fair), so the
    /// check and the record are atomic.
    pub async fn until_ready(&self) {
        let mut sent = self.window.lock().await;
        let cap = (self.rate().floor() as usize).max(1);
        while sent.len() > cap {
            sent.pop_front();
        }
        // The window guard first, GCRA second: a call the guard held back then still gets its full
        // 1/rate spacing from GCRA, instead of going out together with the next one (the other order let
        // two calls leave in the same millisecond after a guard wait).
        if sent.len() == cap {
            let oldest = *sent.front().expect("non-empty");
            tokio::time::sleep_until((oldest + Duration::from_secs(1) + self.margin).into()).await;
            sent.pop_front();
        }
        let l = self.state.lock().expect("pacer lock").1.clone();
        l.until_ready().await;
        sent.push_back(Instant::now());
    }
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
