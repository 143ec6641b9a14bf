//! The delivery-reschedule flow through the management API alone, as a carrier's system would run it:
//! create the campaign, set its webhook, push contacts with an idempotency key (and replay the push), start
//! it; the simulator's callees press 1 then 2, and the carrier's receiver gets a verified `contact.result`
//! with `reschedule:afternoon` for every contact, then its `contact.finished`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use dialer_sim::{DigitDist, OutcomeMix};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::wait_for;

struct Carrier {
    secret: Mutex<Option<String>>,
    /// (verified, body) of every event, in arrival order.
    events: Mutex<Vec<(bool, Value)>>,
}

async fn carrier_hook(State(c): State<Arc<Carrier>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(secret) = c.secret.lock().unwrap().clone() else { return StatusCode::SERVICE_UNAVAILABLE };
    let verified = standardwebhooks::Webhook::new(&secret).unwrap().verify(&body, &headers).is_ok();
    c.events.lock().unwrap().push((verified, serde_json::from_slice(&body).unwrap_or_default()));
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn the_delivery_reschedule_flow_runs_through_the_api_alone() {
    let sim = dialer_sim::SimConfig {
        outcomes: OutcomeMix { human: 100.0, machine: 0.0, busy: 0.0, no_answer: 0.0, failed: 0.0, invalid: 0.0 },
        digits: "1>2".parse::<DigitDist>().unwrap(),
        ..sim_config(20.0)
    };
    let mut env = Env::new(sim).await;
    let api_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let api_addr = format!("127.0.0.1:{api_port}");
    env.spawn("all", 20.0, &[("API_LISTEN_ADDR", &api_addr), ("WEBHOOK_POLL_MS", "100")]);

    // The carrier's key, made by the operator once.
    let out = env.cli(&[
        "apikey",
        "create",
        "--name",
        "carrier",
        "--scope",
        "campaigns:write",
        "--scope",
        "campaigns:read",
        "--scope",
        "contacts:write",
        "--scope",
        "results:read",
        "--scope",
        "webhooks:write",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let http = reqwest::Client::new();
    let base = format!("http://{api_addr}");
    let call = |method: Method, path: &str| http.request(method, format!("{base}{path}")).bearer_auth(&key);
    wait_for("the API listens", Duration::from_secs(60), || async {
        http.get(format!("{base}/api/v1/openapi.json")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;

    // The campaign: the example file, as JSON, in a zone whose window is open now.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/campaigns/delivery-reschedule-ja.toml");
    let file: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut campaign = serde_json::to_value(file).unwrap();
    campaign["timezone"] = json!(open_zone().name());
    campaign["cps"] = json!(20.0);
    let r = call(Method::POST, "/api/v1/campaigns").json(&campaign).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();

    // Its webhook, to the carrier's receiver.
    let carrier = Arc::new(Carrier { secret: Mutex::new(None), events: Mutex::new(Vec::new()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new().route("/hook", post(carrier_hook)).with_state(carrier.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let r = call(Method::PUT, &format!("/api/v1/campaigns/{id}/webhook"))
        .json(&json!({"url": hook_url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let secret = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    *carrier.secret.lock().unwrap() = Some(secret);

    // Contacts, pushed with an idempotency key; the replay (a retry after a timeout) creates nothing.
    let n = 12;
    let contacts: Vec<Value> = (0..n)
        .map(|i| {
            // Japanese mobiles, in the open zone (given, or their number would say Asia/Tokyo).
            json!({"phone": format!("+8190{:08}", 41_000_000 + i), "external_id": format!("PARCEL-{i}"),
                   "timezone": open_zone().name(),
                   "attributes": {"name": format!("山田{i}"), "parcel": format!("PARCEL-{i}")}})
        })
        .collect();
    let push = || {
        call(Method::POST, &format!("/api/v1/campaigns/{id}/contacts"))
            .header("idempotency-key", "delivery-failures-0001")
            .json(&json!({"contacts": contacts}))
            .send()
    };
    let first: Value = push().await.unwrap().json().await.unwrap();
    assert_eq!(first["created"], n);
    let replay = push().await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);

    let r = call(Method::POST, &format!("/api/v1/campaigns/{id}/start")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "running");

    // Progress through the API until every contact is finished (a hang guard, not a timing assertion).
    wait_for("the campaign finishes", Duration::from_secs(180), || async {
        let p: Value =
            call(Method::GET, &format!("/api/v1/campaigns/{id}/progress")).send().await.unwrap().json().await.unwrap();
        p["percent_done"] == 1.0
    })
    .await;
    wait_for("every contact's events reach the carrier", Duration::from_secs(60), || async {
        carrier.events.lock().unwrap().iter().filter(|(_, e)| e["type"] == "contact.finished").count() == n as usize
    })
    .await;

    let events = carrier.events.lock().unwrap().clone();
    assert!(events.iter().all(|(verified, _)| *verified), "every event verifies with the secret");
    for i in 0..n {
        let parcel = format!("PARCEL-{i}");
        let mine: Vec<&Value> =
            events.iter().map(|(_, e)| e).filter(|e| e["data"]["external_id"] == parcel.as_str()).collect();
        let kinds: Vec<&str> = mine.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["contact.result", "contact.finished"], "{parcel}: {mine:?}");
        assert_eq!(mine[0]["data"]["result"], "reschedule:afternoon", "{parcel}");
        assert_eq!(mine[0]["data"]["menu"], "slot");
        assert_eq!(mine[1]["data"]["state"], "done");
    }
    // The same answer is in the results the API serves.
    let page: Value =
        call(Method::GET, &format!("/api/v1/campaigns/{id}/results")).send().await.unwrap().json().await.unwrap();
    let results: Vec<&str> = page["items"].as_array().unwrap().iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(results, vec!["reschedule:afternoon"; n as usize]);
    assert_eq!(env.sim.calls().len(), n as usize, "one call per contact");
}
