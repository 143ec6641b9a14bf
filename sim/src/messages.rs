//! Twilio's 2010-04-01 Messages API and inbound SMS. An outbound message follows the seeded SMS mix:
//! queued → sending → sent → delivered | undelivered, or queued → failed, with signed status callbacks for
//! `sent` and the final status through the same fault injection as call StatusCallbacks. An inbound message
//! (`POST /sim/messages/inbound`) is posted, signed, to our number's `SmsUrl`, and the `<Message>` replies
//! of its TwiML answer are handed back.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::calls::{country_of, FaultySink};
use super::config::SmsOutcome;
use super::inbound::{our_number, parse_json, parse_number, InboundError};
use super::server::{
    admit, bad_request, callback_url, http_method, non_empty, normalise_number, not_found, parse_form, parse_query,
    refuse_or_seed, respond, serve, ApiError, ApiResult, Paging,
};
use super::state::{lock, rfc2822, rfc3339_ms, stable_hash, HasSid, SidStore, Sim};
use super::twiml_walk::message_bodies;
use super::webhook::{fetch_twiml, Params};
use dialer_core::domain::E164;

/// Twilio's longest message body, characters.
const MAX_BODY_CHARS: usize = 1600;

/// A message's status (`message_enum_status`, the part the simulator uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Received,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Failed => "failed",
            MessageStatus::Received => "received",
        }
    }

    /// No further change will happen.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MessageStatus::Delivered | MessageStatus::Undelivered | MessageStatus::Failed | MessageStatus::Received
        )
    }
}

/// `outbound-api` (created through the REST API) or `inbound` (`POST /sim/messages/inbound`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageDirection {
    OutboundApi,
    Inbound,
}

impl MessageDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageDirection::OutboundApi => "outbound-api",
            MessageDirection::Inbound => "inbound",
        }
    }
}

/// The simulator's record of one message (`GET /sim/messages`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub sid: String,
    pub direction: MessageDirection,
    pub to: String,
    /// `None` for a message sent with only a `MessagingServiceSid`.
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub body: String,
    pub num_segments: u32,
    /// The current status: final once delivery is over.
    pub status: MessageStatus,
    pub error_code: Option<u32>,
    /// RFC 3339, ms.
    pub created_at: String,
    pub status_callback: Option<String>,
    /// The status of every callback sent (queued for delivery: duplicates and delays are not repeated here).
    pub callbacks: Vec<MessageStatus>,
    /// The status of every callback the lost-callback fault dropped.
    pub lost_callbacks: Vec<MessageStatus>,
    /// Inbound: the HTTP status our `SmsUrl` answered with (`None`: no answer).
    pub webhook_status: Option<u16>,
    /// Inbound: the bodies of the `<Message>` replies in the TwiML answer.
    pub reply: Vec<String>,
    /// Inbound: why the webhook or its answer was unusable, if it was.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
struct MessageMut {
    status: MessageStatus,
    updated_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    error_code: Option<u32>,
    callbacks: Vec<MessageStatus>,
    lost_callbacks: Vec<MessageStatus>,
    webhook_status: Option<u16>,
    reply: Vec<String>,
    error: Option<String>,
}

/// One message: what was asked, and what happened so far.
#[derive(Debug)]
pub(crate) struct MessageEntry {
    sid: String,
    direction: MessageDirection,
    created_at: DateTime<Utc>,
    to: E164,
    from: Option<E164>,
    messaging_service_sid: Option<String>,
    body: String,
    status_callback: Option<String>,
    status_callback_method: String,
    state: Mutex<MessageMut>,
}

impl MessageEntry {
    fn new(direction: MessageDirection, req: MessageRequest, status: MessageStatus, now: DateTime<Utc>) -> Self {
        Self {
            sid: format!("SM{}", uuid::Uuid::new_v4().simple()),
            direction,
            created_at: now,
            to: req.to,
            from: req.from,
            messaging_service_sid: req.messaging_service_sid,
            body: req.body,
            status_callback: req.status_callback,
            status_callback_method: req.status_callback_method,
            state: Mutex::new(MessageMut {
                status,
                updated_at: now,
                sent_at: None,
                error_code: None,
                callbacks: Vec::new(),
                lost_callbacks: Vec::new(),
                webhook_status: None,
                reply: Vec::new(),
                error: None,
            }),
        }
    }

