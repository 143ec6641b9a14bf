//! The console's pages. Each reads and writes through the same store functions and API handlers the
//! management API uses (`crate::campaigns`, `crate::contacts`, `crate::results`, `crate::dnc`), checks the
//! session key's scope for the action, and escapes every piece of stored text.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{DateTime, Utc};
use dialer_core::domain::compliance::ZoneSource;
use dialer_core::domain::Scope;
use serde::Deserialize;

use super::html::{bar_chart, csrf_field, esc, page, Html};
use super::session::{same_origin, Session};
use crate::auth::Caller;
use crate::campaigns::Progress;
use crate::contacts::{PushQuery, PushReport};
use crate::extract::{Path, Query};
use crate::problem::Problem;
use crate::ApiState;
use dialer_core::store::RecentAttempt;
use futures::StreamExt;

pub(super) type Page = Result<Response, Response>;

/// A POST must come from our own pages, carry the session's CSRF token, and be allowed to the key.
pub(super) fn guard_post(s: &Session, headers: &HeaderMap, csrf: Option<&str>, scope: Scope) -> Result<(), Response> {
    if !same_origin(headers) {
        return Err(super::session::forbidden(s, "This request came from another site and was refused."));
    }
    s.check_csrf(csrf)?;
    s.require(scope)
}

/// An API error as a page (the problem's detail and each field error, escaped).
pub(super) fn problem_page(s: &Session, p: Problem) -> Response {
    let mut h = Html::default();
    h.el("h1", "", &p.title).el("p", "role=\"alert\"", &p.detail);
    if !p.errors.is_empty() {
        h.raw("<ul>");
        for e in &p.errors {
            h.el("li", "", &format!("{}: {}", e.field.as_deref().or(e.pointer.as_deref()).unwrap_or("-"), e.detail));
        }
        h.raw("</ul>");
    }
    page(StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST), &p.title, &s.chrome(), &h.0)
}

