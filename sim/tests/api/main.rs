//! The simulator's tests, one binary: its own REST API and call lifecycle over real HTTP (`sim`), the product's
//! Twilio client against it with every fault turned on (`twilio_sim`), messages, numbers and inbound traffic
//! (`sms`), conferences with operators, waiting rooms and live redirects (`conference`), and the official
//! Python helper library against it (`helper_library`); `support` holds what they share (a simulator, an
//! HTTP client, a local callbacks service that checks signatures).

mod conference;
mod helper_library;
mod sim;
mod sms;
mod support;
mod twilio_sim;
