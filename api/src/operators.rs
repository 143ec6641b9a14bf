//! Operators and live calls: access tokens for the Voice JavaScript SDK, an operator's availability,
//! the operator list, a campaign's live calls and waiting room, and announcements into a live call.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use dialer_core::config::{Config, OperatorConfig};
use dialer_core::domain::operators::Identity;
use dialer_core::domain::{ApiKeySecret, AttemptToken, Scope, TokenKey, TransferState};
use dialer_core::metrics::Metrics;
use dialer_core::store::{ApiKeyRow, LiveCall, OperatorRow, TransferRow};
use dialer_core::twilio::access_token::{AccessToken, VoiceGrant};
use dialer_core::twilio::TwilioClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::extract::Path;
use crate::problem::{ApiResult, Problem};
use crate::Api;

/// What operator features need beyond the database: Twilio credentials and our public URL.
#[derive(Default)]
pub struct Voice {
    pub account_sid: Option<String>,
    pub operators: OperatorConfig,
    /// For announcements: the REST client, the token key and `PUBLIC_BASE_URL` the callbacks use.
    pub twilio: Option<TwilioClient>,
    pub token_key: Option<TokenKey>,
    pub public_base_url: Option<String>,
}

impl Voice {
    /// From the process configuration; features whose settings are missing answer 503 when used.
    pub fn from_config(config: &Config) -> Arc<Self> {
        let twilio = match (config.account_sid(), config.auth_token()) {
            (Ok(sid), Ok(token)) => {
                TwilioClient::new(&config.twilio_api_base_url, sid, token, config.twilio_timeout).ok()
            }
            _ => None,
        };
        Arc::new(Self {
            account_sid: config.twilio_account_sid.clone(),
            operators: config.operators.clone(),
            twilio,
            token_key: config.token_key().ok(),
            public_base_url: config.public_base_url().ok().map(str::to_string),
        })
    }

    /// A signed access token for `identity`, issued at `now`.
    pub fn token(&self, identity: &Identity, now: i64) -> ApiResult<(String, i64)> {
        let (Some(account), Some(key), Some(secret)) =
            (&self.account_sid, &self.operators.api_key_sid, &self.operators.api_key_secret)
        else {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "operators-not-configured",
                "access tokens need TWILIO_ACCOUNT_SID, TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET",
            ));
        };
        let grant = VoiceGrant {
            incoming_allow: true,
            outgoing_application_sid: self.operators.twiml_app_sid.clone(),
            ..Default::default()
        };
        let token =
            AccessToken::new(account, key, secret.clone(), identity.as_str(), self.operators.token_ttl, Some(grant))
                .map_err(|e| {
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "operators-not-configured", e.to_string())
                })?;
        Ok((token.to_jwt(now), token.expires_at(now)))
    }
}

/// An access token for the Voice JavaScript SDK.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorToken {
    /// The JWT (`new Twilio.Device(token)`).
    pub token: String,
    /// The Twilio Client identity calls ring (`client:<identity>`).
    pub identity: String,
    pub expires_at: DateTime<Utc>,
    pub ttl_secs: u64,
}

/// An operator and where they stand.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorView {
    pub identity: String,
    /// `available`, `away`, `ringing` or `busy`.
    pub status: String,
    /// Since when they have been in their current engagement (idle, ringing, busy).
    pub since: DateTime<Utc>,
    /// Rings missed in a row (a missed ring sets them away).
    pub missed: i32,
}

impl From<&OperatorRow> for OperatorView {
    fn from(o: &OperatorRow) -> Self {
        Self { identity: o.identity.to_string(), status: o.status().into(), since: o.engaged_at, missed: o.missed }
    }
}

/// The caller's operator row, or 403 naming why.
pub async fn operator_of(api: &Api, key: &ApiKeyRow) -> ApiResult<OperatorRow> {
    api.store.operators_by_key(key.id).await?.ok_or_else(|| {
        Problem::forbidden(format!(
            "the API key {:?} is not an operator's (create one with `dialer operator add` or POST /api/v1/operators)",
            key.name
        ))
    })
}

