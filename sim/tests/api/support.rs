//! What the simulator's test modules share: starting a simulator, an HTTP client for its API, and a local
//! "callbacks service" (the application's side) that records every request it gets, with its signature
//! checked by the product's code, and answers with the TwiML the test gives it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::Router;
use dialer_core::twilio::signature::{compute_signature, validate};
use dialer_sim::{self as sim, SimConfig, SimHandle};

/// A simulator on a free local port.
pub async fn start(config: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sim::spawn(config, listener).await.unwrap()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// `rb` with the simulator's account credentials (Basic auth).
pub fn auth(sim: &SimHandle, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    rb.basic_auth(&sim.config().account_sid, Some(&sim.config().auth_token))
}

/// Polls `f` until it gives `Some` (at most 10 s: a deadline for a hung test, not a timing assertion).
pub async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..1000 {
        if let Some(t) = f() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {what}");
}

/// One request the callbacks service got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub params: HashMap<String, String>,
    /// `X-Twilio-Signature` is the product's signature of exactly the URL requested, and the product's
    /// validator accepts it.
    pub signature_ok: bool,
    /// `I-Twilio-Idempotency-Token`.
    pub idempotency: Option<String>,
}

impl Hit {
    /// A parameter, `""` when absent.
    pub fn get(&self, k: &str) -> &str {
        self.params.get(k).map(String::as_str).unwrap_or("")
    }
}

/// How the callbacks service answers a request (after recording it).
pub type Answer = fn(&App, &Hit) -> Response;

/// The callbacks service: a local listener that records every request and answers with [`Answer`].
#[derive(Clone)]
pub struct App {
    base: String,
    token: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    answer: Answer,
}

impl App {
    /// Listens on a free local port; signatures are checked with `auth_token`.
    pub async fn start(auth_token: &str, answer: Answer) -> App {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = App {
            base: format!("http://{}", tcp.local_addr().unwrap()),
            token: auth_token.into(),
            hits: Arc::default(),
            answer,
        };
        let router = Router::new().fallback(receive).with_state(app.clone());
        tokio::spawn(async move { axum::serve(tcp, router).await });
        app
    }

    /// The absolute URL of `path` (a path and query) on this service.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The requests so far to a path that starts with `prefix`.
    pub fn hits(&self, prefix: &str) -> Vec<Hit> {
        self.hits.lock().unwrap().iter().filter(|h| h.path.starts_with(prefix)).cloned().collect()
    }

    /// The requests so far to exactly `path`.
    pub fn hits_at(&self, path: &str) -> Vec<Hit> {
        self.hits.lock().unwrap().iter().filter(|h| h.path == path).cloned().collect()
    }

    /// Waits (up to 5 s) until `n` requests under `prefix` arrived (callbacks are sent after the call ends);
    /// then those that did.
    pub async fn wait_for(&self, prefix: &str, n: usize) -> Vec<Hit> {
        for _ in 0..500 {
            if self.hits(prefix).len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.hits(prefix)
    }

    /// Waits until `n` requests to exactly `path` arrived, and returns them ([`until`]'s deadline).
    pub async fn wait_for_at(&self, path: &str, n: usize) -> Vec<Hit> {
        until(&format!("{n} requests to {path}"), || {
            let h = self.hits_at(path);
            (h.len() >= n).then_some(h)
        })
        .await
    }
}

async fn receive(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature = header("X-Twilio-Signature").unwrap_or("");
    let url = app.url(&uri.to_string());
    let signature_ok =
        compute_signature(&app.token, &url, &params) == signature && validate(&app.token, &url, &params, signature);
    let idempotency = header("I-Twilio-Idempotency-Token").map(str::to_string);
    let hit = Hit { path: uri.path().to_string(), params: params.into_iter().collect(), signature_ok, idempotency };
    let response = (app.answer)(&app, &hit);
    app.hits.lock().unwrap().push(hit);
    response
}
