//! One typed configuration, read from the environment once. No `env::var` elsewhere.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::twilio::StatusCallbackEvent;

/// Twilio's own API; the simulator or a test overrides it with `TWILIO_API_BASE_URL`.
pub const DEFAULT_TWILIO_API_BASE_URL: &str = "https://api.twilio.com";
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8080";
/// The management API's own listener, so it can sit behind an internal ingress apart from Twilio's routes.
pub const DEFAULT_API_LISTEN_ADDR: &str = "127.0.0.1:8081";
/// Requests per second per API key, and the burst above it.
pub const DEFAULT_API_RATE_LIMIT: u32 = 50;
pub const DEFAULT_API_RATE_BURST: u32 = 100;
/// Twilio's default account limit is 1 call/s; raise it to what your account has.
pub const DEFAULT_ACCOUNT_CPS: f64 = 1.0;
/// The ceiling of REST requests in flight; the engine sizes the real number from rate × latency.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1000;
pub const DEFAULT_CLAIM_BATCH: i64 = 200;
/// Longer than the Twilio request timeout, so a live dialer's lease never expires under it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);
pub const DEFAULT_TWILIO_TIMEOUT: Duration = Duration::from_secs(15);
/// The pacer's one-second window guard waits this much longer than a second: calls are timed at our
/// side, but Twilio counts them as they arrive, and arrival jitter must not push CPS + 1 into a second.
/// It costs its share of a second in rate (5 ms: 0.5 %).
pub const DEFAULT_PACING_MARGIN: Duration = Duration::from_millis(5);
/// An attempt without a terminal callback for this long is reconciled through the API.
pub const DEFAULT_STALE_CALL: Duration = Duration::from_secs(15 * 60);
/// Result webhooks are retried for a day (DESIGN.md guarantee 7), then given up (dead, replayable).
pub const DEFAULT_WEBHOOK_MAX_AGE_HOURS: f64 = 24.0;
/// Webhook POSTs in flight per process; also bounds how many events one process holds claimed.
pub const DEFAULT_WEBHOOK_CONCURRENCY: usize = 64;
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry after up to 5 s (full jitter), doubling per attempt up to the cap.
pub const DEFAULT_WEBHOOK_BACKOFF_BASE: Duration = Duration::from_millis(5_000);
pub const DEFAULT_WEBHOOK_BACKOFF_MAX: Duration = Duration::from_secs(3_600);
/// A claimed event is redelivered after this if its deliverer died; longer than a POST can take.
pub const DEFAULT_WEBHOOK_LEASE: Duration = Duration::from_secs(60);
/// How often an idle deliverer looks for new events: a result reaches the receiver within about this.
pub const DEFAULT_WEBHOOK_POLL: Duration = Duration::from_millis(200);
/// How far back a caller (or an SMS reply) is matched to a contact.
pub const DEFAULT_INBOUND_LOOKBACK_DAYS: f64 = 30.0;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("{0} is not set")]
    Missing(&'static str),
}

