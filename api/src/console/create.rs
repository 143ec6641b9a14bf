//! "New campaign": a form for the common fields with the script as TOML, or a whole campaign file (TOML or
//! YAML, chosen or pasted). Both go through `CampaignSpec::validate`, which reports every wrong field at
//! once; each error is shown next to its field and summarised at the top with links to them.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use dialer_core::domain::campaign::{CampaignFile, FieldIssue, SpecError};
use dialer_core::domain::{CampaignSpec, Scope};
use serde::Deserialize;

use super::html::{csrf_field, esc, page, Html};
use super::pages::{guard_post, problem_page, Page};
use super::session::Session;
use crate::ApiState;

const DAYS: [(&str, &str); 7] =
    [("mon", "Mon"), ("tue", "Tue"), ("wed", "Wed"), ("thu", "Thu"), ("fri", "Fri"), ("sat", "Sat"), ("sun", "Sun")];

/// What a new user starts from: the shape of a keypress menu, in the script's own language.
const SCRIPT_TEMPLATE: &str = r#"[script]
language = "ja-JP"
voice = "Polly.Mizuki"
variables = ["name"]

[script.menus.main]
say = "{name}様、Example運輸です。お荷物の再配達を希望される方は1を、不要な方は2を押してください。"

[script.menus.main.options]
"1" = { result = "reschedule", say = "ありがとうございます。" }
"2" = { result = "no_redelivery" }
"9" = { opt_out = true, say = "今後、このお電話はいたしません。" }
"#;

/// Both forms' fields; the form's own fields are strings so a wrong number is reported, not a 422 page.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewCampaign {
    csrf: Option<String>,
    /// `form` or `file`.
    mode: String,
    spec: String,
    file_name: String,
    name: String,
    caller_id: String,
    timezone: String,
    window_start: String,
    window_end: String,
    day_mon: Option<String>,
    day_tue: Option<String>,
    day_wed: Option<String>,
    day_thu: Option<String>,
    day_fri: Option<String>,
    day_sat: Option<String>,
    day_sun: Option<String>,
    cps: String,
    max_attempts: String,
    script: String,
}

impl NewCampaign {
    fn blank() -> Self {
        Self {
            mode: "form".into(),
            file_name: "campaign.toml".into(),
            timezone: "Asia/Tokyo".into(),
            window_start: "09:00".into(),
            window_end: "20:00".into(),
            cps: "10".into(),
            max_attempts: "3".into(),
            script: SCRIPT_TEMPLATE.into(),
            day_mon: Some("on".into()),
            day_tue: Some("on".into()),
            day_wed: Some("on".into()),
            day_thu: Some("on".into()),
            day_fri: Some("on".into()),
            day_sat: Some("on".into()),
            ..Self::default()
        }
    }

    fn days(&self) -> [(&'static str, &'static str, bool); 7] {
        let on =
            [&self.day_mon, &self.day_tue, &self.day_wed, &self.day_thu, &self.day_fri, &self.day_sat, &self.day_sun];
        std::array::from_fn(|i| (DAYS[i].0, DAYS[i].1, on[i].is_some()))
    }

    /// The form as a campaign file (defaults for what the form does not ask), or the fields that do not
    /// even have the right shape.
    fn to_file(&self) -> Result<CampaignFile, Vec<FieldIssue>> {
        let mut issues = Vec::new();
        let mut number = |field: &str, v: &str| match v.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Some(n),
            _ => {
                issues.push(issue(field, format!("{v:?} is not a number")));
                None
            }
        };
        let cps = number("cps", &self.cps);
        let max_attempts = number("max_attempts", &self.max_attempts);
        let script = match toml::from_str::<toml::Table>(&self.script) {
            Err(e) => {
                issues.push(issue("script", e.message().to_string()));
                None
            }
            Ok(mut t) => match (t.remove("script"), t.keys().next()) {
                (_, Some(other)) => {
                    issues.push(issue("script", format!("only the [script] table belongs here, not `{other}`")));
                    None
                }
                (None, None) => {
                    issues.push(issue("script", "needs a [script] table"));
                    None
                }
                (Some(s), None) => Some(s),
            },
        };
        let days: Vec<&str> = self.days().iter().filter(|d| d.2).map(|d| d.0).collect();
        if days.is_empty() {
            issues.push(issue("window.days", "choose at least one day"));
        }
        let (Some(cps), Some(max_attempts), Some(script), true) = (cps, max_attempts, script, issues.is_empty()) else {
            return Err(issues);
        };
        let doc = serde_json::json!({
            "name": self.name.trim(),
            "caller_id": self.caller_id.trim(),
            "timezone": self.timezone.trim(),
            "cps": cps,
            "max_attempts": max_attempts as i64,
            "window": { "start": self.window_start.trim(), "end": self.window_end.trim(), "days": days },
            "script": script,
        });
        serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = e.path().to_string();
            let field = if path.starts_with("script") { "script".to_string() } else { path };
            vec![issue(&field, e.into_inner().to_string())]
        })
    }
}

