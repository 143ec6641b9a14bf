//! A campaign script turned into TwiML for one contact: the start menu, a menu after a keypress or no
//! input, results, transfers, goodbye and the voicemail message. Text is filled from the contact's
//! attributes (times in the contact's zone) and spoken with the script's language and voice.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use dialer_core::domain::script::{contact_attributes, render_text, Menu, MenuOption, Script};
use dialer_core::store::CallContext;
use dialer_core::twilio::twiml::{Dial, Gather, GatherInput, Play, Redirect, Response, Say, Verb};

/// One attempt's script, ready to speak.
#[derive(Debug, Clone)]
pub struct CallScript {
    pub script: Script,
    attrs: BTreeMap<String, String>,
    tz: Tz,
    caller_id: String,
    /// `PUBLIC_BASE_URL`.
    base_url: String,
    token: String,
}

impl CallScript {
    /// Builds the script for an attempt. Fails if the stored script does not parse (it was
    /// validated when the campaign was created, so this is a bug or a hand-edited row).
    pub fn new(ctx: &CallContext, base_url: &str, token: &str) -> Result<Self, String> {
        let script: Script = serde_json::from_value(ctx.script.clone())
            .map_err(|e| format!("campaign {}: script: {e}", ctx.campaign_id))?;
        let tz: Tz = ctx.timezone.get();
        let attrs = contact_attributes(&ctx.attributes, &ctx.phone, ctx.external_id.as_deref());
        Ok(Self {
            script,
            attrs,
            tz,
            caller_id: ctx.caller_id.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    /// `<Say>` of a template in the script's language and voice.
    pub fn say(&self, template: &str) -> Say {
        let mut say = Say::new(render_text(template, &self.attrs, self.tz, &self.script.language))
            .language(&self.script.language);
        if let Some(v) = &self.script.voice {
            say = say.voice(v);
        }
        say
    }

    /// `<Say>` of text as written (an announcement: no `{variables}`), in the script's language and voice.
    pub fn say_plain(&self, text: &str) -> Say {
        let mut say = Say::new(text).language(&self.script.language);
        if let Some(v) = &self.script.voice {
            say = say.voice(v);
        }
        say
    }

    /// `{PUBLIC_BASE_URL}/{route}/{token}`: another route of this attempt.
    pub fn url(&self, route: &str) -> String {
        format!("{}/{route}/{}", self.base_url, self.token)
    }

    pub fn menu_def(&self, name: &str) -> Option<&Menu> {
        self.script.menus.get(name)
    }

    pub fn option(&self, menu: &str, digits: &str) -> Option<&MenuOption> {
        self.script.menus.get(menu)?.options.get(digits)
    }

    /// The `/gather` URL for a menu after `n` repeats.
    pub fn gather_url(&self, menu: &str, n: u32) -> String {
        let menu: String = form_urlencoded::byte_serialize(menu.as_bytes()).collect();
        format!("{}/gather/{}?menu={menu}&n={n}", self.base_url, self.token)
    }

    /// The start of the call: the start menu.
    pub fn start(&self) -> Response {
        self.menu(&self.script.start.clone(), 0, Vec::new())
    }

    /// A contact calling back: greeted by name, then the start menu, as in our call.
    pub fn callback_start(&self) -> Response {
        let greeting = match &self.script.callback_greeting {
            Some(t) => t.clone(),
            None => default_callback_greeting(&self.script),
        };
        self.menu(&self.script.start.clone(), 0, vec![self.say(&greeting)])
    }

    /// A menu after `n` repeats (`prefix` is said first): `<Gather>` with the prompt, then — if no key is
    /// pressed — a `<Redirect>` that comes back with `n + 1`. Past `no_input_repeats`: goodbye and hang up.
    pub fn menu(&self, name: &str, n: u32, prefix: Vec<Say>) -> Response {
        let Some(menu) = self.menu_def(name) else { return self.goodbye(prefix) };
        if n > self.script.no_input_repeats {
            return self.goodbye(prefix);
        }
        let mut gather = Gather::new()
            .input(GatherInput::Dtmf)
            .num_digits(menu.num_digits)
            .timeout(menu.timeout_s)
            .action(self.gather_url(name, n));
        for say in prefix {
            gather = gather.child(say);
        }
        if let Some(text) = &menu.say {
            gather = gather.child(self.say(text));
        }
        if let Some(url) = &menu.play {
            gather = gather.child(Play::new(url));
        }
        Response::new().verb(gather).verb(Redirect::new(self.gather_url(name, n + 1)))
    }

    /// The same menu again after unknown input, with the retry prompt; counts as a repeat.
    pub fn retry(&self, name: &str, n: u32) -> Response {
        let prefix = self.script.retry_prompt.as_deref().map(|t| vec![self.say(t)]).unwrap_or_default();
        self.menu(name, n + 1, prefix)
    }

    /// `prefix`, the goodbye text, hang up.
    pub fn goodbye(&self, prefix: Vec<Say>) -> Response {
        let mut r = Response::new();
        for say in prefix {
            r = r.verb(say);
        }
        if let Some(text) = &self.script.goodbye {
            r = r.verb(self.say(text));
        }
        r.verb(Verb::Hangup)
    }

    /// Transfer to a person: `say`, then `<Dial>` the number with the campaign's caller id.
    pub fn transfer(&self, number: &str, prefix: Vec<Say>) -> Response {
        let mut r = Response::new();
        for say in prefix {
            r = r.verb(say);
        }
        r.verb(Dial::new().number(number).caller_id(&self.caller_id))
    }

    /// The voicemail message then hang up, when the script has one.
    pub fn voicemail(&self) -> Option<Response> {
        let text = self.script.voicemail.as_deref()?;
        Some(Response::new().verb(self.say(text)).verb(Verb::Hangup))
    }

    pub fn hangup() -> Response {
        Response::new().verb(Verb::Hangup)
    }
}

/// The greeting when a script has none: by name when the script knows the callee's name.
fn default_callback_greeting(script: &Script) -> String {
    let named = script.variables.iter().any(|v| v == "name");
    match (script.language.starts_with("ja"), named) {
        (true, true) => "{name}様、お電話ありがとうございます。".into(),
        (true, false) => "お電話ありがとうございます。".into(),
        (false, true) => "Hello {name}, thank you for calling back.".into(),
        (false, false) => "Hello, thank you for calling back.".into(),
    }
}

/// What a caller who is no contact hears: the campaign's message in its language and voice when the
/// dialled number is a campaign's caller ID, else the service's; then a transfer or the end of the call.
pub fn unknown_caller(
    script: Option<&Script>,
    default_message: &str,
    default_transfer: Option<&str>,
    caller_id: &str,
) -> Response {
    let text = script.and_then(|s| s.unknown_caller.as_deref()).unwrap_or(default_message);
    let mut say = Say::new(text);
    if let Some(s) = script {
        say = say.language(&s.language);
        if let Some(v) = &s.voice {
            say = say.voice(v);
        }
    }
    let transfer = script.and_then(|s| s.unknown_caller_transfer.as_deref()).or(default_transfer);
    let r = Response::new().verb(say);
    match transfer {
        Some(n) => r.verb(Dial::new().number(n).caller_id(caller_id)),
        None => r.verb(Verb::Hangup),
    }
}

/// A TwiML document as an HTTP response.
pub struct Twiml(pub Response);

impl axum::response::IntoResponse for Twiml {
    fn into_response(self) -> axum::response::Response {
        xml(self.0.render())
    }
}

/// A rendered TwiML document (voice or messaging) as the HTTP answer Twilio expects.
pub(crate) fn xml(document: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")], document).into_response()
}
