//! The decision made when an attempt's call ends: its outcome, what happens to the contact next, and the
//! keypress result the contact keeps. Pure: the store reads what it needs under lock, calls [`settle`],
//! and writes exactly what was decided.

use chrono::{DateTime, Utc};

use super::{classify, decide, AnsweredBy, CallFacts, CallStatus, FinalState, Next, Outcome, RetryPolicy};

/// `attempts.result` of an attempt whose callee pressed the opt-out key.
pub const OPTED_OUT_RESULT: &str = "opted_out";
/// `attempts.result` of an attempt transferred to a person (`<Dial>`): the callee was reached.
pub const TRANSFERRED_RESULT: &str = "transferred";

/// What is known about an attempt when its terminal status arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleInput<'a> {
    /// The terminal status.
    pub status: CallStatus,
    /// From the terminal event, else what synchronous or async AMD recorded earlier.
    pub answered_by: Option<AnsweredBy>,
    pub sip_response_code: Option<i32>,
    /// The attempt's recorded keypress result (`OPTED_OUT_RESULT` for an opt-out), if any.
    pub recorded_result: Option<&'a str>,
    /// The voicemail message was played to a machine.
    pub voicemail_left: bool,
    /// The campaign was canceled while the call was in flight: the contact is never retried.
    pub campaign_canceled: bool,
}

impl SettleInput<'_> {
    /// The attempt's outcome. A machine's digits are never a result, and voicemail never a confirmation.
    pub fn outcome(&self) -> Outcome {
        let opted_out = self.recorded_result == Some(OPTED_OUT_RESULT);
        classify(CallFacts {
            status: self.status,
            answered_by: self.answered_by,
            sip_response_code: self.sip_response_code,
            has_result: self.recorded_result.is_some() && !opted_out,
            opted_out,
            voicemail_left: self.voicemail_left,
        })
    }
}

/// What settling decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleDecision {
    pub outcome: Outcome,
    /// Retry at a time, or the contact's final state and reason.
    pub next: Next,
    /// The result the contact keeps when it ends here: only a person's keypress or opt-out.
    pub contact_result: Option<String>,
}