/// Everything a process needs. Secrets are `SecretString`: redacted in `Debug` and logs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`; when unset, a local server is found or a throwaway one started (see `pg`).
    pub database_url: Option<SecretString>,
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<SecretString>,
    /// `TWILIO_API_BASE_URL`, default `https://api.twilio.com`.
    pub twilio_api_base_url: String,
    /// `PUBLIC_BASE_URL`: how Twilio reaches the callbacks service (signatures are checked against it).
    pub public_base_url: Option<String>,
    /// `LISTEN_ADDR`: this process's HTTP listener (`/metrics`, and the callback routes).
    pub listen_addr: SocketAddr,
    /// `ATTEMPT_TOKEN_SECRET`: signs attempt tokens; defaults to one derived from the auth token.
    pub attempt_token_secret: Option<SecretString>,
    /// `ACCOUNT_CPS`: the Twilio account's calls per second, shared by all dialer replicas.
    pub account_cps: f64,
    /// `TWILIO_MAX_CONCURRENT_REQUESTS`: the most REST requests in flight per dialer process (the engine
    /// sizes the number it uses from its rate and Twilio's latency, up to this).
    pub max_concurrent_requests: usize,
    /// `CLAIM_BATCH_SIZE`: contacts claimed per round trip.
    pub claim_batch: i64,
    /// `LEASE_SECONDS`: how long a claim is held before it may be rescued.
    pub lease: Duration,
    /// `TWILIO_TIMEOUT_SECONDS`: REST request timeout.
    pub twilio_timeout: Duration,
    /// `STALE_CALL_SECONDS`: reconcile a call with no terminal callback after this long.
    pub stale_call: Duration,
    /// `PACING_MARGIN_MS`: extra spacing in the pacers' one-second window guard.
    pub pacing_margin: Duration,
    /// `TWILIO_STATUS_CALLBACK_EVENTS` (space or comma separated, default `answered completed`): the call
    /// events Twilio reports to the callbacks service. `completed` is required (it ends the attempt);
    /// `initiated` and `ringing` are only logged to `call_events` and cost a callback each.
    pub status_callback_events: Vec<StatusCallbackEvent>,
    /// `API_LISTEN_ADDR`: the management API's listener (roles `api` and `all`).
    pub api_listen_addr: SocketAddr,
    /// `API_RATE_LIMIT`: requests per second allowed to one API key.
    pub api_rate_limit: u32,
    /// `API_RATE_BURST`: requests one API key may make at once above its rate.
    pub api_rate_burst: u32,
    /// `WEBHOOK_MAX_AGE_HOURS` (fractional allowed): a webhook event still failing after this long is dead.
    pub webhook_max_age: Duration,
    /// `WEBHOOK_CONCURRENCY`: webhook POSTs in flight per process.
    pub webhook_concurrency: usize,
    /// `WEBHOOK_TIMEOUT_SECONDS`: one webhook POST's timeout (no answer in time is a failure, retried).
    pub webhook_timeout: Duration,
    /// `WEBHOOK_BACKOFF_BASE_MS`: the first retry's maximum delay; doubles per attempt (full jitter).
    pub webhook_backoff_base: Duration,
    /// `WEBHOOK_BACKOFF_MAX_SECONDS`: the cap of the retry delay.
    pub webhook_backoff_max: Duration,
    /// `WEBHOOK_LEASE_SECONDS`: how long a claimed event waits for its deliverer before it is sent again.
    pub webhook_lease: Duration,
    /// `WEBHOOK_POLL_MS`: how often an idle deliverer looks for new events.
    pub webhook_poll: Duration,
    /// `MIGRATE_ON_START` (`true`/`false`, default true): `serve` applies pending migrations before it
    /// starts. The Helm chart sets it false: its migration Job does that before an install or upgrade, and
    /// a pod whose database lacks a migration stays unready (`/healthz`) instead.
    pub migrate_on_start: bool,
    /// `SHUTDOWN_DELAY_SECONDS` (default 0): after SIGTERM, `/healthz` answers 503 and the process keeps
    /// serving this long before it stops taking work, so load balancers and Kubernetes endpoints stop
    /// sending requests first. The chart sets a few seconds.
    pub shutdown_delay: Duration,
    /// `SHUTDOWN_GRACE_SECONDS` (default 10): the most the HTTP listeners wait for requests in flight once
    /// they stop accepting. Keep delay + grace + the dialer's drain within Kubernetes'
    /// `terminationGracePeriodSeconds` (the chart derives it from that).
    pub shutdown_grace: Duration,
    /// What the callbacks service does with calls and texts to our caller IDs.
    pub inbound: InboundSettings,
    /// Operators in the browser: access-token signing and the operator loop.
    pub operators: OperatorConfig,
}

/// Operators who take calls in the browser with the Voice JavaScript SDK.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// `TWILIO_API_KEY_SID` (`SK…`) and `TWILIO_API_KEY_SECRET`: the API key access tokens are signed
    /// with (Twilio's console, API keys). Without them the token endpoint answers 503.
    pub api_key_sid: Option<String>,
    pub api_key_secret: Option<SecretString>,
    /// `TWILIO_TWIML_APP_SID` (`AP…`): the TwiML app the operators' outgoing calls use (optional).
    pub twiml_app_sid: Option<String>,
    /// `OPERATOR_TOKEN_TTL_SECONDS` (default 600, at most 86400): how long an access token lives; the
    /// page renews it before it expires.
    pub token_ttl: Duration,
    /// `OPERATOR_POLL_MS` (default 250): how often the dialer pairs waiting callees with free operators.
    pub poll: Duration,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            api_key_sid: None,
            api_key_secret: None,
            twiml_app_sid: None,
            token_ttl: Duration::from_secs(600),
            poll: Duration::from_millis(250),
        }
    }
}

