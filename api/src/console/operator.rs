//! The operator's page (`/console/operator`): take transferred calls in the browser with Twilio's Voice
//! JavaScript SDK (`@twilio/voice-sdk`, built into the assets), set yourself available or away, see the
//! team. And a campaign's live calls (`/console/campaigns/{id}/calls`) with an announcement form for
//! each call in progress.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use dialer_core::domain::Scope;
use serde::Deserialize;

use super::html::{csrf_field, page, Html};
use super::pages::{guard_post, problem_page, Page};
use super::session::{forbidden, same_origin, Session};
use crate::extract::Path;
use crate::operators::{availability, issue, send_announcement, OperatorView};
use crate::problem::Problem;
use crate::ApiState;

/// The Voice SDK talks to Twilio (signalling over WebSocket, media over WebRTC): the operator page's
/// CSP allows Twilio's hosts for connections, nothing else beyond our own.
const OPERATOR_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self' https://*.twilio.com wss://*.twilio.com; media-src 'self' https://*.twilio.com blob: data:; \
    frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

pub async fn page_operator(State(api): State<ApiState>, s: Session) -> Page {
    let Some(me) = api.store.operators_by_key(s.inner.key.id).await.map_err(|e| problem_page(&s, e.into()))? else {
        return Err(forbidden(
            &s,
            "Your API key is not an operator's. Ask an administrator to run `dialer operator add NAME` and log in \
             with the key it prints.",
        ));
    };
    let team = api.store.operators_list().await.map_err(|e| problem_page(&s, e.into()))?;
    let mut h = Html::default();
    h.raw(&format!(
        "<div id=\"operator\" data-token-url=\"/console/operator/token\" data-status-url=\"/console/operator/status\" \
         data-csrf=\"{}\">",
        super::html::esc(s.csrf())
    ))
    .el("h1", "", "Take calls")
    .raw("<p>You are <strong id=\"identity\">")
    .text(me.identity.as_str())
    .raw("</strong>. Availability: <output id=\"availability\" aria-live=\"polite\">")
    .text(me.status())
    .raw("</output></p>")
    .raw("<p><button type=\"button\" id=\"go-available\">Available</button> ")
    .raw("<button type=\"button\" id=\"go-away\">Away</button></p>")
    .raw("<p>Phone in the browser: <output id=\"device-state\" aria-live=\"polite\">starting…</output></p>")
    .raw("<p id=\"incoming\" aria-live=\"assertive\"></p>")
    .raw("<p><button type=\"button\" id=\"answer\" disabled>Answer</button> ")
    .raw("<button type=\"button\" id=\"reject\" disabled>Reject</button> ")
    .raw("<button type=\"button\" id=\"hang-up\" disabled>Hang up</button></p>")
    .raw("<p role=\"alert\" id=\"operator-error\" class=\"error\"></p>")
    .el("h2", "", "Team")
    .raw("<table id=\"team\"><thead><tr><th scope=\"col\">Operator</th><th scope=\"col\">Status</th>")
    .raw("<th scope=\"col\">Since</th></tr></thead><tbody>");
    for o in team.iter().map(OperatorView::from) {
        h.raw("<tr>")
            .el("td", "", &o.identity)
            .el("td", "", &o.status)
            .el("td", "", &o.since.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .raw("</tr>");
    }
    h.raw("</tbody></table></div>")
        .raw("<script src=\"/console/assets/twilio-voice.min.js\"></script>")
        .raw("<script src=\"/console/assets/operator.js\"></script>");
    let mut res = page(StatusCode::OK, "Take calls", &s.chrome(), &h.0);
    res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(OPERATOR_CSP));
    Ok(res)
}

/// A POST from the operator page's script: same origin and the session's CSRF token in `X-CSRF-Token`.
fn guard_script(s: &Session, headers: &HeaderMap) -> Result<(), Response> {
    if !same_origin(headers) {
        return Err(Problem::forbidden("this request came from another site").into_response());
    }
    let presented = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    s.check_csrf(presented)
        .map_err(|_| Problem::forbidden("missing or stale CSRF token; reload the page").into_response())
}

/// `POST /console/operator/token`: an access token for the logged-in operator (JSON, like the API's).
pub async fn token(State(api): State<ApiState>, s: Session, headers: HeaderMap) -> Response {
    if let Err(r) = guard_script(&s, &headers) {
        return r;
    }
    let result = async {
        let op = crate::operators::operator_of(&api, &s.inner.key).await?;
        issue(&api, &op)
    }
    .await;
    match result {
        Ok(t) => Json(t).into_response(),
        Err(p) => p.into_response(),
    }
}

#[derive(Deserialize)]
pub struct StatusForm {
    status: String,
}