/// Decides an attempt's outcome and the contact's next step under the campaign's retry policy.
/// `attempts_made` counts this attempt; `same_outcome_before` counts the contact's earlier finished
/// attempts with the same outcome (as [`SettleInput::outcome`] gives it).
pub fn settle(
    input: &SettleInput<'_>,
    policy: &RetryPolicy,
    max_attempts: i32,
    attempts_made: i32,
    same_outcome_before: i32,
    now: DateTime<Utc>,
) -> SettleDecision {
    let outcome = input.outcome();
    let next = match decide(policy, max_attempts, outcome, attempts_made, same_outcome_before, now) {
        // A canceled campaign never sends a contact back to pending: it ends here, canceled.
        Next::Retry { .. } if input.campaign_canceled => {
            Next::Final { state: FinalState::Canceled, reason: "campaign canceled".into() }
        }
        next => next,
    };
    let contact_result = match (&next, outcome) {
        (Next::Final { .. }, Outcome::AnsweredResult | Outcome::OptedOut) => input.recorded_result.map(str::to_string),
        _ => None,
    };
    SettleDecision { outcome, next, contact_result }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(status: CallStatus) -> SettleInput<'static> {
        SettleInput {
            status,
            answered_by: None,
            sip_response_code: None,
            recorded_result: None,
            voicemail_left: false,
            campaign_canceled: false,
        }
    }

    fn run(i: &SettleInput<'_>, attempts_made: i32, before: i32) -> SettleDecision {
        settle(i, &RetryPolicy::default(), 5, attempts_made, before, Utc::now())
    }

    #[test]
    fn a_keypress_by_a_person_is_done_with_its_result() {
        let d = run(&SettleInput { recorded_result: Some("confirmed"), ..input(CallStatus::Completed) }, 1, 0);
        assert_eq!(d.outcome, Outcome::AnsweredResult);
        assert!(matches!(d.next, Next::Final { state: FinalState::Done, .. }));
        assert_eq!(d.contact_result.as_deref(), Some("confirmed"));
    }

    #[test]
    fn a_machines_digits_are_never_a_result() {
        let i = SettleInput {
            answered_by: Some(AnsweredBy::MachineStart),
            recorded_result: Some("confirmed"),
            ..input(CallStatus::Completed)
        };
        let d = run(&i, 1, 0);
        assert_eq!(d.outcome, Outcome::Machine);
        assert_eq!(d.contact_result, None);
    }

    #[test]
    fn voicemail_left_is_voicemail_not_a_confirmation() {
        let i = SettleInput {
            answered_by: Some(AnsweredBy::MachineEndBeep),
            voicemail_left: true,
            recorded_result: Some("confirmed"),
            ..input(CallStatus::Completed)
        };
        assert_eq!(run(&i, 1, 0).outcome, Outcome::Voicemail);
    }

    #[test]
    fn an_opt_out_blocks_the_contact_and_keeps_the_result() {
        let d = run(&SettleInput { recorded_result: Some(OPTED_OUT_RESULT), ..input(CallStatus::Completed) }, 1, 0);
        assert_eq!(d.outcome, Outcome::OptedOut);
        assert!(matches!(d.next, Next::Final { state: FinalState::Blocked, .. }));
        assert_eq!(d.contact_result.as_deref(), Some(OPTED_OUT_RESULT));
    }

    #[test]
    fn busy_retries_until_its_rule_is_used_up() {
        let now = Utc::now();
        let p = RetryPolicy::default();
        let busy = input(CallStatus::Busy);
        let rule = crate::domain::campaign::retry_rule(&p, Outcome::Busy).expect("busy retries by default");
        match settle(&busy, &p, 10, 1, 0, now).next {
            Next::Retry { at, .. } => assert_eq!(at, now + chrono::Duration::seconds(rule.delay_s)),
            other => panic!("expected a retry, got {other:?}"),
        }
        let d = settle(&busy, &p, 10, 1 + rule.max, rule.max, now);
        assert!(matches!(d.next, Next::Final { state: FinalState::Exhausted, .. }));
        assert_eq!(d.contact_result, None);
    }

    #[test]
    fn a_call_in_flight_at_cancel_never_sends_its_contact_back_to_pending() {
        let canceled = SettleInput { campaign_canceled: true, ..input(CallStatus::Busy) };
        let d = run(&canceled, 1, 0);
        assert_eq!(d.outcome, Outcome::Busy);
        assert!(matches!(d.next, Next::Final { state: FinalState::Canceled, .. }), "{:?}", d.next);
        // A result given before the cancel still counts.
        let reached =
            SettleInput { recorded_result: Some("confirmed"), campaign_canceled: true, ..input(CallStatus::Completed) };
        assert!(matches!(run(&reached, 1, 0).next, Next::Final { state: FinalState::Done, .. }));
    }

    #[test]
    fn max_attempts_ends_any_retry() {
        let d = settle(&input(CallStatus::NoAnswer), &RetryPolicy::default(), 2, 2, 0, Utc::now());
        assert!(matches!(d.next, Next::Final { state: FinalState::Exhausted, .. }));
    }

    #[test]
    fn sip_404_is_an_invalid_number_and_final() {
        let d = run(&SettleInput { sip_response_code: Some(404), ..input(CallStatus::Failed) }, 1, 0);
        assert_eq!(d.outcome, Outcome::InvalidNumber);
        assert!(matches!(d.next, Next::Final { state: FinalState::Invalid, .. }));
    }

    #[test]
    fn a_person_who_pressed_nothing_is_done_without_a_result() {
        let d = run(&input(CallStatus::Completed), 1, 0);
        assert_eq!(d.outcome, Outcome::AnsweredNoResult);
        assert_eq!(d.contact_result, None);
    }
}
