//! REST client for Twilio's Calls resource (`/2010-04-01/Accounts/{Sid}/Calls…`).
//!
//! Every failure is a [`TwilioError`] whose [`TwilioError::class`] says whether a call may exist. The
//! client never retries a request itself: retrying `POST Calls.json` is the caller's decision, made with
//! that class (DESIGN.md guarantee #1).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use super::error::{snippet, ApiError, TwilioError};
use crate::domain::{AnsweredBy, CallSid, CallStatus, E164};

/// API version prefix of every path.
const API: &str = "2010-04-01";
/// Upper bound on list pages followed in one `list_calls`, so a looping `next_page_uri` cannot hang us.
const MAX_PAGES: usize = 1000;

/// `GET` or `POST`, for Twilio's `*Method` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    Get,
    Post,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// A `StatusCallbackEvent` (the spec's `call_enum_event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCallbackEvent {
    Initiated,
    Ringing,
    /// Arrives at the callback as `CallStatus=in-progress`.
    Answered,
    Completed,
}

impl StatusCallbackEvent {
    pub const ALL: [StatusCallbackEvent; 4] = [Self::Initiated, Self::Ringing, Self::Answered, Self::Completed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::Answered => "answered",
            Self::Completed => "completed",
        }
    }
}

/// `MachineDetection`: answer with `AnsweredBy` as soon as known, or wait for the greeting to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MachineDetection {
    Enable,
    DetectMessageEnd,
}

impl MachineDetection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enable => "Enable",
            Self::DetectMessageEnd => "DetectMessageEnd",
        }
    }
}

/// Target of `update_call` (the spec's `call_enum_update_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateStatus {
    /// Ends a queued or ringing call.
    Canceled,
    /// Hangs up a call in progress.
    Completed,
}

impl UpdateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Canceled => "canceled",
            Self::Completed => "completed",
        }
    }
}

/// The parameters of `POST Calls.json` that the dialer uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    pub to: E164,
    pub from: E164,
    /// TwiML URL (`/twiml/{token}`).
    pub url: String,
    pub method: Option<HttpMethod>,
    pub status_callback: Option<String>,
    pub status_callback_method: Option<HttpMethod>,
    /// Sent as one `StatusCallbackEvent` pair per event, in this order.
    pub status_callback_events: Vec<StatusCallbackEvent>,
    /// Seconds to ring before `no-answer`.
    pub timeout: Option<u32>,
    /// Maximum call length in seconds.
    pub time_limit: Option<u32>,
    pub machine_detection: Option<MachineDetection>,
    pub async_amd: Option<bool>,
    pub async_amd_status_callback: Option<String>,
    pub async_amd_status_callback_method: Option<HttpMethod>,
    pub machine_detection_timeout: Option<u32>,
}

impl CreateCall {
    /// A request with only the required parameters and the TwiML URL.
    pub fn new(to: E164, from: E164, url: impl Into<String>) -> Self {
        Self {
            to,
            from,
            url: url.into(),
            method: None,
            status_callback: None,
            status_callback_method: None,
            status_callback_events: Vec::new(),
            timeout: None,
            time_limit: None,
            machine_detection: None,
            async_amd: None,
            async_amd_status_callback: None,
            async_amd_status_callback_method: None,
            machine_detection_timeout: None,
        }
    }

    /// The exact form pairs sent, in order. Repeated keys (`StatusCallbackEvent`) appear once per value;
    /// absent options are left out, so Twilio's defaults apply.
    pub fn to_form(&self) -> Vec<(String, String)> {
        let mut form: Vec<(String, String)> = Vec::with_capacity(16);
        let mut put = |k: &str, v: &str| form.push((k.to_string(), v.to_string()));
        put("To", self.to.as_str());
        put("From", self.from.as_str());
        put("Url", &self.url);
        if let Some(m) = self.method {
            put("Method", m.as_str());
        }
        if let Some(cb) = &self.status_callback {
            put("StatusCallback", cb);
        }
        if let Some(m) = self.status_callback_method {
            put("StatusCallbackMethod", m.as_str());
        }
        for ev in &self.status_callback_events {
            put("StatusCallbackEvent", ev.as_str());
        }
        if let Some(t) = self.timeout {
            put("Timeout", &t.to_string());
        }
        if let Some(t) = self.time_limit {
            put("TimeLimit", &t.to_string());
        }
        if let Some(md) = self.machine_detection {
            put("MachineDetection", md.as_str());
        }
        if let Some(t) = self.machine_detection_timeout {
            put("MachineDetectionTimeout", &t.to_string());
        }
        if let Some(a) = self.async_amd {
            put("AsyncAmd", if a { "true" } else { "false" });
        }
        if let Some(cb) = &self.async_amd_status_callback {
            put("AsyncAmdStatusCallback", cb);
        }
        if let Some(m) = self.async_amd_status_callback_method {
            put("AsyncAmdStatusCallbackMethod", m.as_str());
        }
        form
    }
}

