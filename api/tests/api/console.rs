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

async fn post_form(api: &Api, cookie: &str, path: &str, body: &[(&str, &str)]) -> reqwest::Response {
    no_redirects().post(format!("{}{path}", api.base)).header(COOKIE, cookie).form(body).send().await.unwrap()
}

/// The text of the element with this id (up to its first tag), for pages we rendered ourselves.
fn error_text(page: &str, id: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let rest = &page[at..];
    let body = &rest[rest.find('>')? + 1..];
    Some(body[..body.find("</div>").unwrap_or(body.len())].to_string())
}

#[tokio::test]
async fn the_campaign_form_reports_every_wrong_field_next_to_it_and_creates_nothing() {
    let api = Api::start().await;
    let key = api.admin().await;
    let cookie = login(&api, &key).await;
    let page = get(&api, &cookie, "/console/campaigns/new").await.text().await.unwrap();
    let csrf = csrf_of(&page);
    let script = "[script]\nlanguage = \"ja-JP\"\n[script.menus.main]\nsay = \"{name}様\"\n[script.menus.main.options]\n\"1\" = { result = \"ok\" }\n[script.menus.lost]\nsay = \"x\"\n[script.menus.lost.options]\n\"1\" = { result = \"ok\" }\n";
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("mode", "form"),
        ("name", " "),
        ("caller_id", "+815012345678"),
        ("timezone", "Asia/Tokyo"),
        ("window_start", "25:00"),
        ("window_end", "20:00"),
        ("day_mon", "on"),
        ("cps", "10"),
        ("max_attempts", "3"),
        ("script", script),
    ];
    let r = post_form(&api, &cookie, "/console/campaigns/new", &form).await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    assert!(error_text(&page, "name-error").unwrap().contains("must not be empty"), "{page}");
    assert!(error_text(&page, "window_start-error").unwrap().contains("&quot;25:00&quot; is not a time"), "{page}");
    // The script names a variable it does not declare; only the first script problem is reported.
    assert!(error_text(&page, "script-error").unwrap().contains("unknown variable `{name}`"), "{page}");
    assert!(page.contains("3 field(s) need attention"), "{page}");
    assert!(error_text(&page, "cps-error").is_none() && error_text(&page, "caller_id-error").is_none());
    assert!(page.contains("id=\"window_start\" name=\"window_start\" value=\"25:00\" aria-describedby=\"window_start-error\" aria-invalid=\"true\""), "{page}");
    assert!(api.store.campaigns_list(0, 10).await.unwrap().is_empty(), "nothing was created");

    // An unreachable menu is the script's error once the variable is declared.
    let declared = script.replace("language = \"ja-JP\"", "language = \"ja-JP\"\nvariables = [\"name\"]");
    form.retain(|(k, _)| !matches!(*k, "name" | "window_start" | "script" | "cps"));
    form.extend([("name", "再配達"), ("window_start", "09:00"), ("script", &declared), ("cps", "ten")]);
    let page = post_form(&api, &cookie, "/console/campaigns/new", &form).await.text().await.unwrap();
    assert!(error_text(&page, "cps-error").unwrap().contains("&quot;ten&quot; is not a number"), "{page}");
    form.retain(|(k, _)| *k != "cps");
    form.push(("cps", "10"));
    let page = post_form(&api, &cookie, "/console/campaigns/new", &form).await.text().await.unwrap();
    assert!(error_text(&page, "script-error").unwrap().contains("lost"), "{page}");

    let fine = declared
        .replace("[script.menus.lost]\nsay = \"x\"\n[script.menus.lost.options]\n\"1\" = { result = \"ok\" }\n", "");
    form.retain(|(k, _)| *k != "script");
    form.push(("script", &fine));
    let r = post_form(&api, &cookie, "/console/campaigns/new", &form).await;
    assert_eq!(r.status(), 303);
    let c = &api.store.campaigns_list(0, 10).await.unwrap()[0];
    assert_eq!(c.name, "再配達");
    let days = &api.store.campaigns_get(c.id).await.unwrap().calling_window.0.days;
    assert_eq!(days.iter().copied().collect::<Vec<u8>>(), [0], "Monday only");
}

