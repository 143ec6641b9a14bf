//! Errors from the Twilio REST API and their retry classification.
//!
//! The question every caller of `POST Calls.json` must answer is "may a call exist now?". [`RetryClass`]
//! answers it: only [`RetryClass::NotCreatedRetry`] may be re-sent without looking first; a
//! [`RetryClass::FateUnknown`] attempt is parked and reconciled (callback with its token, or
//! `GET Calls.json?To=…&StartTime>=…`) before it may be dialled again (DESIGN.md guarantee #1).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::CallSid;

/// What an error means for the attempt whose request produced it.
///
/// The classes are worded for the non-idempotent `POST Calls.json`. For the idempotent GETs
/// (`fetch_call`, `list_calls`) both retry classes simply mean "safe to ask again later".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryClass {
    /// Nothing was created: the request never reached Twilio (connect refused, DNS, connect timeout, TLS
    /// handshake) or Twilio refused it unprocessed (HTTP 429 / code 20429). Retry with backoff.
    NotCreatedRetry,
    /// A call may or may not exist: timeout or reset after the request was sent, any 5xx, a 3xx, or a 2xx
    /// whose body did not parse. Never re-send blindly: park and reconcile first.
    FateUnknown,
    /// Twilio rejected the request because of this contact (invalid, unreachable, premium or blocked
    /// number). Nothing was created; do not retry this number.
    FinalForContact,
    /// Twilio rejected the request because of our account or configuration (credentials, caller ID, geo
    /// permissions, bad URLs, broken TwiML, unknown 4xx). Nothing was created; every other contact would
    /// fail the same way, so the campaign should stop until an operator fixes it. The contact is not at
    /// fault and must not be burned.
    FinalForCampaign,
    /// Twilio refused the destination country for our account (geo permissions, 21215). Nothing was
    /// created; every number of that country in the campaign would fail the same way, numbers elsewhere
    /// are fine: skip that country's contacts, keep dialing the rest, and tell an operator.
    FinalForCountry,
}

/// Where a Twilio error code surfaces (the `ours.phase` field of `shared/twilio/error_codes.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorPhase {
    /// Returned synchronously by the REST API.
    Rest,
    /// Reported later while the call fails (Debugger, Call Events).
    CallExecution,
    /// A problem in our TwiML.
    Twiml,
    /// Twilio failed to reach our webhook.
    Webhook,
}

impl ErrorPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rest => "rest",
            Self::CallExecution => "call-execution",
            Self::Twiml => "twiml",
            Self::Webhook => "webhook",
        }
    }
}

/// What we know about one Twilio error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    pub phase: ErrorPhase,
    pub class: RetryClass,
}

