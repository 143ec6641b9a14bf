//! Every way a request can fail to be allowed: it is refused before anything is read or written.

use dialer_core::domain::Scope;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{contact, delivery_campaign_json, problem, table_counts, Api};

#[tokio::test]
async fn no_unknown_revoked_or_underscoped_key_reads_or_writes_anything() {
    let api = Api::start().await;
    let admin = api.admin().await;
    let campaign = api.delivery_campaign(&admin).await;
    let before = table_counts(&api.store).await;
    let push = serde_json::json!({"contacts": [contact(1)]});
    let writes = [
        (Method::POST, "/api/v1/campaigns".to_string(), delivery_campaign_json()),
        (Method::POST, format!("/api/v1/campaigns/{campaign}/contacts"), push.clone()),
        (Method::PUT, "/api/v1/dnc/+818011112222".to_string(), serde_json::json!({})),
        (Method::POST, format!("/api/v1/campaigns/{campaign}/start"), serde_json::json!({})),
        // Reads only, but a POST with a body: refused before either is looked at.
        (Method::POST, format!("/api/v1/campaigns/{campaign}/estimate"), serde_json::json!({"learn": true})),
    ];

    // No key at all, a malformed header, a key that was never issued.
    for (method, path, body) in &writes {
        let r = api.http.request(method.clone(), format!("{}{path}", api.base)).json(body).send().await.unwrap();
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        problem(r, 401).await;
        let r = api
            .http
            .request(method.clone(), format!("{}{path}", api.base))
            .header("authorization", "Basic Zm9vOmJhcg==")
            .json(body)
            .send()
            .await
            .unwrap();
        problem(r, 401).await;
        let r = api.req(method.clone(), path, "dk_not-a-key-anyone-was-given").json(body).send().await.unwrap();
        problem(r, 401).await;
    }
    // Reads too.
    problem(api.req(Method::GET, &format!("/api/v1/campaigns/{campaign}"), "dk_nope").send().await.unwrap(), 401).await;

    // A key with every scope but the one each route needs.
    let needs =
        [Scope::CampaignsWrite, Scope::ContactsWrite, Scope::DncWrite, Scope::CampaignsWrite, Scope::CampaignsRead];
    for ((method, path, body), scope) in writes.iter().zip(needs) {
        let others: Vec<Scope> = Scope::ALL.into_iter().filter(|s| *s != scope).collect();
        let key = api.key(&others).await;
        let p = problem(api.req(method.clone(), path, &key).json(body).send().await.unwrap(), 403).await;
        assert!(p["detail"].as_str().unwrap().contains(scope.as_str()), "{p}");
    }
    let read_only = api.key(&[Scope::CampaignsWrite]).await;
    problem(
        api.req(Method::GET, &format!("/api/v1/campaigns/{campaign}/results"), &read_only).send().await.unwrap(),
        403,
    )
    .await;

    // A revoked key is refused at once, though it was good a moment ago.
    let key = api.admin().await;
    let ok = api.req(Method::GET, &format!("/api/v1/campaigns/{campaign}"), &key).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let id = api.store.api_keys_list().await.unwrap().last().unwrap().id;
    assert!(api.store.api_keys_revoke(id).await.unwrap());
    for (method, path, body) in &writes {
        let p = problem(api.req(method.clone(), path, &key).json(body).send().await.unwrap(), 401).await;
        assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    }

    assert_eq!(table_counts(&api.store).await, before, "a refused request wrote something");
    let status = api.store.campaigns_get(campaign).await.unwrap().status;
    assert_eq!(status, dialer_core::domain::CampaignStatus::Draft, "a refused start started the campaign");
}

