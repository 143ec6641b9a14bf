//! What a finished attempt meant, and what happens next (DESIGN.md, "Outcomes and retries").

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::campaign::{retry_rule, RetryPolicy};
use super::{AnsweredBy, CallStatus, ParseError};

/// The outcome of one attempt. Kept apart from the attempt's *state*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A person answered and the script recorded a keypress result.
    AnsweredResult,
    /// A person answered but gave no result (hung up, no input).
    AnsweredNoResult,
    /// An answering machine, and the voicemail message was played. Never a confirmation.
    Voicemail,
    /// An answering machine (or fax) without a message left.
    Machine,
    Busy,
    NoAnswer,
    Failed,
    /// The number does not exist or cannot be reached (SIP 404/410/484/604, Twilio 21211…). Final.
    InvalidNumber,
    Canceled,
    /// The callee pressed the opt-out key; the number went on the DNC list. Final.
    OptedOut,
    /// Twilio refused the call for this contact (final-for-contact API error). Final.
    Rejected,
    /// Never called: another contact with the same reference (parcel, appointment) was already reached
    /// (`one_per_external_id`). Final.
    AlreadyNotified,
}

impl Outcome {
    pub const ALL: [Outcome; 12] = [
        Self::AnsweredResult,
        Self::AnsweredNoResult,
        Self::Voicemail,
        Self::Machine,
        Self::Busy,
        Self::NoAnswer,
        Self::Failed,
        Self::InvalidNumber,
        Self::Canceled,
        Self::OptedOut,
        Self::Rejected,
        Self::AlreadyNotified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AnsweredResult => "answered_result",
            Self::AnsweredNoResult => "answered_no_result",
            Self::Voicemail => "voicemail",
            Self::Machine => "machine",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Failed => "failed",
            Self::InvalidNumber => "invalid_number",
            Self::Canceled => "canceled",
            Self::OptedOut => "opted_out",
            Self::Rejected => "rejected",
            Self::AlreadyNotified => "already_notified",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL.into_iter().find(|o| o.as_str() == s).ok_or_else(|| ParseError::new("Outcome", s))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a call's terminal callback tells us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallFacts {
    pub status: CallStatus,
    pub answered_by: Option<AnsweredBy>,
    pub sip_response_code: Option<i32>,
    pub has_result: bool,
    pub opted_out: bool,
    pub voicemail_left: bool,
}

/// SIP answers that mean "this number does not exist / cannot be reached".
const INVALID_NUMBER_SIP: [i32; 4] = [404, 410, 484, 604];

/// Classifies a finished call. A machine answer is never a confirmation, even if digits were heard.
pub fn classify(f: CallFacts) -> Outcome {
    if f.opted_out {
        return Outcome::OptedOut;
    }
    match f.status {
        CallStatus::Busy => Outcome::Busy,
        CallStatus::NoAnswer => Outcome::NoAnswer,
        CallStatus::Canceled => Outcome::Canceled,
        CallStatus::Failed if f.sip_response_code.is_some_and(|c| INVALID_NUMBER_SIP.contains(&c)) => {
            Outcome::InvalidNumber
        }
        CallStatus::Failed => Outcome::Failed,
        _ if f.answered_by.is_some_and(AnsweredBy::is_machine) => {
            if f.voicemail_left {
                Outcome::Voicemail
            } else {
                Outcome::Machine
            }
        }
        _ if f.has_result => Outcome::AnsweredResult,
        _ => Outcome::AnsweredNoResult,
    }
}

/// A contact's terminal state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalState {
    /// Reached: a result, or an answer accepted as final.
    Done,
    /// Retries for its outcome, or attempts overall, are used up.
    Exhausted,
    /// The number is invalid or was refused by Twilio.
    Invalid,
    /// Opted out, on a DNC list, or beyond a communication limit.
    Blocked,
    /// The campaign was canceled.
    Canceled,
}

impl FinalState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Exhausted => "exhausted",
            Self::Invalid => "invalid",
            Self::Blocked => "blocked",
            Self::Canceled => "canceled",
        }
    }
}

/// What to do with a contact after an attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Retry { at: DateTime<Utc>, reason: &'static str },
    Final { state: FinalState, reason: String },
}

/// Applies the campaign's retry policy. `attempts_made` counts this attempt; `same_outcome_before`
/// counts earlier attempts of this contact with the same outcome.
pub fn decide(
    policy: &RetryPolicy,
    max_attempts: i32,
    outcome: Outcome,
    attempts_made: i32,
    same_outcome_before: i32,
    now: DateTime<Utc>,
) -> Next {
    let final_state = match outcome {
        Outcome::AnsweredResult => return Next::Final { state: FinalState::Done, reason: "result recorded".into() },
        Outcome::InvalidNumber | Outcome::Rejected => FinalState::Invalid,
        Outcome::OptedOut => return Next::Final { state: FinalState::Blocked, reason: "opted out".into() },
        Outcome::AlreadyNotified => {
            return Next::Final { state: FinalState::Blocked, reason: "already notified about this reference".into() }
        }
        Outcome::Canceled => FinalState::Canceled,
        Outcome::AnsweredNoResult => FinalState::Done,
        _ => FinalState::Exhausted,
    };
    let Some(rule) = retry_rule(policy, outcome) else {
        return Next::Final { state: final_state, reason: format!("{outcome} is final") };
    };
    if same_outcome_before >= rule.max {
        return Next::Final {
            state: final_state,
            reason: format!("{outcome}: {} retries allowed, all used", rule.max),
        };
    }
    if attempts_made >= max_attempts {
        return Next::Final { state: final_state, reason: format!("max attempts ({max_attempts}) reached") };
    }
    Next::Retry { at: now + Duration::seconds(rule.delay_s), reason: outcome.as_str() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(status: CallStatus) -> CallFacts {
        CallFacts {
            status,
            answered_by: None,
            sip_response_code: None,
            has_result: false,
            opted_out: false,
            voicemail_left: false,
        }
    }

    #[test]
    fn voicemail_is_never_a_confirmation() {
        let f = CallFacts {
            answered_by: Some(AnsweredBy::MachineEndBeep),
            has_result: true,
            voicemail_left: true,
            ..facts(CallStatus::Completed)
        };
        assert_eq!(classify(f), Outcome::Voicemail);
    }

    #[test]
    fn failed_with_sip_404_is_an_invalid_number() {
        assert_eq!(
            classify(CallFacts { sip_response_code: Some(404), ..facts(CallStatus::Failed) }),
            Outcome::InvalidNumber
        );
        assert_eq!(classify(facts(CallStatus::Failed)), Outcome::Failed);
    }

    #[test]
    fn retries_follow_the_policy_per_outcome() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        assert!(matches!(decide(&p, 5, Outcome::Busy, 1, 0, now), Next::Retry { .. }));
        assert!(matches!(decide(&p, 5, Outcome::Busy, 3, 2, now), Next::Final { state: FinalState::Exhausted, .. }));
        assert!(matches!(decide(&p, 2, Outcome::Busy, 2, 0, now), Next::Final { .. }));
        assert!(matches!(
            decide(&p, 5, Outcome::InvalidNumber, 1, 0, now),
            Next::Final { state: FinalState::Invalid, .. }
        ));
    }
}
