//! Pushing contacts: idempotency keys, duplicates, per-row errors for JSON and CSV, removal.

use dialer_core::domain::{AttemptState, Scope};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{contact, problem, table_counts, Api};

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let api = Api::start().await;
    let key = api.key(&[Scope::CampaignsWrite, Scope::ContactsWrite]).await;
    let id = api.delivery_campaign(&key).await;
    let path = format!("/api/v1/campaigns/{id}/contacts");
    let batch = json!({"contacts": (0..50).map(contact).collect::<Vec<_>>()});
    let push =
        |body: &Value, idem: &str| api.req(Method::POST, &path, &key).header("idempotency-key", idem).json(body).send();

    let first = push(&batch, "batch-1").await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["created"], 50);
    assert_eq!(first["contacts"].as_array().unwrap().len(), 50);

    let again = push(&batch, "batch-1").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first, "a replay returns the first answer");
    let before = table_counts(&api.store).await;

    let other = json!({"contacts": [contact(99)]});
    let p = problem(push(&other, "batch-1").await.unwrap(), 409).await;
    assert!(p["type"].as_str().unwrap().ends_with("idempotency-key-reused"), "{p}");
    assert_eq!(table_counts(&api.store).await, before, "neither the replay nor the reuse wrote anything");

    // Concurrent replays of one new key: exactly one push happens, every answer is the same.
    let batch2 = json!({"contacts": (100..150).map(contact).collect::<Vec<_>>()});
    let answers = futures::future::join_all((0..6).map(|_| async {
        let r = push(&batch2, "batch-2").await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    }))
    .await;
    assert!(answers.iter().all(|a| *a == answers[0] && a["created"] == 50), "{answers:?}");
    assert_eq!(api.store.campaigns_report(id).await.unwrap().contacts, 100);

    // The same key from another API key is another key.
    let key2 = api.key(&[Scope::ContactsWrite]).await;
    let r = api.req(Method::POST, &path, &key2).header("idempotency-key", "batch-1").json(&other).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["created"], 1);
    let bad = api.req(Method::POST, &path, &key).header("idempotency-key", "").json(&other).send().await.unwrap();
    problem(bad, 422).await;
}

#[tokio::test]
async fn a_contact_pushed_again_is_a_duplicate_not_a_second_call() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = api.delivery_campaign(&key).await;
    let path = format!("/api/v1/campaigns/{id}/contacts");
    let push = |body: Value| api.req(Method::POST, &path, &key).json(&body).send();
    let r: Value = push(json!({"contacts": [contact(1), contact(2)]})).await.unwrap().json().await.unwrap();
    let first_id = r["contacts"][0]["id"].as_i64().unwrap();

    // Same parcel with a new number, same number with a new parcel, and a row repeated in the batch.
    let mut same_parcel = contact(1);
    same_parcel["phone"] = json!("+819087654321");
    let mut same_phone = contact(1);
    same_phone["external_id"] = json!("P-new");
    let r: Value = push(json!({"contacts": [same_parcel, same_phone, contact(3), contact(3)]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["created"], 1, "{r}");
    assert_eq!(r["contacts"][0]["row"], 2);
    let dups = r["duplicates"].as_array().unwrap();
    assert_eq!(dups.len(), 3, "{r}");
    assert_eq!((dups[0]["row"].clone(), dups[0]["existing_contact_id"].clone()), (json!(0), json!(first_id)));
    assert_eq!((dups[1]["row"].clone(), dups[1]["existing_contact_id"].clone()), (json!(1), json!(first_id)));
    assert_eq!((dups[2]["row"].clone(), dups[2]["existing_contact_id"].clone()), (json!(3), Value::Null));
    assert_eq!(api.store.campaigns_report(id).await.unwrap().contacts, 3);
}

#[tokio::test]
async fn bad_rows_are_named_by_row_and_field_and_push_nothing_unless_skipped() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = api.delivery_campaign(&key).await;
    let path = format!("/api/v1/campaigns/{id}/contacts");

    let mut no_name = contact(2);
    no_name["attributes"].as_object_mut().unwrap().remove("name");
    let mut bad_zone = contact(3);
    bad_zone["timezone"] = json!("Mars/Olympus");
    let rows = json!({"contacts": [contact(0), {"phone": "12345", "attributes": {"name": "x", "parcel": "y"}}, no_name, bad_zone, contact(4)]});
    let p = problem(api.req(Method::POST, &path, &key).json(&rows).send().await.unwrap(), 422).await;
    let pointers: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/contacts/1/phone", "/contacts/2/attributes/name", "/contacts/3/timezone"], "{p}");
    assert_eq!(p["errors"][0]["row"], 1);
    assert_eq!(api.store.campaigns_report(id).await.unwrap().contacts, 0, "all or nothing");

    let r = api.req(Method::POST, &format!("{path}?skip_invalid=true"), &key).json(&rows).send().await.unwrap();
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["created"], 2);
    assert_eq!(r["invalid"].as_array().unwrap().len(), 3);

    // A wrong type names its place too; too many rows is refused before anything else.
    let p = problem(
        api.req(Method::POST, &path, &key).json(&json!({"contacts": [{"phone": 5}]})).send().await.unwrap(),
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["pointer"], "/contacts/0/phone");
    let many = json!({"contacts": (0..10_001).map(contact).collect::<Vec<_>>()});
    let p = problem(api.req(Method::POST, &path, &key).json(&many).send().await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/contacts");
    let p =
        problem(api.req(Method::POST, &format!("{path}?region=XX"), &key).json(&rows).send().await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["field"], "region");
    problem(api.req(Method::POST, "/api/v1/campaigns/424242/contacts", &key).json(&rows).send().await.unwrap(), 404)
        .await;
}

