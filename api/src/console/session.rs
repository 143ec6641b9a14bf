//! Logging in to the console with an API key: a session whose random id is in an HttpOnly, SameSite=Strict
//! cookie (only its SHA-256 is stored), a CSRF token per session checked on every POST, and logout. A
//! revoked key ends its sessions at once (the lookup joins the live key).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use dialer_core::domain::{ApiKeySecret, Scope};
use dialer_core::store::ConsoleSession;
use serde::Deserialize;

use super::html::{page, Chrome, Html};
use crate::ApiState;

pub const COOKIE: &str = "dialer_console";
/// How long a login lasts (a working day).
const SESSION_HOURS: i64 = 10;

/// The person looking: a live session. Pages that need it redirect to the login page without one.
pub struct Session {
    pub id_hash: [u8; 32],
    pub inner: ConsoleSession,
}

impl Session {
    pub fn csrf(&self) -> &str {
        &self.inner.csrf_token
    }

    pub fn chrome(&self) -> Chrome<'_> {
        Chrome { csrf: Some(self.csrf()), key_name: Some(&self.inner.key.name) }
    }

    /// 403 unless the key holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), Response> {
        if self.inner.key.allows(scope) {
            Ok(())
        } else {
            Err(forbidden(self, &format!("Your API key lacks the scope “{scope}” needed here.")))
        }
    }

    /// The CSRF token of a form or `X-CSRF-Token` header must be this session's.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), Response> {
        let expected = self.csrf().as_bytes();
        let ok = presented.is_some_and(|p| {
            let p = p.as_bytes();
            // Constant time over equal lengths.
            p.len() == expected.len() && p.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        });
        if ok {
            Ok(())
        } else {
            Err(forbidden(
                self,
                "This form was refused: its security token is missing or out of date. Reload the page and try again.",
            ))
        }
    }
}

pub fn forbidden(s: &Session, why: &str) -> Response {
    let mut h = Html::default();
    h.el("h1", "", "Not allowed").el("p", "role=\"alert\"", why);
    page(StatusCode::FORBIDDEN, "Not allowed", &s.chrome(), &h.0)
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty()).then(|| v.to_string())
    })
}

impl FromRequestParts<ApiState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &ApiState) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/console/login").into_response();
        let Some(id) = cookie_value(&parts.headers) else { return Err(to_login()) };
        let id_hash = ApiKeySecret::presented(&id).hash();
        match api.store.console_sessions_get(&id_hash).await {
            Ok(Some(inner)) => Ok(Session { id_hash, inner }),
            Ok(None) => Err(to_login()),
            Err(e) => {
                tracing::error!(error = %e, "console session lookup failed");
                Err(StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
        }
    }
}

/// A POST from another site is refused whatever it carries (defence in depth beside the tokens and
/// SameSite=Strict): browsers say where a request comes from in `Sec-Fetch-Site` and `Origin`.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), headers.get(header::HOST)) {
        (Some(origin), Some(host)) if origin != "null" => {
            origin.split_once("://").map(|(_, h)| h) == host.to_str().ok()
        }
        _ => true,
    }
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let mut h = Html::default();
    h.raw("<section class=\"login\"><h1>Log in</h1>")
        .raw("<p>Use an API key made with <code>dialer apikey create</code>; it needs the scope <code>campaigns:read</code>, and each action its own scope.</p>")
        .raw("<form method=\"post\" action=\"/console/login\">")
        .raw("<label for=\"key\">API key</label>")
        .raw("<input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"current-password\" required");
    if error.is_some() {
        h.raw(" aria-invalid=\"true\" aria-describedby=\"key-error\"");
    }
    h.raw(">");
    if let Some(e) = error {
        h.el("p", "id=\"key-error\" class=\"error\" role=\"alert\"", e);
    }
    h.raw("<button type=\"submit\">Log in</button></form></section>");
    page(status, "Log in", &Chrome { csrf: None, key_name: None }, &h.0)
}

pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    key: String,
}

pub async fn login(State(api): State<ApiState>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if !same_origin(&headers) {
        return login_page(StatusCode::FORBIDDEN, Some("This login came from another site and was refused."));
    }
    let key = match api.store.api_keys_authenticate(&ApiKeySecret::presented(f.key.trim())).await {
        Ok(Some(k)) if k.revoked_at.is_none() => k,
        Ok(_) => return login_page(StatusCode::UNAUTHORIZED, Some("That API key is unknown or revoked.")),
        Err(e) => {
            tracing::error!(error = %e, "console login failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if !key.allows(Scope::CampaignsRead) {
        return login_page(StatusCode::FORBIDDEN, Some("That API key lacks the scope campaigns:read."));
    }
    // A fresh id at every login (no fixation): 256 random bits, like an API key.
    let id = ApiKeySecret::generate();
    let csrf = ApiKeySecret::generate();
    let expires = Utc::now() + chrono::Duration::hours(SESSION_HOURS);
    if let Err(e) = api.store.console_sessions_insert(&id.hash(), key.id, csrf.expose(), expires).await {
        tracing::error!(error = %e, "console session insert failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    tracing::info!(api_key = key.id, "console login");
    let cookie =
        format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}", id.expose(), SESSION_HOURS * 3600);
    let mut res = Redirect::to("/console/campaigns").into_response();
    res.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ascii cookie"));
    res
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    pub csrf: Option<String>,
}

pub async fn logout(State(api): State<ApiState>, s: Session, Form(f): Form<CsrfOnly>) -> Response {
    if let Err(r) = s.check_csrf(f.csrf.as_deref()) {
        return r;
    }
    if let Err(e) = api.store.console_sessions_delete(&s.id_hash).await {
        tracing::error!(error = %e, "console logout failed");
    }
    let mut res = Redirect::to("/console/login").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0"))
            .expect("ascii"),
    );
    res
}