fn issue(field: &str, reason: impl Into<String>) -> FieldIssue {
    FieldIssue { field: field.into(), reason: reason.into() }
}

/// The form input that shows an error about this campaign field.
fn input_of(field: &str) -> &'static str {
    match field {
        "name" => "name",
        "caller_id" => "caller_id",
        "timezone" => "timezone",
        "cps" => "cps",
        "max_attempts" => "max_attempts",
        "window.start" => "window_start",
        "window.end" => "window_end",
        "window" | "window.days" | "window.holidays" => "days",
        _ => "script",
    }
}

struct Errors<'a>(&'a [FieldIssue], bool);

impl Errors<'_> {
    /// The errors for one input: in file mode they all go next to the file contents.
    fn for_input(&self, input: &str) -> Vec<&FieldIssue> {
        self.0.iter().filter(|i| if self.1 { input == "spec" } else { input_of(&i.field) == input }).collect()
    }

    /// `aria-invalid` and `aria-describedby`, and the error text after the input.
    fn attrs(&self, input: &str, hint: Option<&str>) -> String {
        let bad = !self.for_input(input).is_empty();
        let described: Vec<String> =
            hint.map(str::to_string).into_iter().chain(bad.then(|| format!("{input}-error"))).collect();
        let mut a = String::new();
        if !described.is_empty() {
            a.push_str(&format!(" aria-describedby=\"{}\"", described.join(" ")));
        }
        if bad {
            a.push_str(" aria-invalid=\"true\"");
        }
        a
    }

    fn after(&self, h: &mut Html, input: &str) {
        let mine = self.for_input(input);
        if mine.is_empty() {
            return;
        }
        h.raw(&format!("<div id=\"{input}-error\" class=\"error\">"));
        for i in mine {
            h.raw("<p><span class=\"field\">").text(&i.field).raw("</span>: ").text(&i.reason).raw("</p>");
        }
        h.raw("</div>");
    }
}

fn text_input(h: &mut Html, errs: &Errors, id: &str, label: &str, value: &str, extra: &str) {
    h.raw(&format!(
        "<label for=\"{id}\">{label}</label><input id=\"{id}\" name=\"{id}\" value=\"{}\"{}{extra}>",
        esc(value),
        errs.attrs(id, None)
    ));
    errs.after(h, id);
}