/// Issue an access token to the calling operator (their key must belong to an operator).
#[utoipa::path(post, path = "/api/v1/operator/token", tag = "operators",
    security(("api_key" = [])),
    responses((status = 200, body = OperatorToken), (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn token(
    State(api): State<Api>,
    axum::Extension(Caller(key)): axum::Extension<Caller>,
) -> ApiResult<Json<OperatorToken>> {
    let op = operator_of(&api, &key).await?;
    Ok(Json(issue(&api, &op)?))
}

pub fn issue(api: &Api, op: &OperatorRow) -> ApiResult<OperatorToken> {
    let now = Utc::now().timestamp();
    let (token, exp) = api.voice.token(&op.identity, now)?;
    Ok(OperatorToken {
        token,
        identity: op.identity.to_string(),
        expires_at: DateTime::from_timestamp(exp, 0).unwrap_or_default(),
        ttl_secs: api.voice.operators.token_ttl.as_secs(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusSet {
    /// `available` or `away`.
    pub status: String,
}

/// Parses `available` / `away`.
pub fn availability(status: &str) -> ApiResult<bool> {
    match status.trim() {
        "available" => Ok(true),
        "away" => Ok(false),
        other => Err(Problem::field("/status", format!("{other:?}: must be `available` or `away`"))),
    }
}

/// Set the calling operator available or away.
#[utoipa::path(put, path = "/api/v1/operator/status", tag = "operators", request_body = StatusSet,
    security(("api_key" = [])),
    responses((status = 200, body = OperatorView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn set_status(
    State(api): State<Api>,
    axum::Extension(Caller(key)): axum::Extension<Caller>,
    body: Result<JsonBody<StatusSet>, Problem>,
) -> ApiResult<Json<OperatorView>> {
    // Who asks before what they ask: a key that is no operator's is refused whatever its body.
    operator_of(&api, &key).await?;
    let available = availability(&body?.0.status)?;
    let row =
        api.store.operators_set_available(key.id, available).await?.ok_or_else(|| Problem::not_found("operator"))?;
    Ok(Json(OperatorView::from(&row)))
}

/// Every operator and their status (supervisors).
#[utoipa::path(get, path = "/api/v1/operators", tag = "operators",
    security(("api_key" = ["campaigns:read"])),
    responses((status = 200, body = Vec<OperatorView>), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(State(api): State<Api>) -> ApiResult<Json<Vec<OperatorView>>> {
    Ok(Json(api.store.operators_list().await?.iter().map(OperatorView::from).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorCreate {
    /// The Twilio Client identity (letters, digits, `_ . @ -`; at most 121).
    pub identity: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorCreated {
    pub identity: String,
    /// The operator's API key: their console login (shown once). It holds `campaigns:read`.
    pub key: String,
}

/// Create an operator: an API key (their console login) and a Twilio Client identity.
#[utoipa::path(post, path = "/api/v1/operators", tag = "operators", request_body = OperatorCreate,
    security(("api_key" = ["keys:manage"])),
    responses((status = 201, body = OperatorCreated), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(api): State<Api>,
    JsonBody(body): JsonBody<OperatorCreate>,
) -> ApiResult<(StatusCode, Json<OperatorCreated>)> {
    let identity = Identity::parse(&body.identity).map_err(|e| Problem::field("/identity", e))?;
    let secret = create_operator(&api.store, &identity).await.map_err(|e| match e {
        dialer_core::store::StoreError::Duplicate(_) => {
            Problem::conflict(format!("an operator or key named {:?} already exists", identity.as_str()))
        }
        other => other.into(),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(OperatorCreated { identity: identity.to_string(), key: secret.expose().to_string() }),
    ))
}

/// A key named `operator:<identity>` with `campaigns:read`, and its operator row.
pub async fn create_operator(
    store: &dialer_core::store::Store,
    identity: &Identity,
) -> Result<ApiKeySecret, dialer_core::store::StoreError> {
    let secret = ApiKeySecret::generate();
    store
        .operators_create_with_key(&format!("operator:{identity}"), &secret, &[Scope::CampaignsRead], identity)
        .await?;
    Ok(secret)
}

/// A campaign's calls in progress and its waiting room, for supervisors and announcements.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveView {
    pub calls: Vec<LiveCall>,
    pub transfers: Vec<TransferRow>,
}

/// A campaign's live calls (with their waiting-room state) and its latest transfers.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/calls", tag = "operators", params(("id" = i64, Path)),
    security(("api_key" = ["results:read"])),
    responses((status = 200, body = LiveView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn live(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<LiveView>> {
    api.store.campaigns_get(id).await?;
    Ok(Json(LiveView {
        calls: api.store.calls_live(id, 200).await?,
        transfers: api.store.transfers_list(id, 50).await?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnouncementIn {
    /// Spoken as written, in the campaign script's language and voice (1–1000 characters).
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnnouncementSent {
    pub id: i64,
    /// `conference`: into the waiting room or the operator's conversation; `call`: the call was
    /// redirected to hear it and then hears the start menu again.
    pub via: String,
}

/// Speak into a live call: into its conference when it is in the waiting room or with an operator,
/// else by redirecting the call to the announcement and back to the start menu.
#[utoipa::path(post, path = "/api/v1/calls/{attempt_id}/announcements", tag = "operators",
    params(("attempt_id" = i64, Path)), request_body = AnnouncementIn,
    security(("api_key" = ["campaigns:write"])),
    responses((status = 202, body = AnnouncementSent), (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 502, body = Problem, content_type = "application/problem+json")))]
pub async fn announce(
    State(api): State<Api>,
    axum::Extension(Caller(key)): axum::Extension<Caller>,
    Path(attempt_id): Path<i64>,
    JsonBody(body): JsonBody<AnnouncementIn>,
) -> ApiResult<(StatusCode, Json<AnnouncementSent>)> {
    let sent = send_announcement(&api, attempt_id, &body.text, &key.name).await?;
    Ok((StatusCode::ACCEPTED, Json(sent)))
}

/// Records and sends one announcement; shared by the API and the console.
pub async fn send_announcement(api: &Api, attempt_id: i64, text: &str, sent_by: &str) -> ApiResult<AnnouncementSent> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 1000 {
        return Err(Problem::field("/text", "must be 1 to 1000 characters"));
    }
    let call = api
        .store
        .calls_live_one(attempt_id)
        .await?
        .ok_or_else(|| Problem::conflict(format!("attempt {attempt_id} is not a call in progress")))?;
    let (Some(twilio), Some(key), Some(base)) = (&api.voice.twilio, &api.voice.token_key, &api.voice.public_base_url)
    else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "announcements-not-configured",
            "announcements need TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, ATTEMPT_TOKEN_SECRET and PUBLIC_BASE_URL",
        ));
    };
    let in_room =
        matches!(call.transfer, Some(TransferState::Waiting | TransferState::Ringing | TransferState::Connected));
    let conference = call.conference_sid.clone().filter(|_| in_room);
    let via = if conference.is_some() { "conference" } else { "call" };
    let id = api.store.announcements_insert(attempt_id, text, sent_by, via).await?;
    let token = AttemptToken::new(attempt_id).encode(key);
    let result = match (&conference, &call.call_sid) {
        (Some(cf), _) => twilio.announce_conference(cf, &format!("{base}/announce/{token}?id={id}")).await.map(|_| ()),
        (None, Some(sid)) => {
            twilio.redirect_call(sid, &format!("{base}/announce/{token}?id={id}&resume=1")).await.map(|_| ())
        }
        (None, None) => {
            api.store.announcements_failed(id, "the call has no CallSid yet").await?;
            return Err(Problem::conflict(format!("attempt {attempt_id} has no CallSid yet; try again")));
        }
    };
    let m = Metrics::global();
    match result {
        Ok(()) => {
            m.announcements.with_label_values(&[via, "sent"]).inc();
            Ok(AnnouncementSent { id, via: via.into() })
        }
        Err(e) => {
            m.announcements.with_label_values(&[via, "failed"]).inc();
            api.store.announcements_failed(id, &e.to_string()).await?;
            Err(Problem::new(StatusCode::BAD_GATEWAY, "twilio-refused", format!("Twilio: {e}")))
        }
    }
}
