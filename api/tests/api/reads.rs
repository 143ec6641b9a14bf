//! Results page by page and streamed, a contact's detail, progress with its ETA, and the DNC list.

use dialer_core::domain::Scope;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{contact, problem, Api};

async fn campaign_with(api: &Api, key: &str, n: usize) -> i64 {
    let id = api.delivery_campaign(key).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let body = json!({"contacts": chunk.iter().map(|&i| contact(i)).collect::<Vec<_>>()});
        let r =
            api.req(Method::POST, &format!("/api/v1/campaigns/{id}/contacts"), key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    id
}

#[tokio::test]
async fn results_page_by_cursor_and_stream_whole_as_csv_and_ndjson() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = campaign_with(&api, &key, 2_345).await;
    sqlx::query("UPDATE contacts SET result = '=cmd|x', external_id = '+1' || external_id WHERE id % 7 = 0")
        .execute(api.store.pool())
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=1000&cursor={c}"),
            None => "?limit=1000".into(),
        };
        let page: Value = api.get_json(&format!("/api/v1/campaigns/{id}/results{q}"), &key).await;
        seen.extend(page["items"].as_array().unwrap().iter().map(|r| r["contact_id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 2_345);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
    problem(
        api.req(Method::GET, &format!("/api/v1/campaigns/{id}/results?cursor=zzz"), &key).send().await.unwrap(),
        422,
    )
    .await;
    problem(api.req(Method::GET, &format!("/api/v1/campaigns/{id}/results?limit=0"), &key).send().await.unwrap(), 422)
        .await;

    let r = api.req(Method::GET, &format!("/api/v1/campaigns/{id}/results/export"), &key).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(rdr.headers().unwrap().iter().collect::<Vec<_>>(), dialer_core::export::CSV_HEADER);
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2_345);
    assert_eq!(rows.iter().map(|r| r[0].parse::<i64>().unwrap()).collect::<Vec<_>>(), seen);
    assert!(rows.iter().any(|r| &r[5] == "'=cmd|x" && r[1].starts_with("'+1P-")), "formula cells are neutralised");

    let r = api
        .req(Method::GET, &format!("/api/v1/campaigns/{id}/results/export?format=ndjson"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = r.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2_345);
    assert_eq!(lines[0]["state"], "pending");
    problem(
        api.req(Method::GET, &format!("/api/v1/campaigns/{id}/results/export?format=xls"), &key).send().await.unwrap(),
        400,
    )
    .await;
}

#[tokio::test]
async fn progress_counts_and_estimates_from_backlog_rate_and_window() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = campaign_with(&api, &key, 120).await;
    let p: Value = api.get_json(&format!("/api/v1/campaigns/{id}/progress"), &key).await;
    assert_eq!(p["contacts"], 120);
    assert_eq!(p["by_state"]["pending"], 120);
    assert_eq!(p["backlog"], 120);
    assert_eq!(p["answer_rate"], Value::Null);
    // ACCOUNT_CPS 10 caps the campaign's 10 calls/s: 12 s of open window, if started now.
    assert_eq!(p["estimate"]["rate_cps"], 10.0);
    let eta = p["estimate"]["eta_seconds"].as_i64().expect("a draft is estimated as if started now");
    if p["estimate"]["window_open_now"] == true {
        assert!((11..=13).contains(&eta), "{p}");
    } else {
        assert!(eta > 12, "{p}");
        assert!(p["estimate"]["next_window_opening"].is_string(), "{p}");
    }
    api.req(Method::POST, &format!("/api/v1/campaigns/{id}/pause"), &key).send().await.unwrap();
    api.req(Method::POST, &format!("/api/v1/campaigns/{id}/start"), &key).send().await.unwrap();
    api.req(Method::POST, &format!("/api/v1/campaigns/{id}/pause"), &key).send().await.unwrap();
    let p: Value = api.get_json(&format!("/api/v1/campaigns/{id}/progress"), &key).await;
    assert_eq!(p["estimate"]["eta_seconds"], Value::Null);
    assert!(p["estimate"]["basis"].as_str().unwrap().contains("paused"), "{p}");

    let c = p["campaign_id"].as_i64().unwrap();
    let page: Value = api.get_json(&format!("/api/v1/campaigns/{c}/results?limit=1"), &key).await;
    let contact_id = page["items"][0]["contact_id"].as_i64().unwrap();
    let detail: Value = api.get_json(&format!("/api/v1/contacts/{contact_id}"), &key).await;
    assert_eq!(detail["external_id"], "P-0");
    assert_eq!(detail["attributes"]["name"], "お客様0");
    assert_eq!(detail["attempts"], json!([]));
}

#[tokio::test]
async fn dnc_add_check_remove() {
    let api = Api::start().await;
    let key = api.key(&[Scope::DncRead, Scope::DncWrite, Scope::CampaignsWrite]).await;
    let id = api.delivery_campaign(&key).await;
    let check = || async {
        api.req(Method::GET, "/api/v1/dnc/+818011112222", &key).send().await.unwrap().json::<Value>().await.unwrap()
    };
    assert_eq!(check().await["blocked_everywhere"], false);
    let r = api
        .req(Method::PUT, "/api/v1/dnc/+818011112222", &key)
        .json(&json!({"reason": "asked by phone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = api
        .req(Method::PUT, "/api/v1/dnc/%2B818011112222", &key)
        .json(&json!({"campaign_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = check().await;
    assert_eq!(s["blocked_everywhere"], true);
    assert_eq!(s["blocked_campaigns"], json!([id]));
    assert_eq!(s["entries"][0]["reason"], "asked by phone");
    assert_eq!(s["entries"][0]["source"], "api");
    assert!(api.store.dnc_blocks(&dialer_core::domain::E164::parse("+818011112222", None).unwrap(), id).await.unwrap());

    assert_eq!(api.req(Method::DELETE, "/api/v1/dnc/+818011112222", &key).send().await.unwrap().status(), 204);
    problem(api.req(Method::DELETE, "/api/v1/dnc/+818011112222", &key).send().await.unwrap(), 404).await;
    assert_eq!(check().await["blocked_everywhere"], false);
    let p = problem(api.req(Method::GET, "/api/v1/dnc/12", &key).send().await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["field"], "phone");
    problem(
        api.req(Method::PUT, "/api/v1/dnc/+818011112222", &key)
            .json(&json!({"campaign_id": 999}))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}
