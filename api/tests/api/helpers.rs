use dialer_api::{ApiState, KeyLimiter};
use dialer_core::domain::{ApiKeySecret, Scope};
use dialer_core::store::Store;
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;

/// A management API on 127.0.0.1 over a fresh database.
pub struct Api {
    pub base: String,
    pub store: Store,
    pub http: Client,
}

impl Api {
    pub async fn start() -> Self {
        Self::start_with_rate(1000, 1000).await
    }

    pub async fn start_with_rate(per_second: u32, burst: u32) -> Self {
        let store = testkit::fresh_store().await;
        let state = ApiState {
            store: store.clone(),
            account_cps: 10.0,
            limiter: KeyLimiter::new(per_second, burst),
            voice: std::sync::Arc::new(test_voice()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, dialer_api::router(state)).await.unwrap() });
        Self { base, store, http: Client::new() }
    }

    /// A new key with these scopes.
    pub async fn key(&self, scopes: &[Scope]) -> String {
        let secret = ApiKeySecret::generate();
        self.store.api_keys_insert("test", &secret, scopes).await.unwrap();
        secret.expose().to_string()
    }

    pub async fn admin(&self) -> String {
        self.key(&Scope::ALL).await
    }

    pub fn req(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(key)
    }

    /// GET `path` with `key`, expecting 200 and a JSON body.
    pub async fn get_json(&self, path: &str, key: &str) -> Value {
        let r = self.req(Method::GET, path, key).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Creates the delivery campaign (the example file, as JSON) and returns its id.
    pub async fn delivery_campaign(&self, key: &str) -> i64 {
        let r = self.req(Method::POST, "/api/v1/campaigns", key).json(&delivery_campaign_json()).send().await.unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }
}

/// The repository's example delivery campaign as a JSON document.
pub fn delivery_campaign_json() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/campaigns/delivery-reschedule-ja.toml");
    let toml: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::to_value(toml).unwrap()
}

/// A problem body, checked to be one.
pub async fn problem(r: Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    assert_eq!(
        r.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "content type"
    );
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], status, "{p}");
    assert!(p["type"].as_str().unwrap().starts_with("urn:dialer:problem:"), "{p}");
    assert!(!p["detail"].as_str().unwrap().is_empty(), "{p}");
    p
}

/// Rows in the tables the API writes, to prove a refused request wrote nothing.
pub async fn table_counts(store: &Store) -> Vec<i64> {
    let mut out = Vec::new();
    for t in ["campaigns", "contacts", "dnc", "idempotency_keys"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {t}")).fetch_one(store.pool()).await.unwrap();
        out.push(n);
    }
    out
}

pub fn contact(i: usize) -> Value {
    serde_json::json!({
        "phone": format!("+8190{:08}", 30_000_000 + i),
        "external_id": format!("P-{i}"),
        "attributes": {"name": format!("お客様{i}"), "parcel": format!("P-{i}")}
    })
}

/// Operator settings as a deployment has them (an API key to sign access tokens with); no Twilio
/// client, so announcements to live calls answer 503 — the tests have no live calls.
pub fn test_voice() -> dialer_api::operators::Voice {
    dialer_api::operators::Voice {
        account_sid: Some(TEST_ACCOUNT_SID.into()),
        operators: dialer_core::config::OperatorConfig {
            api_key_sid: Some(TEST_API_KEY_SID.into()),
            api_key_secret: Some(TEST_API_KEY_SECRET.into()),
            twiml_app_sid: Some(TEST_TWIML_APP_SID.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub const TEST_ACCOUNT_SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const TEST_API_KEY_SID: &str = "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
pub const TEST_API_KEY_SECRET: &str = "api-key-secret-for-tests";
pub const TEST_TWIML_APP_SID: &str = "APcccccccccccccccccccccccccccccccc";
