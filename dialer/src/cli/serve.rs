//! `dialer serve`: the long-running processes. Every role serves `/metrics`, `/livez` (the process
//! answers) and `/healthz` (ready: the database answers and has every migration) on LISTEN_ADDR; `callbacks` and `all` add the Twilio callback routes there; `api` and `all` serve the
//! management API on its own listener, API_LISTEN_ADDR.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clap::ValueEnum;
use dialer_core::config::Config;
use dialer_core::metrics::Metrics;
use dialer_core::store::{Readiness, Store};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{connect, CliResult};
use crate::engine::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The scheduler and worker pool that place calls.
    Dialer,
    /// The HTTP service Twilio calls back (TwiML, keypresses, StatusCallbacks).
    Callbacks,
    /// The management API for the customer's systems (`/api/v1` on API_LISTEN_ADDR).
    Api,
    /// All of them in one process.
    All,
}

async fn metrics() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], Metrics::global().render())
}

/// The routes every process serves: metrics, liveness and readiness.
pub fn base_router(store: Store) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok" }))
        .route("/healthz", get(healthz).with_state(store))
}

/// Set once SIGTERM arrived: the process still serves, but asks to be taken out of rotation.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Readiness: 200 when the database answers within two seconds and has every migration this binary knows;
/// 503 saying why otherwise (or that the process is shutting down), so a load balancer or Kubernetes stops
/// sending work here meanwhile.
async fn healthz(State(store): State<Store>) -> (StatusCode, String) {
    if DRAINING.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down\n".into());
    }
    match tokio::time::timeout(Duration::from_secs(2), store.readiness()).await {
        Ok(Ok(Readiness::Ready)) => (StatusCode::OK, "ok\n".into()),
        Ok(Ok(Readiness::MigrationsPending(v))) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: migrations pending: {v:?} (run `dialer migrate`)\n"))
        }
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: database: {e}\n")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: the database did not answer within 2 s\n".into()),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

pub async fn run(role: Role) -> CliResult {
    let config = Config::from_env().context("configuration")?;
    let store = connect().await?;
    if config.migrate_on_start {
        store.migrate().await.context("migrations")?;
    }
    let shutdown = CancellationToken::new();
    let delay = config.shutdown_delay;
    serve(config, store, role, shutdown.clone(), None, async move {
        shutdown_signal().await;
        // Out of rotation first (readiness fails), still serving, then stop taking work.
        DRAINING.store(true, Ordering::Relaxed);
        info!(delay_s = delay.as_secs(), "shutting down: unready now; no new work after the delay");
        tokio::time::sleep(delay).await;
        info!("shutting down: no new claims; draining");
        shutdown.cancel();
    })
    .await?;
    Ok(())
}

/// Runs the given role until `stop` resolves (used by `serve` and `demo`), on `listener` if given, else
/// on LISTEN_ADDR.
pub async fn serve(
    config: Config,
    store: dialer_core::store::Store,
    role: Role,
    shutdown: CancellationToken,
    listener: Option<tokio::net::TcpListener>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut app = base_router(store.clone());
    if matches!(role, Role::Callbacks | Role::All) {
        app = app.merge(callbacks_router(&config, &store)?);
    }
    let listener = match listener {
        Some(l) => l,
        None => tokio::net::TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("binding LISTEN_ADDR {}", config.listen_addr))?,
    };
    info!(addr = %listener.local_addr()?, ?role, "listening");
    let sd = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { sd.cancelled().await }).await
    });
    let api = if matches!(role, Role::Api | Role::All) {
        let state = dialer_api::ApiState {
            store: store.clone(),
            account_cps: config.account_cps,
            limiter: dialer_api::KeyLimiter::new(config.api_rate_limit, config.api_rate_burst),
            voice: dialer_api::operators::Voice::from_config(&config),
        };
        let listener = tokio::net::TcpListener::bind(config.api_listen_addr)
            .await
            .with_context(|| format!("binding API_LISTEN_ADDR {}", config.api_listen_addr))?;
        info!(addr = %listener.local_addr()?, "management API listening");
        let sd = shutdown.clone();
        let app = dialer_api::router(state);
        Some(tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { sd.cancelled().await }).await
        }))
    } else {
        None
    };
    tokio::spawn(stop);
    let webhooks =
        matches!(role, Role::Api | Role::All).then(|| spawn_webhook_deliverer(&config, &store, shutdown.clone()));
    if matches!(role, Role::Dialer | Role::All) {
        let engine: Arc<Engine> = Engine::new(&config, store, shutdown.clone())?;
        engine.run().await?;
    } else {
        shutdown.cancelled().await;
    }
    // Bounded drain for the HTTP side and the webhook POSTs in flight (the deliverer bounds its own).
    let _ = tokio::time::timeout(config.shutdown_grace, http).await;
    if let Some(api) = api {
        let _ = tokio::time::timeout(config.shutdown_grace, api).await;
    }
    if let Some(w) = webhooks {
        let _ = w.await;
    }
    Ok(())
}

/// Starts the result webhook deliverer in its own task (it stops on `shutdown`). One per process is enough;
/// several replicas share the outbox safely (claims skip each other's rows).
pub fn spawn_webhook_deliverer(
    config: &Config,
    store: &dialer_core::store::Store,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(crate::webhooks::run(store.clone(), crate::webhooks::WebhookConfig::from(config), shutdown))
}

fn callbacks_router(config: &Config, store: &dialer_core::store::Store) -> anyhow::Result<Router> {
    let state = callbacks::AppState {
        store: store.clone(),
        auth_token: secrecy::SecretString::from(config.auth_token()?.to_string()),
        public_base_url: config.public_base_url()?.to_string(),
        token_key: config.token_key()?,
        inbound: config.inbound.clone(),
    };
    Ok(callbacks::router(state))
}
