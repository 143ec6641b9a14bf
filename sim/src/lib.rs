//! The built-in Twilio simulator: a local server speaking Twilio's 2010-04-01 Calls API (Basic auth, CPS
//! queueing with `queue_time`, injectable 429/5xx/timeouts) that dials nobody: each call follows a seeded
//! outcome mix, fetches and walks its TwiML with signed requests, and sends signed StatusCallbacks for the
//! requested events (with optional duplicate / reordered / delayed / lost callbacks). It records every
//! call, so tests can prove that no attempt was dialled twice and no one-second window went over the CPS.
//! Creates can also be refused the way Twilio refuses them: 429 / 20429 at random or in bursts (with
//! `Retry-After`), and 400 / 21215 for destinations without geo permission; a refused create leaves no
//! call in the record and is counted in [`SimStats::create_errors`]. `api_latency` (`--api-latency-ms`) puts
//! Twilio far away: every REST request waits half of it before it is handled and half before it is answered.
//!
//! It also owns phone numbers (`IncomingPhoneNumbers`), sends messages (Messages API: a seeded
//! delivered / undelivered / failed mix, signed status callbacks through the same fault injection as calls),
//! and plays inbound traffic to those numbers: an inbound SMS is posted to the number's `SmsUrl` and its
//! `<Message>` replies come back; an inbound call walks the `VoiceUrl`'s TwiML with the caller's keys.
//! Inbound calls are recorded (direction `inbound`) but never counted in the outbound figures of
//! [`SimStats`] (creates, CPS windows, duplicates).
//!
//! Routes (the Twilio ones need Basic auth; the `/sim/*` ones are the simulator's own):
//! - `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` create, `GET` same path: list (filters, paging)
//! - `GET|POST /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json` fetch / update (`Status=canceled|completed`)
//! - `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` create, `GET` same path: list (`To`, `From`, paging)
//! - `GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json` fetch
//! - `POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json` create, `GET` same path: list
//! - `GET|POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json` fetch / update
//! - `GET /sim/calls` the record of every call (outbound and inbound), `GET /sim/messages` of every message,
//!   `GET /sim/stats` aggregates, `POST /sim/reset` clears them (the numbers stay)
//! - `POST /sim/messages/inbound` `{"from", "to", "body"}`: an SMS to one of our numbers → `{"sid",
//!   "webhook_status", "reply": [...]}`
//! - `POST /sim/calls/inbound` `{"from", "to", "digits", "hangup_after_s"}`: a call to one of our numbers,
//!   answered once it has ended with its [`CallRecord`]
//! - `GET /metrics` Prometheus text, `GET /healthz`
//!
//! Conferences (waiting rooms with operators):
//! - `<Dial><Conference>NAME</Conference></Dial>` joins (creates) the conference NAME; until it starts, the
//!   call hears the `waitUrl` hold music in a loop (a callee hangs up after its hold patience)
//! - `GET /2010-04-01/Accounts/{AccountSid}/Conferences.json`, `GET|POST …/Conferences/{Sid}.json`
//!   (`Status=completed`, `AnnounceUrl`)
//! - `POST|GET …/Conferences/{Sid or FriendlyName}/Participants.json`: a leg to a number or a simulated
//!   operator (`client:NAME`) that joins once answered; `GET|POST|DELETE …/Participants/{CallSid}.json`
//! - `POST …/Calls/{Sid}.json` with `Url`/`Twiml` redirects a call in progress (out of a conference too)
//! - `GET /sim/conferences` the record of every conference ([`ConferenceRecord`])
//! - `GET|POST /sim/operators` `{"name", "answer_after_secs", "talk_secs"}` ([`Operator`]),
//!   `GET|POST /sim/callees` `{"number", "keys", "hold_patience_secs", "keys_after_hold"}` ([`Callee`])

mod calls;
mod conference;
pub mod config;
mod inbound;
mod messages;
mod metrics;
mod numbers;
mod people;
mod server;
mod state;
pub mod stats;
pub mod twiml_walk;
mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use conference::{
    AnnouncementRecord, ConferenceEventRecord, ConferenceRecord, ConferenceStatus, JoinedBy, ParticipantRecord,
    ParticipantStatus,
};
pub use config::{
    Burst, Callee, DigitDist, Faults, Operator, Outcome, OutcomeMix, SecsRange, SimArgs, SimConfig, SmsMix, SmsOutcome,
};
pub use inbound::InboundError;
pub use messages::{InboundSmsOutcome, MessageDirection, MessageRecord, MessageStatus};
pub use state::{rfc2822, CallDirection, CallRecord, TwimlRequest};
pub use stats::{peak_in_window, SimStats};

use state::Sim;

/// A running simulator. Dropping it stops the server and every call task.
pub struct SimHandle {
    /// Where the simulator listens.
    pub addr: SocketAddr,
    sim: Arc<Sim>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:port`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Twilio API base a client should use instead of `https://api.twilio.com`.
    pub fn api_base(&self) -> String {
        self.base_url()
    }

    /// `http://…/2010-04-01/Accounts/{AccountSid}`
    pub fn account_url(&self) -> String {
        format!("{}/2010-04-01/Accounts/{}", self.base_url(), self.sim.config.account_sid)
    }

    pub fn config(&self) -> &SimConfig {
        &self.sim.config
    }