fn new_campaign_page(s: &Session, status: StatusCode, f: &NewCampaign, issues: &[FieldIssue]) -> Response {
    let file_mode = f.mode == "file";
    let errs = Errors(issues, file_mode);
    let mut h = Html::default();
    h.raw("<h1>New campaign</h1>");
    if !issues.is_empty() {
        h.raw("<div id=\"form-errors\" class=\"error-summary\" role=\"alert\" tabindex=\"-1\">")
            .el("h2", "", &format!("{} field(s) need attention", issues.len()))
            .raw("<ul>");
        for i in issues {
            let target = if file_mode { "spec" } else { input_of(&i.field) };
            h.raw(&format!("<li><a href=\"#{target}\">")).text(&i.field).raw("</a>: ").text(&i.reason).raw("</li>");
        }
        h.raw("</ul></div>");
    }
    h.raw("<p>A new campaign is a draft until you start it. Fill in the form, or use a campaign file.</p>");

    // The form.
    h.raw("<section aria-labelledby=\"form-h\"><h2 id=\"form-h\">Fill in the form</h2>")
        .raw("<form method=\"post\" action=\"/console/campaigns/new\" id=\"campaign-form\" novalidate>")
        .raw(&csrf_field(s.csrf()))
        .raw("<input type=\"hidden\" name=\"mode\" value=\"form\">");
    // After a file was refused, the form shows its defaults again.
    let blank = NewCampaign::blank();
    let fv = if file_mode { &blank } else { f };
    text_input(&mut h, &errs, "name", "Name", &fv.name, " required");
    text_input(
        &mut h,
        &errs,
        "caller_id",
        "Caller ID (E.164, one of your Twilio numbers)",
        &fv.caller_id,
        " required inputmode=\"tel\" autocomplete=\"off\"",
    );
    text_input(
        &mut h,
        &errs,
        "timezone",
        "Time zone of the campaign (IANA, e.g. Asia/Tokyo)",
        &fv.timezone,
        " required",
    );
    h.raw("<fieldset class=\"window\"><legend>Calling window (in each callee's local time)</legend>");
    text_input(&mut h, &errs, "window_start", "From (HH:MM)", &fv.window_start, " required inputmode=\"numeric\"");
    text_input(&mut h, &errs, "window_end", "Until (HH:MM)", &fv.window_end, " required inputmode=\"numeric\"");
    h.raw(&format!("<fieldset id=\"days\" class=\"days\"{}><legend>Days</legend>", errs.attrs("days", None)));
    for (key, label, on) in fv.days() {
        let checked = if on { " checked" } else { "" };
        h.raw(&format!(
            "<label class=\"check\"><input type=\"checkbox\" name=\"day_{key}\" value=\"on\"{checked}> {label}</label>"
        ));
    }
    h.raw("</fieldset>");
    errs.after(&mut h, "days");
    h.raw("</fieldset>");
    text_input(&mut h, &errs, "cps", "Calls per second", &fv.cps, " required inputmode=\"decimal\"");
    text_input(
        &mut h,
        &errs,
        "max_attempts",
        "Attempts per contact",
        &fv.max_attempts,
        " required inputmode=\"numeric\"",
    );
    h.raw("<label for=\"script\">Script (TOML: the <code>[script]</code> table of a campaign file)</label>")
        .raw("<p class=\"hint\" id=\"script-hint\">Menus, keys and results; <code>{name}</code> is a contact attribute listed in <code>variables</code>.</p>")
        .raw(&format!("<textarea id=\"script\" name=\"script\" rows=\"14\" spellcheck=\"false\"{}>", errs.attrs("script", Some("script-hint"))))
        .text(&fv.script)
        .raw("</textarea>");
    errs.after(&mut h, "script");
    h.raw("<button type=\"submit\">Create from the form</button></form></section>");

    // The file.
    h.raw("<section aria-labelledby=\"file-h\"><h2 id=\"file-h\">Or use a campaign file</h2>")
        .raw("<p id=\"spec-hint\">TOML or YAML, the same as <code>dialer campaign create --file</code>: choose it or paste it below.</p>")
        .raw("<form method=\"post\" action=\"/console/campaigns/new\" id=\"new-campaign\">")
        .raw(&csrf_field(s.csrf()))
        .raw("<input type=\"hidden\" name=\"mode\" value=\"file\">")
        .raw("<label for=\"spec-file\">Campaign file</label>")
        .raw("<input id=\"spec-file\" type=\"file\" accept=\".toml,.yaml,.yml\" data-fills=\"spec\" data-name=\"file_name\">")
        .raw("<label for=\"file_name\">File name (its extension says TOML or YAML)</label>")
        .raw("<input id=\"file_name\" name=\"file_name\" value=\"")
        .text(if f.file_name.is_empty() { "campaign.toml" } else { &f.file_name })
        .raw("\"><label for=\"spec\">Campaign file contents</label>")
        .raw(&format!("<textarea id=\"spec\" name=\"spec\" rows=\"18\" spellcheck=\"false\"{}>", errs.attrs("spec", Some("spec-hint"))))
        .text(&f.spec)
        .raw("</textarea>");
    errs.after(&mut h, "spec");
    h.raw("<button type=\"submit\">Create campaign</button></form></section>");
    page(status, "New campaign", &s.chrome(), &h.0)
}

pub async fn form(s: Session) -> Page {
    s.require(Scope::CampaignsWrite)?;
    Ok(new_campaign_page(&s, StatusCode::OK, &NewCampaign::blank(), &[]))
}

pub async fn create(
    State(api): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Form(mut f): Form<NewCampaign>,
) -> Page {
    guard_post(&s, &headers, f.csrf.as_deref(), Scope::CampaignsWrite)?;
    // The same parse and validation as the CLI and `POST /api/v1/campaigns`.
    let spec = if f.mode == "file" {
        f.file_name = f.file_name.trim().to_string();
        if f.file_name.is_empty() {
            f.file_name = "campaign.toml".into();
        }
        CampaignSpec::parse(&f.spec, &f.file_name).map_err(|e| match e {
            SpecError::Invalid(issues) => issues,
            SpecError::Syntax { message, .. } => vec![issue("file", message)],
        })
    } else {
        f.to_file().and_then(|file| {
            CampaignSpec::validate(file).map_err(|e| match e {
                SpecError::Invalid(issues) => issues,
                SpecError::Syntax { message, .. } => vec![issue("script", message)],
            })
        })
    };
    match spec {
        Err(issues) => Ok(new_campaign_page(&s, StatusCode::UNPROCESSABLE_ENTITY, &f, &issues)),
        Ok(spec) => {
            let id = api.store.campaigns_insert(&spec).await.map_err(|e| problem_page(&s, e.into()))?;
            Ok(Redirect::to(&format!("/console/campaigns/{id}")).into_response())
        }
    }
}
