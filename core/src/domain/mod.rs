//! Domain types: everything below the edges works with these, never with raw strings.

mod call;
pub mod campaign;
mod outcome;
mod phone;
pub mod script;
mod token;
pub mod window;

pub use call::{AnsweredBy, CallSid, CallStatus, ParseError};
pub use campaign::{AmdMode, CallingWindow, CampaignSpec, RetryPolicy, RetryRule};
pub use outcome::{classify, decide, CallFacts, FinalState, Next, Outcome};
pub use phone::{PhoneError, E164};
pub use token::{AttemptToken, TokenError, TokenKey};
