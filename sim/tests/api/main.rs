//! The simulator's tests, one binary: its own REST API and call lifecycle over real HTTP (`sim`), and the
//! product's Twilio client against it with every fault turned on (`twilio_sim`).

mod sim;
mod twilio_sim;
