//! Group commit for hot writes: callers submit one item each and wait for its answer, while writer tasks
//! each take whatever has queued up and write it in a single statement. Under load batches grow by
//! themselves; when idle a lone item goes at once, so nobody waits for a timer.
//!
//! The queue is bounded: when the writer falls behind, `submit` waits (backpressure), it never drops.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

/// A handle to a batching writer; clones share its writer tasks, which stop when every handle is gone,
/// after answering what was queued.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<(I, oneshot::Sender<O>)>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts `writers` writer tasks: each takes up to `max` queued items and `write` must answer each,
    /// in order. Several writers keep the database busy while one of them waits on a commit. `depth`
    /// items may wait before submitters do.
    pub fn spawn<F, Fut>(max: usize, depth: usize, writers: usize, write: F) -> Self
    where
        F: FnMut(Vec<I>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Vec<O>> + Send,
    {
        let (tx, rx) = mpsc::channel::<(I, oneshot::Sender<O>)>(depth);
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
                    let (items, replies): (Vec<I>, Vec<oneshot::Sender<O>>) = buf.drain(..).unzip();
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

    /// Queues one item and waits for its answer; `None` if the writer has stopped or dropped it.
    pub async fn submit(&self, item: I) -> Option<O> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((item, reply)).await.ok()?;
        rx.await.ok()
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
                items.into_iter().map(|i| i * 2).collect()
            }
        });
        let answers = futures::future::join_all((0..500u32).map(|i| {
            let b = b.clone();
            async move { (i, b.submit(i).await) }
        }))
        .await;
        for (i, a) in answers {
            assert_eq!(a, Some(i * 2));
        }
        let n = batches.load(Ordering::SeqCst);
        assert!(n < 500, "500 concurrent items were written in {n} batches");
    }
}
