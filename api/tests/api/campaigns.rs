//! Campaigns through the API: the campaign file's own validation and messages, live changes, status moves.

use dialer_core::domain::CampaignSpec;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{delivery_campaign_json, problem, Api};

#[tokio::test]
async fn create_validates_like_the_cli_and_names_the_field() {
    let api = Api::start().await;
    let key = api.admin().await;
    let post = |body: Value| api.req(Method::POST, "/api/v1/campaigns", &key).json(&body).send();

    // The same document the CLI takes, and the same message for the same mistake.
    let mut bad = delivery_campaign_json();
    bad["window"]["start"] = json!("9am");
    let cli_message = CampaignSpec::validate(serde_json::from_value(bad.clone()).unwrap()).unwrap_err().to_string();
    let p = problem(post(bad).await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/window/start");
    assert_eq!(p["errors"][0]["field"], "window.start");
    assert!(cli_message.contains(p["errors"][0]["detail"].as_str().unwrap()), "{cli_message} vs {p}");

    let mut bad = delivery_campaign_json();
    bad["script"]["menus"]["main"]["say"] = json!("{name}様 {undeclared}");
    let p = problem(post(bad).await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/script");
    assert!(p["detail"].as_str().unwrap().contains("undeclared"), "{p}");

    let mut bad = delivery_campaign_json();
    bad["cps"] = json!("fast");
    let p = problem(post(bad).await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/cps");

    let mut bad = delivery_campaign_json();
    bad["colour"] = json!("blue");
    let p = problem(post(bad).await.unwrap(), 422).await;
    assert!(p["detail"].as_str().unwrap().contains("colour"), "{p}");

    let r = api
        .req(Method::POST, "/api/v1/campaigns", &key)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    problem(r, 400).await;
    let r = api.req(Method::POST, "/api/v1/campaigns", &key).body("name = \"x\"").send().await.unwrap();
    problem(r, 415).await;
    assert_eq!(api.store.campaigns_list(0, 10).await.unwrap().len(), 0, "nothing was created");

    let r = post(delivery_campaign_json()).await.unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let c: Value = r.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/campaigns/{}", c["id"]));
    assert_eq!(c["status"], "draft");
    assert_eq!(c["name"], "再配達のご案内");
    assert_eq!(c["spec"]["script"]["menus"]["slot"]["options"]["2"]["result"], "reschedule:afternoon");
    let got: Value = api.req(Method::GET, &location, &key).send().await.unwrap().json().await.unwrap();
    assert_eq!(got, c);
}

#[tokio::test]
async fn live_changes_apply_and_everything_else_is_refused_by_name() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = api.delivery_campaign(&key).await;
    let path = format!("/api/v1/campaigns/{id}");
    let patch = |body: Value| api.req(Method::PATCH, &path, &key).json(&body).send();

    let mut script = delivery_campaign_json()["script"].clone();
    script["menus"]["slot"]["say"] = json!("午前は1、午後は2、夜間は3を押してください。");
    let r =
        patch(json!({"cps": 3.5, "max_in_flight": 20, "window": {"start": "10:00", "end": "18:00"}, "script": script}))
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["spec"]["cps"], 3.5);
    assert_eq!(c["spec"]["window"]["start"], "10:00");
    let row = api.store.campaigns_get(id).await.unwrap();
    assert_eq!((row.cps, row.max_in_flight), (3.5, 20));
    assert_eq!(row.calling_window.0.start.to_string(), "10:00:00");
    assert_eq!(row.script["menus"]["slot"]["say"], "午前は1、午後は2、夜間は3を押してください。");

    for (body, pointer) in [
        (json!({"caller_id": "+815099999999"}), "/caller_id"),
        (json!({"name": "x"}), "/name"),
        (json!({"timezone": "UTC"}), "/timezone"),
        (json!({"speed": 2}), "/speed"),
        (json!({"cps": -1}), "/cps"),
        (json!({"window": {"start": "25:00", "end": "18:00"}}), "/window/start"),
    ] {
        let p = problem(patch(body.clone()).await.unwrap(), 422).await;
        assert_eq!(p["errors"][0]["pointer"], pointer, "{body}: {p}");
    }
    // A new menu or a changed action is not a text change.
    let mut script = delivery_campaign_json()["script"].clone();
    script["menus"]["slot"]["options"]["2"]["result"] = json!("reschedule:night");
    let p = problem(patch(json!({"script": script})).await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/script");
    assert_eq!(api.store.campaigns_get(id).await.unwrap().cps, 3.5, "refused changes changed nothing");
}

#[tokio::test]
async fn start_pause_resume_cancel_follow_the_status_rules() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = api.delivery_campaign(&key).await;
    let act = |verb: &str| api.req(Method::POST, &format!("/api/v1/campaigns/{id}/{verb}"), &key).send();
    let status = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["status"].as_str().unwrap().to_string()
    };
    problem(act("pause").await.unwrap(), 409).await;
    assert_eq!(status(act("start").await.unwrap()).await, "running");
    assert_eq!(status(act("pause").await.unwrap()).await, "paused");
    assert_eq!(status(act("resume").await.unwrap()).await, "running");
    assert_eq!(status(act("cancel").await.unwrap()).await, "canceled");
    let p = problem(act("start").await.unwrap(), 409).await;
    assert!(p["detail"].as_str().unwrap().contains("canceled"), "{p}");
    problem(api.req(Method::POST, "/api/v1/campaigns/999999/start", &key).send().await.unwrap(), 404).await;
    problem(api.req(Method::POST, "/api/v1/campaigns/abc/start", &key).send().await.unwrap(), 400).await;
    problem(api.req(Method::DELETE, &format!("/api/v1/campaigns/{id}"), &key).send().await.unwrap(), 405).await;
}
