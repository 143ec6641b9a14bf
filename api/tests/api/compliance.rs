//! Callee zones and compliance through the API: zones from the number on push, a number without a zone
//! refused naming its field, profiles refused at create, and the audit endpoint.

use dialer_core::domain::Scope;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{contact, delivery_campaign_json, problem, Api};

#[tokio::test]
async fn pushed_contacts_get_their_zone_from_the_number_and_a_zoneless_number_is_refused() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = api.delivery_campaign(&key).await;
    let path = format!("/api/v1/campaigns/{id}/contacts");
    let with_phone = |i: usize, phone: &str| {
        let mut c = contact(i);
        c["phone"] = json!(phone);
        c
    };
    let mut given = with_phone(3, "+12125550103");
    given["timezone"] = json!("America/Chicago");

    // International freephone has no zone: the batch is refused, naming the row and the field.
    let bad = json!({"contacts": [with_phone(1, "+12135550101"), with_phone(2, "+80012345678")]});
    let p = problem(api.req(Method::POST, &path, &key).json(&bad).send().await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/contacts/1/timezone", "{p}");
    assert!(p["errors"][0]["detail"].as_str().unwrap().contains("zone_fallback"), "{p}");

    let good = json!({"contacts": [with_phone(1, "+12135550101"), with_phone(2, "+77005550102"), given]});
    let r: Value = api.req(Method::POST, &path, &key).json(&good).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["created"], 3, "{r}");
    let path_of = |i: usize| format!("/api/v1/contacts/{}", r["contacts"][i]["id"]);
    let la = api.get_json(&path_of(0), &key).await;
    assert_eq!(
        (&la["zones"], &la["zone_source"], &la["region"]),
        (&json!(["America/Los_Angeles"]), &json!("number"), &json!("CA"))
    );
    assert_eq!(la["timezone"], Value::Null);
    // A Kazakh mobile: no region in the prefix data, the country's two zones.
    let kazakh = api.get_json(&path_of(1), &key).await;
    assert_eq!(kazakh["zones"], json!(["Asia/Almaty", "Asia/Aqtobe"]), "{kazakh}");
    let chicago = api.get_json(&path_of(2), &key).await;
    assert_eq!((&chicago["zones"], &chicago["zone_source"]), (&json!(["America/Chicago"]), &json!("given")));

    let progress: Value = api.get_json(&format!("/api/v1/campaigns/{id}/progress"), &key).await;
    assert_eq!(progress["by_zone_source"], json!({"given": 1, "number": 2}), "{progress}");
    let export = api.req(Method::GET, &format!("/api/v1/campaigns/{id}/results/export"), &key).send().await.unwrap();
    let csv = export.text().await.unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",zones,zone_source,inbound_calls,sms,operator,handle_s"), "{csv}");
    assert!(csv.contains(",America/Los_Angeles,number"), "{csv}");
}

#[tokio::test]
async fn a_script_that_breaks_its_profile_is_refused_at_create() {
    let api = Api::start().await;
    let key = api.admin().await;
    let post = |body: Value| api.req(Method::POST, "/api/v1/campaigns", &key).json(&body).send();
    let mut no_name = delivery_campaign_json();
    no_name["compliance"] = json!({"profiles": ["us-fcc-package-delivery"]});
    let p = problem(post(no_name).await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/compliance/business_name", "{p}");

    let mut long = delivery_campaign_json();
    long["compliance"] = json!({"profiles": ["us-fcc-package-delivery"], "business_name": "Example運輸"});
    long["script"]["menus"]["main"]["say"] = json!(format!("Example運輸です。{}", "お荷物".repeat(120)));
    let p = problem(post(long).await.unwrap(), 422).await;
    assert!(p["detail"].as_str().unwrap().contains("allows 60 s"), "{p}");
    assert_eq!(api.store.campaigns_list(0, 10).await.unwrap().len(), 0, "nothing was created");
}

#[tokio::test]
async fn the_audit_is_read_with_results_read_and_lists_every_call() {
    let api = Api::start().await;
    let admin = api.admin().await;
    let id = api.delivery_campaign(&admin).await;
    let reader = api.key(&[Scope::ResultsRead]).await;
    let outsider = api.key(&[Scope::CampaignsRead]).await;
    let path = format!("/api/v1/campaigns/{id}/audit");
    let r = api.get_json(&path, &reader).await;
    assert_eq!((r["campaign_id"].as_i64(), &r["calls"], &r["violations"]), (Some(id), &json!(0), &json!(0)), "{r}");
    problem(api.req(Method::GET, &path, &outsider).send().await.unwrap(), 403).await;
    problem(api.req(Method::GET, "/api/v1/campaigns/999999/audit", &reader).send().await.unwrap(), 404).await;
}
