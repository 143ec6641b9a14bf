use callbacks::{router, AppState};
use chrono::{DateTime, Utc};
use dialer_core::domain::{AttemptState, AttemptToken, CallSid, CampaignSpec, ContactState, TokenKey, E164};
use dialer_core::store::{NewContact, Store};
use dialer_core::twilio::signature::compute_signature;
use secrecy::SecretString;
use testkit::fresh_store;

pub const AUTH_TOKEN: &str = "test-auth-token-0123456789abcdef";
pub const JA_CAMPAIGN: &str = include_str!("../../../examples/campaigns/delivery-reschedule-ja.toml");
pub const EN_CAMPAIGN: &str = include_str!("../../../examples/campaigns/appointment-confirmation.toml");

pub struct TestApp {
    /// Also the public base URL: Twilio signs what it requests.
    pub base: String,
    pub store: Store,
    pub client: reqwest::Client,
    pub key: TokenKey,
}

/// One call in progress: its attempt, token and SID.
#[derive(Debug, Clone)]
pub struct Call {
    pub attempt_id: i64,
    pub contact_id: i64,
    pub token: String,
    pub sid: CallSid,
}

impl TestApp {
    pub async fn spawn() -> Self {
        let store = fresh_store().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let key = TokenKey::new(b"test attempt token key");
        let state = AppState {
            store: store.clone(),
            auth_token: SecretString::from(AUTH_TOKEN),
            public_base_url: base.clone(),
            token_key: key.clone(),
            inbound: Default::default(),
        };
        let app = router(state);
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Self { base, store, client: reqwest::Client::new(), key }
    }

    pub async fn campaign(&self, toml_text: &str) -> i64 {
        self.store.campaigns_insert(&CampaignSpec::parse(toml_text, "c.toml").expect("campaign parses")).await.unwrap()
    }

    pub async fn contact(&self, campaign_id: i64, phone: &str, name: &str) -> i64 {
        let c = NewContact {
            phone: E164::parse(phone, None).unwrap(),
            zone: dialer_core::domain::compliance::ContactZone::campaigns(),
            external_id: Some(format!("ext-{phone}")),
            attributes: [("name".to_string(), name.to_string()), ("parcel".to_string(), "1234-5678".to_string())]
                .into(),
        };
        self.store.contacts_insert_many(campaign_id, &[c], |_| {}).await.unwrap();
        self.scalar_i64(&format!("SELECT id FROM contacts WHERE campaign_id = {campaign_id} AND phone = '{phone}'"))
            .await
    }

    /// The contact's next attempt, as the dialer leaves it after the POST (`created`, CallSid known).
    pub async fn call(&self, contact_id: i64) -> Call {
        self.call_in(contact_id, AttemptState::Created, true).await
    }

    pub async fn call_in(&self, contact_id: i64, state: AttemptState, sid_known: bool) -> Call {
        let sid = CallSid::random();
        let attempt_id = testkit::insert_attempt(&self.store, contact_id, state, sid_known.then_some(&sid)).await;
        Call { attempt_id, contact_id, token: AttemptToken::new(attempt_id).encode(&self.key), sid }
    }

    pub fn sign(&self, path_and_query: &str, params: &[(String, String)]) -> String {
        compute_signature(AUTH_TOKEN, &format!("{}{}", self.base, path_and_query), params)
    }

    /// A form POST signed as Twilio signs it.
    pub async fn post(&self, path_and_query: &str, params: &[(String, String)]) -> reqwest::Response {
        let sig = self.sign(path_and_query, params);
        self.post_raw(path_and_query, params, Some(&sig), None).await
    }

    pub async fn post_raw(
        &self,
        path_and_query: &str,
        params: &[(String, String)],
        signature: Option<&str>,
        idempotency: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.client.post(format!("{}{}", self.base, path_and_query)).form(params);
        if let Some(s) = signature {
            req = req.header("X-Twilio-Signature", s);
        }
        if let Some(t) = idempotency {
            req = req.header("I-Twilio-Idempotency-Token", t);
        }
        req.send().await.expect("request")
    }

    pub async fn status(&self, call: &Call, event: &Event) -> reqwest::StatusCode {
        self.post(&format!("/status/{}", call.token), &event.params(&call.sid)).await.status()
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.store.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn contact_row(&self, id: i64) -> ContactRow {
        sqlx::query_as(
            "SELECT state, final_outcome, result, attempts_made, next_attempt_at FROM contacts WHERE id = $1",
        )
        .bind(id)
        .fetch_one(self.store.pool())
        .await
        .unwrap()
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ContactRow {
    pub state: ContactState,
    pub final_outcome: Option<String>,
    pub result: Option<String>,
    pub attempts_made: i32,
    pub next_attempt_at: DateTime<Utc>,
}

/// One StatusCallback's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub status: &'static str,
    pub seq: i32,
    pub sip: Option<i32>,
    pub duration: Option<i32>,
    pub answered_by: Option<&'static str>,
}

impl Event {
    pub fn new(status: &'static str, seq: i32) -> Self {
        Self { status, seq, sip: None, duration: None, answered_by: None }
    }

    pub fn params(&self, sid: &CallSid) -> Vec<(String, String)> {
        let ts = chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(self.seq) * 7, 0).unwrap();
        let mut p = vec![
            ("AccountSid".to_string(), "AC00000000000000000000000000000000".to_string()),
            ("CallSid".to_string(), sid.to_string()),
            ("CallStatus".to_string(), self.status.to_string()),
            ("SequenceNumber".to_string(), self.seq.to_string()),
            ("CallbackSource".to_string(), "call-progress-events".to_string()),
            ("Timestamp".to_string(), ts.to_rfc2822()),
        ];
        if let Some(s) = self.sip {
            p.push(("SipResponseCode".into(), s.to_string()));
        }
        if let Some(d) = self.duration {
            p.push(("CallDuration".into(), d.to_string()));
        }
        if let Some(a) = self.answered_by {
            p.push(("AnsweredBy".into(), a.to_string()));
        }
        p
    }
}

pub fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
