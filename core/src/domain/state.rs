//! The states of attempts, contacts and campaigns, and the attempt state machine's allowed moves.
//!
//! Every state is an enum stored as `TEXT` (with a `CHECK` listing the same words in the migration), so
//! the hot statements can keep their literals in the SQL text where a partial index must match; nothing
//! outside the store's SQL spells a state. Which component moves a row into each state is documented on
//! the variant; the store's `transitions` module holds the one statement per move.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// Implements `as_str`/`parse`/`Display` and the sqlx mapping (a `TEXT` column) for a unit-variant enum.
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Result<Self, ParseError> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(ParseError::new(stringify!($ty), s)),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        $crate::domain::sql::text_type!($ty, as_str, $ty::parse);
    };
}

/// Where an SMS fallback stands on our side (`messages.state`). Created `pending` by the trigger that
/// ends its contact; moved by the store's `messages` module only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Waits for its send time (the callee's calling window).
    Pending,
    /// Leased by a sender and committed just before the POST.
    Sending,
    /// Twilio answered with a MessageSid; delivery status follows in callbacks.
    Accepted,
    /// The POST's fate is unknown: never sent again (at most one text per contact); a delivery callback
    /// may still bind it.
    Unknown,
    /// Never sent: the number went on a DNC list, or the campaign was canceled.
    Skipped,
    /// Twilio refused it (invalid number, no permission for the country…).
    Rejected,
}

text_enum!(MessageState {
    Pending => "pending",
    Sending => "sending",
    Accepted => "accepted",
    Unknown => "unknown",
    Skipped => "skipped",
    Rejected => "rejected",
});

/// Who placed a call: us, or the contact calling our caller ID back (`attempts.direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Outbound,
    Inbound,
}

text_enum!(Direction { Outbound => "outbound", Inbound => "inbound" });

/// Where a callee who asked for a person stands (`transfers.state`). Moved only by the store's
/// `transfers` module: the callbacks service on keypresses, operator-leg and status callbacks, the
/// dialer's operator loop on rings and the hold limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    /// In the waiting room (a conference, hearing hold), no operator rung yet (or the last one missed).
    Waiting,
    /// One operator's leg is ringing.
    Ringing,
    /// An operator answered: the result `transferred` is recorded.
    Connected,
    /// The operator's conversation is over.
    Ended,
    /// The callee hung up in the waiting room before an operator answered.
    Abandoned,
    /// No operator within the hold limit: the callee was taken out of the room and offered a call back.
    Offered,
    /// The callee asked to be called back (result `callback_requested`).
    CallbackRequested,
    /// Offered a call back, the callee declined or hung up (result `no_operator`).
    NoOperator,
}

text_enum!(TransferState {
    Waiting => "waiting",
    Ringing => "ringing",
    Connected => "connected",
    Ended => "ended",
    Abandoned => "abandoned",
    Offered => "offered",
    CallbackRequested => "callback_requested",
    NoOperator => "no_operator",
});

impl TransferState {
    /// Still seeking an operator: the callee is in the waiting room.
    pub const SEEKING: [TransferState; 2] = [TransferState::Waiting, TransferState::Ringing];
}

/// What the system has an operator doing (`operators.engaged`); whether they take calls at all is their
/// own choice (`operators.available`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorEngaged {
    Idle,
    /// Their Twilio Client is ringing for a waiting callee.
    Ringing,
    /// Talking to a callee.
    Busy,
}

text_enum!(OperatorEngaged { Idle => "idle", Ringing => "ringing", Busy => "busy" });

/// Where an attempt is in its life. Kept apart from its *outcome* (busy, no-answer, machine…).
///
/// ```text
///              claim                dialing               created
///   (none) ──────────► claimed ──────────────► dialing ─────────────► created ──┐
///                       │  │                    │   │                   ▲  │     │ answered
///        released,      │  │ rescued            │   │ parked   created  │  │     │ (status moves
///        blocked        ▼  ▼                    │   └────────► parked ──┘  │     │  forward only)
///                    (row deleted:              │                 │        │ ◄───┘
///                     never sent)               │ not-created     │ not-created / finished
///                                               ▼                 ▼        ▼
///                                          not_created ◄──────────┘    finished
///                                         (proven never             (a terminal status
///                                          created; final)           is known; final)
/// ```
/// `finished` is reached from `dialing`, `created` or `parked` (a callback can beat the dialer's own
/// record of its POST). `finished` and `not_created` are terminal: no transition leaves them, and a
/// `CHECK` ties them to `finished_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// The scheduler claimed the contact and made this row; nothing has been sent.
    Claimed,
    /// The dispatcher committed it just before its POST (pre-POST checks passed); the POST's fate is
    /// unknown until it returns.
    Dialing,
    /// Twilio answered the POST with a CallSid (dispatcher), or a callback proved the call exists.
    Created,
    /// The POST's fate is unknown (timeout, reset, 5xx): never re-sent blindly; reconciliation resolves it.
    Parked,
    /// A terminal call status is known (StatusCallback ingestion, or reconciliation through the API).
    Finished,
    /// Proven never created (rejected by Twilio, or not found by reconciliation): safe to dial again as a
    /// new attempt.
    NotCreated,
}

