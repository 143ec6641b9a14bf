//! Operators over the API: access tokens (decoded here and checked claim by claim; the byte-for-byte
//! comparison with Twilio's helper library is `core/tests/access_token.rs`), refused to keys that are not
//! an operator's; availability; the operator list; creating an operator; malformed input.

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

fn decode(segment: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

#[tokio::test]
async fn an_operator_gets_a_twilio_access_token_and_others_do_not() {
    let api = Api::start().await;
    let admin = api.admin().await;
    let r = api
        .req(Method::POST, "/api/v1/operators", &admin)
        .json(&json!({ "identity": "alice.tokyo" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let alice = created["key"].as_str().unwrap().to_string();

    let before = chrono::Utc::now().timestamp();
    let r = api.req(Method::POST, "/api/v1/operator/token", &alice).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["identity"], "alice.tokyo");
    let jwt = t["token"].as_str().unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(decode(parts[0]), json!({ "alg": "HS256", "cty": "twilio-fpa;v=1", "typ": "JWT" }));
    let claims = decode(parts[1]);
    let nbf = claims["nbf"].as_i64().unwrap();
    assert!(nbf >= before && nbf <= chrono::Utc::now().timestamp());
    assert_eq!(claims["exp"].as_i64().unwrap() - nbf, 600, "the default TTL: {claims}");
    assert_eq!(claims["iss"], TEST_API_KEY_SID);
    assert_eq!(claims["sub"], TEST_ACCOUNT_SID);
    assert_eq!(claims["jti"], format!("{TEST_API_KEY_SID}-{nbf}"));
    assert_eq!(
        claims["grants"],
        json!({
            "voice": { "incoming": { "allow": true }, "outgoing": { "application_sid": TEST_TWIML_APP_SID } },
            "identity": "alice.tokyo"
        })
    );
    // Signed with the API key's secret (HS256 over header.payload).
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(TEST_API_KEY_SECRET.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    assert_eq!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()), parts[2]);
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(t["expires_at"].as_str().unwrap()).unwrap().timestamp(),
        claims["exp"].as_i64().unwrap()
    );

    // A key that is not an operator's, however many scopes it has, gets no token.
    let r = api.req(Method::POST, "/api/v1/operator/token", &admin).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("not an operator"), "{p}");
    let r = api.http.post(format!("{}/api/v1/operator/token", api.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn operators_set_their_availability_and_supervisors_see_it() {
    let api = Api::start().await;
    let admin = api.admin().await;
    let alice: Value = api
        .req(Method::POST, "/api/v1/operators", &admin)
        .json(&json!({ "identity": "alice" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alice = alice["key"].as_str().unwrap().to_string();
    let list = api.get_json("/api/v1/operators", &admin).await;
    assert_eq!(list[0]["identity"], "alice");
    assert_eq!(list[0]["status"], "away", "a new operator starts away");

    let r = api
        .req(Method::PUT, "/api/v1/operator/status", &alice)
        .json(&json!({ "status": "available" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "available");
    assert_eq!(api.get_json("/api/v1/operators", &admin).await[0]["status"], "available");

    // Malformed: a status that is neither, names the field; nothing changes.
    let r = api
        .req(Method::PUT, "/api/v1/operator/status", &alice)
        .json(&json!({ "status": "lunch" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["pointer"], "/status", "{p}");
    assert_eq!(api.get_json("/api/v1/operators", &admin).await[0]["status"], "available");

    // The same identity twice is a conflict; a bad identity names the field.
    let r =
        api.req(Method::POST, "/api/v1/operators", &admin).json(&json!({ "identity": "alice" })).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let r = api
        .req(Method::POST, "/api/v1/operators", &admin)
        .json(&json!({ "identity": "client:bob" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["pointer"], "/identity");
    assert_eq!(api.get_json("/api/v1/operators", &admin).await.as_array().unwrap().len(), 1);
    // An operator's own key holds campaigns:read only: it cannot create operators.
    let r = api
        .req(Method::POST, "/api/v1/operators", &alice)
        .json(&json!({ "identity": "mallory" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