/// Lower bound for `StartTime>`: a UTC date (`2009-07-06`, the spec's documented form) or a timestamp,
/// sent as `2009-07-06T10:00:00Z` like twilio-python's `iso8601_datetime` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTimeAfter {
    Date(NaiveDate),
    Time(DateTime<Utc>),
}

impl StartTimeAfter {
    fn to_param(self) -> String {
        match self {
            Self::Date(d) => d.format("%Y-%m-%d").to_string(),
            Self::Time(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }
}

/// Filter for `GET Calls.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCalls {
    pub to: Option<E164>,
    pub from: Option<E164>,
    pub status: Option<CallStatus>,
    /// `StartTime>`: calls that started on or after this.
    pub start_time_after: Option<StartTimeAfter>,
    /// 1..=1000; Twilio's default is 50.
    pub page_size: Option<u32>,
}

impl ListCalls {
    /// The query pairs of the first page, unencoded (`StartTime>` keeps its `>`; encoding is the HTTP
    /// layer's job).
    pub fn to_query(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if let Some(to) = &self.to {
            q.push(("To".to_string(), to.as_str().to_string()));
        }
        if let Some(from) = &self.from {
            q.push(("From".to_string(), from.as_str().to_string()));
        }
        if let Some(s) = self.status {
            q.push(("Status".to_string(), s.as_str().to_string()));
        }
        if let Some(t) = self.start_time_after {
            q.push(("StartTime>".to_string(), t.to_param()));
        }
        if let Some(n) = self.page_size {
            q.push(("PageSize".to_string(), n.to_string()));
        }
        q
    }
}

/// Twilio's call resource (`api.v2010.account.call`), the fields the dialer reads. Unknown fields are
/// ignored; every nullable field is an `Option`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallResource {
    pub sid: CallSid,
    #[serde(default)]
    pub account_sid: Option<String>,
    #[serde(default)]
    pub parent_call_sid: Option<CallSid>,
    /// Raw endpoint: E.164 for our calls, but list results may hold `client:` or `sip:` addresses.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    pub status: CallStatus,
    #[serde(default, deserialize_with = "rfc2822_opt")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "rfc2822_opt")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "rfc2822_opt")]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "rfc2822_opt")]
    pub date_updated: Option<DateTime<Utc>>,
    /// Seconds (Twilio sends a string).
    #[serde(default, deserialize_with = "number_string_opt")]
    pub duration: Option<u64>,
    #[serde(default)]
    pub answered_by: Option<AnsweredBy>,
    /// Milliseconds the call waited in Twilio's CPS queue (Twilio sends a string).
    #[serde(default, deserialize_with = "number_string_opt")]
    pub queue_time: Option<u64>,
    /// Decimal string, negative for charges ("-0.03000").
    #[serde(default)]
    pub price: Option<String>,
    #[serde(default)]
    pub price_unit: Option<String>,
    /// `outbound-api`, `outbound-dial`, `inbound`.
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
}

impl CallResource {
    /// The called number as E.164, when it is one.
    pub fn to_e164(&self) -> Option<E164> {
        self.to.as_deref().and_then(|s| E164::from_stored(s).ok())
    }

    pub fn queue_time(&self) -> Option<Duration> {
        self.queue_time.map(Duration::from_millis)
    }
}

/// Twilio's RFC 2822 timestamps ("Tue, 31 Aug 2010 20:36:28 +0000"); RFC 3339 is accepted too. A value
/// that is neither is logged and read as absent rather than losing the whole resource (and its SID).
fn rfc2822_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else { return Ok(None) };
    if s.trim().is_empty() {
        return Ok(None);
    }
    let parsed = DateTime::parse_from_rfc2822(&s).or_else(|_| DateTime::parse_from_rfc3339(&s));
    match parsed {
        Ok(t) => Ok(Some(t.with_timezone(&Utc))),
        Err(e) => {
            tracing::warn!(value = %snippet(&s), error = %e, "unreadable timestamp in Twilio call resource");
            Ok(None)
        }
    }
}

/// A count Twilio sends as a string ("15"), or as a number, or null.
fn number_string_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::N(n)) => Ok(Some(n)),
        Some(Raw::S(s)) if s.trim().is_empty() => Ok(None),
        Some(Raw::S(s)) => s.trim().parse().map(Some).map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize)]
