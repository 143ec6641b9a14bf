//! Pacing: one schedule per level (the account, each campaign), from which every call books its send time.
//!
//! A call is counted by two levels, its campaign's and the account's. It books one instant that suits both
//! at once: the earliest that keeps each level's spacing (1/rate after its previous booking) and each
//! level's one-second window (never more than floor(rate) bookings within 1 s + `PACING_MARGIN_MS`), and
//! is then sent at that instant (a little late if the box woke it late, [`wait_for`]). Two rate limiters
//! in series let a call through only on each one's own tick, so a call that passes the first late misses
//! the second's (that cost 2–6 % of the rate); booking both together loses nothing. Bookings are made at
//! most [`LEAD`] ahead, so a rate change (a replica joining) takes effect within it and no call holds a
//! far-off slot.
//!
//! Twilio counts a call when it arrives, so once a POST's answer is back its booking moves to the latest
//! instant it can have arrived ([`arrived`]): a POST woken late or held up on its way (a stall, a slow
//! link) is then counted where Twilio counts it, and the call a window later waits for it.
//!
//! The margin is what the window costs: with bookings packed at the rate, every floor(rate)-th call waits
//! for the margin, so a level delivers floor(rate) calls per 1 s + margin (0.5 % below the rate at the
//! default 5 ms). It covers what [`arrived`] cannot measure: the one-way trip of the fastest POST (the
//! baseline of the excess) and the millisecond resolution of the clocks that count.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How far ahead of now a call may book its send time.
pub const LEAD: Duration = Duration::from_millis(200);

/// One level's schedule.
struct Schedule {
    rate: f64,
    /// The earliest next booking by spacing (previous booking + 1/rate).
    next: Option<Instant>,
    /// The last floor(rate) bookings, oldest first (the window guard).
    booked: VecDeque<Instant>,
}

impl Schedule {
    fn cap(&self) -> usize {
        (self.rate.floor() as usize).max(1)
    }

    /// The earliest instant at or after `t` this level allows.
    fn earliest(&mut self, t: Instant, margin: Duration) -> Instant {
        let cap = self.cap();
        while self.booked.len() > cap {
            self.booked.pop_front();
        }
        let mut t = self.next.map_or(t, |n| t.max(n));
        if self.booked.len() == cap {
            t = t.max(self.booked[0] + Duration::from_secs(1) + margin);
        }
        t
    }

    /// Where `t` is among the last floor(rate) bookings, if it is (see [`shift`]).
    fn movable(&self, t: Instant) -> Option<usize> {
        let i = self.booked.iter().rposition(|&b| b == t)?;
        (self.booked.len() - i - 1 < self.cap()).then_some(i)
    }

    fn spacing(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate.max(0.001))
    }

    fn take(&mut self, t: Instant) {
        self.next = Some(t + self.spacing());
        self.booked.push_back(t);
        if self.booked.len() > self.cap() {
            self.booked.pop_front();
        }
    }
}

/// A level's pacer; its rate can change (replicas joining or leaving, a campaign's CPS edited).
pub struct Pacer {
    schedule: Mutex<Schedule>,
    margin: Duration,
}