/// `POST /console/operator/status` (`status=available|away`): JSON `{"status": …}`.
pub async fn status(
    State(api): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Form(f): Form<StatusForm>,
) -> Response {
    if let Err(r) = guard_script(&s, &headers) {
        return r;
    }
    let result = async {
        let available = availability(&f.status)?;
        crate::operators::operator_of(&api, &s.inner.key).await?;
        let row = api
            .store
            .operators_set_available(s.inner.key.id, available)
            .await?
            .ok_or_else(|| Problem::not_found("operator"))?;
        Ok::<_, Problem>(OperatorView::from(&row))
    }
    .await;
    match result {
        Ok(v) => Json(serde_json::json!({ "status": v.status })).into_response(),
        Err(p) => p.into_response(),
    }
}

/// A campaign's calls in progress, each with an announcement form, and its waiting room.
pub async fn calls(State(api): State<ApiState>, s: Session, Path(id): Path<i64>) -> Page {
    s.require(Scope::ResultsRead)?;
    let c = api.store.campaigns_get(id).await.map_err(|e| problem_page(&s, e.into()))?;
    let live = api.store.calls_live(id, 200).await.map_err(|e| problem_page(&s, e.into()))?;
    let transfers = api.store.transfers_list(id, 50).await.map_err(|e| problem_page(&s, e.into()))?;
    let mut h = Html::default();
    h.el("h1", "", &format!("Live calls · {}", c.name))
        .raw(&format!("<p><a href=\"/console/campaigns/{id}\">Back to the campaign</a></p>"));
    if live.is_empty() {
        h.el("p", "id=\"no-calls\"", "No call is in progress.");
    } else {
        h.raw("<table id=\"live-calls\"><thead><tr><th scope=\"col\">Call</th><th scope=\"col\">Number</th>")
            .raw("<th scope=\"col\">Waiting room</th><th scope=\"col\">Operator</th><th scope=\"col\">Announce</th>")
            .raw("</tr></thead><tbody>");
        for call in &live {
            let a = call.attempt_id;
            h.raw(&format!("<tr data-attempt=\"{a}\">"))
                .el("td", "", &a.to_string())
                .el("td", "", call.phone.as_str())
                .el("td", "", call.transfer.map(|t| t.as_str()).unwrap_or("—"))
                .el("td", "", call.operator.as_deref().unwrap_or("—"))
                .raw(&format!("<td><form method=\"post\" action=\"/console/campaigns/{id}/calls/{a}/announce\">"))
                .raw(&csrf_field(s.csrf()))
                .raw(&format!(
                    "<label for=\"text-{a}\" class=\"visually-hidden\">Announcement to call {a}</label>\
                     <input id=\"text-{a}\" name=\"text\" maxlength=\"1000\" required>\
                     <button type=\"submit\">Say it</button></form></td></tr>"
                ));
        }
        h.raw("</tbody></table>");
    }
    h.el("h2", "", "Waiting room, latest first")
        .raw("<table id=\"transfers\"><thead><tr><th scope=\"col\">Call</th><th scope=\"col\">State</th>")
        .raw("<th scope=\"col\">Operator</th><th scope=\"col\">Asked at</th></tr></thead><tbody>");
    for t in &transfers {
        h.raw("<tr>")
            .el("td", "", &t.attempt_id.to_string())
            .el("td", "", t.state.as_str())
            .el("td", "", t.operator.as_deref().unwrap_or("—"))
            .el("td", "", &t.requested_at.format("%H:%M:%S UTC").to_string())
            .raw("</tr>");
    }
    h.raw("</tbody></table>");
    Ok(page(StatusCode::OK, "Live calls", &s.chrome(), &h.0))
}

#[derive(Deserialize)]
pub struct AnnounceForm {
    csrf: Option<String>,
    #[serde(default)]
    text: String,
}

/// Sends an announcement and comes back to the live calls, or shows why it failed.
pub async fn announce(
    State(api): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path((id, attempt)): Path<(i64, i64)>,
    Form(f): Form<AnnounceForm>,
) -> Page {
    guard_post(&s, &headers, f.csrf.as_deref(), Scope::CampaignsWrite)?;
    match send_announcement(&api, attempt, &f.text, &s.inner.key.name).await {
        Ok(_) => Ok(Redirect::to(&format!("/console/campaigns/{id}/calls")).into_response()),
        Err(p) => {
            let mut h = Html::default();
            h.el("h1", "", "Not announced")
                .el("p", "role=\"alert\"", &p.detail)
                .raw(&format!("<p><a href=\"/console/campaigns/{id}/calls\">Back to the live calls</a></p>"));
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_GATEWAY);
            Ok(page(status, "Not announced", &s.chrome(), &h.0))
        }
    }
}
