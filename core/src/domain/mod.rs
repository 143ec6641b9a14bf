//! Domain types: everything below the edges works with these, never with raw strings.

pub mod apikey;
mod call;
pub mod campaign;
pub mod compliance;
pub mod holidays;
pub mod numberzone;
pub mod operators;
mod outcome;
mod phone;
mod recurrence;
pub mod script;
mod settle;
pub mod sms;
mod sql;
mod state;
mod token;
pub mod webhook;
pub mod window;
mod zone;

pub use apikey::{ApiKeySecret, Scope};
pub use call::{AnsweredBy, CallSid, CallStatus, ParseError};
pub use campaign::{AmdMode, CallingWindow, CampaignSpec, RetryPolicy, RetryRule};
pub use outcome::{classify, decide, CallFacts, FinalState, Next, Outcome};
pub use phone::{PhoneError, E164};
pub use recurrence::latest_occurrence;
pub use settle::{settle, SettleDecision, SettleInput, OPTED_OUT_RESULT, TRANSFERRED_RESULT};
pub use state::{
    AttemptState, AttemptTransition, CampaignStatus, ContactState, Direction, MessageState, OperatorEngaged,
    TransferState,
};
pub use token::{AttemptToken, MessageToken, TokenError, TokenKey};
pub use zone::Tz;