struct CallPage {
    #[serde(default)]
    calls: Vec<CallResource>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

/// `POST Messages.json`: one SMS with a delivery StatusCallback.
#[derive(Debug, Clone)]
pub struct CreateMessage {
    pub to: E164,
    pub from: E164,
    pub body: String,
    pub status_callback: Option<String>,
}

impl CreateMessage {
    pub fn to_form(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("To".to_string(), self.to.as_str().to_string()),
            ("From".to_string(), self.from.as_str().to_string()),
            ("Body".to_string(), self.body.clone()),
        ];
        if let Some(cb) = &self.status_callback {
            f.push(("StatusCallback".to_string(), cb.clone()));
        }
        f
    }
}

/// The fields of Twilio's message resource the dialer reads.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageResource {
    pub sid: String,
    pub status: String,
    #[serde(default)]
    pub error_code: Option<i64>,
}

/// Client for Twilio's Calls API. Cheap to clone (shares one connection pool).
#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    base_url: String,
    account_sid: String,
    auth_token: SecretString,
}

impl fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioClient")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[REDACTED]")
            .finish()
    }
}

/// `POST Conferences/{Sid}/Participants.json`: an operator (or any number) rung into a conference.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateParticipant {
    pub from: E164,
    /// `client:alice` or an E.164 number.
    pub to: String,
    pub timeout_s: u32,
    pub status_callback: String,
    pub label: Option<String>,
    /// The conference starts (hold ends for the others) when this participant joins.
    pub start_conference_on_enter: bool,
    /// The conference ends when this participant leaves.
    pub end_conference_on_exit: bool,
}

impl CreateParticipant {
    pub fn to_form(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("From".to_string(), self.from.to_string()),
            ("To".to_string(), self.to.clone()),
            ("Timeout".to_string(), self.timeout_s.to_string()),
            ("StatusCallback".to_string(), self.status_callback.clone()),
            ("StatusCallbackMethod".to_string(), "POST".to_string()),
            ("StartConferenceOnEnter".to_string(), self.start_conference_on_enter.to_string()),
            ("EndConferenceOnExit".to_string(), self.end_conference_on_exit.to_string()),
            ("Beep".to_string(), "false".to_string()),
        ];
        for e in StatusCallbackEvent::ALL {
            f.push(("StatusCallbackEvent".to_string(), e.as_str().to_string()));
        }
        if let Some(l) = &self.label {
            f.push(("Label".to_string(), l.clone()));
        }
        f
    }
}

/// The parts of a Participant resource the dialer reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ParticipantResource {
    pub call_sid: CallSid,
    pub conference_sid: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