#[tokio::test]
async fn a_csv_upload_reports_exactly_its_bad_lines_like_the_cli() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = api.delivery_campaign(&key).await;
    let path = format!("/api/v1/campaigns/{id}/contacts");
    let csv = "phone,name,parcel,external_id\n\
               080-1234-0001,山田,P1,P1\n\
               12345,田中,P2,P2\n\
               080-1234-0003,佐藤,P3,P3\n\
               080-1234-0004,鈴木,P4,P1\n\
               080-1234-0005,高橋,P5,P5\n";
    let send = |q: &str| {
        api.req(Method::POST, &format!("{path}?region=JP{q}"), &key).header("content-type", "text/csv").body(csv).send()
    };
    let p = problem(send("").await.unwrap(), 422).await;
    let errs: Vec<(i64, &str)> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_i64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(errs, [(3, "phone"), (5, "external_id")], "{p}");
    let r: Value = send("&skip_invalid=true").await.unwrap().json().await.unwrap();
    assert_eq!(r["created"], 3);
    assert_eq!(
        r["contacts"].as_array().unwrap().iter().map(|c| c["row"].as_i64().unwrap()).collect::<Vec<_>>(),
        [2, 4, 6]
    );
    let c = api.store.contacts_get(r["contacts"][0]["id"].as_i64().unwrap()).await.unwrap().unwrap();
    assert_eq!((c.phone.as_str(), c.attributes["name"].as_str()), ("+818012340001", Some("山田")));
}

#[tokio::test]
async fn only_a_contact_never_called_can_be_removed() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = api.delivery_campaign(&key).await;
    let r: Value = api
        .req(Method::POST, &format!("/api/v1/campaigns/{id}/contacts"), &key)
        .json(&json!({"contacts": [contact(1), contact(2)]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (a, b) = (r["contacts"][0]["id"].as_i64().unwrap(), r["contacts"][1]["id"].as_i64().unwrap());
    testkit::insert_attempt(&api.store, b, AttemptState::Dialing, None).await;
    let del = |c: i64| api.req(Method::DELETE, &format!("/api/v1/contacts/{c}"), &key).send();
    assert_eq!(del(a).await.unwrap().status(), 204);
    problem(del(a).await.unwrap(), 404).await;
    let p = problem(del(b).await.unwrap(), 409).await;
    assert!(p["detail"].as_str().unwrap().contains("calling"), "{p}");
    assert!(api.store.contacts_get(b).await.unwrap().is_some());
}
