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

    fn mac(key: &TokenKey, id: i64) -> [u8; MAC_LEN] {
        let mut m = HmacSha256::new_from_slice(&key.0).expect("HMAC takes any key length");
        m.update(b"attempt:");
        m.update(&id.to_be_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The URL-safe text form.
    pub fn encode(self, key: &TokenKey) -> String {
        let mut raw = Vec::with_capacity(8 + MAC_LEN);
        raw.extend_from_slice(&self.attempt_id.to_be_bytes());
        raw.extend_from_slice(&Self::mac(key, self.attempt_id));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks the signature in constant time and returns the attempt it names.
    pub fn verify(text: &str, key: &TokenKey) -> Result<Self, TokenError> {
        let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| TokenError::Malformed)?;
        if raw.len() != 8 + MAC_LEN {
            return Err(TokenError::Malformed);
        }
        let id = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        let mut m = HmacSha256::new_from_slice(&key.0).expect("HMAC takes any key length");
        m.update(b"attempt:");
        m.update(&id.to_be_bytes());
        m.verify_truncated_left(&raw[8..]).map_err(|_| TokenError::BadSignature)?;
        Ok(Self { attempt_id: id })
    }
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
    }
}