impl TwilioClient {
    /// `base_url` is the API origin (`https://api.twilio.com`, or the simulator's). `request_timeout`
    /// bounds a whole request; connecting gets at most half of it (and at most 10 s), so a slow connect is
    /// reported as a connect error (not sent) rather than as an ambiguous timeout. Redirects are not
    /// followed: a redirected POST could be re-sent.
    pub fn new(
        base_url: &str,
        account_sid: &str,
        auth_token: &str,
        request_timeout: Duration,
    ) -> Result<Self, TwilioError> {
        let base =
            url::Url::parse(base_url).map_err(|e| TwilioError::Invalid(format!("base URL {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(TwilioError::Invalid(format!("base URL {base_url:?}: expected http(s)://host")));
        }
        let sid_ok = account_sid.len() == 34
            && account_sid.starts_with("AC")
            && account_sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !sid_ok {
            return Err(TwilioError::Invalid("account SID must be AC followed by 32 hex digits".into()));
        }
        if auth_token.is_empty() {
            return Err(TwilioError::Invalid("auth token is empty".into()));
        }
        let connect_timeout = (request_timeout / 2).min(Duration::from_secs(10));
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dialer-core/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TwilioError::Invalid(format!("building HTTP client: {e}")))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            account_sid: account_sid.to_string(),
            auth_token: SecretString::from(auth_token),
        })
    }

    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    fn calls_url(&self) -> String {
        format!("{}/{API}/Accounts/{}/Calls.json", self.base_url, self.account_sid)
    }

    fn call_url(&self, sid: &CallSid) -> String {
        format!("{}/{API}/Accounts/{}/Calls/{}.json", self.base_url, self.account_sid, sid)
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
    }

    /// `POST Calls.json`. Sent once; on error, see [`TwilioError::class`] before doing anything else.
    pub async fn create_call(&self, req: &CreateCall) -> Result<CallResource, TwilioError> {
        let rb = self.authed(self.http.post(self.calls_url())).form(&req.to_form());
        self.send_json(rb).await
    }

    /// `POST Messages.json`. Sent once (Twilio has no idempotency key for messages): on an error whose
    /// class is [`RetryClass::FateUnknown`], never send it again.
    pub async fn create_message(&self, req: &CreateMessage) -> Result<MessageResource, TwilioError> {
        let url = format!("{}/{API}/Accounts/{}/Messages.json", self.base_url, self.account_sid);
        self.send_json(self.authed(self.http.post(url)).form(&req.to_form())).await
    }

    /// `GET Calls/{Sid}.json`.
    pub async fn fetch_call(&self, sid: &CallSid) -> Result<CallResource, TwilioError> {
        self.send_json(self.authed(self.http.get(self.call_url(sid)))).await
    }

    /// `POST Calls/{Sid}.json` with `Status=canceled|completed`.
    pub async fn update_call(&self, sid: &CallSid, status: UpdateStatus) -> Result<CallResource, TwilioError> {
        let rb = self.authed(self.http.post(self.call_url(sid))).form(&[("Status", status.as_str())]);
        self.send_json(rb).await
    }

    /// `POST Calls/{Sid}.json` with `Url`: the live call leaves what it is doing (a conference, a
    /// Gather) and continues with the TwiML at `url` (Twilio's live call modification).
    pub async fn redirect_call(&self, sid: &CallSid, url: &str) -> Result<CallResource, TwilioError> {
        let rb = self.authed(self.http.post(self.call_url(sid))).form(&[("Url", url), ("Method", "POST")]);
        self.send_json(rb).await
    }

    /// `POST Conferences/{conference}/Participants.json`: rings `req.to` and joins them to the conference
    /// (by SID or friendly name; Twilio creates the conference if needed).
    pub async fn create_participant(
        &self,
        conference: &str,
        req: &CreateParticipant,
    ) -> Result<ParticipantResource, TwilioError> {
        let conference: String = form_urlencoded::byte_serialize(conference.as_bytes()).collect();
        let url =
            format!("{}/{API}/Accounts/{}/Conferences/{conference}/Participants.json", self.base_url, self.account_sid);
        self.send_json(self.authed(self.http.post(url)).form(&req.to_form())).await
    }

    /// `POST Conferences/{Sid}.json` with `AnnounceUrl`: every participant hears that TwiML's `<Say>`
    /// and `<Play>`.
    pub async fn announce_conference(&self, conference_sid: &str, url: &str) -> Result<serde_json::Value, TwilioError> {
        let sid: String = form_urlencoded::byte_serialize(conference_sid.as_bytes()).collect();
        let url_ = format!("{}/{API}/Accounts/{}/Conferences/{sid}.json", self.base_url, self.account_sid);
        let rb = self.authed(self.http.post(url_)).form(&[("AnnounceUrl", url), ("AnnounceMethod", "POST")]);
        self.send_json(rb).await
    }

    /// `GET Calls.json` with `filter`, following `next_page_uri` to the last page.
    pub async fn list_calls(&self, filter: &ListCalls) -> Result<Vec<CallResource>, TwilioError> {
        let mut calls = Vec::new();
        let mut page: CallPage =
            self.send_json(self.authed(self.http.get(self.calls_url()).query(&filter.to_query()))).await?;
        for _ in 0..MAX_PAGES {
            calls.append(&mut page.calls);
            let Some(next) = page.next_page_uri.take().filter(|u| !u.is_empty()) else {
                return Ok(calls);
            };
            // Twilio gives a path on its own host; never send credentials anywhere else.
            if !next.starts_with('/') || next.starts_with("//") {
                return Err(TwilioError::Invalid(format!("unexpected next_page_uri {:?}", snippet(&next))));
            }
            let url = format!("{}{}", self.base_url, next);
            page = self.send_json(self.authed(self.http.get(url))).await?;
        }
        Err(TwilioError::Invalid(format!("list_calls: more than {MAX_PAGES} pages")))
    }

    async fn send_json<T: serde::de::DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> Result<T, TwilioError> {
        let resp = rb.send().await.map_err(TwilioError::from_reqwest)?;
        let status = resp.status().as_u16();
        let retry_after =
            resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let success = (200..300).contains(&status);
        let body = match resp.text().await {
            Ok(body) => body,
            // The status already says what happened (a 429 is still not processed); classify by it.
            Err(_) if !success => String::new(),
            Err(e) => return Err(TwilioError::from_reqwest(e)),
        };
        if !success {
            return Err(TwilioError::Api(ApiError::from_response(status, &body, retry_after.as_deref())));
        }
        serde_json::from_str(&body).map_err(|e| TwilioError::Decode {
            status,
            call_sid: sid_in(&body),
            error: e.to_string(),
        })
    }
}

/// The `sid` of a body that did not parse as a whole, so a created call can still be attributed.
fn sid_in(body: &str) -> Option<CallSid> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    CallSid::parse(v.get("sid")?.as_str()?).ok()
}