/// Classification of the Twilio error codes a dialer meets, encoded from `shared/twilio/error_codes.json`
/// (Twilio's error dictionary plus our `ours` assessment). `tests/twilio_client.rs` checks this table
/// against that file for every code it lists: same phase; `retry: "no"` is final, `"yes-backoff"` with a
/// 429 is [`RetryClass::NotCreatedRetry`], with a 5xx (`"yes-backoff"` or `"conditional"`) is
/// [`RetryClass::FateUnknown`]; `"twilio-side"` (Twilio could not reach our webhook) is
/// [`RetryClass::FinalForCampaign`].
///
/// Choices where the file leaves room:
/// - Contact vs campaign: a code is [`RetryClass::FinalForContact`] only when the fault is this number
///   (21202 premium, 21211/21217 invalid, 21214 unreachable, 21216 Twilio blocklist, 13223–13226 the
///   dialled number's format/support/blocklist/country code). Anything an operator must fix is
///   [`RetryClass::FinalForCampaign`], because burning a contact is irreversible and silent while pausing a
///   campaign is loud and reversible. So 21203 (international calling disabled), 13227 (geo permissions,
///   during the call) and 21219 (trial account: To not verified) stop the campaign, although only some
///   numbers are affected, and request-construction bugs (21201, 21205…21209, 21213, 21234, 21609, 21626, 20001)
///   do too: every request would carry the same bug.
/// - 21215 (geo permission refused on create) is [`RetryClass::FinalForCountry`]: it names one country,
///   so only that country's contacts stop (with an alert), instead of pausing every other country too.
/// - 20404 is a wrong account/base URL on create; on `fetch_call` it means "no such call" (see
///   [`TwilioError::is_not_found`]).
/// - 21220 (call no longer modifiable) only comes from `update_call`: the call is already over, nothing to
///   retry, no reason to stop the campaign: [`RetryClass::FinalForContact`].
/// - 32017 (carrier blocked our caller ID) and 32021 (SHAKEN/STIR failed) concern our caller ID: campaign.
/// - Not in the file, kept from the brief: 21610 (recipient unsubscribed, STOP) and 21612 (To not
///   reachable) are per-contact.
pub fn code_info(code: u32) -> Option<CodeInfo> {
    use ErrorPhase::*;
    use RetryClass::*;
    let (phase, class) = match code {
        // Account, credentials, API usage.
        20001 | 20003 | 20005 | 20008 | 20404 => (Rest, FinalForCampaign),
        20429 => (Rest, NotCreatedRetry),
        20500 | 20503 => (Rest, FateUnknown),
        // Call creation: the number itself.
        21202 | 21211 | 21214 | 21216 | 21217 | 21220 => (Rest, FinalForContact),
        21610 | 21612 => (Rest, FinalForContact),
        // Call creation: our account, caller ID or request.
        21201 | 21203 | 21205 | 21206 | 21208 | 21209 | 21210 | 21212 | 21213 | 21218 | 21219 | 21234 | 21609
        | 21626 => (Rest, FinalForCampaign),
        21215 => (Rest, FinalForCountry),
        // While the call runs.
        13223..=13226 => (CallExecution, FinalForContact),
        13227 | 32017 | 32021 => (CallExecution, FinalForCampaign),
        // Our TwiML.
        12100 | 12102 | 12200 | 12300 | 13310 | 13312 | 13313 | 13314 | 13320 | 13326 | 13331 | 13338 | 13511
        | 13512 | 13520 | 13521 => (Twiml, FinalForCampaign),
        // Twilio could not reach our webhooks: our side must be fixed before dialling on.
        11200 | 11205 | 11210 | 11220 | 15003 => (Webhook, FinalForCampaign),
        _ => return None,
    };
    Some(CodeInfo { phase, class })
}

/// How a request failed below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Connecting failed (refused, DNS, connect timeout, TLS handshake): the request was never sent.
    Connect,
    /// The request timed out after the connection was made: it may have been received.
    Timeout,
    /// Any other failure (reset, broken pipe, protocol error): it may have been received.
    Other,
}

/// Twilio's JSON error body (`{code, message, more_info, status}`) plus what HTTP told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the response.
    pub status: u16,
    /// Twilio's error code, if the body carried one.
    pub code: Option<u32>,
    /// Twilio's message, or the start of a non-JSON body.
    pub message: String,
    pub more_info: Option<String>,
    /// From the `Retry-After` header (seconds or HTTP date).
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = self.code {
            write!(f, ", Twilio error {code}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, alias = "detail")]
    more_info: Option<String>,
}

impl ApiError {
    /// Builds the error from a non-success response's parts. Never fails: a body that is not Twilio's
    /// JSON keeps its first 200 characters as the message.
    pub fn from_response(status: u16, body: &str, retry_after: Option<&str>) -> Self {
        let retry_after = retry_after.and_then(parse_retry_after);
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(b) if b.code.is_some() || b.message.is_some() => Self {
                status,
                code: b.code,
                message: b.message.unwrap_or_default(),
                more_info: b.more_info,
                retry_after,
            },
            _ => Self { status, code: None, message: snippet(body), more_info: None, retry_after },
        }
    }
}

/// `Retry-After`: delta-seconds or an HTTP date (a date in the past is zero).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.signed_duration_since(chrono::Utc::now());
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

pub(crate) fn snippet(body: &str) -> String {
    body.chars().take(200).collect()
}

/// Everything the REST client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio (or something in front of it) answered with a non-success status.
    #[error("Twilio API error: {0}")]
    Api(ApiError),
    /// The request failed below HTTP.
    #[error("Twilio transport error ({kind:?}): {source}")]
    Transport {
        kind: TransportKind,
        #[source]
        source: reqwest::Error,
    },
    /// A success status whose body was not the expected resource. For a create, the call probably exists;
    /// `call_sid` is kept when the body at least carried one.
    #[error("unreadable Twilio response (HTTP {status}): {error}")]
    Decode { status: u16, call_sid: Option<CallSid>, error: String },
    /// The client was misconfigured (bad base URL, account SID) or the API misbehaved (endless paging).
    #[error("Twilio client: {0}")]
    Invalid(String),
}