impl Pacer {
    pub fn new(rate: f64, margin: Duration) -> Self {
        Self { schedule: Mutex::new(Schedule { rate, next: None, booked: VecDeque::new() }), margin }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// Changes the rate when it moved by more than 0.5 %; bookings already made keep their instants.
    pub fn set_rate(&self, rate: f64) {
        let mut s = self.lock();
        if (s.rate - rate).abs() > s.rate * 0.005 {
            s.rate = rate;
        }
    }
}

/// Books one send time at every level in `pacers` (always given in the same order, campaign before
/// account): the earliest instant at or after `earliest` that every level allows, waiting while that is
/// more than [`LEAD`] ahead. The levels are locked together for the booking, so it is one decision.
pub async fn book(pacers: &[&Pacer], earliest: Instant) -> Instant {
    loop {
        let now = Instant::now();
        match take_slot(pacers, earliest.max(now), Some(now + LEAD)) {
            Ok(t) => return t,
            Err(t) => tokio::time::sleep_until(t - LEAD).await,
        }
    }
}

/// Takes the earliest instant at or after `t` that every level allows, if it is no later than `limit`;
/// otherwise returns that instant untaken.
fn take_slot(pacers: &[&Pacer], mut t: Instant, limit: Option<Instant>) -> Result<Instant, Instant> {
    let mut levels: Vec<_> = pacers.iter().map(|p| (p.lock(), p.margin)).collect();
    // Each level may push the instant later; go round until no level moves it.
    loop {
        let before = t;
        for (s, margin) in levels.iter_mut() {
            t = s.earliest(t, *margin);
        }
        if t == before {
            break;
        }
    }
    if limit.is_some_and(|limit| t > limit) {
        return Err(t);
    }
    for (s, _) in levels.iter_mut() {
        s.take(t);
    }
    Ok(t)
}

/// How late after its booked instant a call may still leave on it. A call woken later books again:
/// its arrival is counted ([`arrived`]) only if its answer comes back before 1 s − [`LEAD`] after the
/// booking, and this leaves 700 ms of that for the round trip.
pub const LATE_SEND: Duration = Duration::from_millis(100);

/// Waits for a booked instant. A call woken up to [`LATE_SEND`] after it leaves at once, on its booking:
/// its lateness is part of its round trip, so [`arrived`] counts it where it reached Twilio. (Booking
/// again for every wake more than 2.5 ms late, as before, cost a slot each: 98.6–98.9 calls/s at CPS 100
/// on a busy box against 99.2–99.3 now; tokio's millisecond timer alone makes many wakes 1–2 ms late.)
///
/// A call woken later than that books again at once, at the first instant free after the bookings
/// already made (at most [`LEAD`] and one slot ahead), without waiting for its turn among calls not yet
/// committed: this call is committed `dialing` and must leave well before the fence. The slot it missed
/// stays counted. Returns the booking the call leaves on.
pub async fn wait_for(pacers: &[&Pacer], at: Instant) -> Instant {
    let mut at = at;
    loop {
        tokio::time::sleep_until(at).await;
        let now = Instant::now();
        if now <= at + LATE_SEND {
            return at;
        }
        // Without a limit the slot is always taken.
        at = take_slot(pacers, now, None).unwrap_or_else(|later| later);
    }
}

/// The fastest recent round trip of a POST, the baseline [`arrived`] measures a slow one against: the
/// fastest of the current and the previous [`FASTEST_FOR`] period, so the baseline follows a changed path
/// to Twilio within two periods and never rests on one sample (a slow one would understate every excess).
pub struct Trips {
    fastest: Mutex<Fastest>,
}

struct Fastest {
    since: Option<Instant>,
    current: Option<Duration>,
    previous: Option<Duration>,
}

/// How long one period of [`Trips`] lasts.
const FASTEST_FOR: Duration = Duration::from_secs(10);

impl Trips {
    pub fn new() -> Self {
        Self { fastest: Mutex::new(Fastest { since: None, current: None, previous: None }) }
    }