pub(super) fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "—".into(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

fn percent(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

fn eta_text(p: &Progress) -> String {
    match p.estimate.eta_seconds {
        Some(s) if s > 0 => format!("{} (in {} min)", time(p.estimate.finish_at), (s + 59) / 60),
        Some(_) => "now".into(),
        None => p.estimate.basis.clone(),
    }
}

async fn progress_of(api: &ApiState, id: i64) -> Result<Progress, Problem> {
    crate::campaigns::progress(State(api.clone()), Path(id)).await.map(|j| j.0)
}

fn sorted(m: &std::collections::BTreeMap<String, i64>) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// The buttons a campaign in this status offers.
fn actions(h: &mut Html, s: &Session, id: i64, status: &str) {
    let verbs: &[&str] = match status {
        "draft" => &["start", "cancel"],
        "running" => &["pause", "cancel"],
        "paused" => &["resume", "cancel"],
        _ => &[],
    };
    h.raw("<div class=\"actions\">");
    for v in verbs {
        if *v == "cancel" {
            // Cancel asks first, on a page of its own.
            h.raw(&format!("<a class=\"button danger\" href=\"/console/campaigns/{id}/cancel\">Cancel…</a>"));
        } else {
            h.raw(&format!("<form method=\"post\" action=\"/console/campaigns/{id}/{v}\">"))
                .raw(&csrf_field(s.csrf()))
                .raw(&format!("<button type=\"submit\" data-action=\"{v}\">{}</button></form>", capitalize(v)));
        }
    }
    h.raw("</div>");
}

fn capitalize(v: &str) -> String {
    let mut c = v.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

pub async fn home() -> Redirect {
    Redirect::to("/console/campaigns")
}

pub async fn campaigns(State(api): State<ApiState>, s: Session) -> Page {
    let rows = api.store.campaigns_list(0, 200).await.map_err(|e| problem_page(&s, e.into()))?;
    let mut h = Html::default();
    h.raw("<h1>Campaigns</h1><p><a class=\"button\" href=\"/console/campaigns/new\">New campaign</a></p>");
    if rows.is_empty() {
        h.el("p", "", "No campaigns yet.");
    } else {
        h.raw("<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"All campaigns\"><table id=\"campaigns\"><caption>All campaigns</caption><thead><tr>")
            .raw("<th scope=\"col\">Name</th><th scope=\"col\">Status</th><th scope=\"col\">Progress</th>")
            .raw("<th scope=\"col\">Calls/s now</th><th scope=\"col\">Answer rate</th><th scope=\"col\">ETA</th><th scope=\"col\">Actions</th></tr></thead><tbody>");
        for c in rows {
            let p = progress_of(&api, c.id).await.map_err(|e| problem_page(&s, e))?;
            let status = c.status.to_string();
            h.raw(&format!("<tr data-campaign=\"{}\"><td><a href=\"/console/campaigns/{}\">", c.id, c.id))
                .text(&c.name)
                .raw("</a></td>")
                .el("td", "class=\"status\"", &status)
                .raw(&format!(
                    "<td><progress max=\"100\" value=\"{:.0}\" aria-label=\"Progress of {}\"></progress> {}</td>",
                    p.percent_done * 100.0,
                    esc(&c.name),
                    percent(p.percent_done)
                ))
                .el("td", "class=\"cps\"", &format!("{:.1}", p.calls_per_second))
                .el("td", "", &p.answer_rate.map_or("—".into(), percent))
                .el("td", "", &eta_text(&p))
                .raw("<td>");
            actions(&mut h, &s, c.id, &status);
            h.raw("</td></tr>");
        }
        h.raw("</tbody></table></div>");
    }
    Ok(page(StatusCode::OK, "Campaigns", &s.chrome(), &h.0))
}

pub async fn campaign(State(api): State<ApiState>, s: Session, Path(id): Path<i64>) -> Page {
    let c = api.store.campaigns_get(id).await.map_err(|e| problem_page(&s, e.into()))?;
    let p = progress_of(&api, id).await.map_err(|e| problem_page(&s, e))?;
    let status = c.status.to_string();
    let w = &c.calling_window.0;
    let mut h = Html::default();
    h.raw(&format!("<div id=\"campaign\" data-id=\"{id}\" data-events=\"/console/campaigns/{id}/events\">"))
        .el("h1", "", &c.name)
        .raw("<p>Status: <strong id=\"status\">")
        .text(&status)
        .raw("</strong></p>");
    actions(&mut h, &s, id, &status);
    h.raw("<section aria-labelledby=\"progress-h\"><h2 id=\"progress-h\">Progress</h2>")
        .raw(&format!(
            "<progress id=\"progress\" max=\"100\" value=\"{:.0}\" aria-label=\"Campaign progress\"></progress> \
             <span id=\"percent\">{}</span>",
            p.percent_done * 100.0,
            percent(p.percent_done)
        ))
        .raw("<dl class=\"facts\">")
        .raw(&format!("<dt>Contacts</dt><dd id=\"contacts\">{}</dd>", p.contacts))
        .raw(&format!("<dt>Waiting</dt><dd id=\"backlog\">{}</dd>", p.backlog))
        .raw(&format!("<dt>Calls in flight</dt><dd id=\"in-flight\">{}</dd>", p.calls_in_flight))
        .raw(&format!("<dt>Calls placed</dt><dd id=\"calls\">{}</dd>", p.calls_requested))
        .raw(&format!("<dt>Calls per second now</dt><dd id=\"cps-now\">{:.1}</dd>", p.calls_per_second))
        .raw("<dt>Answer rate</dt>")
        .el("dd", "id=\"answer-rate\"", &p.answer_rate.map_or("—".into(), percent))
        .raw("<dt>ETA</dt>")
        .el("dd", "id=\"eta\"", &eta_text(&p))
        .raw("<dt>Calling window</dt>")
        .el(
            "dd",
            "id=\"window\"",
            &format!(
                "{}–{} {} ({})",
                w.start.format("%H:%M"),
                w.end.format("%H:%M"),
                c.timezone.name(),
                if p.estimate.window_open_now { "open now" } else { "closed now" }
            ),
        )
        .raw("<dt>Next opening</dt>")
        .el("dd", "id=\"next-opening\"", &time(p.estimate.next_window_opening))
        .raw("<dt>Callee zones</dt>")
        .el("dd", "id=\"zone-sources\"", &zone_sources_text(&p.by_zone_source))
        .raw("</dl></section>")
        .raw("<section aria-labelledby=\"outcomes-h\"><h2 id=\"outcomes-h\">Outcomes</h2>")
        .raw(&bar_chart("outcomes-chart", "Contacts by outcome", &sorted(&p.by_outcome)))
        .raw("</section><section aria-labelledby=\"results-h\"><h2 id=\"results-h\">Keypress results</h2>")
        .raw(&bar_chart("results-chart", "Contacts by keypress result", &sorted(&p.by_result)))
        .raw("</section>");
    h.raw(&format!(
        "<p><a href=\"/console/campaigns/{id}/results\">Results</a> · \
         <a href=\"/console/campaigns/{id}/results.csv\" download>Download results (CSV)</a> · \
         <a href=\"/console/campaigns/{id}/webhook\">Result webhook</a> · \
         <a href=\"/console/campaigns/{id}/calls\">Live calls and waiting room</a></p>"
    ));
    if s.inner.key.allows(Scope::ResultsRead) {
        let recent = api.store.attempts_recent(id, RECENT).await.map_err(|e| problem_page(&s, e.into()))?;
        h.raw("<section aria-labelledby=\"attempts-h\"><h2 id=\"attempts-h\">Recent attempts</h2>");
        attempts_table(&mut h, &recent);
        h.raw("</section>");
    }
    // Contacts upload (XMLHttpRequest with upload progress; works with the keyboard like any form).
    h.raw("<section aria-labelledby=\"upload-h\"><h2 id=\"upload-h\">Add contacts (CSV)</h2>")
        .raw(&format!(
            "<form id=\"upload\" data-url=\"/console/campaigns/{id}/contacts\" data-csrf=\"{}\">",
            esc(s.csrf())
        ))
        .raw("<p class=\"hint\" id=\"csv-hint\">Columns: phone, then timezone, external_id and the script's variables.</p>")
        .raw("<label for=\"csv\">CSV file</label><input id=\"csv\" name=\"csv\" type=\"file\" accept=\".csv,text/csv\" required aria-describedby=\"csv-hint\">")
        .raw("<label for=\"region\">Region of local numbers</label><input id=\"region\" name=\"region\" value=\"JP\" size=\"4\">")
        .raw("<label class=\"check\"><input id=\"skip-invalid\" name=\"skip_invalid\" type=\"checkbox\"> Skip invalid rows (otherwise any invalid row adds nothing)</label>")
        .raw("<button type=\"submit\">Upload</button> ")
        .raw("<progress id=\"upload-progress\" max=\"100\" value=\"0\" aria-label=\"Upload progress\" hidden></progress>")
        .raw("</form><div id=\"upload-report\" aria-live=\"polite\"></div></section></div>");
    Ok(page(StatusCode::OK, &c.name, &s.chrome(), &h.0))
}

/// Attempts shown on a campaign's page (and sent live).
const RECENT: i64 = 20;

/// The latest attempts with their Twilio status and outcome; `console.js` redraws the body from the live
/// `attempts` event the same way.
fn attempts_table(h: &mut Html, rows: &[RecentAttempt]) {
    h.raw("<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"The latest calls, newest first\"><table id=\"attempts\"><caption>The latest calls, newest first</caption><thead><tr>")
        .raw("<th scope=\"col\">Requested</th><th scope=\"col\">Contact</th><th scope=\"col\">Attempt</th>")
        .raw("<th scope=\"col\">Call SID</th><th scope=\"col\">Twilio status</th><th scope=\"col\">Outcome</th>")
        .raw("<th scope=\"col\">Result</th><th scope=\"col\">Seconds</th></tr></thead><tbody>");
    for r in rows {
        let a = &r.attempt;
        h.raw("<tr>")
            .el("td", "", &time_s(a.requested_at))
            .raw(&format!("<td><a href=\"/console/contacts/{}\">", r.contact_id))
            .text(&contact_label(r.contact_id, r.external_id.as_deref()))
            .raw("</a></td>")
            .el("td", "", &a.attempt_no.to_string())
            .el("td", "class=\"sid\"", &a.call_sid.as_ref().map_or("—".into(), |c| c.to_string()))
            .el("td", "", &a.call_status.map_or_else(|| a.state.to_string(), |c| c.to_string()))
            .el("td", "", &a.outcome.map_or("—".into(), |o| o.to_string()))
            .el("td", "", a.result.as_deref().unwrap_or("—"))
            .el("td", "", &a.duration_s.map_or("—".into(), |d| d.to_string()))
            .raw("</tr>");
    }
    h.raw("</tbody></table></div>");
}

fn contact_label(id: i64, external_id: Option<&str>) -> String {
    external_id.map_or_else(|| format!("#{id}"), str::to_string)
}

fn time_s(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "—".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// Live progress: every second the management API's progress JSON (the default event) and, for a key
/// that may read results, the latest attempts (`event: attempts`), as server-sent events.
pub async fn events(State(api): State<ApiState>, s: Session, Path(id): Path<i64>) -> Result<Response, Response> {
    s.require(Scope::CampaignsRead)?;
    api.store.campaigns_get(id).await.map_err(|e| problem_page(&s, e.into()))?;
    let attempts = s.inner.key.allows(Scope::ResultsRead);
    let stream = futures::stream::unfold((api, true), move |(api, first)| async move {
        if !first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let p = progress_of(&api, id).await.ok()?;
        let mut events = vec![Event::default().json_data(&p).ok()?];
        if attempts {
            let recent = api.store.attempts_recent(id, RECENT).await.ok()?;
            events.push(Event::default().event("attempts").json_data(&recent).ok()?);
        }
        Some((futures::stream::iter(events.into_iter().map(Ok::<_, Infallible>)), (api, false)))
    })
    .flatten();
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// One contact: its attributes (as text), state, outcome and every attempt.
pub async fn contact(State(api): State<ApiState>, s: Session, Path(id): Path<i64>) -> Page {
    s.require(Scope::ResultsRead)?;
    let c = api
        .store
        .contacts_get(id)
        .await
        .map_err(|e| problem_page(&s, e.into()))?
        .ok_or_else(|| problem_page(&s, Problem::not_found(format!("contact {id} does not exist"))))?;
    let label = contact_label(c.id, c.external_id.as_deref());
    let mut h = Html::default();
    h.raw("<h1>Contact ").text(&label).raw("</h1>");
    h.raw(&format!("<p><a href=\"/console/campaigns/{}\">Back to the campaign</a></p>", c.campaign_id));
    h.raw("<dl class=\"facts\" id=\"contact\">")
        .raw("<dt>Phone</dt>")
        .el("dd", "", c.phone.as_str())
        .raw("<dt>Time zone</dt>")
        .el("dd", "id=\"contact-zone\"", &zone_text(&c))
        .raw("<dt>State</dt>")
        .el("dd", "id=\"contact-state\"", &c.state.to_string())
        .raw("<dt>Outcome</dt>")
        .el("dd", "", &c.final_outcome.map_or("—".into(), |o| o.to_string()))
        .raw("<dt>Result</dt>")
        .el("dd", "", c.result.as_deref().unwrap_or("—"))
        .raw("<dt>Calls made</dt>")
        .el("dd", "", &c.attempts_made.to_string())
        .raw("<dt>Next attempt</dt>")
        .el("dd", "", &time(c.next_attempt_at))
        .raw("</dl>");
    h.raw("<table id=\"attributes\"><caption>Attributes</caption><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Value</th></tr></thead><tbody>");
    if let Some(attrs) = c.attributes.as_object() {
        for (k, v) in attrs {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            h.raw("<tr>").el("th", "scope=\"row\"", k).el("td", "", &v).raw("</tr>");
        }
    }
    h.raw("</tbody></table>");
    h.raw("<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Attempts\"><table id=\"contact-attempts\"><caption>Attempts</caption><thead><tr>")
        .raw("<th scope=\"col\">Attempt</th><th scope=\"col\">Requested</th><th scope=\"col\">Call SID</th>")
        .raw("<th scope=\"col\">Twilio status</th><th scope=\"col\">Answered by</th><th scope=\"col\">Outcome</th>")
        .raw("<th scope=\"col\">Result</th><th scope=\"col\">Seconds</th><th scope=\"col\">Twilio error</th></tr></thead><tbody>");
    for a in &c.attempts {
        h.raw("<tr>")
            .el("td", "", &a.attempt_no.to_string())
            .el("td", "", &time_s(a.requested_at))
            .el("td", "class=\"sid\"", &a.call_sid.as_ref().map_or("—".into(), |c| c.to_string()))
            .el("td", "", &a.call_status.map_or_else(|| a.state.to_string(), |c| c.to_string()))
            .el("td", "", &a.answered_by.map_or("—".into(), |x| x.to_string()))
            .el("td", "", &a.outcome.map_or("—".into(), |o| o.to_string()))
            .el("td", "", a.result.as_deref().unwrap_or("—"))
            .el("td", "", &a.duration_s.map_or("—".into(), |d| d.to_string()))
            .el("td", "", &a.twilio_error_code.map_or("—".into(), |d| d.to_string()))
            .raw("</tr>");
    }
    h.raw("</tbody></table></div>");
    Ok(page(StatusCode::OK, &format!("Contact {label}"), &s.chrome(), &h.0))
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

macro_rules! verb_handler {
    ($($name:ident),*) => {$(
        pub async fn $name(
            State(api): State<ApiState>,
            s: Session,
            headers: HeaderMap,
            Path(id): Path<i64>,
            Form(f): Form<CsrfForm>,
        ) -> Page {
            action(api, s, headers, id, stringify!($name), f).await
        }
    )*};
}
verb_handler!(start, pause, resume, cancel);

async fn action(api: ApiState, s: Session, headers: HeaderMap, id: i64, verb: &str, f: CsrfForm) -> Page {
    guard_post(&s, &headers, f.csrf.as_deref(), Scope::CampaignsWrite)?;
    let (state, path) = (State(api), Path(id));
    let r = match verb {
        "start" => crate::campaigns::start(state, path).await,
        "pause" => crate::campaigns::pause(state, path).await,
        "resume" => crate::campaigns::resume(state, path).await,
        "cancel" => crate::campaigns::cancel(state, path).await,
        _ => return Err(problem_page(&s, Problem::not_found("no such action"))),
    };
    let _changed = r.map_err(|p| problem_page(&s, p))?;
    Ok(Redirect::to(&format!("/console/campaigns/{id}")).into_response())
}

pub async fn cancel_confirm(State(api): State<ApiState>, s: Session, Path(id): Path<i64>) -> Page {
    let c = api.store.campaigns_get(id).await.map_err(|e| problem_page(&s, e.into()))?;
    let mut h = Html::default();
    h.raw("<h1>Cancel “").text(&c.name).raw("”?</h1>")
        .el("p", "", "Contacts not yet called end as canceled; calls in progress finish and are not retried. This cannot be undone.")
        .raw(&format!("<form method=\"post\" action=\"/console/campaigns/{id}/cancel\">"))
        .raw(&csrf_field(s.csrf()))
        .raw("<button type=\"submit\" class=\"danger\">Yes, cancel the campaign</button> ")
        .raw(&format!("<a href=\"/console/campaigns/{id}\">No, go back</a></form>"));
    Ok(page(StatusCode::OK, "Cancel campaign", &s.chrome(), &h.0))
}

#[derive(Deserialize)]
pub struct UploadQuery {
    region: Option<String>,
    skip_invalid: Option<bool>,
}

/// A CSV upload from the campaign page: the API's own push (same parsing, duplicates, all-or-nothing or
/// skip), answered with an HTML fragment: what was added, and a table of the rows refused.
pub async fn upload_contacts(
    State(api): State<ApiState>,
    s: Session,
    Path(id): Path<i64>,
    axum::extract::Query(q): axum::extract::Query<UploadQuery>,
    req: Request,
) -> Page {
    let csrf = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_string);
    guard_post(&s, req.headers(), csrf.as_deref(), Scope::ContactsWrite)?;
    let query = PushQuery {
        region: q.region.filter(|r| !r.trim().is_empty()).map(|r| r.trim().to_string()),
        skip_invalid: q.skip_invalid,
    };
    let caller = Caller(s.inner.key.clone());
    let answer = crate::contacts::push(State(api), Extension(caller), Path(id), Query(query), req).await;
    let mut h = Html::default();
    match answer {
        Err(p) => {
            // The API's detail speaks of `?skip_invalid=true`; here it is the checkbox.
            let detail = if p.errors.iter().any(|e| e.row.is_some()) {
                format!(
                    "{} invalid row(s): nothing was added. Fix them, or tick “Skip invalid rows” to add the valid ones.",
                    p.errors.iter().filter_map(|e| e.row).collect::<std::collections::BTreeSet<_>>().len()
                )
            } else {
                p.detail.clone()
            };
            h.raw("<p class=\"error\" role=\"alert\" id=\"upload-result\" data-ok=\"false\">")
                .text(&detail)
                .raw("</p>");
            error_table(&mut h, &p.errors);
        }
        Ok(res) => {
            let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .map_err(|_| problem_page(&s, Problem::internal()))?;
            let report: PushReport =
                serde_json::from_slice(&body).map_err(|_| problem_page(&s, Problem::internal()))?;
            h.raw("<p id=\"upload-result\" data-ok=\"true\" role=\"status\">")
                .text(&format!(
                    "Added {} contact(s); {} duplicate(s) skipped; {} invalid row(s) skipped.",
                    report.created,
                    report.duplicates.len(),
                    report.invalid.len()
                ))
                .raw("</p>");
            error_table(&mut h, &report.invalid);
        }
    }
    let mut res = h.0.into_response();
    res.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("text/html; charset=utf-8"));
    Ok(res)
}

fn error_table(h: &mut Html, errors: &[crate::problem::FieldError]) {
    if errors.is_empty() {
        return;
    }
    h.raw("<table id=\"row-errors\"><caption>Rows refused</caption><thead><tr><th scope=\"col\">Line</th>")
        .raw("<th scope=\"col\">Column</th><th scope=\"col\">Reason</th></tr></thead><tbody>");
    for e in errors {
        h.raw("<tr>")
            .el("td", "", &e.row.map_or("—".into(), |r| r.to_string()))
            .el("td", "", e.field.as_deref().unwrap_or("—"))
            .el("td", "", &e.detail)
            .raw("</tr>");
    }
    h.raw("</tbody></table>");
}

#[derive(Deserialize)]
pub struct ResultsQuery {
    outcome: Option<String>,
    result: Option<String>,
    after: Option<i64>,
}

const RESULTS_PAGE: i64 = 100;

pub async fn results(
    State(api): State<ApiState>,
    s: Session,
    Path(id): Path<i64>,
    axum::extract::Query(q): axum::extract::Query<ResultsQuery>,
) -> Page {
    s.require(Scope::ResultsRead)?;
    let c = api.store.campaigns_get(id).await.map_err(|e| problem_page(&s, e.into()))?;
    let report = api.store.campaigns_report(id).await.map_err(|e| problem_page(&s, e.into()))?;
    let outcome = q.outcome.as_deref().filter(|o| !o.is_empty());
    let result = q.result.as_deref().filter(|o| !o.is_empty());
    let rows = api
        .store
        .results_page_filtered(id, q.after.unwrap_or(0), RESULTS_PAGE, outcome, result)
        .await
        .map_err(|e| problem_page(&s, e.into()))?;
    let mut h = Html::default();
    h.raw("<h1>Results: ").text(&c.name).raw("</h1>");
    h.raw(&format!("<p><a href=\"/console/campaigns/{id}\">Back to the campaign</a> · <a href=\"/console/campaigns/{id}/results.csv\" download>Download all (CSV)</a></p>"));
    h.raw(&format!("<form method=\"get\" action=\"/console/campaigns/{id}/results\" class=\"filters\">"));
    let select = |h: &mut Html, name: &str, label: &str, options: Vec<&String>, chosen: Option<&str>| {
        h.raw(&format!("<label for=\"f-{name}\">{label}</label><select id=\"f-{name}\" name=\"{name}\"><option value=\"\">any</option>"));
        for o in options {
            let sel = if Some(o.as_str()) == chosen { " selected" } else { "" };
            h.raw(&format!("<option value=\"{}\"{sel}>{}</option>", esc(o), esc(o)));
        }
        h.raw("</select>");
    };
    select(&mut h, "outcome", "Outcome", report.by_outcome.keys().collect(), outcome);
    select(&mut h, "result", "Keypress result", report.by_result.keys().collect(), result);
    h.raw("<button type=\"submit\">Filter</button></form>");
    h.raw("<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Results\"><table id=\"results\"><caption>Results</caption><thead><tr>")
        .raw("<th scope=\"col\">Contact</th><th scope=\"col\">External id</th><th scope=\"col\">Phone</th><th scope=\"col\">State</th>")
        .raw("<th scope=\"col\">Outcome</th><th scope=\"col\">Result</th><th scope=\"col\">Attempts</th><th scope=\"col\">Last call</th></tr></thead><tbody>");
    for r in &rows {
        h.raw("<tr>")
            .el("td", "", &r.contact_id.to_string())
            .el("td", "", r.external_id.as_deref().unwrap_or("—"))
            .el("td", "", r.phone.as_str())
            .el("td", "", &r.state.to_string())
            .el("td", "", &r.outcome.map_or("—".into(), |o| o.to_string()))
            .el("td", "", r.result.as_deref().unwrap_or("—"))
            .el("td", "", &r.attempts.to_string())
            .el("td", "", &time(r.last_call_at))
            .raw("</tr>");
    }
    h.raw("</tbody></table></div>");
    if rows.len() as i64 == RESULTS_PAGE {
        let last = rows.last().map_or(0, |r| r.contact_id);
        let mut next = format!("/console/campaigns/{id}/results?after={last}");
        for (k, v) in [("outcome", outcome), ("result", result)] {
            if let Some(v) = v {
                next.push_str(&format!(
                    "&{k}={}",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                ));
            }
        }
        h.raw(&format!("<p><a href=\"{}\">Next page</a></p>", esc(&next)));
    }
    Ok(page(StatusCode::OK, "Results", &s.chrome(), &h.0))
}

pub async fn results_csv(State(api): State<ApiState>, s: Session, Path(id): Path<i64>) -> Page {
    s.require(Scope::ResultsRead)?;
    crate::results::export(State(api), Path(id), Query(crate::results::ExportQuery { format: None }))
        .await
        .map_err(|p| problem_page(&s, p))
}

#[derive(Deserialize)]
pub struct DncQuery {
    phone: Option<String>,
}

fn dnc_page(s: &Session, status: StatusCode, phone: &str, body: &str) -> Response {
    let mut h = Html::default();
    h.raw("<h1>Do-not-call list</h1>")
        .raw("<form method=\"get\" action=\"/console/dnc\" role=\"search\"><label for=\"q\">Phone number (E.164, e.g. +818012345678)</label>")
        .raw("<input id=\"q\" name=\"phone\" type=\"search\" value=\"")
        .text(phone)
        .raw("\"><button type=\"submit\">Search</button></form>")
        .raw(body)
        .raw("<h2>Add a number</h2><form method=\"post\" action=\"/console/dnc\" id=\"dnc-add\">")
        .raw(&csrf_field(s.csrf()))
        .raw("<label for=\"add-phone\">Phone number</label><input id=\"add-phone\" name=\"phone\" required>")
        .raw("<label for=\"add-reason\">Reason</label><input id=\"add-reason\" name=\"reason\">")
        .raw("<button type=\"submit\">Add to the list</button></form>");
    page(status, "Do-not-call", &s.chrome(), &h.0)
}

async fn dnc_status_html(api: &ApiState, s: &Session, phone: &str) -> (StatusCode, String) {
    let mut h = Html::default();
    match crate::dnc::check(State(api.clone()), Path(phone.to_string())).await {
        Err(p) => {
            h.el("p", "class=\"error\" role=\"alert\"", &p.detail);
            (StatusCode::UNPROCESSABLE_ENTITY, h.0)
        }
        Ok(st) => {
            let st = st.0;
            h.raw("<section id=\"dnc-status\" aria-live=\"polite\">").el(
                "p",
                "",
                &if st.entries.is_empty() {
                    format!("{} is not on any do-not-call list.", st.phone)
                } else if st.blocked_everywhere {
                    format!("{} is on the global do-not-call list.", st.phone)
                } else {
                    format!("{} is on the lists of campaigns {:?}.", st.phone, st.blocked_campaigns)
                },
            );
            if !st.entries.is_empty() {
                h.raw("<table><caption>Listings</caption><thead><tr><th scope=\"col\">List</th><th scope=\"col\">Reason</th><th scope=\"col\">Source</th><th scope=\"col\">Added</th><th scope=\"col\">Remove</th></tr></thead><tbody>");
                for e in &st.entries {
                    h.raw("<tr>")
                        .el("td", "", &e.campaign_id.map_or("global".into(), |c| format!("campaign {c}")))
                        .el("td", "", &e.reason)
                        .el("td", "", &e.source)
                        .el("td", "", &time(Some(e.created_at)))
                        .raw("<td><form method=\"post\" action=\"/console/dnc/remove\">")
                        .raw(&csrf_field(s.csrf()))
                        .raw(&format!("<input type=\"hidden\" name=\"phone\" value=\"{}\">", esc(&st.phone)));
                    if let Some(c) = e.campaign_id {
                        h.raw(&format!("<input type=\"hidden\" name=\"campaign_id\" value=\"{c}\">"));
                    }
                    h.raw("<button type=\"submit\">Remove</button></form></td></tr>");
                }
                h.raw("</tbody></table>");
            }
            h.raw("</section>");
            (StatusCode::OK, h.0)
        }
    }
}

pub async fn dnc(
    State(api): State<ApiState>,
    s: Session,
    axum::extract::Query(q): axum::extract::Query<DncQuery>,
) -> Page {
    s.require(Scope::DncRead)?;
    let phone = q.phone.unwrap_or_default();
    let (status, body) = if phone.trim().is_empty() {
        (StatusCode::OK, String::new())
    } else {
        dnc_status_html(&api, &s, phone.trim()).await
    };
    Ok(dnc_page(&s, status, &phone, &body))
}

#[derive(Deserialize)]
pub struct DncForm {
    csrf: Option<String>,
    #[serde(default)]
    phone: String,
    reason: Option<String>,
    campaign_id: Option<i64>,
}

pub async fn dnc_add(State(api): State<ApiState>, s: Session, headers: HeaderMap, Form(f): Form<DncForm>) -> Page {
    guard_post(&s, &headers, f.csrf.as_deref(), Scope::DncWrite)?;
    let phone = f.phone.trim().to_string();
    let add = crate::dnc::DncAdd {
        campaign_id: None,
        reason: Some(f.reason.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "added in the console".into())),
    };
    if let Err(p) = crate::dnc::add(State(api.clone()), Path(phone.clone()), crate::body::JsonBody(add)).await {
        let mut h = Html::default();
        h.el("p", "class=\"error\" role=\"alert\"", &p.detail);
        return Ok(dnc_page(&s, StatusCode::UNPROCESSABLE_ENTITY, &phone, &h.0));
    }
    let (status, body) = dnc_status_html(&api, &s, &phone).await;
    Ok(dnc_page(&s, status, &phone, &body))
}

pub async fn dnc_remove(State(api): State<ApiState>, s: Session, headers: HeaderMap, Form(f): Form<DncForm>) -> Page {
    guard_post(&s, &headers, f.csrf.as_deref(), Scope::DncWrite)?;
    let phone = f.phone.trim().to_string();
    let scope = crate::dnc::DncScope { campaign_id: f.campaign_id };
    let mut msg = Html::default();
    match crate::dnc::remove(State(api.clone()), Path(phone.clone()), Query(scope)).await {
        Ok(_) => msg.el("p", "role=\"status\"", &format!("Removed {phone} from that list.")),
        Err(p) => msg.el("p", "class=\"error\" role=\"alert\"", &p.detail),
    };
    let (status, body) = dnc_status_html(&api, &s, &phone).await;
    Ok(dnc_page(&s, status, &phone, &(msg.0 + &body)))
}

/// How a zone source reads on a page.
fn zone_source_text(source: ZoneSource) -> &'static str {
    match source {
        ZoneSource::Given => "given at import",
        ZoneSource::Number => "from the number",
        ZoneSource::Campaign => "the campaign's, as its fallback",
    }
}

/// `America/Los_Angeles (from the number; CA)`: the zones the rules are applied in and where they came from.
fn zone_text(c: &dialer_core::store::ContactDetail) -> String {
    let zones = c.zones.iter().map(|z| z.name()).collect::<Vec<_>>().join(" & ");
    let source = zone_source_text(c.zone_source);
    match &c.region {
        Some(r) => format!("{zones} ({source}; {r})"),
        None => format!("{zones} ({source})"),
    }
}

/// `120 from the number, 30 given at import`: how the campaign's contacts got their zones.
fn zone_sources_text(by: &std::collections::BTreeMap<String, i64>) -> String {
    if by.is_empty() {
        return "—".into();
    }
    let name = |k: &str| ZoneSource::parse(k).map_or(k.to_string(), |s| zone_source_text(s).to_string());
    by.iter().map(|(k, n)| format!("{n} {}", name(k))).collect::<Vec<_>>().join(", ")
}
