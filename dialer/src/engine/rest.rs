//! How many REST requests to Twilio may be in flight: sized by Little's law from the rate this replica
//! must reach and how long each request holds its permit (book a slot, the pre-POST commit, the wait for
//! the slot, the round trip to Twilio), so the account CPS is reached whether Twilio is 10 ms or 500 ms
//! away. Bounded by `TWILIO_MAX_CONCURRENT_REQUESTS` (the ceiling) and halved when Twilio answers 20429
//! (too many concurrent requests), growing back only after a quiet spell.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Never fewer permits than this.
const FLOOR: usize = 4;
/// Headroom over the Little's-law figure, so a latency spike does not cost rate at once.
const HEADROOM: f64 = 1.5;
/// What a permit is assumed to be held for before any request has been timed.
const INITIAL_HOLD: Duration = Duration::from_millis(300);
/// How long a 20429 keeps the limit from growing again.
const THROTTLE_QUIET: Duration = Duration::from_secs(10);

struct State {
    limit: usize,
    in_flight: usize,
    /// Target rate of this replica (its share of the account CPS).
    rate: f64,
    /// Moving average of how long a permit is held, seconds.
    hold: f64,
    throttled_until: Option<Instant>,
}

pub struct RestLimiter {
    ceiling: usize,
    state: Mutex<State>,
    freed: Notify,
}

/// One request's permit; returned (and its hold time counted) on drop.
pub struct RestPermit {
    limiter: Arc<RestLimiter>,
    since: Instant,
}

impl RestLimiter {
    pub fn new(ceiling: usize, rate: f64) -> Arc<Self> {
        let ceiling = ceiling.max(1);
        let s = State { limit: 0, in_flight: 0, rate, hold: INITIAL_HOLD.as_secs_f64(), throttled_until: None };
        let l = Arc::new(Self { ceiling, state: Mutex::new(s), freed: Notify::new() });
        l.resize(&mut l.lock(), Instant::now());
        l
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Little's law: requests in flight = rate × time each is held.
    fn resize(&self, s: &mut State, now: Instant) {
        if s.throttled_until.is_some_and(|t| now < t) {
            return;
        }
        s.throttled_until = None;
        let want = (s.rate * s.hold * HEADROOM).ceil() as usize + FLOOR;
        let before = s.limit;
        s.limit = want.clamp(FLOOR.min(self.ceiling), self.ceiling);
        if s.limit > before {
            self.freed.notify_waiters();
        }
    }

    /// The rate this replica must reach (its share of the account CPS changed).
    pub fn set_rate(&self, rate: f64) {
        let mut s = self.lock();
        s.rate = rate;
        self.resize(&mut s, Instant::now());
    }

    /// Twilio refused a request for concurrency (429 / 20429): halve the limit and hold it there a while.
    pub fn throttled(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        if !matches!(s.throttled_until, Some(t) if t >= now) {
            s.limit = (s.limit / 2).max(FLOOR.min(self.ceiling));
            tracing::warn!(limit = s.limit, "Twilio answered 20429: fewer concurrent requests for a while");
        }
        s.throttled_until = Some(now + THROTTLE_QUIET);
    }

    #[cfg(test)]
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Waits for a permit.
    pub async fn acquire(self: &Arc<Self>) -> RestPermit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut s = self.lock();
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return RestPermit { limiter: self.clone(), since: Instant::now() };
                }
            }
            freed.await;
        }
    }

    /// Waits until no permit is held (shutdown drains the POSTs in flight).
    pub async fn idle(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.lock().in_flight == 0 {
                return;
            }
            freed.await;
        }
    }
}

impl Drop for RestPermit {
    fn drop(&mut self) {
        let now = Instant::now();
        let held = now.duration_since(self.since).as_secs_f64();
        let mut s = self.limiter.lock();
        s.in_flight -= 1;
        s.hold = s.hold * 0.95 + held * 0.05;
        self.limiter.resize(&mut s, now);
        drop(s);
        // One waiter takes the freed permit; `idle` waiters re-check too.
        self.limiter.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn hold_for(l: &Arc<RestLimiter>, d: Duration, n: usize) {
        let mut permits = Vec::new();
        for _ in 0..n {
            permits.push(l.acquire().await);
        }
        tokio::time::sleep(d).await;
        drop(permits);
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_follows_the_rate_times_the_latency_up_to_the_ceiling() {
        // 1,000 calls/s with requests held 150 ms: about 150 in flight, plus headroom.
        let l = RestLimiter::new(2000, 1000.0);
        for _ in 0..100 {
            hold_for(&l, Duration::from_millis(150), 4).await;
        }
        let at_150 = l.limit();
        assert!((150 * 3 / 2..=150 * 3 / 2 + 40).contains(&at_150), "limit {at_150} at 150 ms");
        for _ in 0..100 {
            hold_for(&l, Duration::from_millis(500), 4).await;
        }
        let at_500 = l.limit();
        assert!((500 * 3 / 2..=500 * 3 / 2 + 80).contains(&at_500), "limit {at_500} at 500 ms");
        // The ceiling bounds it.
        let small = RestLimiter::new(32, 1000.0);
        hold_for(&small, Duration::from_millis(500), 4).await;
        assert_eq!(small.limit(), 32);
    }

    #[tokio::test(start_paused = true)]
    async fn a_20429_halves_the_limit_until_a_quiet_spell_has_passed() {
        let l = RestLimiter::new(2000, 1000.0);
        let before = l.limit();
        l.throttled();
        assert_eq!(l.limit(), before / 2);
        hold_for(&l, Duration::from_millis(10), 2).await;
        assert_eq!(l.limit(), before / 2, "no growth right after a 20429");
        tokio::time::sleep(THROTTLE_QUIET).await;
        hold_for(&l, Duration::from_millis(10), 1).await;
        assert!(l.limit() > before / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_permits_than_the_limit_are_out_and_idle_waits_for_them() {
        let l = RestLimiter::new(5, 1.0);
        let limit = l.limit();
        let permits: Vec<_> = futures::future::join_all((0..limit).map(|_| l.acquire())).await;
        assert_eq!(l.in_flight(), limit);
        let more = tokio::time::timeout(Duration::from_secs(1), l.acquire()).await;
        assert!(more.is_err(), "a permit over the limit was handed out");
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.idle().await })
        };
        drop(permits);
        waiter.await.unwrap();
        assert_eq!(l.in_flight(), 0);
    }
}
