//! `dialer results export` after real (signed) callbacks: every contact with its outcome and result, as CSV
//! and as JSON.

use callbacks::{router, AppState};
use dialer_core::domain::{AttemptToken, CallSid, TokenKey};
use dialer_core::store::Store;
use dialer_core::twilio::signature::compute_signature;
use secrecy::SecretString;
use serde_json::Value;

use crate::{write_temp, Cli, EN};

const AUTH_TOKEN: &str = "test-auth-token-0123456789abcdef";

/// The callbacks service in-process on the CLI's database, and the requests Twilio would send it.
struct Callbacks {
    base: String,
    store: Store,
    key: TokenKey,
    client: reqwest::Client,
}

impl Callbacks {
    async fn spawn(db: &str) -> Self {
        let store = Store::connect(db, 4).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let key = TokenKey::new(b"test attempt token key");
        let app = router(AppState {
            store: store.clone(),
            auth_token: SecretString::from(AUTH_TOKEN),
            public_base_url: base.clone(),
            token_key: key.clone(),
            inbound: Default::default(),
        });
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Self { base, store, key, client: reqwest::Client::new() }
    }

    /// The contact's next attempt as the dialer leaves it after the POST: its token and CallSid.
    async fn call(&self, phone: &str) -> (String, CallSid) {
        let contact_id: i64 = sqlx::query_scalar("SELECT id FROM contacts WHERE phone = $1")
            .bind(phone)
            .fetch_one(self.store.pool())
            .await
            .unwrap();
        let sid = CallSid::random();
        let attempt_id =
            testkit::insert_attempt(&self.store, contact_id, dialer_core::domain::AttemptState::Created, Some(&sid))
                .await;
        (AttemptToken::new(attempt_id).encode(&self.key), sid)
    }

    /// A form POST signed as Twilio signs it; the response status.
    async fn post(&self, path_and_query: &str, params: &[(&str, &str)]) -> u16 {
        let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let url = format!("{}{}", self.base, path_and_query);
        let sig = compute_signature(AUTH_TOKEN, &url, &params);
        let resp = self.client.post(url).form(&params).header("X-Twilio-Signature", sig).send().await.unwrap();
        resp.status().as_u16()
    }

    /// A StatusCallback.
    async fn status(&self, (token, sid): &(String, CallSid), status: &str, seq: i32) -> u16 {
        let ts = chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(seq) * 7, 0).unwrap().to_rfc2822();
        let seq = seq.to_string();
        let params = [
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("CallSid", sid.as_str()),
            ("CallStatus", status),
            ("SequenceNumber", seq.as_str()),
            ("CallbackSource", "call-progress-events"),
            ("Timestamp", ts.as_str()),
        ];
        self.post(&format!("/status/{token}"), &params).await
    }
}

#[tokio::test]
async fn results_export_lists_every_contact_with_its_outcome_and_result() {
    let cli = Cli::new().await;
    cli.ok(&["migrate"]);
    let campaign = cli.ok(&["campaign", "create", "--file", EN]).trim().to_string();
    let contacts = write_temp(
        "contacts.csv",
        "phone,name,appointment_at,external_id\n\
         +14155550121,\"Ann, \"\"the\"\" first\",May 1,ext-+14155550121\n\
         +14155550122,Bob,May 2,ext-+14155550122\n\
         +14155550123,Never called,May 3,\n"
            .as_bytes(),
    );
    cli.ok(&["contacts", "import", "--campaign", &campaign, contacts.to_str().unwrap()]);
    let app = Callbacks::spawn(&cli.db).await;

    let confirmed = app.call("+14155550121").await;
    let path = format!("/gather/{}?menu=main&n=0", confirmed.0);
    assert_eq!(app.post(&path, &[("CallSid", confirmed.1.as_str()), ("Digits", "1")]).await, 200);
    assert_eq!(app.status(&confirmed, "completed", 3).await, 200);
    let busy = app.call("+14155550122").await;
    assert_eq!(app.status(&busy, "busy", 1).await, 200);

    let export = |format: &str| cli.ok(&["results", "export", "--campaign", &campaign, "--format", format]);
    let rows: Value = serde_json::from_str(&export("json")).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (&rows[0]["state"], &rows[0]["outcome"], &rows[0]["result"], &rows[0]["attempts"]),
        (&Value::from("done"), &Value::from("answered_result"), &Value::from("confirmed"), &Value::from(1))
    );
    assert!(rows[0]["last_call_at"].is_string());
    assert_eq!((&rows[1]["state"], &rows[1]["outcome"]), (&Value::from("pending"), &Value::from("busy")));
    assert_eq!((&rows[2]["attempts"], &rows[2]["last_call_at"]), (&Value::from(0), &Value::Null));
    assert_eq!(rows[2]["outcome"], Value::Null);

    let csv = export("csv");
    assert!(
        csv.starts_with("contact_id,external_id,phone,state,outcome,result,attempts,last_call_at,zones,zone_source,inbound_calls,sms,operator,handle_s\n"),
        "{csv}"
    );
    // Imported without a zone: San Francisco's, from the number.
    assert!(csv.contains(",America/Los_Angeles,number,0,,,\n"), "{csv}");
    assert_eq!(
        (&rows[0]["zones"], &rows[0]["zone_source"]),
        (&Value::from("America/Los_Angeles"), &Value::from("number"))
    );
    assert!(csv.contains(",ext-+14155550121,+14155550121,done,answered_result,confirmed,1,"), "{csv}");
}