    /// Records one round trip; returns how much longer than the fastest recent one it took. Without a
    /// recent one (the first POSTs, after a quiet spell) the whole trip counts: the first POST of a run
    /// also opens its connection, and taken as the baseline it would hide its own lateness (it reached
    /// the simulator 7 ms after its slot and the call a window later came 999 ms after it).
    fn excess(&self, took: Duration, now: Instant) -> Duration {
        let mut f = self.fastest.lock().unwrap_or_else(|e| e.into_inner());
        match f.since {
            Some(since) if now.duration_since(since) < FASTEST_FOR => {}
            Some(since) if now.duration_since(since) < 2 * FASTEST_FOR => {
                f.previous = f.current.take();
                f.since = Some(now);
            }
            _ => *f = Fastest { since: Some(now), current: None, previous: None },
        }
        let before = f.current.into_iter().chain(f.previous).min();
        f.current = Some(f.current.map_or(took, |c| c.min(took)));
        before.map_or(took, |b| took.saturating_sub(b))
    }
}

impl Default for Trips {
    fn default() -> Self {
        Self::new()
    }
}

/// A POST booked at `booked` has had its answer (`now`): it reached Twilio by `booked` plus how much
/// longer than the fastest recent POST the whole way took (late waking, the send, the trip). Twilio
/// counts it then, so the windows are kept for that instant: the booking moves there ([`shift`]). The
/// call a window later is booked about 1 s − [`LEAD`] after this one, so the move is in time for it; a
/// move that is not (a level's window already moved on) is left out.
pub fn arrived(pacers: &[&Pacer], trips: &Trips, booked: Instant, now: Instant) {
    let took = now.saturating_duration_since(booked);
    let excess = trips.excess(took, now);
    if excess.is_zero() || took >= Duration::from_secs(1) - LEAD {
        return;
    }
    shift(pacers, booked, booked + excess);
}

/// Moves a booking from `from` to the later `to` at every level, if that keeps every level's windows;
/// only while less than 1 s − [`LEAD`] has passed since `from`.
///
/// Windows that held `from` and hold `to` are unchanged. The new ones start in (from, to] and, as nothing
/// is booked more than [`LEAD`] ahead of now, reach past every booking made so far. Such a window holds
/// `to` and the bookings after `from`: at most floor(rate) − 1 of them while `from` is still among a
/// level's last floor(rate) bookings. Later bookings count `to`.
fn shift(pacers: &[&Pacer], from: Instant, to: Instant) {
    let mut levels: Vec<_> = pacers.iter().map(|p| p.lock()).collect();
    let found: Option<Vec<usize>> = levels.iter().map(|s| s.movable(from)).collect();
    let Some(found) = found else { return };
    for (s, i) in levels.iter_mut().zip(found) {
        s.booked.remove(i);
        let at = s.booked.partition_point(|&b| b <= to);
        s.booked.insert(at, to);
        let after = to + s.spacing();
        s.next = Some(s.next.map_or(after, |n| n.max(after)));
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
    //! On tokio's paused clock: the booked instants are exact, so rate and windows are checked as
    //! numbers, not timed.

    use super::*;

    /// Max instants in any half-open one-second window.
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

    /// Calls booked in the first `secs` seconds from the first booking, per second.
    fn rate_over(times: &[Instant], secs: u64) -> f64 {
        let end = times[0] + Duration::from_secs(secs);
        times.iter().filter(|&&t| t < end).count() as f64 / secs as f64
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

    /// Books as fast as it is allowed, `workers` at a time, for `secs` seconds; returns the instants.
    async fn saturate(pacers: Vec<std::sync::Arc<Pacer>>, workers: usize, secs: u64) -> Vec<Instant> {
        let stop = Instant::now() + Duration::from_secs(secs) + Duration::from_millis(500);
        let times = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (pacers, times) = (pacers.clone(), times.clone());
            set.spawn(async move {
                while Instant::now() < stop {
                    let refs: Vec<&Pacer> = pacers.iter().map(|p| p.as_ref()).collect();
                    let t = book(&refs, Instant::now()).await;
                    times.lock().unwrap().push(t);
                    tokio::time::sleep_until(t).await;
                }
            });
        }
        while set.join_next().await.is_some() {}
        let mut v = times.lock().unwrap().clone();
        v.sort();
        v
    }

    #[tokio::test(start_paused = true)]
    async fn a_campaign_and_the_account_in_series_deliver_the_full_rate_and_never_exceed_either_window() {
        let margin = Duration::from_millis(5);
        for cps in [1.0, 10.0, 100.0, 1000.0] {
            let campaign = std::sync::Arc::new(Pacer::new(cps, margin));
            let account = std::sync::Arc::new(Pacer::new(cps, margin));
            let secs = if cps < 10.0 { 60 } else { 20 };
            let times = saturate(vec![campaign, account], 32, secs).await;
            let rate = rate_over(&times, secs);
            assert!(rate >= cps * 0.99 && rate <= cps, "cps {cps}: {rate}/s");
            assert!(peak(&times) <= cps as usize, "cps {cps}: peak {}", peak(&times));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_woken_late_are_counted_where_they_leave_and_keep_the_windows() {
        // Late calls leave at once; their answers move their bookings to where they left, and each late
        // wake costs its lateness once, not a slot.
        counting_arrivals_keeps_the_window(late_wakes, 98.0).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_woken_late_books_again_at_once_ahead_of_calls_not_yet_committed() {
        // 128 workers keep CPS 10 saturated; calls woken later than `LATE_SEND` allows leave within the
        // booking lead and a slot of waking, however many uncommitted calls are waiting for a slot.
        let margin = Duration::from_millis(5);
        let campaign = std::sync::Arc::new(Pacer::new(10.0, margin));
        let account = std::sync::Arc::new(Pacer::new(10.0, margin));
        let stop = Instant::now() + Duration::from_secs(30);
        let sent = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..128 {
            let (campaign, account, sent) = (campaign.clone(), account.clone(), sent.clone());
            set.spawn(async move {
                while Instant::now() < stop {
                    let at = book(&[&campaign, &account], Instant::now() + Duration::from_millis(20)).await;
                    wait_for(&[&campaign, &account], at).await;
                    sent.lock().unwrap().push(Instant::now());
                }
            });
        }
        for _ in 0..20 {
            let at = book(&[&campaign, &account], Instant::now() + Duration::from_millis(20)).await;
            tokio::time::sleep_until(at + LATE_SEND + Duration::from_millis(30)).await;
            let woken = Instant::now();
            wait_for(&[&campaign, &account], at).await;
            sent.lock().unwrap().push(Instant::now());
            assert!(woken.elapsed() <= LEAD + Duration::from_millis(100), "waited {:?}", woken.elapsed());
        }
        while set.join_next().await.is_some() {}
        let mut times = sent.lock().unwrap().clone();
        times.sort();
        assert!(peak(&times) <= 10, "peak {}", peak(&times));
    }

    /// How one call in a [`paced_arrivals`] run goes: woken this late after its booking, then this long on
    /// the way to Twilio and this long back. `n` is a pseudo-random number of the call.
    struct Trip {
        late: fn(u64) -> Duration,
        out: fn(u64) -> Duration,
        back: Duration,
    }

    /// Arrival instants of CPS 100 (both levels) for 20 s from 32 callers; `count_arrivals` reports each
    /// answer to the pacer.
    async fn paced_arrivals(trip: Trip, count_arrivals: bool) -> Vec<Instant> {
        let margin = Duration::from_millis(5);
        let campaign = std::sync::Arc::new(Pacer::new(100.0, margin));
        let account = std::sync::Arc::new(Pacer::new(100.0, margin));
        let trips = std::sync::Arc::new(Trips::new());
        let stop = Instant::now() + Duration::from_secs(20) + Duration::from_millis(500);
        let arrived_at = std::sync::Arc::new(Mutex::new(Vec::new()));
        let trip = std::sync::Arc::new(trip);
        let mut set = tokio::task::JoinSet::new();
        for w in 0..32u64 {
            let (campaign, account, trips, arrived_at, trip) =
                (campaign.clone(), account.clone(), trips.clone(), arrived_at.clone(), trip.clone());
            set.spawn(async move {
                let mut n = w;
                while Instant::now() < stop {
                    let at = book(&[&campaign, &account], Instant::now()).await;
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    tokio::time::sleep_until(at + (trip.late)(n)).await;
                    let at = wait_for(&[&campaign, &account], at).await;
                    tokio::time::sleep((trip.out)(n)).await;
                    arrived_at.lock().unwrap().push(Instant::now());
                    tokio::time::sleep(trip.back).await;
                    if count_arrivals {
                        arrived(&[&campaign, &account], &trips, at, Instant::now());
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
        let mut times = arrived_at.lock().unwrap().clone();
        times.sort();
        times
    }

    /// Uncounted, `trip` puts 101 arrivals into a second (else the scenario tests nothing); counted, no
    /// second holds more than 100 and the rate stays at least `min_rate`.
    async fn counting_arrivals_keeps_the_window(trip: fn() -> Trip, min_rate: f64) {
        let uncounted = paced_arrivals(trip(), false).await;
        assert!(peak(&uncounted) > 100, "the scenario no longer tests anything: peak {}", peak(&uncounted));
        let times = paced_arrivals(trip(), true).await;
        assert!(peak(&times) <= 100, "peak {}", peak(&times));
        let rate = rate_over(&times, 20);
        assert!(rate >= min_rate, "{rate}/s");
    }

    /// One POST in ten takes 8 ms longer on the way.
    fn slow_trips() -> Trip {
        Trip {
            late: |_| Duration::ZERO,
            out: |n| Duration::from_micros(if (n >> 20) % 10 == 0 { 8500 } else { 500 }),
            back: Duration::from_micros(500),
        }
    }

    /// One call in ten is woken 1–10 ms after its booked instant (a busy box); a 1 ms round trip.
    fn late_wakes() -> Trip {
        Trip {
            late: |n| if (n >> 20) % 10 == 0 { Duration::from_millis(1 + (n >> 33) % 10) } else { Duration::ZERO },
            out: |_| Duration::ZERO,
            back: Duration::from_millis(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_slow_on_its_way_moves_its_booking_so_arrivals_keep_the_window() {
        // One call in ten 8 ms slow is a heavy load; each costs its excess once.
        counting_arrivals_keeps_the_window(slow_trips, 98.5).await;
    }

    #[test]
    fn the_trip_baseline_is_the_fastest_of_two_periods_never_one_slow_sample() {
        let trips = Trips::new();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // The first trip has nothing to compare with: all of it counts.
        assert_eq!(trips.excess(ms(3), t0), ms(3));
        assert_eq!(trips.excess(ms(2), t0 + ms(5)), ms(0));
        assert_eq!(trips.excess(ms(9), t0 + ms(10)), ms(7));
        // A new period starts with a slow trip: the previous period's fastest is still the baseline.
        assert_eq!(trips.excess(ms(10), t0 + FASTEST_FOR + ms(1)), ms(8));
        assert_eq!(trips.excess(ms(4), t0 + FASTEST_FOR + ms(2)), ms(2));
        // Two periods on, the first period's 2 ms is gone: the path's new speed is the baseline.
        assert_eq!(trips.excess(ms(5), t0 + 2 * FASTEST_FOR + ms(3)), ms(1));
        assert_eq!(trips.excess(ms(6), t0 + 3 * FASTEST_FOR + ms(4)), ms(1));
        // After a long quiet spell nothing old counts, so the next trip counts whole again.
        assert_eq!(trips.excess(ms(30), t0 + 10 * FASTEST_FOR), ms(30));
    }

    #[tokio::test(start_paused = true)]
    async fn campaigns_sharing_the_account_hold_both_levels() {
        let margin = Duration::from_millis(5);
        let account = std::sync::Arc::new(Pacer::new(10.0, margin));
        let a = std::sync::Arc::new(Pacer::new(6.0, margin));
        let b = std::sync::Arc::new(Pacer::new(6.0, margin));
        let (ta, tb) =
            tokio::join!(saturate(vec![a, account.clone()], 8, 30), saturate(vec![b, account.clone()], 8, 30));
        let mut all: Vec<Instant> = ta.iter().chain(&tb).copied().collect();
        all.sort();
        assert!(peak(&all) <= 10, "account peak {}", peak(&all));
        assert!(peak(&ta) <= 6 && peak(&tb) <= 6, "campaign peaks {} {}", peak(&ta), peak(&tb));
        // The account is the binding level: together they get its rate.
        let rate = rate_over(&all, 30);
        assert!(rate >= 9.9, "{rate}/s");
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_holds_across_a_rate_change() {
        let p = Pacer::new(20.0, Duration::from_millis(5));
        let mut times = Vec::new();
        for i in 0..90 {
            if i == 30 {
                p.set_rate(40.0); // a replica left: the share doubles
            }
            if i == 60 {
                p.set_rate(20.0);
            }
            let t = book(&[&p], Instant::now()).await;
            wait_for(&[&p], t).await;
            times.push(t);
        }
        assert!(peak(&times) <= 40, "peak {}", peak(&times));
        // Bookings made after the drop back to 20 (the last ones at most LEAD ahead) hold 20 per second.
        assert!(peak(&times[61..]) <= 20, "peak after the drop {}", peak(&times[61..]));
    }
}
