use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The secret that signs attempt tokens. Kept out of `Debug`.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl TokenKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

/// An unguessable, HMAC-signed reference to one attempt, used in the TwiML and StatusCallback URLs.
/// It carries the attempt id (never a contact id) and 128 bits of HMAC-SHA256, so a forged or swapped
/// token is rejected before anything is read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttemptToken {
    attempt_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed attempt token")]
    Malformed,
    #[error("attempt token signature does not match")]
    BadSignature,
}

const MAC_LEN: usize = 16;

impl AttemptToken {
    pub fn new(attempt_id: i64) -> Self {
        Self { attempt_id }
    }

    pub fn attempt_id(self) -> i64 {
        self.attempt_id
    }

    /// The URL-safe text form.
    pub fn encode(self, key: &TokenKey) -> String {
        encode(key, b"attempt:", self.attempt_id)
    }

    /// Checks the signature in constant time and returns the attempt it names.
    pub fn verify(text: &str, key: &TokenKey) -> Result<Self, TokenError> {
        verify(text, key, b"attempt:").map(|attempt_id| Self { attempt_id })
    }
}

/// The same kind of reference to one SMS (`/sms/status/{token}`). Signed under another label, so an
/// attempt's token never passes as a message's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageToken {
    message_id: i64,
}

impl MessageToken {
    pub fn new(message_id: i64) -> Self {
        Self { message_id }
    }

    pub fn message_id(self) -> i64 {
        self.message_id
    }

    pub fn encode(self, key: &TokenKey) -> String {
        encode(key, b"message:", self.message_id)
    }

    pub fn verify(text: &str, key: &TokenKey) -> Result<Self, TokenError> {
        verify(text, key, b"message:").map(|message_id| Self { message_id })
    }
}

fn mac(key: &TokenKey, label: &[u8], id: i64) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(&key.0).expect("HMAC takes any key length");
    m.update(label);
    m.update(&id.to_be_bytes());
    m
}

fn encode(key: &TokenKey, label: &[u8], id: i64) -> String {
    let mut raw = Vec::with_capacity(8 + MAC_LEN);
    raw.extend_from_slice(&id.to_be_bytes());
    raw.extend_from_slice(&mac(key, label, id).finalize().into_bytes()[..MAC_LEN]);
    URL_SAFE_NO_PAD.encode(raw)
}

fn verify(text: &str, key: &TokenKey, label: &[u8]) -> Result<i64, TokenError> {
    let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| TokenError::Malformed)?;
    if raw.len() != 8 + MAC_LEN {
        return Err(TokenError::Malformed);
    }
    let id = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
    mac(key, label, id).verify_truncated_left(&raw[8..]).map_err(|_| TokenError::BadSignature)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_forgery() {
        let key = TokenKey::new(b"k1");
        let t = AttemptToken::new(42).encode(&key);
        assert_eq!(AttemptToken::verify(&t, &key).unwrap().attempt_id(), 42);
        assert_eq!(AttemptToken::verify(&t, &TokenKey::new(b"k2")), Err(TokenError::BadSignature));
        // Swap in another attempt id, keep the MAC: rejected.
        let other = AttemptToken::new(42 + (1 << 40)).encode(&key);
        assert_ne!(&other[..8], &t[..8]);
        let forged = format!("{}{}", &other[..8], &t[8..]);
        assert!(AttemptToken::verify(&forged, &key).is_err());
        assert_eq!(AttemptToken::verify("not-a-token", &key), Err(TokenError::Malformed));
        // A message's token is not an attempt's, nor the other way round.
        let m = MessageToken::new(42).encode(&key);
        assert_eq!(MessageToken::verify(&m, &key).unwrap().message_id(), 42);
        assert_eq!(AttemptToken::verify(&m, &key), Err(TokenError::BadSignature));
        assert_eq!(MessageToken::verify(&t, &key), Err(TokenError::BadSignature));
    }
}