    pub fn status(&self) -> MessageStatus {
        lock(&self.state).status
    }

    pub fn direction(&self) -> MessageDirection {
        self.direction
    }

    pub fn record(&self) -> MessageRecord {
        let s = lock(&self.state).clone();
        MessageRecord {
            sid: self.sid.clone(),
            direction: self.direction,
            to: self.to.to_string(),
            from: self.from.as_ref().map(E164::to_string),
            messaging_service_sid: self.messaging_service_sid.clone(),
            body: self.body.clone(),
            num_segments: num_segments(&self.body),
            status: s.status,
            error_code: s.error_code,
            created_at: rfc3339_ms(self.created_at),
            status_callback: self.status_callback.clone(),
            callbacks: s.callbacks,
            lost_callbacks: s.lost_callbacks,
            webhook_status: s.webhook_status,
            reply: s.reply,
            error: s.error,
        }
    }
}

impl HasSid for MessageEntry {
    fn sid(&self) -> &str {
        &self.sid
    }
}

/// Every message since start (or the last reset), in creation order.
pub(crate) type MessageStore = SidStore<MessageEntry>;

/// GSM-7's basic character set (and its extension table, which costs two septets).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXT: &str = "^{}\\[~]|€\x0c";

/// SMS segments: GSM-7 fits 160 septets in one segment and 153 per segment beyond; anything else (e.g.
/// Japanese) is UCS-2, 70 characters in one and 67 per segment beyond.
pub(crate) fn num_segments(body: &str) -> u32 {
    let septets: Option<usize> = body
        .chars()
        .map(|c| {
            if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXT.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .sum();
    let (units, single, multi) = match septets {
        Some(n) => (n, 160, 153),
        None => (body.encode_utf16().count(), 70, 67),
    };
    if units <= single {
        1
    } else {
        units.div_ceil(multi) as u32
    }
}

/// The create parameters the simulator acts on.
#[derive(Debug, Clone)]
struct MessageRequest {
    to: E164,
    from: Option<E164>,
    messaging_service_sid: Option<String>,
    body: String,
    status_callback: Option<String>,
    status_callback_method: String,
}

fn parse_create(sim: &Sim, form: &[(String, String)]) -> Result<MessageRequest, ApiError> {
    let to = non_empty(form, "To").ok_or_else(|| bad_request(21604, "A 'To' phone number is required."))?;
    let body = super::server::first(form, "Body")
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| bad_request(21602, "Message body is required."))?;
    let from = non_empty(form, "From");
    let messaging_service_sid = non_empty(form, "MessagingServiceSid");
    if from.is_none() && messaging_service_sid.is_none() {
        return Err(bad_request(21603, "A 'From' or 'MessagingServiceSid' parameter is required"));
    }
    let to = E164::parse(to, None).map_err(|_| bad_request(21211, format!("Invalid 'To' Phone Number: {to}")))?;
    if sim.config.faults.geo_blocked_prefix(to.as_str()).is_some() {
        return Err(bad_request(
            21408,
            format!("Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}"),
        ));
    }
    let from = from
        .map(|f| E164::parse(f, None).map_err(|_| bad_request(21212, format!("Invalid 'From' Phone Number: {f}"))))
        .transpose()?;
    if let Some(mg) = messaging_service_sid {
        if !(mg.len() == 34 && mg.starts_with("MG") && mg[2..].bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(bad_request(21701, format!("The Messaging Service Sid {mg} is invalid.")));
        }
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(bad_request(21617, "The concatenated message body exceeds the 1600 character limit."));
    }
    let status_callback = callback_url(form, "StatusCallback")?;
    Ok(MessageRequest {
        to,
        from,
        messaging_service_sid: messaging_service_sid.map(str::to_string),
        body: body.to_string(),
        status_callback,
        status_callback_method: http_method(form, "StatusCallbackMethod")?,
    })
}

/// The resource (`api.v2010.account.message`).
fn message_json(sim: &Sim, e: &MessageEntry) -> Value {
    let s = lock(&e.state).clone();
    let account = &sim.config.account_sid;
    let base = format!("/2010-04-01/Accounts/{account}/Messages/{}", e.sid);
    json!({
        "body": e.body,
        "num_segments": num_segments(&e.body).to_string(),
        "direction": e.direction.as_str(),
        "from": e.from.as_ref().map(E164::as_str),
        "to": e.to.as_str(),
        "date_updated": rfc2822(s.updated_at),
        "price": null,
        "error_message": null,
        "uri": format!("{base}.json"),
        "account_sid": account,
        "num_media": "0",
        "status": s.status.as_str(),
        "messaging_service_sid": e.messaging_service_sid,
        "sid": e.sid,
        "date_sent": s.sent_at.map(rfc2822),
        "date_created": rfc2822(e.created_at),
        "error_code": s.error_code,
        "price_unit": "USD",
        "api_version": "2010-04-01",
        "subresource_uris": {
            "media": format!("{base}/Media.json"),
            "feedback": format!("{base}/Feedback.json"),
        },
    })
}

pub(crate) async fn create(
    State(sim): State<Arc<Sim>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = create_inner(&sim, &account_sid, &headers, &body);
    if let Err(e) = &r {
        *lock(&sim.counters.message_create_errors).entry(e.code).or_default() += 1;
    }
    respond(&sim, "message_create", r)
}

fn create_inner(sim: &Arc<Sim>, account_sid: &str, headers: &HeaderMap, body: &[u8]) -> ApiResult {
    let _slot = admit(sim, headers, account_sid)?;
    let req = parse_create(sim, &parse_form(body))?;
    // Only the 429 refusals apply to messages: nothing is created, so a client may simply retry.
    let fault_seed = refuse_or_seed(sim)?;
    let entry = Arc::new(MessageEntry::new(MessageDirection::OutboundApi, req, MessageStatus::Queued, sim.clock.now()));
    sim.messages.insert(entry.clone());
    sim.metrics.messages_created.inc();
    tokio::spawn(deliver(sim.clone(), entry.clone(), fault_seed));
    Ok((StatusCode::CREATED, Json(message_json(sim, &entry))).into_response())
}

/// The status callback parameters of a message.
fn callback_params(sim: &Sim, e: &MessageEntry, status: MessageStatus, error_code: Option<u32>) -> Params {
    let mut p: Params = vec![
        ("MessageSid".into(), e.sid.clone()),
        ("SmsSid".into(), e.sid.clone()),
        ("SmsStatus".into(), status.as_str().into()),
        ("MessageStatus".into(), status.as_str().into()),
        ("AccountSid".into(), sim.config.account_sid.clone()),
        ("To".into(), e.to.to_string()),
        ("ApiVersion".into(), "2010-04-01".into()),
    ];
    if let Some(f) = &e.from {
        p.push(("From".into(), f.to_string()));
    }
    if let Some(mg) = &e.messaging_service_sid {
        p.push(("MessagingServiceSid".into(), mg.clone()));
    }
    if let Some(code) = error_code {
        p.push(("ErrorCode".into(), code.to_string()));
    }
    p
}

/// One outbound message's delivery, as a task.
async fn deliver(sim: Arc<Sim>, entry: Arc<MessageEntry>, fault_seed: u64) {
    // Seeded per destination, like calls: a number that cannot take messages keeps refusing them.
    let mut rng = match sim.config.seed {
        Some(seed) => ChaCha8Rng::seed_from_u64(seed ^ stable_hash(entry.to.as_str()) ^ 0x5a5a_0005_0005),
        None => ChaCha8Rng::from_entropy(),
    };
    let outcome = sim.config.sms.draw(&mut rng);
    let mut sink = entry
        .status_callback
        .clone()
        .map(|url| FaultySink::new(&sim, url, entry.status_callback_method.clone(), fault_seed));
    let ok = match outcome {
        SmsOutcome::Failed => advance(&sim, &entry, 1.0, MessageStatus::Failed, Some(30008), &mut sink).await,
        SmsOutcome::Delivered | SmsOutcome::Undelivered => {
            let last = match outcome {
                SmsOutcome::Delivered => (MessageStatus::Delivered, None),
                _ => (MessageStatus::Undelivered, Some([30003, 30005, 30006][rng.gen_range(0..3)])),
            };
            advance(&sim, &entry, 0.2, MessageStatus::Sending, None, &mut sink).await
                && advance(&sim, &entry, 0.8, MessageStatus::Sent, None, &mut sink).await
                && advance(&sim, &entry, 2.0, last.0, last.1, &mut sink).await
        }
    };
    if ok {
        if let Some(sink) = sink {
            sink.finish();
        }
    }
}

/// Moves a message to `status` after `secs` simulated seconds, with its callback for `sent` and the final
/// status (Twilio sends none for `queued` and `sending` on an API create). False on shutdown.
async fn advance(
    sim: &Sim,
    entry: &MessageEntry,
    secs: f64,
    status: MessageStatus,
    error_code: Option<u32>,
    sink: &mut Option<FaultySink>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(sim.config.real(secs)) => {}
        _ = sim.shutdown.cancelled() => return false,
    }
    let now = sim.clock.now();
    {
        let mut s = lock(&entry.state);
        s.status = status;
        s.updated_at = now;
        s.error_code = error_code;
        if status == MessageStatus::Sent {
            s.sent_at = Some(now);
        }
    }
    if status.is_final() {
        sim.metrics.messages_ended.with_label_values(&[status.as_str()]).inc();
    }
    let callback = status == MessageStatus::Sent || status.is_final();
    if let (true, Some(sink)) = (callback, sink.as_mut()) {
        let sent = sink.push(callback_params(sim, entry, status, error_code));
        let mut s = lock(&entry.state);
        if sent {
            s.callbacks.push(status);
        } else {
            s.lost_callbacks.push(status);
        }
    }
    true
}

