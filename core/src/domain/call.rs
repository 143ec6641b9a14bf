use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that did not parse into a domain type; says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {value:?}")]
pub struct ParseError {
    pub what: &'static str,
    pub value: String,
}

impl ParseError {
    pub fn new(what: &'static str, value: &str) -> Self {
        Self { what, value: value.chars().take(64).collect() }
    }
}

/// A Twilio Call SID: `CA` followed by 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CallSid(String);

impl CallSid {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = s.len() == 34 && s.starts_with("CA") && s[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(Self(s.to_ascii_lowercase().replacen("ca", "CA", 1)))
        } else {
            Err(ParseError::new("CallSid", s))
        }
    }

    /// A fresh random SID (the simulator's and tests' use).
    pub fn random() -> Self {
        Self(format!("CA{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CallSid {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<CallSid> for String {
    fn from(s: CallSid) -> String {
        s.0
    }
}

impl fmt::Display for CallSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Twilio's `CallStatus` (the spec's `call_enum_status`, plus `initiated`, which StatusCallbacks carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}

impl CallStatus {
    pub const ALL: [CallStatus; 9] = [
        Self::Queued,
        Self::Initiated,
        Self::Ringing,
        Self::InProgress,
        Self::Completed,
        Self::Busy,
        Self::Failed,
        Self::NoAnswer,
        Self::Canceled,
    ];

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| ParseError::new("CallStatus", s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::NoAnswer => "no-answer",
            Self::Canceled => "canceled",
        }
    }

    /// The call is over; nothing later may replace this status.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Busy | Self::Failed | Self::NoAnswer | Self::Canceled)
    }

    /// Position in a call's life. Callbacks may arrive in any order; an attempt only ever moves to a
    /// higher rank, so a late `ringing` can never replace `in-progress`, and terminal beats everything.
    pub fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Initiated => 1,
            Self::Ringing => 2,
            Self::InProgress => 3,
            _ => 4,
        }
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Twilio's `AnsweredBy` from answering machine detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    Human,
    MachineStart,
    MachineEndBeep,
    MachineEndSilence,
    MachineEndOther,
    Fax,
    Unknown,
}

impl AnsweredBy {
    pub const ALL: [AnsweredBy; 7] = [
        Self::Human,
        Self::MachineStart,
        Self::MachineEndBeep,
        Self::MachineEndSilence,
        Self::MachineEndOther,
        Self::Fax,
        Self::Unknown,
    ];

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| ParseError::new("AnsweredBy", s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::MachineStart => "machine_start",
            Self::MachineEndBeep => "machine_end_beep",
            Self::MachineEndSilence => "machine_end_silence",
            Self::MachineEndOther => "machine_end_other",
            Self::Fax => "fax",
            Self::Unknown => "unknown",
        }
    }

    pub fn is_machine(self) -> bool {
        matches!(
            self,
            Self::MachineStart | Self::MachineEndBeep | Self::MachineEndSilence | Self::MachineEndOther | Self::Fax
        )
    }

    /// The greeting has ended, so a voicemail message can be left (`machine_end_*`).
    pub fn voicemail_ready(self) -> bool {
        matches!(self, Self::MachineEndBeep | Self::MachineEndSilence | Self::MachineEndOther)
    }
}

impl fmt::Display for AnsweredBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_sid_accepts_twilio_shape_only() {
        assert!(CallSid::parse("CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_ok());
        assert!(CallSid::parse("CA123").is_err());
        assert!(CallSid::parse("XXaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(CallSid::parse("CAzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz").is_err());
    }

    #[test]
    fn statuses_round_trip_and_terminal_ranks_highest() {
        for s in CallStatus::ALL {
            assert_eq!(CallStatus::parse(s.as_str()).unwrap(), s);
            assert_eq!(s.is_terminal(), s.rank() == 4);
        }
        for a in AnsweredBy::ALL {
            assert_eq!(AnsweredBy::parse(a.as_str()).unwrap(), a);
        }
    }
}
