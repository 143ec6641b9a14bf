//! Signed requests from the simulator to the application: TwiML fetches and callbacks.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::state::Sim;
use dialer_core::twilio::signature::compute_signature;

pub(crate) type Params = Vec<(String, String)>;

/// The outcome of one HTTP attempt.
#[derive(Debug)]
pub(crate) enum Answer {
    Status(u16, String),
    Error(String),
}

impl Answer {
    pub fn ok(&self) -> bool {
        matches!(self, Answer::Status(s, _) if (200..300).contains(s))
    }

    /// Twilio retries a callback once after a connection error, a timeout or a 5xx.
    pub fn retryable(&self) -> bool {
        match self {
            Answer::Status(s, _) => *s >= 500,
            Answer::Error(_) => true,
        }
    }
}

/// Sends one request the way Twilio does: form POST (or GET with the parameters in the query), with
/// `X-Twilio-Signature` computed over the exact URL (plus the sorted params for a POST).
pub(crate) async fn send_signed(sim: &Sim, url: &str, method: &str, params: &Params, idempotency: &str) -> Answer {
    let get = method.eq_ignore_ascii_case("GET");
    let (target, signature) = if get {
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish();
        let full = if query.is_empty() {
            url.to_string()
        } else if url.contains('?') {
            format!("{url}&{query}")
        } else {
            format!("{url}?{query}")
        };
        let sig = compute_signature(&sim.config.auth_token, &full, &[]);
        (full, sig)
    } else {
        (url.to_string(), compute_signature(&sim.config.auth_token, url, params))
    };
    let req = if get { sim.http.get(&target) } else { sim.http.post(&target).form(params) };
    let res = req
        .header("X-Twilio-Signature", signature)
        .header("I-Twilio-Idempotency-Token", idempotency)
        .header("Accept", "*/*")
        .send()
        .await;
    match res {
        Ok(r) => {
            let status = r.status().as_u16();
            match r.text().await {
                Ok(body) => Answer::Status(status, body),
                Err(e) => Answer::Error(format!("reading the response of {url}: {e}")),
            }
        }
        Err(e) => Answer::Error(format!("{method} {url}: {e}")),
    }
}

/// A callback (StatusCallback, AsyncAmdStatusCallback): retried once on 5xx or a connection error.
pub(crate) async fn deliver_callback(sim: &Sim, url: &str, method: &str, params: &Params, token: &str) -> bool {
    for attempt in 0..2 {
        sim.counters.callbacks_sent.fetch_add(1, Ordering::Relaxed);
        sim.metrics.callbacks_sent.inc();
        let answer = send_signed(sim, url, method, params, token).await;
        if answer.ok() {
            return true;
        }
        sim.counters.callbacks_failed.fetch_add(1, Ordering::Relaxed);
        sim.metrics.callbacks_failed.inc();
        tracing::debug!(?answer, url, attempt, "callback failed");
        if attempt == 0 && answer.retryable() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        break;
    }
    false
}

/// The answer to a TwiML request: the HTTP status when there was one, and the body on a 2xx.
#[derive(Debug)]
pub(crate) struct TwimlAnswer {
    pub status: Option<u16>,
    pub body: Result<String, String>,
}

/// A TwiML request (voice Url, Gather action, inbound SmsUrl ...): Twilio does not retry these.
pub(crate) async fn fetch_twiml(sim: &Sim, url: &str, method: &str, params: &Params) -> TwimlAnswer {
    sim.counters.webhooks_sent.fetch_add(1, Ordering::Relaxed);
    sim.metrics.webhooks_sent.inc();
    let token = uuid::Uuid::new_v4().simple().to_string();
    match send_signed(sim, url, method, params, &token).await {
        Answer::Status(s, body) if (200..300).contains(&s) => TwimlAnswer { status: Some(s), body: Ok(body) },
        other => {
            sim.counters.webhooks_failed.fetch_add(1, Ordering::Relaxed);
            sim.metrics.webhooks_failed.inc();
            match other {
                Answer::Status(s, _) => {
                    TwimlAnswer { status: Some(s), body: Err(format!("{method} {url} answered HTTP {s}")) }
                }
                Answer::Error(e) => TwimlAnswer { status: None, body: Err(e) },
            }
        }
    }
}