impl OperatorConfig {
    fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let ttl: u64 = parse_var("OPERATOR_TOKEN_TTL_SECONDS", d.token_ttl.as_secs())?;
        if !(60..=86_400).contains(&ttl) {
            return Err(ConfigError::Invalid {
                var: "OPERATOR_TOKEN_TTL_SECONDS",
                reason: format!("{ttl}: must be between 60 and 86400 (Twilio's limit)"),
            });
        }
        let sid = |name: &'static str, prefix: &str| -> Result<Option<String>, ConfigError> {
            match var(name) {
                Some(v) if !(v.starts_with(prefix) && v.len() == 34) => Err(ConfigError::Invalid {
                    var: name,
                    reason: format!("must be {prefix} followed by 32 characters"),
                }),
                other => Ok(other),
            }
        };
        Ok(Self {
            api_key_sid: sid("TWILIO_API_KEY_SID", "SK")?,
            api_key_secret: var("TWILIO_API_KEY_SECRET").map(SecretString::from),
            twiml_app_sid: sid("TWILIO_TWIML_APP_SID", "AP")?,
            token_ttl: Duration::from_secs(ttl),
            poll: Duration::from_millis(parse_var("OPERATOR_POLL_MS", d.poll.as_millis() as u64)?.max(10)),
        })
    }
}

/// Calls and texts from customers to the campaigns' caller IDs.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundSettings {
    /// `INBOUND_LOOKBACK_DAYS` (default 30): a caller or an SMS reply is matched to the newest contact
    /// (or text) with its number created within this many days.
    pub lookback: Duration,
    /// `INBOUND_UNKNOWN_MESSAGE`: said to a caller who is no contact, when the dialled number's campaign
    /// has no `unknown_caller` text of its own.
    pub unknown_message: String,
    /// `INBOUND_TRANSFER_NUMBER` (E.164): where such a caller is transferred after the message; none: the
    /// call ends.
    pub transfer_to: Option<crate::domain::E164>,
}

impl Default for InboundSettings {
    fn default() -> Self {
        Self {
            lookback: Duration::from_secs_f64(DEFAULT_INBOUND_LOOKBACK_DAYS * 86_400.0),
            unknown_message: "Thank you for calling. We could not find a delivery or appointment for this number."
                .into(),
            transfer_to: None,
        }
    }
}

impl InboundSettings {
    fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let days: f64 = parse_var("INBOUND_LOOKBACK_DAYS", DEFAULT_INBOUND_LOOKBACK_DAYS)?;
        let lookback = Duration::try_from_secs_f64(days * 86_400.0)
            .map_err(|e| ConfigError::Invalid { var: "INBOUND_LOOKBACK_DAYS", reason: format!("{days}: {e}") })?;
        let transfer_to = var("INBOUND_TRANSFER_NUMBER")
            .map(|n| {
                crate::domain::E164::parse(&n, None)
                    .map_err(|e| ConfigError::Invalid { var: "INBOUND_TRANSFER_NUMBER", reason: e.to_string() })
            })
            .transpose()?;
        Ok(Self { lookback, unknown_message: var("INBOUND_UNKNOWN_MESSAGE").unwrap_or(d.unknown_message), transfer_to })
    }
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_var<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid { var: name, reason: e.to_string() }),
    }
}

/// The call events to request: a callback per event and call is the dialer's largest write load, so by
/// default only the two the attempt keeps (the answer and the end).
pub const DEFAULT_STATUS_CALLBACK_EVENTS: [StatusCallbackEvent; 2] =
    [StatusCallbackEvent::Answered, StatusCallbackEvent::Completed];

fn status_callback_events(v: Option<String>) -> Result<Vec<StatusCallbackEvent>, ConfigError> {
    const VAR: &str = "TWILIO_STATUS_CALLBACK_EVENTS";
    let Some(v) = v else { return Ok(DEFAULT_STATUS_CALLBACK_EVENTS.to_vec()) };
    let mut events = Vec::new();
    for name in v.split([' ', ',']).map(str::trim).filter(|n| !n.is_empty()) {
        let e =
            StatusCallbackEvent::ALL.into_iter().find(|e| e.as_str() == name).ok_or_else(|| ConfigError::Invalid {
                var: VAR,
                reason: format!("{name:?} is not a call event (initiated, ringing, answered, completed)"),
            })?;
        if !events.contains(&e) {
            events.push(e);
        }
    }
    if !events.contains(&StatusCallbackEvent::Completed) {
        // Without the end, every call would wait for reconciliation (STALE_CALL_SECONDS) to settle.
        return Err(ConfigError::Invalid { var: VAR, reason: "must include completed".into() });
    }
    Ok(events)
}