pub(crate) async fn fetch(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, message)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(&sim, &headers, &account_sid, "message_fetch", || {
        let path = format!("/2010-04-01/Accounts/{account_sid}/Messages/{message}");
        let sid = message.strip_suffix(".json").ok_or_else(|| not_found(&path))?;
        let e = sim.messages.get(sid).ok_or_else(|| not_found(&path))?;
        Ok(Json(message_json(&sim, &e)).into_response())
    })
}

pub(crate) async fn list(
    State(sim): State<Arc<Sim>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    serve(&sim, &headers, &account_sid, "message_list", || {
        let q = parse_query(query);
        let paging = Paging::parse(&q)?;
        let to = non_empty(&q, "To").map(normalise_number);
        let from = non_empty(&q, "From").map(normalise_number);
        // Newest first, like Twilio.
        let matching: Vec<Arc<MessageEntry>> = sim
            .messages
            .all()
            .into_iter()
            .rev()
            .filter(|e| to.as_deref().is_none_or(|t| t == e.to.as_str()))
            .filter(|e| from.as_deref().is_none_or(|f| e.from.as_ref().is_some_and(|x| x.as_str() == f)))
            .collect();
        let path = format!("/2010-04-01/Accounts/{account_sid}/Messages.json");
        let body = paging.page(&path, &q, "messages", matching, |e| message_json(&sim, e));
        Ok(Json(body).into_response())
    })
}