impl TwilioError {
    /// Sorts a reqwest error by whether the request can have reached Twilio. `is_connect()` is checked
    /// first: reqwest reports a connect timeout as both connect and timeout, and it was never sent.
    pub fn from_reqwest(e: reqwest::Error) -> Self {
        let kind = if e.is_connect() {
            TransportKind::Connect
        } else if e.is_timeout() {
            TransportKind::Timeout
        } else {
            TransportKind::Other
        };
        Self::Transport { kind, source: e }
    }

    /// Whether a call may exist and what to do next. See [`RetryClass`] and [`code_info`].
    pub fn class(&self) -> RetryClass {
        match self {
            Self::Transport { kind: TransportKind::Connect, .. } => RetryClass::NotCreatedRetry,
            Self::Transport { .. } | Self::Decode { .. } => RetryClass::FateUnknown,
            // Our own configuration: nothing was sent, and nothing will work until it is fixed.
            Self::Invalid(_) => RetryClass::FinalForCampaign,
            Self::Api(e) => classify_api(e),
        }
    }

    /// Twilio's error code, if any.
    pub fn code(&self) -> Option<u32> {
        match self {
            Self::Api(e) => e.code,
            _ => None,
        }
    }

    /// HTTP status, if Twilio answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Api(e) => Some(e.status),
            Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api(e) => e.retry_after,
            _ => None,
        }
    }

    /// Twilio refused the request for load (HTTP 429 / code 20429): fewer requests at once.
    pub fn is_throttled(&self) -> bool {
        matches!(self, Self::Api(e) if e.status == 429 || e.code == Some(20429))
    }

    /// A 404 (code 20404 or none): for `fetch_call`, the call does not exist on this account.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api(e) if e.status == 404 && matches!(e.code, None | Some(20404)))
    }
}

fn classify_api(e: &ApiError) -> RetryClass {
    // Twilio: "An API Request that receives an error 429 response is never processed".
    if e.status == 429 || e.code == Some(20429) {
        return RetryClass::NotCreatedRetry;
    }
    // The server may have acted before failing, whatever the code says.
    if e.status >= 500 || (300..400).contains(&e.status) || e.status < 200 {
        return RetryClass::FateUnknown;
    }
    if let Some(info) = e.code.and_then(code_info) {
        return info.class;
    }
    match e.status {
        // Request Timeout: the server gave up on reading the request; be safe, reconcile.
        408 => RetryClass::FateUnknown,
        // Unknown 4xx: Twilio rejected the request, so nothing was created. We cannot tell whether the
        // contact or our setup is at fault; pausing the campaign is reversible, burning contacts is not.
        _ => RetryClass::FinalForCampaign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<u32>) -> TwilioError {
        TwilioError::Api(ApiError { status, code, message: String::new(), more_info: None, retry_after: None })
    }

    #[test]
    fn http_status_wins_over_code_for_retry_and_5xx() {
        assert_eq!(api(429, None).class(), RetryClass::NotCreatedRetry);
        assert_eq!(api(400, Some(20429)).class(), RetryClass::NotCreatedRetry);
        assert_eq!(api(503, Some(21211)).class(), RetryClass::FateUnknown);
        assert_eq!(api(502, None).class(), RetryClass::FateUnknown);
        assert_eq!(api(400, Some(21211)).class(), RetryClass::FinalForContact);
        assert_eq!(api(400, Some(21210)).class(), RetryClass::FinalForCampaign);
        assert_eq!(api(400, Some(99999)).class(), RetryClass::FinalForCampaign);
        assert_eq!(api(408, None).class(), RetryClass::FateUnknown);
        assert_eq!(api(302, None).class(), RetryClass::FateUnknown);
    }

    #[test]
    fn error_body_parses_and_falls_back_to_text() {
        let e = ApiError::from_response(
            400,
            r#"{"code":21211,"message":"bad To","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#,
            None,
        );
        assert_eq!((e.code, e.message.as_str()), (Some(21211), "bad To"));
        let e = ApiError::from_response(502, "<html>Bad Gateway</html>", Some("7"));
        assert_eq!(
            (e.code, e.message.as_str(), e.retry_after),
            (None, "<html>Bad Gateway</html>", Some(Duration::from_secs(7)))
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