text_enum!(AttemptState {
    Claimed => "claimed",
    Dialing => "dialing",
    Created => "created",
    Parked => "parked",
    Finished => "finished",
    NotCreated => "not_created",
});

impl AttemptState {
    /// A call was requested and its end is not known yet.
    pub const OPEN: &'static [AttemptState] = &[Self::Dialing, Self::Created, Self::Parked];

    /// No transition leaves this state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::NotCreated)
    }

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }
}

/// One move of the attempt state machine; the store has one guarded statement per move
/// (`store::transitions`), applied only if the row is still in one of [`AttemptTransition::from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptTransition {
    /// Scheduler: the row is made, in `claimed`.
    Claim,
    /// Dispatcher: the pre-POST checks passed; committed before the POST.
    Dialing,
    /// Dispatcher (POST answered) or the first callback: the call exists.
    Created,
    /// Dispatcher: the POST's fate is unknown.
    Parked,
    /// Callbacks: a non-terminal status (ringing, in-progress). A parked attempt's call is now known
    /// (it becomes `created`); the status only ever moves forward.
    Answered,
    /// Callbacks or reconciliation: a terminal status.
    Finished,
    /// Dispatcher (rejected before creation) or reconciliation (not found).
    NotCreated,
    /// Scheduler/dispatcher: a claim given back unsent (outside the window, shutting down): row deleted.
    Released,
    /// Scheduler/dispatcher: a claim that must never be sent (DNC, already notified): row deleted.
    Blocked,
    /// Housekeeping: a claim whose dialer died before sending: row deleted.
    Rescued,
    /// Callbacks: a contact calls our caller ID back. The row is born `finished` (nothing of ours awaits
    /// its end) and carries the CallSid and results like our own calls.
    Inbound,
}

impl AttemptTransition {
    pub const ALL: [AttemptTransition; 11] = [
        Self::Claim,
        Self::Dialing,
        Self::Created,
        Self::Parked,
        Self::Answered,
        Self::Finished,
        Self::NotCreated,
        Self::Released,
        Self::Blocked,
        Self::Rescued,
        Self::Inbound,
    ];

    /// The states this move may leave (written once; the store binds it into each guard).
    pub const fn from(self) -> &'static [AttemptState] {
        use AttemptState::*;
        match self {
            Self::Claim | Self::Inbound => &[],
            Self::Dialing | Self::Released | Self::Blocked | Self::Rescued => &[Claimed],
            Self::Created => &[Dialing, Parked],
            Self::Parked => &[Dialing],
            Self::Answered | Self::Finished => AttemptState::OPEN,
            Self::NotCreated => &[Dialing, Parked],
        }
    }

    /// The state it enters; `None` when the row is deleted (a claim undone before anything was sent).
    /// `Answered` enters `created` only from `parked`; from `dialing` or `created` the state stays.
    pub const fn to(self) -> Option<AttemptState> {
        match self {
            Self::Claim => Some(AttemptState::Claimed),
            Self::Dialing => Some(AttemptState::Dialing),
            Self::Created | Self::Answered => Some(AttemptState::Created),
            Self::Parked => Some(AttemptState::Parked),
            Self::Finished | Self::Inbound => Some(AttemptState::Finished),
            Self::NotCreated => Some(AttemptState::NotCreated),
            Self::Released | Self::Blocked | Self::Rescued => None,
        }
    }
}