#[tokio::test]
async fn each_key_has_its_own_rate_limit_with_retry_after() {
    let api = Api::start_with_rate(1, 3).await;
    let (a, b) = (api.admin().await, api.admin().await);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(api.req(Method::GET, "/api/v1/campaigns", &a).send().await.unwrap());
    }
    let limited = statuses.iter().position(|r| r.status() == 429).expect("a key over its rate is refused");
    assert!(limited >= 3, "the burst of 3 is allowed first");
    let r = statuses.remove(limited);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let p = problem(r, 429).await;
    assert_eq!(p["retry_after"], wait);
    // Another key is not slowed by the first.
    assert_eq!(api.req(Method::GET, "/api/v1/campaigns", &b).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_openapi_document_needs_no_key_and_declares_bearer_auth() {
    let api = Api::start().await;
    let doc: serde_json::Value =
        api.http.get(format!("{}/api/v1/openapi.json", api.base)).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert!(op["security"].is_array(), "{method} {path} declares no security");
        }
    }
}

#[tokio::test]
async fn keys_are_made_through_the_api_with_at_most_the_makers_scopes() {
    let api = Api::start().await;
    let manager = api.key(&[Scope::KeysManage, Scope::CampaignsRead]).await;
    let body = json!({"name": "crm", "scopes": ["campaigns:read", "dnc:write"]});
    let p = problem(api.req(Method::POST, "/api/v1/keys", &manager).json(&body).send().await.unwrap(), 403).await;
    assert_eq!(p["errors"][0]["pointer"], "/scopes/1", "{p}");
    let p = problem(
        api.req(Method::POST, "/api/v1/keys", &manager)
            .json(&json!({"name": "x", "scopes": ["root"]}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["pointer"], "/scopes/0", "{p}");
    let r = api
        .req(Method::POST, "/api/v1/keys", &manager)
        .json(&json!({"name": "crm", "scopes": ["campaigns:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let made: serde_json::Value = r.json().await.unwrap();
    let secret = made["secret"].as_str().unwrap();
    assert_eq!(api.req(Method::GET, "/api/v1/campaigns", secret).send().await.unwrap().status(), 200);
    let list: serde_json::Value =
        api.req(Method::GET, "/api/v1/keys", &manager).send().await.unwrap().json().await.unwrap();
    assert!(!list.to_string().contains(secret), "the list never shows a secret");
    assert_eq!(list.as_array().unwrap().len(), 2);
    let path = format!("/api/v1/keys/{}", made["id"]);
    assert_eq!(api.req(Method::DELETE, &path, &manager).send().await.unwrap().status(), 204);
    assert_eq!(api.req(Method::GET, "/api/v1/campaigns", secret).send().await.unwrap().status(), 401);
    problem(api.req(Method::DELETE, &path, &manager).send().await.unwrap(), 404).await;
    // Without keys:manage, the key routes are 403.
    let other = api.key(&[Scope::CampaignsRead]).await;
    problem(api.req(Method::GET, "/api/v1/keys", &other).send().await.unwrap(), 403).await;
}

#[tokio::test]
async fn a_malformed_estimate_request_names_its_field_and_writes_nothing() {
    let api = Api::start().await;
    let admin = api.admin().await;
    let campaign = api.delivery_campaign(&admin).await;
    let before = table_counts(&api.store).await;
    let path = format!("/api/v1/campaigns/{campaign}/estimate");
    let p = problem(
        api.req(Method::POST, &path, &admin).json(&json!({"learn": true, "mix": {}})).send().await.unwrap(),
        422,
    )
    .await;
    assert!(p.to_string().contains("/learn"), "{p}");
    let p =
        problem(api.req(Method::POST, &path, &admin).json(&json!({"mix": {"human": -5.0}})).send().await.unwrap(), 422)
            .await;
    assert!(p.to_string().contains("/mix"), "{p}");
    let r =
        api.req(Method::POST, &path, &admin).header("content-type", "application/json").body("{not json").send().await;
    assert!(r.unwrap().status().is_client_error());
    assert_eq!(table_counts(&api.store).await, before, "a refused estimate wrote something");
}
