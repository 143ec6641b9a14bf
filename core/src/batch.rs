//! Group commit for hot writes: callers submit one item each and wait for its answer, while writer tasks
//! each take whatever has queued up and write it in a single statement. Under load batches grow by
//! themselves; when idle a lone item goes at once, so nobody waits for a timer.
//!
//! With a linger ([`Batcher::spawn_lingering`]), a writer that takes a small batch (under [`ENOUGH`])
//! while another batch is being written waits up to the linger for more (PostgreSQL's `commit_delay` with
//! `commit_siblings`, in the client): at a steady medium rate writers would otherwise each take one or two
//! items and pay a whole transaction for them. A lone item on an idle writer still goes at once, and so
//! does a large batch.
//!
//! The queue is bounded: when the writer falls behind, `submit` waits (backpressure), it never drops.
//!
//! Answers are typed: a failed write reaches every caller whose item it held as the writer's own error
//! (shared through an [`Arc`], since one error answers a whole batch), and a writer that stopped answers
//! [`BatchError::Closed`], so a caller can tell "the database refused this" from "we are shutting down".

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};

/// One item's answer as the writer gives it: its value, or the error of the write that held it.
pub type Answer<T, E> = Result<T, Arc<E>>;

/// Why [`Batcher::submit`] has no value for an item.
#[derive(Debug, thiserror::Error)]
pub enum BatchError<E: std::error::Error + 'static> {
    /// The write that held this item failed; every item of that write shares the cause.
    #[error(transparent)]
    Write(Arc<E>),
    /// The writer tasks stopped (every handle dropped, or the runtime shutting down) before answering.
    #[error("the batch writer stopped before answering")]
    Closed,
}

/// Answers every item of a failed batch with the same error.
pub fn all_failed<T, E>(error: E, items: usize) -> Vec<Answer<T, E>> {
    let error = Arc::new(error);
    (0..items).map(|_| Err(error.clone())).collect()
}

/// How long a small batch waits for more while another batch is being written, for the writers that linger
/// (callbacks, CallSids, the pre-POST gate). At a paced 1,000 calls/s an item reaches them every
/// millisecond: 10 ms gathers about ten per statement (half the PostgreSQL CPU per call of a 3 ms linger),
/// short against Twilio's 15 s callback timeout and the booking lead of a paced call.
pub const LINGER: Duration = Duration::from_millis(10);

/// A batch this large goes without lingering: the writers are fed faster than they write (a burst), and
/// waiting would only hold back the callers of items already taken (a 10 ms wait under a burst of 256
/// callbacks in flight cost 17 % of the callbacks/s, BENCHMARKS.md).
pub const ENOUGH: usize = 32;

type Queued<I, T, E> = (I, oneshot::Sender<Answer<T, E>>);

/// A handle to a batching writer; clones share its writer tasks, which stop when every handle is gone,
/// after answering what was queued.
pub struct Batcher<I, T, E> {
    tx: mpsc::Sender<Queued<I, T, E>>,
}