/// Where a contact is. `pending`, `claimed` and `calling` are open; the rest are terminal and explain
/// themselves with `final_outcome` and `final_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactState {
    /// Import, a retry decision (callbacks, reconciliation) or a released claim: waits for
    /// `next_attempt_at`.
    Pending,
    /// Scheduler: leased by a dialer; its attempt row exists and nothing is sent yet.
    Claimed,
    /// Dispatcher (pre-POST commit): a call was requested and its end is awaited.
    Calling,
    /// Callbacks/reconciliation: reached (a result, or an answer accepted as final).
    Done,
    /// Callbacks/reconciliation: retries for its outcome, or attempts overall, are used up.
    Exhausted,
    /// Callbacks/reconciliation/dispatcher: the number is invalid or was refused by Twilio.
    Invalid,
    /// Scheduler/dispatcher/keypress: DNC, opted out, or beyond a communication limit.
    Blocked,
    /// Campaign cancel: never called again.
    Canceled,
}

text_enum!(ContactState {
    Pending => "pending",
    Claimed => "claimed",
    Calling => "calling",
    Done => "done",
    Exhausted => "exhausted",
    Invalid => "invalid",
    Blocked => "blocked",
    Canceled => "canceled",
});

impl ContactState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Claimed | Self::Calling)
    }
}

/// A campaign's status, moved by operators (CLI) and by the engine (completion, pauses on account errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Created, not started (`campaign create`).
    Draft,
    /// Dialing: `campaign start`/`resume`, or a recurrence opening it.
    Running,
    /// Operator `campaign pause`, or the dispatcher on an account-level Twilio error.
    Paused,
    /// Housekeeping: every contact finished (non-recurring campaigns).
    Completed,
    /// Operator `campaign cancel`: open contacts end `canceled`. Final.
    Canceled,
}

text_enum!(CampaignStatus {
    Draft => "draft",
    Running => "running",
    Paused => "paused",
    Completed => "completed",
    Canceled => "canceled",
});

impl CampaignStatus {
    /// The statuses a campaign may become `self` from.
    pub const fn allowed_from(self) -> &'static [CampaignStatus] {
        match self {
            Self::Running => &[Self::Draft, Self::Paused, Self::Completed],
            Self::Paused => &[Self::Running],
            Self::Canceled => &[Self::Draft, Self::Running, Self::Paused],
            Self::Completed => &[Self::Running],
            Self::Draft => &[],
        }
    }
}

impl From<super::FinalState> for ContactState {
    fn from(s: super::FinalState) -> Self {
        use super::FinalState as F;
        match s {
            F::Done => Self::Done,
            F::Exhausted => Self::Exhausted,
            F::Invalid => Self::Invalid,
            F::Blocked => Self::Blocked,
            F::Canceled => Self::Canceled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_text() {
        for s in AttemptState::ALL {
            assert_eq!(AttemptState::parse(s.as_str()), Ok(*s));
        }
        for s in ContactState::ALL {
            assert_eq!(ContactState::parse(s.as_str()), Ok(*s));
        }
        for s in CampaignStatus::ALL {
            assert_eq!(CampaignStatus::parse(s.as_str()), Ok(*s));
        }
        assert!(AttemptState::parse("answered").is_err());
    }

    #[test]
    fn no_transition_leaves_a_terminal_state() {
        for t in AttemptTransition::ALL {
            assert!(t.from().iter().all(|s| !s.is_terminal()), "{t:?} leaves a terminal state");
        }
    }

    #[test]
    fn only_unsent_claims_are_deleted_and_only_open_attempts_finish() {
        for t in AttemptTransition::ALL {
            if t.to().is_none() {
                assert_eq!(t.from(), &[AttemptState::Claimed], "{t:?}");
            }
        }
        assert_eq!(AttemptTransition::Finished.from(), AttemptState::OPEN);
        // A parked attempt is never dialled again: the only ways out prove its fate.
        let out_of_parked: Vec<_> =
            AttemptTransition::ALL.into_iter().filter(|t| t.from().contains(&AttemptState::Parked)).collect();
        assert_eq!(
            out_of_parked,
            [
                AttemptTransition::Created,
                AttemptTransition::Answered,
                AttemptTransition::Finished,
                AttemptTransition::NotCreated
            ]
        );
    }

    #[test]
    fn every_state_but_claimed_is_entered_by_some_transition() {
        for s in AttemptState::ALL {
            assert!(AttemptTransition::ALL.iter().any(|t| t.to() == Some(*s)), "{s:?} is unreachable");
        }
    }

    #[test]
    fn a_canceled_campaign_never_runs_again() {
        assert!(!CampaignStatus::Running.allowed_from().contains(&CampaignStatus::Canceled));
        for s in CampaignStatus::ALL {
            assert!(!s.allowed_from().contains(s), "{s:?} from itself");
        }
    }
}
