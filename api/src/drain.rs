//! Reads what is left of a request body after the answer is ready, before it is sent.
//!
//! A request refused before its body is read (a bad key, id or query, a wrong content type, a body over
//! the limit) would otherwise be answered and its connection closed while the client is still writing:
//! the client gets a broken pipe or a reset instead of the problem that says what was wrong. So the rest
//! is read and dropped first, within bounds, so that a client cannot make the server read without end.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures::{Stream, StreamExt};

/// At most this much is read past what the handler read…
const DRAIN_BYTES: usize = 8 * 1024 * 1024;
/// …for at most this long; after that the connection closes as before.
const DRAIN_TIME: Duration = Duration::from_secs(5);

type Slot = Arc<Mutex<Option<BodyDataStream>>>;

/// The request body, handing what is unread back to [`drain_unread`] when the handler drops it.
struct Tracked {
    inner: Option<BodyDataStream>,
    done: bool,
    slot: Slot,
}

impl Stream for Tracked {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let next = inner.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(None)) {
            self.done = true;
        }
        next
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.done {
            if let (Some(inner), Ok(mut slot)) = (self.inner.take(), self.slot.lock()) {
                *slot = Some(inner);
            }
        }
    }
}

/// Middleware: runs the request, then drains the body the handler left unread.
pub async fn drain_unread(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let slot: Slot = Arc::default();
    let tracked = Tracked { inner: Some(body.into_data_stream()), done: false, slot: slot.clone() };
    let res = next.run(Request::from_parts(parts, Body::from_stream(tracked))).await;
    let rest = slot.lock().ok().and_then(|mut s| s.take());
    if let Some(mut rest) = rest {
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            let mut read = 0;
            while let Some(Ok(chunk)) = rest.next().await {
                read += chunk.len();
                if read > DRAIN_BYTES {
                    break;
                }
            }
        })
        .await;
    }
    res
}
