//! Result webhooks as the Standard Webhooks spec signs them (<https://www.standardwebhooks.com/>): event
//! types, the body, secrets and the `v1` signature. Pure code; the outbox is in `store::webhooks`, the
//! deliverer in the `dialer` binary.
//!
//! A delivery carries `webhook-id` (the event's `msg_…`, the same on every retry), `webhook-timestamp` (unix
//! seconds of this attempt) and `webhook-signature: v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`,
//! where the key is the base64-decoded part of the secret after `whsec_`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a generated secret (the spec asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A keypress result was recorded (`confirmed`, `reschedule:afternoon`…).
    #[serde(rename = "contact.result")]
    Result,
    /// The callee pressed the opt-out key: the number is on the DNC list.
    #[serde(rename = "contact.opted_out")]
    OptedOut,
    /// The contact reached its terminal state (done, exhausted, invalid, blocked, canceled).
    #[serde(rename = "contact.finished")]
    Finished,
}

impl EventType {
    pub const ALL: [EventType; 3] = [EventType::Result, EventType::OptedOut, EventType::Finished];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Result => "contact.result",
            EventType::OptedOut => "contact.opted_out",
            EventType::Finished => "contact.finished",
        }
    }

    pub fn parse(s: &str) -> Result<Self, super::ParseError> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| super::ParseError::new("EventType", s))
    }
}

super::sql::text_type!(EventType, as_str, EventType::parse);

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with {SECRET_PREFIX}")]
    Prefix,
    #[error("a webhook secret is {SECRET_PREFIX} followed by base64: {0}")]
    Base64(String),
    #[error("a webhook secret's key must be 24 to 64 bytes, not {0}")]
    Length(usize),
}

/// The HMAC key of a `whsec_…` secret. `Debug` is redacted.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Parses `whsec_<base64>`. Accepts keys of 24–64 bytes (the spec's range); the published test vector's
    /// 24-byte key included.
    pub fn parse(secret: &str) -> Result<Self, SecretError> {
        let b64 = secret.strip_prefix(SECRET_PREFIX).ok_or(SecretError::Prefix)?;
        let key = B64.decode(b64).map_err(|e| SecretError::Base64(e.to_string()))?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self(key))
    }

    /// `v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// A new secret: `whsec_` + base64 of [`SECRET_BYTES`] random bytes from the OS generator.
pub fn generate_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", B64.encode(key))
}

/// The body of a delivery: `{"type": …, "timestamp": <RFC 3339 of the event>, "data": {…}}`. The same bytes
/// on every retry (only the signature's timestamp changes).
pub fn event_body(event_type: EventType, occurred_at: DateTime<Utc>, data: &serde_json::Value) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        event_type: EventType,
        timestamp: String,
        data: &'a serde_json::Value,
    }
    serde_json::to_vec(&Body { event_type, timestamp: occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true), data })
        .expect("a JSON value serializes")
}

/// How long to wait before retrying a delivery that failed for the `attempts`-th time: exponential backoff
/// with full jitter, uniform in `[0, min(max, base · 2^(attempts-1))]` so receivers coming back are not hit
/// by every sender at once. A receiver's `Retry-After` is honoured up to `max`.
pub fn retry_delay(
    attempts: i32,
    base: std::time::Duration,
    max: std::time::Duration,
    retry_after: Option<std::time::Duration>,
    rng: &mut impl rand::Rng,
) -> std::time::Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let ceiling = base.saturating_mul(1u32 << doublings).min(max);
    let jittered = ceiling.mul_f64(rng.gen::<f64>());
    match retry_after {
        Some(r) => jittered.max(r.min(max)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retry_delays_double_up_to_the_cap_with_full_jitter() {
        let mut rng = rand::thread_rng();
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(3600));
        for attempts in 1..40 {
            let ceiling = (base * 2u32.pow((attempts - 1).min(20) as u32)).min(max);
            let delays: Vec<Duration> = (0..200).map(|_| retry_delay(attempts, base, max, None, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempts}: over {ceiling:?}");
            // Full jitter: spread over the whole range, not clustered at the ceiling.
            assert!(delays.iter().any(|d| *d < ceiling / 2), "attempt {attempts}");
        }
        let floor = Some(Duration::from_secs(30));
        assert_eq!(retry_delay(1, base, max, floor, &mut rng), Duration::from_secs(30), "Retry-After is a floor");
        assert_eq!(retry_delay(1, base, max, Some(Duration::from_secs(99_999)), &mut rng), max, "capped");
    }

    /// The vector published with the Standard Webhooks reference libraries (`libraries/rust/src/lib.rs`,
    /// `test_sign`; the same in every language's tests).
    #[test]
    fn signs_the_specs_published_test_vector() {
        let key = SigningKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let sig = key.sign(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn a_generated_secret_parses_and_is_different_each_time() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_"));
        assert_eq!(SigningKey::parse(&a).unwrap().0.len(), SECRET_BYTES);
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(SigningKey::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap_err(), SecretError::Prefix);
        assert!(matches!(SigningKey::parse("whsec_not base64!").unwrap_err(), SecretError::Base64(_)));
        assert_eq!(SigningKey::parse("whsec_c2hvcnQ=").unwrap_err(), SecretError::Length(5));
        assert!(!format!("{:?}", SigningKey::parse(&generate_secret()).unwrap()).contains("whsec"));
    }

    #[test]
    fn the_body_has_type_timestamp_and_data() {
        let at = DateTime::parse_from_rfc3339("2026-11-30T01:02:03.456Z").unwrap().with_timezone(&Utc);
        let data = serde_json::json!({"contact_id": 7, "result": "reschedule:afternoon"});
        let body: serde_json::Value = serde_json::from_slice(&event_body(EventType::Result, at, &data)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"type": "contact.result", "timestamp": "2026-11-30T01:02:03.456Z", "data": data})
        );
    }

    /// An independent check: the spec's own Rust library verifies what we sign.
    #[test]
    fn the_reference_library_verifies_our_signatures() {
        let secret = generate_secret();
        let body = event_body(EventType::Finished, Utc::now(), &serde_json::json!({"state": "done"}));
        let ts = Utc::now().timestamp();
        let sig = SigningKey::parse(&secret).unwrap().sign("msg_abc", ts, &body);
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER_ID, "msg_abc".parse().unwrap());
        headers.insert(HEADER_TIMESTAMP, ts.to_string().parse().unwrap());
        headers.insert(HEADER_SIGNATURE, sig.parse().unwrap());
        let wh = standardwebhooks::Webhook::new(&secret).unwrap();
        wh.verify(&body, &headers).unwrap();
        // A changed body or another message id fails.
        assert!(wh.verify(b"{}", &headers).is_err());
        headers.insert(HEADER_ID, "msg_other".parse().unwrap());
        assert!(wh.verify(&body, &headers).is_err());
    }
}
