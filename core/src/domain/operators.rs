//! Talking to a person: operators (their Twilio Client identity), the campaign's `[operators]` section
//! (hold limit, ring time, pacing when operators are saturated) and the words a waiting callee hears
//! when the script does not say them itself.

use serde::{Deserialize, Serialize};

use super::campaign::FieldIssue;
use super::script::Script;

/// The result recorded when an operator answered (only then).
pub use super::settle::TRANSFERRED_RESULT;
/// The callee asked to be called back after no operator answered within the hold limit.
pub const CALLBACK_REQUESTED_RESULT: &str = "callback_requested";
/// The callee hung up in the waiting room before an operator answered.
pub const ABANDONED_RESULT: &str = "abandoned";
/// Offered a call back, the callee declined it or hung up.
pub const NO_OPERATOR_RESULT: &str = "no_operator";

/// An operator's Twilio Client identity: what `<Client>` and `client:` name, and the access token's
/// `identity`. Twilio allows up to 121 characters; we keep to letters, digits and `_ . @ -` so it is safe
/// in a URL and a form field unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Identity(String);

impl Identity {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s.len() > 121 {
            return Err(format!("identity {s:?} must be 1 to 121 characters"));
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || "_.@-".contains(*c))) {
            return Err(format!("identity {s:?}: {c:?} is not allowed (letters, digits, _ . @ -)"));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address Twilio rings: `client:alice`.
    pub fn client_address(&self) -> String {
        format!("client:{}", self.0)
    }
}

impl TryFrom<String> for Identity {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<Identity> for String {
    fn from(i: Identity) -> String {
        i.0
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Twilio's public hold music (the track its own `<Conference>` default wait URL plays).
pub const DEFAULT_HOLD_MUSIC: &str = "http://com.twilio.sounds.music.s3.amazonaws.com/ClockworkWaltz.mp3";

/// `[operators]` of a campaign file: how long a callee waits and how operators are rung.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorSettings {
    /// Seconds a callee waits in the waiting room before being offered a call back.
    pub hold_limit_s: u32,
    /// Seconds one operator's client rings before the next available one is tried (a missed ring sets
    /// the operator away).
    pub ring_s: u32,
    /// Seconds of silence between two "please hold" messages when there is no hold music.
    pub hold_every_s: u32,
    /// Hold music (an audio URL) between two "please hold" messages; `""` for silence. Twilio's own
    /// public hold music when absent.
    pub hold_music: Option<String>,
    /// Slow the campaign's calls while callees wait and no operator is free: the rate is scaled by free
    /// operators over waiting callees (at least a tenth), so the dialer does not make more callers wait.
    pub slow_when_saturated: bool,
}

impl Default for OperatorSettings {
    fn default() -> Self {
        Self {
            hold_limit_s: 120,
            ring_s: 20,
            hold_every_s: 20,
            hold_music: Some(DEFAULT_HOLD_MUSIC.into()),
            slow_when_saturated: true,
        }
    }
}

impl OperatorSettings {
    pub(super) fn check(&self) -> Vec<FieldIssue> {
        let mut issues = Vec::new();
        let mut check = |ok: bool, f: &str, reason: &str| {
            if !ok {
                issues.push(FieldIssue { field: f.into(), reason: reason.into() });
            }
        };
        check((10..=3600).contains(&self.hold_limit_s), "operators.hold_limit_s", "must be between 10 and 3600");
        check((5..=120).contains(&self.ring_s), "operators.ring_s", "must be between 5 and 120");
        check((5..=300).contains(&self.hold_every_s), "operators.hold_every_s", "must be between 5 and 300");
        check(
            self.hold_music
                .as_deref()
                .is_none_or(|u| u.is_empty() || u.starts_with("http://") || u.starts_with("https://")),
            "operators.hold_music",
            "must be an http(s) URL, or \"\" for silence",
        );
        issues
    }

    /// The pacing factor for a campaign with `waiting` callees and `free` operators: 1 when nobody
    /// waits or enough operators are free, else free/waiting, at least 0.1 so the campaign never stops.
    pub fn pace_factor(&self, waiting: i64, free: i64) -> f64 {
        if !self.slow_when_saturated || waiting <= 0 || free >= waiting {
            return 1.0;
        }
        (free.max(0) as f64 / waiting as f64).max(0.1)
    }
}

/// What the waiting callee hears, in the script's language when the script says nothing itself.
pub fn hold_message(script: &Script) -> String {
    script.hold_message.clone().unwrap_or_else(|| {
        if japanese(script) {
            "ただいま担当者におつなぎしています。このままお待ちください。".into()
        } else {
            "Please hold, we are connecting you to a member of our team.".into()
        }
    })
}

/// The offer after the hold limit.
pub fn callback_offer(script: &Script) -> String {
    script.callback_offer.clone().unwrap_or_else(|| {
        if japanese(script) {
            "申し訳ございません。ただいま担当者が対応できません。折り返しのお電話をご希望の場合は1を押してください。"
                .into()
        } else {
            "Sorry, all of our team are busy. Press 1 and we will call you back.".into()
        }
    })
}

/// Said after the callee asked for a call back.
pub fn callback_confirmed(script: &Script) -> String {
    script.callback_confirmed.clone().unwrap_or_else(|| {
        if japanese(script) {
            "承知しました。折り返しお電話いたします。".into()
        } else {
            "Thank you. We will call you back.".into()
        }
    })
}

fn japanese(script: &Script) -> bool {
    script.language.starts_with("ja")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_keep_to_safe_characters() {
        assert!(Identity::parse("alice").is_ok());
        assert!(Identity::parse("ops.team-1@tokyo").is_ok());
        assert!(Identity::parse("").is_err());
        assert!(Identity::parse("a b").unwrap_err().contains("' '"));
        assert!(Identity::parse("client:alice").is_err());
        assert!(Identity::parse(&"a".repeat(122)).is_err());
    }

    #[test]
    fn pacing_slows_only_when_callers_outnumber_free_operators() {
        let s = OperatorSettings::default();
        assert_eq!(s.pace_factor(0, 0), 1.0);
        assert_eq!(s.pace_factor(2, 2), 1.0);
        assert_eq!(s.pace_factor(4, 1), 0.25);
        assert_eq!(s.pace_factor(50, 0), 0.1);
        let off = OperatorSettings { slow_when_saturated: false, ..s.clone() };
        assert_eq!(off.pace_factor(50, 0), 1.0);
    }

    #[test]
    fn settings_out_of_range_name_their_field() {
        let s = OperatorSettings { hold_limit_s: 5, ring_s: 500, ..Default::default() };
        let fields: Vec<String> = s.check().into_iter().map(|i| i.field).collect();
        assert_eq!(fields, ["operators.hold_limit_s", "operators.ring_s"]);
    }
}
