//! The console's admin pages: API keys (create with the secret shown once, revoke) and a campaign's result
//! webhook (set with the secret shown once, stop, failing deliveries and their replay). They call the same
//! functions as `/api/v1/keys` and `/api/v1/campaigns/{id}/webhook`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Form;
use dialer_core::domain::Scope;
use dialer_core::store::{Delivery, DeliveryFilter};
use serde::Deserialize;

use super::html::{csrf_field, esc, page, Html};
use super::pages::{guard_post, problem_page, time, CsrfForm, Page};
use super::session::Session;
use crate::extract::Path;
use crate::ApiState;

/// A secret, shown once: selectable text, and why it will not be shown again.
fn secret_box(h: &mut Html, what: &str, secret: &str) {
    h.raw("<div id=\"new-secret\" class=\"secret\" role=\"status\">")
        .el("p", "", &format!("{what} Copy it now: only its hash is kept, so it is not shown again."))
        .raw("<label for=\"secret\">Secret</label>")
        .raw(&format!(
            "<input id=\"secret\" readonly value=\"{}\" spellcheck=\"false\" autocomplete=\"off\">",
            esc(secret)
        ))
        .raw("</div>");
}

fn error_after(h: &mut Html, id: &str, err: Option<&str>) {
    if let Some(e) = err {
        h.raw(&format!("<p id=\"{id}-error\" class=\"error\">")).text(e).raw("</p>");
    }
}

fn invalid_attrs(id: &str, err: Option<&str>) -> String {
    if err.is_some() {
        format!(" aria-invalid=\"true\" aria-describedby=\"{id}-error\"")
    } else {
        String::new()
    }
}

// ---- API keys ----

#[derive(Default)]
struct KeyForm<'a> {
    name: &'a str,
    scopes: Vec<Scope>,
    name_err: Option<String>,
    scopes_err: Option<String>,
    created: Option<(String, String)>,
    notice: Option<String>,
}

