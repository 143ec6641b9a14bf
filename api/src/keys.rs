//! `/api/v1/keys`: API keys managed through the API (and the console) by a key with `keys:manage`. A key
//! grants only scopes it holds itself, so managing keys never widens what anyone may do. The secret is in
//! the answer that creates it and nowhere else.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use dialer_core::domain::{ApiKeySecret, Scope};
use dialer_core::store::ApiKeyRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::extract::Path;
use crate::problem::{ApiResult, FieldError, Problem};
use crate::Api;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyCreate {
    /// Who or what uses it, e.g. "delivery-system".
    pub name: String,
    /// What it may do: only scopes the calling key holds.
    #[schema(value_type = Vec<String>, example = json!(["campaigns:read", "results:read"]))]
    pub scopes: Vec<Scope>,
}

/// A key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: i64,
    pub name: String,
    /// The key's first characters (`dk_` and 8 more), to tell keys apart.
    pub prefix: String,
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRow> for KeyView {
    fn from(k: ApiKeyRow) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// The new key, with its secret: shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreated {
    #[serde(flatten)]
    pub key: KeyView,
    /// `dk_…`: use it as `Authorization: Bearer …`. Only its hash is kept; it is not shown again.
    pub secret: String,
}

/// Every key, live and revoked.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", security(("api_key" = ["keys:manage"])),
    responses((status = 200, body = Vec<KeyView>), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(State(api): State<Api>) -> ApiResult<Json<Vec<KeyView>>> {
    Ok(Json(api.store.api_keys_list().await?.into_iter().map(KeyView::from).collect()))
}

/// Create a key (201, the secret in the answer, once). Scopes the calling key lacks are 403.
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = KeyCreate,
    security(("api_key" = ["keys:manage"])),
    responses((status = 201, body = KeyCreated, headers(("Location" = String))),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(api): State<Api>,
    Extension(Caller(caller)): Extension<Caller>,
    JsonBody(body): JsonBody<KeyCreate>,
) -> ApiResult<impl IntoResponse> {
    let (key, secret) = create_key(&api, &caller, &body.name, body.scopes).await?;
    let location = format!("/api/v1/keys/{}", key.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(KeyCreated { key, secret })))
}

/// Creates a key on behalf of `caller` (the API and the console): checks the name and that every scope
/// is one `caller` holds.
pub(crate) async fn create_key(
    api: &Api,
    caller: &ApiKeyRow,
    name: &str,
    mut scopes: Vec<Scope>,
) -> Result<(KeyView, String), Problem> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Problem::field("/name", "must not be empty"));
    }
    if scopes.is_empty() {
        return Err(Problem::field("/scopes", "give at least one scope"));
    }
    let beyond: Vec<FieldError> = scopes
        .iter()
        .enumerate()
        .filter(|(_, s)| !caller.allows(**s))
        .map(|(i, s)| FieldError {
            pointer: Some(format!("/scopes/{i}")),
            field: Some("scopes".into()),
            row: None,
            detail: format!("{s}: your key does not hold it, so it cannot grant it"),
        })
        .collect();
    if !beyond.is_empty() {
        return Err(Problem { errors: beyond, ..Problem::forbidden("a key can only grant scopes it holds itself") });
    }
    scopes.sort();
    scopes.dedup();
    let secret = ApiKeySecret::generate();
    let id = api.store.api_keys_insert(name, &secret, &scopes).await?;
    tracing::info!(key_id = id, by = caller.id, "API key created");
    let key = api.store.api_keys_get(id).await?.ok_or_else(Problem::internal)?;
    Ok((key.into(), secret.expose().to_string()))
}

/// Revoke a key at once (204); its next request is 401. An unknown or already revoked key is 404.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = i64, Path)),
    security(("api_key" = ["keys:manage"])),
    responses((status = 204, description = "Revoked"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn revoke(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    if api.store.api_keys_revoke(id).await? {
        tracing::info!(key_id = id, "API key revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("no live API key {id}")))
    }
}