pub(crate) async fn sim_messages(State(sim): State<Arc<Sim>>) -> Response {
    let records: Vec<MessageRecord> = sim.messages.all().iter().map(|e| e.record()).collect();
    Json(records).into_response()
}

/// What `POST /sim/messages/inbound` (and [`crate::SimHandle::inbound_sms`]) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundSmsOutcome {
    /// The inbound message's `MessageSid`.
    pub sid: String,
    /// The HTTP status our `SmsUrl` answered with; `None` when it did not answer.
    pub webhook_status: Option<u16>,
    /// The bodies of the `<Message>` replies in its TwiML.
    pub reply: Vec<String>,
    /// Why the webhook or its answer was unusable, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InboundSmsBody {
    from: String,
    to: String,
    #[serde(default)]
    body: String,
}

/// Delivers one inbound message to our number `to`'s `SmsUrl` and records it.
pub(crate) async fn receive_sms(
    sim: &Arc<Sim>,
    from: E164,
    to: E164,
    body: String,
) -> Result<InboundSmsOutcome, InboundError> {
    let number = our_number(sim, &to)?;
    let url = number.sms_url.clone().ok_or_else(|| InboundError::NoUrl { number: to.to_string(), field: "SmsUrl" })?;
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(InboundError::BadRequest(format!("body exceeds {MAX_BODY_CHARS} characters")));
    }
    let req = MessageRequest {
        to,
        from: Some(from),
        messaging_service_sid: None,
        body,
        status_callback: None,
        status_callback_method: "POST".into(),
    };
    let entry = Arc::new(MessageEntry::new(MessageDirection::Inbound, req, MessageStatus::Received, sim.clock.now()));
    sim.messages.insert(entry.clone());
    sim.metrics.messages_received.inc();
    let (from, to) = (entry.from.clone().unwrap_or_else(|| entry.to.clone()), &entry.to);
    let params: Params = vec![
        ("MessageSid".into(), entry.sid.clone()),
        ("SmsSid".into(), entry.sid.clone()),
        ("SmsMessageSid".into(), entry.sid.clone()),
        ("AccountSid".into(), sim.config.account_sid.clone()),
        ("From".into(), from.to_string()),
        ("To".into(), to.to_string()),
        ("Body".into(), entry.body.clone()),
        ("NumMedia".into(), "0".into()),
        ("NumSegments".into(), num_segments(&entry.body).to_string()),
        ("SmsStatus".into(), "received".into()),
        ("ApiVersion".into(), "2010-04-01".into()),
        ("FromCountry".into(), country_of(&from)),
        ("FromState".into(), String::new()),
        ("FromCity".into(), String::new()),
        ("FromZip".into(), String::new()),
        ("ToCountry".into(), country_of(to)),
        ("ToState".into(), String::new()),
        ("ToCity".into(), String::new()),
        ("ToZip".into(), String::new()),
    ];
    let answer = fetch_twiml(sim, &url, &number.sms_method, &params).await;
    let (reply, error) = match answer.body.and_then(|xml| message_bodies(&xml)) {
        Ok(reply) => (reply, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    {
        let mut s = lock(&entry.state);
        s.webhook_status = answer.status;
        s.reply = reply.clone();
        s.error = error.clone();
    }
    Ok(InboundSmsOutcome { sid: entry.sid.clone(), webhook_status: answer.status, reply, error })
}

pub(crate) async fn sim_inbound(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let r = async {
        let b: InboundSmsBody = parse_json(&body)?;
        let from = parse_number("from", &b.from)?;
        let to = parse_number("to", &b.to)?;
        receive_sms(&sim, from, to, b.body).await
    }
    .await;
    match r {
        Ok(o) => Json(o).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_gsm7_and_ucs2_limits() {
        assert_eq!(num_segments("hello"), 1);
        assert_eq!(num_segments(&"a".repeat(160)), 1);
        assert_eq!(num_segments(&"a".repeat(161)), 2);
        assert_eq!(num_segments(&"a".repeat(306)), 2);
        assert_eq!(num_segments(&"a".repeat(307)), 3);
        assert_eq!(num_segments(&"€".repeat(80)), 1, "extension characters take two septets");
        assert_eq!(num_segments(&"€".repeat(81)), 2);
        assert_eq!(num_segments(&"あ".repeat(70)), 1);
        assert_eq!(num_segments(&"あ".repeat(71)), 2);
    }

    #[test]
    fn final_statuses() {
        assert!(!MessageStatus::Sent.is_final());
        assert!(MessageStatus::Undelivered.is_final());
        assert_eq!(serde_json::to_string(&MessageDirection::OutboundApi).unwrap(), "\"outbound-api\"");
    }
}