async fn keys_page(api: &ApiState, s: &Session, status: StatusCode, f: KeyForm<'_>) -> Page {
    let keys = api.store.api_keys_list().await.map_err(|e| problem_page(s, e.into()))?;
    let mut h = Html::default();
    h.raw("<h1>API keys</h1>");
    if let Some((name, secret)) = &f.created {
        secret_box(&mut h, &format!("The key “{name}” was created."), secret);
    }
    if let Some(n) = &f.notice {
        h.el("p", "role=\"status\" id=\"keys-notice\"", n);
    }
    h.raw("<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Keys (never their secrets)\"><table id=\"keys\"><caption>Keys (never their secrets)</caption><thead><tr>")
        .raw("<th scope=\"col\">Name</th><th scope=\"col\">Key</th><th scope=\"col\">Scopes</th><th scope=\"col\">Created</th>")
        .raw("<th scope=\"col\">Last used</th><th scope=\"col\">Status</th><th scope=\"col\">Revoke</th></tr></thead><tbody>");
    for k in &keys {
        let me = k.id == s.inner.key.id;
        let status = match (k.revoked_at, me) {
            (Some(_), _) => "revoked".to_string(),
            (None, true) => "live (this session)".to_string(),
            (None, false) => "live".to_string(),
        };
        h.raw(&format!("<tr data-key=\"{}\">", k.id))
            .el("td", "", &k.name)
            .el("td", "class=\"sid\"", &format!("{}…", k.prefix))
            .el("td", "", &k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
            .el("td", "", &time(Some(k.created_at)))
            .el("td", "", &time(k.last_used_at))
            .el("td", "class=\"status\"", &status)
            .raw("<td>");
        if k.revoked_at.is_none() {
            h.raw(&format!("<form method=\"post\" action=\"/console/keys/{}/revoke\">", k.id))
                .raw(&csrf_field(s.csrf()))
                .raw(&format!(
                    "<button type=\"submit\" class=\"danger\" aria-label=\"Revoke {}\">Revoke</button></form>",
                    esc(&k.name)
                ));
        }
        h.raw("</td></tr>");
    }
    h.raw("</tbody></table></div>");
    h.raw("<section aria-labelledby=\"newkey-h\"><h2 id=\"newkey-h\">Create a key</h2>")
        .raw("<form method=\"post\" action=\"/console/keys\" id=\"new-key\" novalidate>")
        .raw(&csrf_field(s.csrf()))
        .raw("<label for=\"key-name\">Name (who or what uses it)</label>")
        .raw(&format!(
            "<input id=\"key-name\" name=\"name\" value=\"{}\" required{}>",
            esc(f.name),
            invalid_attrs("key-name", f.name_err.as_deref())
        ));
    error_after(&mut h, "key-name", f.name_err.as_deref());
    h.raw(&format!(
        "<fieldset id=\"key-scopes\" class=\"days\"{}><legend>Scopes (only those your key holds)</legend>",
        invalid_attrs("key-scopes", f.scopes_err.as_deref())
    ));
    for scope in Scope::ALL.into_iter().filter(|x| s.inner.key.allows(*x)) {
        let checked = if f.scopes.contains(&scope) { " checked" } else { "" };
        h.raw(&format!(
            "<label class=\"check\"><input type=\"checkbox\" name=\"scope_{}\" value=\"on\"{checked}> {}</label>",
            scope.as_str().replace(':', "_"),
            scope.as_str()
        ));
    }
    h.raw("</fieldset>");
    error_after(&mut h, "key-scopes", f.scopes_err.as_deref());
    h.raw("<button type=\"submit\">Create key</button></form></section>");
    Ok(page(status, "API keys", &s.chrome(), &h.0))
}

pub async fn keys(State(api): State<ApiState>, s: Session) -> Page {
    s.require(Scope::KeysManage)?;
    keys_page(&api, &s, StatusCode::OK, KeyForm::default()).await
}

/// The create form: a name, the CSRF token and one `scope_campaigns_read=on` field per chosen scope.
pub async fn create_key(
    State(api): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Page {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    guard_post(&s, &headers, get("csrf"), Scope::KeysManage)?;
    let name = get("name").unwrap_or("");
    let scopes: Vec<Scope> =
        Scope::ALL.into_iter().filter(|x| get(&format!("scope_{}", x.as_str().replace(':', "_"))).is_some()).collect();
    match crate::keys::create_key(&api, &s.inner.key, name, scopes.clone()).await {
        Ok((key, secret)) => {
            let f = KeyForm { created: Some((key.name, secret)), ..KeyForm::default() };
            keys_page(&api, &s, StatusCode::CREATED, f).await
        }
        Err(p) => {
            let err_for = |ptr: &str| {
                let v: Vec<&str> = p
                    .errors
                    .iter()
                    .filter(|e| e.pointer.as_deref().is_some_and(|x| x.starts_with(ptr)))
                    .map(|e| e.detail.as_str())
                    .collect();
                (!v.is_empty()).then(|| v.join("; "))
            };
            let (name_err, scopes_err) = (err_for("/name"), err_for("/scopes"));
            if name_err.is_none() && scopes_err.is_none() {
                return Err(problem_page(&s, p));
            }
            let f = KeyForm { name, scopes, name_err, scopes_err, ..KeyForm::default() };
            keys_page(&api, &s, StatusCode::UNPROCESSABLE_ENTITY, f).await
        }
    }
}

pub async fn revoke_key(
    State(api): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Page {
    guard_post(&s, &headers, f.csrf.as_deref(), Scope::KeysManage)?;
    crate::keys::revoke(State(api.clone()), Path(id)).await.map_err(|p| problem_page(&s, p))?;
    if id == s.inner.key.id {
        // This session's own key: the session ends with it.
        return Ok(axum::response::Redirect::to("/console/login").into_response());
    }
    let f =
        KeyForm { notice: Some(format!("Key {id} was revoked; its next request is refused.")), ..KeyForm::default() };
    keys_page(&api, &s, StatusCode::OK, f).await
}

// ---- A campaign's result webhook ----

#[derive(Default)]
struct HookView<'a> {
    url: &'a str,
    url_err: Option<String>,
    secret: Option<String>,
    notice: Option<String>,
}

async fn webhook_page(api: &ApiState, s: &Session, id: i64, status: StatusCode, v: HookView<'_>) -> Page {
    let c = api.store.campaigns_get(id).await.map_err(|e| problem_page(s, e.into()))?;
    let endpoint = api.store.webhook_endpoints_get(id).await.map_err(|e| problem_page(s, e.into()))?;
    let can_write = s.inner.key.allows(Scope::WebhooksWrite);
    let mut h = Html::default();
    h.raw("<h1>Result webhook: ").text(&c.name).raw("</h1>");
    h.raw(&format!("<p><a href=\"/console/campaigns/{id}\">Back to the campaign</a></p>"));
    if let Some(secret) = &v.secret {
        secret_box(&mut h, "The endpoint was saved with a new signing secret (whsec_…, Standard Webhooks).", secret);
    }
    if let Some(n) = &v.notice {
        h.el("p", "role=\"status\" id=\"webhook-notice\"", n);
    }
    h.raw("<section aria-labelledby=\"endpoint-h\"><h2 id=\"endpoint-h\">Endpoint</h2>");
    match &endpoint {
        Some(e) => {
            h.raw("<p id=\"endpoint\">Events go to <code>")
                .text(&e.url)
                .raw("</code>")
                .text(&format!(" (set {}, changed {}).", time(Some(e.created_at)), time(Some(e.updated_at))))
                .raw("</p>");
        }
        None => {
            h.el("p", "id=\"endpoint\"", "No endpoint: this campaign's results are not sent anywhere.");
        }
    }
    if can_write {
        let url = if v.url.is_empty() { endpoint.as_ref().map_or("", |e| e.url.as_str()) } else { v.url };
        h.raw(&format!("<form method=\"post\" action=\"/console/campaigns/{id}/webhook\" id=\"webhook-set\" novalidate>"))
            .raw(&csrf_field(s.csrf()))
            .raw("<label for=\"webhook-url\">URL (http or https) that receives contact.result, contact.finished and contact.opted_out</label>")
            .raw(&format!(
                "<input id=\"webhook-url\" name=\"url\" type=\"url\" value=\"{}\" required{}>",
                esc(url),
                invalid_attrs("webhook-url", v.url_err.as_deref())
            ));
        error_after(&mut h, "webhook-url", v.url_err.as_deref());
        h.raw("<button type=\"submit\">Save (makes a new secret)</button></form>");
        if endpoint.is_some() {
            h.raw(&format!("<form method=\"post\" action=\"/console/campaigns/{id}/webhook/remove\">"))
                .raw(&csrf_field(s.csrf()))
                .raw("<button type=\"submit\" class=\"danger\">Stop sending</button></form>");
        }
    }
    h.raw("</section>");
    if s.inner.key.allows(Scope::ResultsRead) {
        let failing = api
            .store
            .webhook_outbox_list(id, DeliveryFilter::Failing, None, 200)
            .await
            .map_err(|e| problem_page(s, e.into()))?;
        deliveries_table(&mut h, s, id, &failing, can_write);
    }
    Ok(page(status, "Result webhook", &s.chrome(), &h.0))
}

fn deliveries_table(h: &mut Html, s: &Session, id: i64, rows: &[Delivery], can_write: bool) {
    h.raw("<section aria-labelledby=\"failing-h\"><h2 id=\"failing-h\">Failing deliveries</h2>");
    if rows.is_empty() {
        h.el("p", "id=\"no-failing\"", "None: every event tried so far was delivered.");
        h.raw("</section>");
        return;
    }
    if can_write && rows.iter().any(|d| d.dead_at.is_some()) {
        h.raw(&format!("<form method=\"post\" action=\"/console/campaigns/{id}/webhook/replay-dead\">"))
            .raw(&csrf_field(s.csrf()))
            .raw("<button type=\"submit\">Replay every dead event</button></form>");
    }
    h.raw("<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Events not delivered yet\"><table id=\"failing\"><caption>Events not delivered yet</caption><thead><tr>")
        .raw("<th scope=\"col\">Event</th><th scope=\"col\">Type</th><th scope=\"col\">Contact</th><th scope=\"col\">Tries</th>")
        .raw("<th scope=\"col\">Last answer</th><th scope=\"col\">Next try</th><th scope=\"col\">Replay</th></tr></thead><tbody>");
    for d in rows {
        let last = match (d.last_status, d.last_error.as_deref()) {
            (Some(st), Some(e)) => format!("HTTP {st}: {e}"),
            (Some(st), None) => format!("HTTP {st}"),
            (None, Some(e)) => e.to_string(),
            (None, None) => "—".into(),
        };
        let next = match d.dead_at {
            Some(t) => format!("dead since {}", time(Some(t))),
            None => time(Some(d.next_attempt_at)),
        };
        h.raw(&format!("<tr data-delivery=\"{}\">", d.id))
            .el("td", "class=\"sid\"", &d.msg_id)
            .el("td", "", d.event_type.as_str())
            .raw(&format!("<td><a href=\"/console/contacts/{}\">#{}</a></td>", d.contact_id, d.contact_id))
            .el("td", "", &d.attempts.to_string())
            .el("td", "", &last)
            .el("td", "", &next)
            .raw("<td>");
        if can_write {
            h.raw(&format!(
                "<form method=\"post\" action=\"/console/campaigns/{id}/webhook/deliveries/{}/replay\">",
                d.id
            ))
            .raw(&csrf_field(s.csrf()))
            .raw(&format!(
                "<button type=\"submit\" aria-label=\"Replay event {}\">Replay</button></form>",
                esc(&d.msg_id)
            ));
        }
        h.raw("</td></tr>");
    }
    h.raw("</tbody></table></div></section>");
}

pub async fn webhook(State(api): State<ApiState>, s: Session, Path(id): Path<i64>) -> Page {
    s.require(Scope::CampaignsRead)?;
    webhook_page(&api, &s, id, StatusCode::OK, HookView::default()).await
}

#[derive(Deserialize)]
pub struct UrlForm {
    csrf: Option<String>,
    #[serde(default)]
    url: String,
}

pub async fn set_webhook(
    State(api): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<UrlForm>,
) -> Page {
    guard_post(&s, &headers, f.csrf.as_deref(), Scope::WebhooksWrite)?;
    let body = crate::body::JsonBody(crate::webhooks::EndpointSet { url: f.url.clone() });
    match crate::webhooks::set(State(api.clone()), Path(id), body).await {
        Ok(created) => {
            let v = HookView { secret: Some(created.0.secret), ..HookView::default() };
            webhook_page(&api, &s, id, StatusCode::OK, v).await
        }
        Err(p) if p.errors.iter().any(|e| e.pointer.as_deref() == Some("/url")) => {
            let v = HookView { url: &f.url, url_err: Some(p.errors[0].detail.clone()), ..HookView::default() };
            webhook_page(&api, &s, id, StatusCode::UNPROCESSABLE_ENTITY, v).await
        }
        Err(p) => Err(problem_page(&s, p)),
    }
}

pub async fn remove_webhook(
    State(api): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Page {
    guard_post(&s, &headers, f.csrf.as_deref(), Scope::WebhooksWrite)?;
    crate::webhooks::remove(State(api.clone()), Path(id)).await.map_err(|p| problem_page(&s, p))?;
    let v = HookView {
        notice: Some("Stopped: events not yet delivered are dead; replay them after setting a new endpoint.".into()),
        ..HookView::default()
    };
    webhook_page(&api, &s, id, StatusCode::OK, v).await
}

pub async fn replay(
    State(api): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path((id, delivery)): Path<(i64, i64)>,
    Form(f): Form<CsrfForm>,
) -> Page {
    guard_post(&s, &headers, f.csrf.as_deref(), Scope::WebhooksWrite)?;
    let _one =
        crate::webhooks::replay(State(api.clone()), Path((id, delivery))).await.map_err(|p| problem_page(&s, p))?;
    let v = HookView { notice: Some(format!("Event {delivery} is due again now.")), ..HookView::default() };
    webhook_page(&api, &s, id, StatusCode::OK, v).await
}

pub async fn replay_dead(
    State(api): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Page {
    guard_post(&s, &headers, f.csrf.as_deref(), Scope::WebhooksWrite)?;
    let n = crate::webhooks::replay_dead(State(api.clone()), Path(id)).await.map_err(|p| problem_page(&s, p))?;
    let v =
        HookView { notice: Some(format!("{} dead event(s) are due again now.", n.0.replayed)), ..HookView::default() };
    webhook_page(&api, &s, id, StatusCode::OK, v).await
}
