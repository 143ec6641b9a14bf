//! Management API keys: what a key may do ([`Scope`]) and the secret itself ([`ApiKeySecret`]), which is
//! shown once and stored only as a SHA-256 hash.

use std::fmt;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What an API key may do. Stored as text in `api_keys.scopes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    #[serde(rename = "campaigns:read")]
    CampaignsRead,
    #[serde(rename = "campaigns:write")]
    CampaignsWrite,
    #[serde(rename = "contacts:write")]
    ContactsWrite,
    #[serde(rename = "results:read")]
    ResultsRead,
    #[serde(rename = "dnc:read")]
    DncRead,
    #[serde(rename = "dnc:write")]
    DncWrite,
    /// Configure a campaign's result webhook, see failing deliveries and replay them.
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
    /// List, create and revoke API keys; a key only grants scopes it holds itself.
    #[serde(rename = "keys:manage")]
    KeysManage,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::CampaignsRead,
        Scope::CampaignsWrite,
        Scope::ContactsWrite,
        Scope::ResultsRead,
        Scope::DncRead,
        Scope::DncWrite,
        Scope::WebhooksWrite,
        Scope::KeysManage,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::CampaignsRead => "campaigns:read",
            Scope::CampaignsWrite => "campaigns:write",
            Scope::ContactsWrite => "contacts:write",
            Scope::ResultsRead => "results:read",
            Scope::DncRead => "dnc:read",
            Scope::DncWrite => "dnc:write",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::KeysManage => "keys:manage",
        }
    }

    pub fn parse(s: &str) -> Result<Self, super::ParseError> {
        Self::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| super::ParseError::new("Scope", s))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = super::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Every key starts with this, so secret scanners and people can recognise one.
pub const KEY_PREFIX: &str = "dk_";
/// Characters of a key shown in lists (`dk_` and 8 more).
const SHOWN: usize = 11;

/// A key as handed to its owner: `dk_` and 43 base64url characters (256 random bits). `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a key presented by a client (any text; a wrong one simply matches no hash).
    pub fn presented(s: &str) -> Self {
        Self(s.to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored and looked up.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The start of the key, safe to show in lists.
    pub fn shown_prefix(&self) -> String {
        self.0.chars().take(SHOWN).collect()
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…)", self.shown_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_keys_are_distinct_and_redacted() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()).unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!(Scope::parse("admin").is_err());
        let (a, b) = (ApiKeySecret::generate(), ApiKeySecret::generate());
        assert_ne!(a, b);
        assert_ne!(a.hash(), b.hash());
        assert!(a.expose().starts_with("dk_") && a.expose().len() == 46, "{}", a.expose());
        assert!(!format!("{a:?}").contains(&a.expose()[SHOWN..]));
        assert_eq!(ApiKeySecret::presented(a.expose()).hash(), a.hash());
    }
}
