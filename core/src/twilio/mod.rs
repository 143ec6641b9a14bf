//! Twilio protocol layer: REST client, request signatures, TwiML. Scripts, menus and retry policy never
//! see a raw Twilio string: everything is mapped to domain types here.

pub mod access_token;
pub mod client;
pub mod error;
pub mod signature;
pub mod twiml;

pub use client::{
    CallResource, CreateCall, CreateMessage, CreateParticipant, HttpMethod, ListCalls, MachineDetection,
    MessageResource, ParticipantResource, StartTimeAfter, StatusCallbackEvent, TwilioClient, UpdateStatus,
};
pub use error::{ApiError, RetryClass, TransportKind, TwilioError};
