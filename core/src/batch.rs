//! Group commit for hot writes: callers submit one item each and wait for its answer, while writer tasks
//! each take whatever has queued up and write it in a single statement. Under load batches grow by
//! themselves; when idle a lone item goes at once, so nobody waits for a timer.
//!
//! The queue is bounded: when the writer falls behind, `submit` waits (backpressure), it never drops.
//!
//! Answers are typed: a failed write reaches every caller whose item it held as the writer's own error
//! (shared through an [`Arc`], since one error answers a whole batch), and a writer that stopped answers
//! [`BatchError::Closed`], so a caller can tell "the database refused this" from "we are shutting down".

use std::future::Future;
use std::sync::Arc;

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
        let (tx, rx) = mpsc::channel::<Queued<I, T, E>>(depth);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            let (rx, mut write) = (rx.clone(), write.clone());
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(max);
                loop {
                    // The lock is held only while taking a batch, not while writing it.
                    if rx.lock().await.recv_many(&mut buf, max).await == 0 {
                        return;
                    }
                    let (items, replies): (Vec<I>, Vec<oneshot::Sender<Answer<T, E>>>) = buf.drain(..).unzip();
                    let answers = write(items).await;
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
    use std::sync::atomic::{AtomicUsize, Ordering};

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