    /// The record of every call since start or the last reset, in creation order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.sim.store.all().iter().map(|e| e.record()).collect()
    }

    /// One call's record.
    pub fn call(&self, sid: &str) -> Option<CallRecord> {
        self.sim.store.get(sid).map(|e| e.record())
    }

    /// The record of every conference since start or the last reset, in creation order.
    pub fn conferences(&self) -> Vec<ConferenceRecord> {
        self.sim.conferences.all().iter().map(|c| c.record()).collect()
    }

    /// Adds or changes a simulated operator (`client:NAME`), like `POST /sim/operators`.
    pub fn set_operator(&self, operator: Operator) -> Result<(), InboundError> {
        self.sim.people.set_operator(operator)
    }

    /// Adds or changes a callee who behaves per number, like `POST /sim/callees`.
    pub fn set_callee(&self, callee: Callee) -> Result<(), InboundError> {
        self.sim.people.set_callee(callee)
    }

    /// The record of every message (outbound and inbound) since start or the last reset, in creation order.
    pub fn messages(&self) -> Vec<MessageRecord> {
        self.sim.messages.all().iter().map(|e| e.record()).collect()
    }

    /// Makes `phone` one of our numbers (or changes the one we own): where its inbound calls (`voice_url`),
    /// inbound messages (`sms_url`) and inbound calls' `completed` StatusCallback go. Returns its `PN…` sid.
    pub fn set_number(
        &self,
        phone: &str,
        voice_url: Option<String>,
        sms_url: Option<String>,
        status_callback: Option<String>,
    ) -> Result<String, InboundError> {
        let number = inbound::parse_number("phone", phone)?;
        for (field, url) in [("voice_url", &voice_url), ("sms_url", &sms_url), ("status_callback", &status_callback)] {
            if let Some(u) = url {
                if !server::is_http_url(u) {
                    return Err(InboundError::BadRequest(format!("{field} is not an http(s) URL: {u}")));
                }
            }
        }
        let n = self.sim.numbers.set(number, voice_url, sms_url, status_callback, self.sim.clock.now());
        Ok(n.sid)
    }

    /// An SMS from `from` to our number `to`: posted, signed, to the number's `SmsUrl` (like
    /// `POST /sim/messages/inbound`).
    pub async fn inbound_sms(&self, from: &str, to: &str, body: &str) -> Result<InboundSmsOutcome, InboundError> {
        let (from, to) = (inbound::parse_number("from", from)?, inbound::parse_number("to", to)?);
        messages::receive_sms(&self.sim, from, to, body.to_string()).await
    }

    /// A call from `from` to our number `to` whose caller keys `digits` (one per `<Gather>` unless its
    /// `numDigits` says more), run to its end (like `POST /sim/calls/inbound`).
    pub async fn inbound_call(&self, from: &str, to: &str, digits: &str) -> Result<CallRecord, InboundError> {
        self.inbound_call_with_hangup(from, to, digits, None).await
    }

    /// [`Self::inbound_call`] where the caller hangs up after `hangup_after_s` simulated seconds.
    pub async fn inbound_call_with_hangup(
        &self,
        from: &str,
        to: &str,
        digits: &str,
        hangup_after_s: Option<f64>,
    ) -> Result<CallRecord, InboundError> {
        let (from, to) = (inbound::parse_number("from", from)?, inbound::parse_number("to", to)?);
        let keys = inbound::parse_keys(digits)?;
        inbound::run_inbound_call(&self.sim, from, to, keys, hangup_after_s).await
    }

    pub fn stats(&self) -> SimStats {
        stats::compute(&self.sim)
    }

    /// Clears the call, message and conference records and the callback counters (calls and messages still
    /// running carry on, unrecorded). Our numbers, operators and callees stay.
    pub fn reset(&self) {
        self.sim.store.clear();
        self.sim.messages.clear();
        self.sim.conferences.clear();
        self.sim.counters.reset();
    }

    /// Prometheus text of the simulator's own metrics.
    pub fn metrics_text(&self) -> String {
        self.sim.metrics.render()
    }

    /// Waits until every recorded call has a terminal status and every message a final one; false on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.sim.store.all().iter().all(|e| e.snapshot().status.is_terminal())
                && self.sim.messages.all().iter().all(|m| m.status().is_final())
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops accepting requests, ends every call task and waits for the server to stop.
    pub async fn shutdown(mut self) {
        self.sim.shutdown.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.sim.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Serves the simulator on `listener` in a background task.
pub async fn spawn(config: SimConfig, listener: TcpListener) -> anyhow::Result<SimHandle> {
    let sim = Sim::new(config)?;
    let addr = listener.local_addr()?;
    let app = server::router(sim.clone());
    let stop = sim.shutdown.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %e, "simulator server failed");
        }
    });
    Ok(SimHandle { addr, sim, task: Some(task) })
}

/// `dialer sim`: binds `listen` and serves until ctrl-c.
pub async fn run(args: SimArgs, listen: SocketAddr) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let listener = TcpListener::bind(listen).await?;
    let handle = spawn(config, listener).await?;
    tracing::info!(
        addr = %handle.addr,
        account_sid = %handle.config().account_sid,
        cps = handle.config().cps,
        speed = handle.config().speed,
        "Twilio simulator listening"
    );
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down the Twilio simulator");
    handle.shutdown().await;
    Ok(())
}
