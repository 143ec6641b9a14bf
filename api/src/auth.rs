//! API keys: `Authorization: Bearer KEY` → the key's row (401 without a live key), its scope for the route
//! (403), and its request rate (429 with `Retry-After`). All before any handler reads or writes anything.
//! The key itself is never logged: only its id and shown prefix are.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dialer_core::domain::{ApiKeySecret, Scope};
use dialer_core::store::{ApiKeyRow, Store};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::problem::Problem;

/// Per-key token buckets (GCRA), in this process.
#[derive(Clone)]
pub struct KeyLimiter(Arc<DefaultKeyedRateLimiter<i64>>);

impl KeyLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(per_second.max(1)).expect("positive"))
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("positive"));
        Self(Arc::new(RateLimiter::keyed(quota)))
    }

    /// `Err(seconds to wait)` when the key is over its rate.
    fn check(&self, key_id: i64) -> Result<(), u64> {
        self.0.check_key(&key_id).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// The authenticated key, for handlers that need to know who asked (idempotency keys are per API key).
#[derive(Debug, Clone)]
pub struct Caller(pub ApiKeyRow);

/// What the auth layer needs.
#[derive(Clone)]
pub struct AuthState {
    pub store: Store,
    pub limiter: KeyLimiter,
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

/// Authenticates and rate-limits every `/api/v1` route but the OpenAPI document.
pub async fn authenticate(State(auth): State<AuthState>, mut req: Request, next: Next) -> Response {
    let Some(presented) = bearer(&req) else {
        return Problem::unauthorized("send an API key as `Authorization: Bearer KEY` (see `dialer apikey create`)")
            .into_response();
    };
    let key = match auth.store.api_keys_authenticate(&ApiKeySecret::presented(presented)).await {
        Ok(Some(k)) => k,
        Ok(None) => return Problem::unauthorized("unknown API key").into_response(),
        Err(e) => return Problem::from(e).into_response(),
    };
    if key.revoked_at.is_some() {
        return Problem::unauthorized(format!("API key {} was revoked", key.prefix)).into_response();
    }
    if let Err(wait) = auth.limiter.check(key.id) {
        let mut p = Problem::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("API key {} is over its rate limit; retry in {wait} s", key.prefix),
        );
        p.retry_after = Some(wait.max(1));
        return p.into_response();
    }
    tracing::Span::current().record("api_key", key.id);
    req.extensions_mut().insert(Caller(key));
    next.run(req).await
}

/// A route layer: the authenticated key must hold `scope`.
pub async fn require(State(scope): State<Scope>, req: Request, next: Next) -> Response {
    let allowed = req.extensions().get::<Caller>().is_some_and(|c| c.0.allows(scope));
    if !allowed {
        return Problem::forbidden(format!("this API key lacks the scope `{scope}`")).into_response();
    }
    next.run(req).await
}
