//! The console's login, sessions and CSRF defences over real HTTP (the browser test in
//! `dialer/tests/console` walks the pages themselves).

use dialer_core::domain::Scope;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{Client, Method};

use crate::helpers::Api;

fn no_redirects() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Logs in with `key`; the session cookie (`name=value`).
async fn login(api: &Api, key: &str) -> String {
    let r = no_redirects()
        .post(format!("{}/console/login", api.base))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("key={key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/console/campaigns");
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attr), "{cookie} has {attr}");
    }
    cookie.split(';').next().unwrap().to_string()
}

async fn get(api: &Api, cookie: &str, path: &str) -> reqwest::Response {
    no_redirects().get(format!("{}{path}", api.base)).header(COOKIE, cookie).send().await.unwrap()
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_string()
}

async fn status_of(api: &Api, id: i64) -> String {
    api.store.campaigns_get(id).await.unwrap().status.to_string()
}

#[tokio::test]
async fn without_a_live_session_every_console_page_is_the_login_page() {
    let api = Api::start().await;
    for path in ["/console/campaigns", "/console/campaigns/1", "/console/dnc", "/console/campaigns/1/events"] {
        let r = get(&api, "dialer_console=made-up", path).await;
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()[LOCATION], "/console/login", "{path}");
    }
    let r = no_redirects()
        .post(format!("{}/console/login", api.base))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("key=dk_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());
    let page = r.text().await.unwrap();
    assert!(page.contains("unknown or revoked") && !page.contains("<nav"), "{page}");
}

#[tokio::test]
async fn revoking_the_key_or_logging_out_ends_the_session() {
    let api = Api::start().await;
    let key = api.admin().await;
    let cookie = login(&api, &key).await;
    assert_eq!(get(&api, &cookie, "/console/campaigns").await.status(), 200);
    let id = api.store.api_keys_list().await.unwrap()[0].id;
    assert!(api.store.api_keys_revoke(id).await.unwrap());
    assert_eq!(get(&api, &cookie, "/console/campaigns").await.status(), 303);

    let key = api.admin().await;
    let cookie = login(&api, &key).await;
    let page = get(&api, &cookie, "/console/campaigns").await.text().await.unwrap();
    let r = no_redirects()
        .post(format!("{}/console/logout", api.base))
        .header(COOKIE, &cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf={}", csrf_of(&page)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(get(&api, &cookie, "/console/campaigns").await.status(), 303);
}

#[tokio::test]
async fn a_form_without_its_token_with_a_forged_one_or_from_another_site_changes_nothing() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = api.delivery_campaign(&key).await;
    let cookie = login(&api, &key).await;
    let page = get(&api, &cookie, &format!("/console/campaigns/{id}")).await.text().await.unwrap();
    let csrf = csrf_of(&page);
    let post = |body: String, origin: Option<&'static str>| {
        let mut r = no_redirects()
            .request(Method::POST, format!("{}/console/campaigns/{id}/start", api.base))
            .header(COOKIE, &cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some(o) = origin {
            r = r.header(ORIGIN, o);
        }
        r.send()
    };
    assert_eq!(post(String::new(), None).await.unwrap().status(), 403);
    assert_eq!(post("csrf=forged".into(), None).await.unwrap().status(), 403);
    assert_eq!(post(format!("csrf={csrf}"), Some("http://evil.example")).await.unwrap().status(), 403);
    assert_eq!(status_of(&api, id).await, "draft");
    // The same form, from our own page: accepted.
    assert_eq!(post(format!("csrf={csrf}"), None).await.unwrap().status(), 303);
    assert_eq!(status_of(&api, id).await, "running");
}

#[tokio::test]
async fn a_key_without_the_scope_cannot_act_in_the_console_either() {
    let api = Api::start().await;
    let admin = api.admin().await;
    let id = api.delivery_campaign(&admin).await;
    let reader = api.key(&[Scope::CampaignsRead]).await;
    let cookie = login(&api, &reader).await;
    let page = get(&api, &cookie, &format!("/console/campaigns/{id}")).await.text().await.unwrap();
    let r = no_redirects()
        .post(format!("{}/console/campaigns/{id}/start", api.base))
        .header(COOKIE, &cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf={}", csrf_of(&page)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(status_of(&api, id).await, "draft");
    assert_eq!(get(&api, &cookie, "/console/dnc").await.status(), 403);
}

#[tokio::test]
async fn markup_in_a_campaign_name_is_shown_as_text() {
    let api = Api::start().await;
    let key = api.admin().await;
    let mut file = crate::helpers::delivery_campaign_json();
    file["name"] = "<script>alert(1)</script>".into();
    let r = api.req(Method::POST, "/api/v1/campaigns", &key).json(&file).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let cookie = login(&api, &key).await;
    let r = get(&api, &cookie, "/console/campaigns").await;
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = r.text().await.unwrap();
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>alert"));
}