/// A duration given in (possibly fractional) hours.
fn hours(name: &'static str, default: f64) -> Result<Duration, ConfigError> {
    let h: f64 = parse_var(name, default)?;
    Duration::try_from_secs_f64(h * 3600.0)
        .map_err(|e| ConfigError::Invalid { var: name, reason: format!("{h} hours: {e}") })
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let c = Self {
            database_url: var("DATABASE_URL").map(SecretString::from),
            twilio_account_sid: var("TWILIO_ACCOUNT_SID"),
            twilio_auth_token: var("TWILIO_AUTH_TOKEN").map(SecretString::from),
            twilio_api_base_url: var("TWILIO_API_BASE_URL").unwrap_or_else(|| DEFAULT_TWILIO_API_BASE_URL.into()),
            public_base_url: var("PUBLIC_BASE_URL").map(|u| u.trim_end_matches('/').to_string()),
            listen_addr: parse_var("LISTEN_ADDR", DEFAULT_LISTEN_ADDR.parse().expect("valid default"))?,
            attempt_token_secret: var("ATTEMPT_TOKEN_SECRET").map(SecretString::from),
            account_cps: parse_var("ACCOUNT_CPS", DEFAULT_ACCOUNT_CPS)?,
            max_concurrent_requests: parse_var("TWILIO_MAX_CONCURRENT_REQUESTS", DEFAULT_MAX_CONCURRENT_REQUESTS)?,
            claim_batch: parse_var("CLAIM_BATCH_SIZE", DEFAULT_CLAIM_BATCH)?,
            lease: Duration::from_secs(parse_var("LEASE_SECONDS", DEFAULT_LEASE.as_secs())?),
            twilio_timeout: Duration::from_secs(parse_var("TWILIO_TIMEOUT_SECONDS", DEFAULT_TWILIO_TIMEOUT.as_secs())?),
            stale_call: Duration::from_secs(parse_var("STALE_CALL_SECONDS", DEFAULT_STALE_CALL.as_secs())?),
            pacing_margin: Duration::from_millis(parse_var(
                "PACING_MARGIN_MS",
                DEFAULT_PACING_MARGIN.as_millis() as u64,
            )?),
            status_callback_events: status_callback_events(var("TWILIO_STATUS_CALLBACK_EVENTS"))?,
            api_listen_addr: parse_var("API_LISTEN_ADDR", DEFAULT_API_LISTEN_ADDR.parse().expect("valid default"))?,
            api_rate_limit: parse_var("API_RATE_LIMIT", DEFAULT_API_RATE_LIMIT)?,
            api_rate_burst: parse_var("API_RATE_BURST", DEFAULT_API_RATE_BURST)?,
            migrate_on_start: parse_var("MIGRATE_ON_START", true)?,
            shutdown_delay: Duration::from_secs(parse_var("SHUTDOWN_DELAY_SECONDS", 0)?),
            shutdown_grace: Duration::from_secs(parse_var("SHUTDOWN_GRACE_SECONDS", 10)?),
            webhook_max_age: hours("WEBHOOK_MAX_AGE_HOURS", DEFAULT_WEBHOOK_MAX_AGE_HOURS)?,
            webhook_concurrency: parse_var("WEBHOOK_CONCURRENCY", DEFAULT_WEBHOOK_CONCURRENCY)?,
            webhook_timeout: Duration::from_secs(parse_var(
                "WEBHOOK_TIMEOUT_SECONDS",
                DEFAULT_WEBHOOK_TIMEOUT.as_secs(),
            )?),
            webhook_backoff_base: Duration::from_millis(parse_var(
                "WEBHOOK_BACKOFF_BASE_MS",
                DEFAULT_WEBHOOK_BACKOFF_BASE.as_millis() as u64,
            )?),
            webhook_backoff_max: Duration::from_secs(parse_var(
                "WEBHOOK_BACKOFF_MAX_SECONDS",
                DEFAULT_WEBHOOK_BACKOFF_MAX.as_secs(),
            )?),
            webhook_lease: Duration::from_secs(parse_var("WEBHOOK_LEASE_SECONDS", DEFAULT_WEBHOOK_LEASE.as_secs())?),
            webhook_poll: Duration::from_millis(parse_var("WEBHOOK_POLL_MS", DEFAULT_WEBHOOK_POLL.as_millis() as u64)?),
            inbound: InboundSettings::from_env()?,
            operators: OperatorConfig::from_env()?,
        };
        c.validate()?;
        Ok(c)
    }

    /// Relations between settings, checked before the first call.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.account_cps > 0.0 && self.account_cps.is_finite()) {
            return Err(ConfigError::Invalid { var: "ACCOUNT_CPS", reason: "must be a positive number".into() });
        }
        if self.lease <= self.twilio_timeout * 2 {
            // A lease shorter than a slow POST would let a rescuer redial an attempt still being sent.
            return Err(ConfigError::Invalid {
                var: "LEASE_SECONDS",
                reason: format!("must exceed twice TWILIO_TIMEOUT_SECONDS ({}s)", self.twilio_timeout.as_secs()),
            });
        }
        if self.claim_batch <= 0 || self.max_concurrent_requests == 0 {
            return Err(ConfigError::Invalid {
                var: "CLAIM_BATCH_SIZE",
                reason: "batch size and concurrency must be positive".into(),
            });
        }
        if self.api_rate_limit == 0 || self.api_rate_burst == 0 {
            return Err(ConfigError::Invalid {
                var: "API_RATE_LIMIT",
                reason: "API_RATE_LIMIT and API_RATE_BURST must be positive".into(),
            });
        }
        if self.webhook_concurrency == 0 || self.webhook_timeout.is_zero() || self.webhook_backoff_base.is_zero() {
            return Err(ConfigError::Invalid {
                var: "WEBHOOK_CONCURRENCY",
                reason: "webhook concurrency, timeout and backoff base must be positive".into(),
            });
        }
        if self.webhook_lease <= self.webhook_timeout {
            // A lease shorter than a POST would send an event again while its first POST is still waiting.
            return Err(ConfigError::Invalid {
                var: "WEBHOOK_LEASE_SECONDS",
                reason: format!("must exceed WEBHOOK_TIMEOUT_SECONDS ({}s)", self.webhook_timeout.as_secs()),
            });
        }
        if let Some(u) = &self.public_base_url {
            url::Url::parse(u).map_err(|e| ConfigError::Invalid { var: "PUBLIC_BASE_URL", reason: e.to_string() })?;
        }
        Ok(())
    }

    pub fn account_sid(&self) -> Result<&str, ConfigError> {
        self.twilio_account_sid.as_deref().ok_or(ConfigError::Missing("TWILIO_ACCOUNT_SID"))
    }

    pub fn auth_token(&self) -> Result<&str, ConfigError> {
        self.twilio_auth_token.as_ref().map(|s| s.expose_secret()).ok_or(ConfigError::Missing("TWILIO_AUTH_TOKEN"))
    }

    pub fn public_base_url(&self) -> Result<&str, ConfigError> {
        self.public_base_url.as_deref().ok_or(ConfigError::Missing("PUBLIC_BASE_URL"))
    }

    /// The key that signs attempt tokens.
    pub fn token_key(&self) -> Result<crate::domain::TokenKey, ConfigError> {
        match &self.attempt_token_secret {
            Some(s) => Ok(crate::domain::TokenKey::new(s.expose_secret().as_bytes())),
            None => Ok(crate::domain::TokenKey::new(format!("attempt-token:{}", self.auth_token()?).as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatusCallbackEvent::*;

    #[test]
    fn status_callback_events_default_to_the_answer_and_the_end_and_must_include_the_end() {
        assert_eq!(status_callback_events(None).unwrap(), vec![Answered, Completed]);
        assert_eq!(
            status_callback_events(Some("initiated,ringing  answered completed ringing".into())).unwrap(),
            vec![Initiated, Ringing, Answered, Completed]
        );
        assert_eq!(status_callback_events(Some("completed".into())).unwrap(), vec![Completed]);
        let err = status_callback_events(Some("answered".into())).unwrap_err().to_string();
        assert!(err.contains("TWILIO_STATUS_CALLBACK_EVENTS") && err.contains("completed"), "{err}");
        let err = status_callback_events(Some("completed rang".into())).unwrap_err().to_string();
        assert!(err.contains("\"rang\""), "{err}");
    }
}