#[tokio::test]
async fn a_key_made_in_the_console_is_shown_once_works_cannot_widen_scopes_and_revokes_at_once() {
    let api = Api::start().await;
    let manager = api.key(&[Scope::CampaignsRead, Scope::KeysManage, Scope::ResultsRead]).await;
    let cookie = login(&api, &manager).await;
    let page = get(&api, &cookie, "/console/keys").await.text().await.unwrap();
    assert!(!page.contains("dnc_write"), "only scopes the key holds are offered");
    let csrf = csrf_of(&page);
    let before = api.store.api_keys_list().await.unwrap().len();

    // A scope the manager lacks, typed into the form by hand: refused, nothing made.
    let r = post_form(
        &api,
        &cookie,
        "/console/keys",
        &[("csrf", &csrf), ("name", "crm"), ("scope_campaigns_read", "on"), ("scope_dnc_write", "on")],
    )
    .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("dnc:write: your key does not hold it"));
    let r = post_form(&api, &cookie, "/console/keys", &[("csrf", &csrf), ("name", "crm")]).await;
    assert_eq!(r.status(), 422);
    assert_eq!(api.store.api_keys_list().await.unwrap().len(), before);

    let r = post_form(
        &api,
        &cookie,
        "/console/keys",
        &[("csrf", &csrf), ("name", "crm <b>"), ("scope_results_read", "on")],
    )
    .await;
    assert_eq!(r.status(), 201);
    let page = r.text().await.unwrap();
    let at = page.find("id=\"secret\" readonly value=\"").unwrap() + "id=\"secret\" readonly value=\"".len();
    let secret = page[at..].split('"').next().unwrap().to_string();
    assert!(secret.starts_with("dk_") && page.contains("crm &lt;b&gt;"));
    let made = api.store.api_keys_list().await.unwrap().into_iter().find(|k| k.name == "crm <b>").unwrap();
    assert_eq!(made.scopes, [Scope::ResultsRead]);
    let id = api.delivery_campaign(&api.admin().await).await;
    assert_eq!(
        api.req(Method::GET, &format!("/api/v1/campaigns/{id}/results"), &secret).send().await.unwrap().status(),
        200
    );
    assert_eq!(api.req(Method::GET, &format!("/api/v1/campaigns/{id}"), &secret).send().await.unwrap().status(), 403);
    // Shown once: the list shows only its prefix.
    let list = get(&api, &cookie, "/console/keys").await.text().await.unwrap();
    assert!(!list.contains(&secret) && list.contains(&format!("{}…", &secret[..11])));

    let r = post_form(&api, &cookie, &format!("/console/keys/{}/revoke", made.id), &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        api.req(Method::GET, &format!("/api/v1/campaigns/{id}/results"), &secret).send().await.unwrap().status(),
        401
    );
    // Without the token, nothing is revoked.
    let me =
        api.store.api_keys_list().await.unwrap().into_iter().find(|k| k.scopes.contains(&Scope::KeysManage)).unwrap();
    assert_eq!(post_form(&api, &cookie, &format!("/console/keys/{}/revoke", me.id), &[]).await.status(), 403);
    assert!(api.store.api_keys_get(me.id).await.unwrap().unwrap().revoked_at.is_none());
}

#[tokio::test]
async fn a_webhook_endpoint_set_in_the_console_checks_its_url_and_shows_the_secret_once() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = api.delivery_campaign(&key).await;
    let cookie = login(&api, &key).await;
    let page = get(&api, &cookie, &format!("/console/campaigns/{id}/webhook")).await.text().await.unwrap();
    assert!(page.contains("No endpoint"));
    let csrf = csrf_of(&page);
    let path = format!("/console/campaigns/{id}/webhook");
    let r = post_form(&api, &cookie, &path, &[("csrf", &csrf), ("url", "ftp://x")]).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("id=\"webhook-url-error\""));
    assert!(api.store.webhook_endpoints_get(id).await.unwrap().is_none());
    let r = post_form(&api, &cookie, &path, &[("csrf", &csrf), ("url", "https://crm.example/hooks")]).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("value=\"whsec_"), "{page}");
    let again = get(&api, &cookie, &path).await.text().await.unwrap();
    assert!(again.contains("https://crm.example/hooks") && !again.contains("whsec_"));
    assert_eq!(api.store.webhook_endpoints_get(id).await.unwrap().unwrap().url, "https://crm.example/hooks");
}