impl<I, T, E> Clone for Batcher<I, T, E> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<I, T, E> Batcher<I, T, E>
where
    I: Send + 'static,
    T: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Starts `writers` writer tasks: each takes up to `max` queued items and `write` must answer each,
    /// in order (see [`all_failed`] for a write that fails as a whole). Several writers keep the database
    /// busy while one of them waits on a commit. `depth` items may wait before submitters do.
    pub fn spawn<F, Fut>(max: usize, depth: usize, writers: usize, write: F) -> Self
    where
        F: FnMut(Vec<I>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Vec<Answer<T, E>>> + Send,
    {
        Self::spawn_lingering(max, depth, writers, Duration::ZERO, write)
    }

    /// As [`Batcher::spawn`], but a batch smaller than [`ENOUGH`] taken while another writer is busy waits
    /// up to `linger` to grow to it.
    pub fn spawn_lingering<F, Fut>(max: usize, depth: usize, writers: usize, linger: Duration, write: F) -> Self
    where
        F: FnMut(Vec<I>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Vec<Answer<T, E>>> + Send,
    {
        let (tx, rx) = mpsc::channel::<Queued<I, T, E>>(depth);
        let rx = Arc::new(Mutex::new(rx));
        let busy = Arc::new(AtomicUsize::new(0));
        for _ in 0..writers.max(1) {
            let (rx, busy, mut write) = (rx.clone(), busy.clone(), write.clone());
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(max);
                loop {
                    // The lock is held while taking a batch (and lingering for it), not while writing it.
                    {
                        let mut rx = rx.lock().await;
                        if rx.recv_many(&mut buf, max).await == 0 {
                            return;
                        }
                        let enough = ENOUGH.min(max);
                        if !linger.is_zero() && buf.len() < enough && busy.load(Ordering::Acquire) > 0 {
                            let until = tokio::time::Instant::now() + linger;
                            while buf.len() < enough {
                                let room = max - buf.len();
                                match tokio::time::timeout_at(until, rx.recv_many(&mut buf, room)).await {
                                    Ok(n) if n > 0 => {}
                                    _ => break,
                                }
                            }
                        }
                        busy.fetch_add(1, Ordering::AcqRel);
                    }
                    let (items, replies): (Vec<I>, Vec<oneshot::Sender<Answer<T, E>>>) = buf.drain(..).unzip();
                    let answers = write(items).await;
                    busy.fetch_sub(1, Ordering::AcqRel);
                    debug_assert_eq!(answers.len(), replies.len(), "one answer per item");
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        // The submitter may have given up (shutdown); its answer is simply dropped.
                        let _ = reply.send(answer);
                    }
                }
            });
        }
        Self { tx }
    }

    /// Queues one item and waits for its answer.
    pub async fn submit(&self, item: I) -> Result<T, BatchError<E>> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((item, reply)).await.map_err(|_| BatchError::Closed)?;
        // A dropped reply means the writer stopped without answering (or gave fewer answers than items).
        rx.await.map_err(|_| BatchError::Closed)?.map_err(BatchError::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_item_gets_its_own_answer_and_concurrent_items_share_batches() {
        let batches = Arc::new(AtomicUsize::new(0));
        let seen = batches.clone();
        let b = Batcher::spawn(64, 1024, 2, move |items: Vec<u32>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                items.into_iter().map(|i| Ok::<_, Arc<std::io::Error>>(i * 2)).collect()
            }
        });
        let answers = futures::future::join_all((0..500u32).map(|i| {
            let b = b.clone();
            async move { (i, b.submit(i).await) }
        }))
        .await;
        for (i, a) in answers {
            assert_eq!(a.expect("answered"), i * 2);
        }
        let n = batches.load(Ordering::SeqCst);
        assert!(n < 500, "500 concurrent items were written in {n} batches");
    }

    /// Four writers that take 4 ms per batch, counting the items of each batch.
    fn slow_writer(linger: Duration, sizes: Arc<std::sync::Mutex<Vec<usize>>>) -> Batcher<u32, u32, Fire> {
        Batcher::spawn_lingering(64, 64, 4, linger, move |items: Vec<u32>| {
            sizes.lock().unwrap().push(items.len());
            async move {
                tokio::time::sleep(Duration::from_millis(4)).await;
                items.into_iter().map(Ok).collect()
            }
        })
    }

    /// Items arriving 1 ms apart, faster than one writer commits: without a linger a free writer is always
    /// waiting and takes each alone; with one, a writer that starts while another is busy gathers more.
    async fn sizes_at_a_steady_rate(linger: Duration) -> Vec<usize> {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let b = slow_writer(linger, sizes.clone());
        let mut waiting = Vec::new();
        for i in 0..40u32 {
            let b = b.clone();
            waiting.push(tokio::spawn(async move { b.submit(i).await.map_err(|e| e.to_string()) }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for (i, w) in waiting.into_iter().enumerate() {
            assert_eq!(w.await.unwrap(), Ok(i as u32), "every item answered with its own value");
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        sizes
    }

    #[tokio::test(start_paused = true)]
    async fn a_linger_gathers_a_steady_trickle_into_fewer_batches() {
        let eager = sizes_at_a_steady_rate(Duration::ZERO).await;
        let lingering = sizes_at_a_steady_rate(Duration::from_millis(5)).await;
        assert!(
            lingering.len() * 2 <= eager.len(),
            "5 ms linger: {} batches {lingering:?}; none: {} batches {eager:?}",
            lingering.len(),
            eager.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_item_on_idle_writers_does_not_wait_for_the_linger() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let b = slow_writer(Duration::from_secs(1), sizes.clone());
        let t = tokio::time::Instant::now();
        assert_eq!(b.submit(7).await.unwrap(), 7);
        assert_eq!(t.elapsed(), Duration::from_millis(4), "answered after the write alone, no linger");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_of_enough_items_goes_without_lingering() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let b = slow_writer(Duration::from_secs(1), sizes.clone());
        // One writer busy with a lone item, then a burst: the burst's batch is large enough to go at once.
        let lone = {
            let b = b.clone();
            tokio::spawn(async move { b.submit(0).await.map_err(|e| e.to_string()) })
        };
        tokio::task::yield_now().await;
        let t = tokio::time::Instant::now();
        let burst = futures::future::join_all((1..=ENOUGH as u32).map(|i| {
            let b = b.clone();
            async move { b.submit(i).await.map_err(|e| e.to_string()) }
        }))
        .await;
        assert_eq!(lone.await.unwrap(), Ok(0));
        assert!(burst.iter().enumerate().all(|(i, a)| *a == Ok(i as u32 + 1)), "{burst:?}");
        assert!(t.elapsed() < Duration::from_secs(1), "the burst lingered: {:?} {:?}", t.elapsed(), sizes);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("disk on fire")]
    struct Fire;

    #[tokio::test]
    async fn a_failed_write_reaches_each_caller_as_the_writers_own_error() {
        let b = Batcher::spawn(8, 8, 1, |items: Vec<u32>| async move { all_failed::<u32, _>(Fire, items.len()) });
        let (x, y) = tokio::join!(b.submit(1), b.submit(2));
        for r in [x, y] {
            match r {
                Err(BatchError::Write(e)) => assert_eq!(e.to_string(), "disk on fire"),
                other => panic!("expected the write's error, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_writer_that_dies_answers_closed_not_a_hang() {
        // The writer task panics (prints its message) and drops the replies it held.
        let b = Batcher::spawn(8, 8, 1, |_: Vec<u32>| async move {
            if true {
                panic!("writer bug (expected by this test)");
            }
            Vec::<Answer<u32, Fire>>::new()
        });
        assert!(matches!(b.submit(1).await, Err(BatchError::Closed)));
        // With its only writer gone, the queue is closed to new items too.
        assert!(matches!(b.submit(2).await, Err(BatchError::Closed)));
    }
}
