//! TwiML for voice: the verbs and nouns the dialer answers Twilio with, as types, and a small XML writer.
//!
//! Only what scripts and menus use is modelled; every element and attribute here is checked against the
//! TwiML model of Twilio's helper libraries by `tests/twiml_model.rs`. Closed attribute sets (HTTP method,
//! `<Gather input>`, `<Reject reason>`) are enums; open ones (Say language and voice, which Twilio extends
//! over time) are strings.
//!
//! ```
//! use dialer_core::twilio::twiml::{Gather, GatherInput, Response, Say, Verb};
//!
//! let xml = Response::new()
//!     .verb(
//!         Gather::new()
//!             .input(GatherInput::Dtmf)
//!             .num_digits(1)
//!             .action("https://dialer.example.com/twiml/tok/menu")
//!             .child(Say::new("1を押してください").language("ja-JP").voice("Polly.Mizuki")),
//!     )
//!     .verb(Verb::Hangup)
//!     .render();
//! assert!(xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Gather input="dtmf""#));
//! ```

use std::fmt;

/// HTTP method Twilio uses to fetch an `action`/`url` (Twilio's default is POST).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// What `<Gather>` listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatherInput {
    Dtmf,
    Speech,
    DtmfSpeech,
}

impl GatherInput {
    /// The attribute value: a space-separated list.
    pub fn as_str(self) -> &'static str {
        match self {
            GatherInput::Dtmf => "dtmf",
            GatherInput::Speech => "speech",
            GatherInput::DtmfSpeech => "dtmf speech",
        }
    }
}

/// The signal `<Reject>` gives the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    Rejected,
    Busy,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Rejected => "rejected",
            RejectReason::Busy => "busy",
        }
    }
}

/// A `<Response>`: the verbs Twilio executes in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub verbs: Vec<Verb>,
}

/// A top-level TwiML voice verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    Say(Say),
    Play(Play),
    Pause(Pause),
    Gather(Gather),
    Record(Record),
    Dial(Dial),
    Hangup,
    Redirect(Redirect),
    Reject(Reject),
}

/// `<Say>`: text spoken by text-to-speech. `language` (e.g. `ja-JP`) and `voice` (e.g. `Polly.Mizuki`) are
/// open sets that Twilio validates; `loop_` 0 means repeat until the call ends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Say {
    pub text: String,
    pub language: Option<String>,
    pub voice: Option<String>,
    pub loop_: Option<u32>,
}

/// `<Play>`: an audio file fetched from `url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Play {
    pub url: String,
    pub loop_: Option<u32>,
}

/// `<Pause>`: silence for `length` seconds (Twilio's default: 1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pause {
    pub length: Option<u32>,
}

/// `<Gather>`: collects digits or speech while its children play, then requests `action`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gather {
    pub input: Option<GatherInput>,
    pub num_digits: Option<u32>,
    pub timeout: Option<u32>,
    pub action: Option<String>,
    pub method: Option<Method>,
    pub finish_on_key: Option<String>,
    pub action_on_empty_result: Option<bool>,
    /// Speech recognition language (e.g. `ja-JP`); only meaningful with speech input.
    pub language: Option<String>,
    pub children: Vec<GatherChild>,
}

/// What may be nested in `<Gather>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatherChild {
    Say(Say),
    Play(Play),
    Pause(Pause),
}

/// `<Record>`: records the caller (voicemail), then requests `action`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub action: Option<String>,
    pub method: Option<Method>,
    pub max_length: Option<u32>,
    pub play_beep: Option<bool>,
    pub timeout: Option<u32>,
    pub finish_on_key: Option<String>,
}

/// `<Dial>`: connects the call to `targets` (all ring at once), then requests `action`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dial {
    pub targets: Vec<DialNoun>,
    pub caller_id: Option<String>,
    pub timeout: Option<u32>,
    pub action: Option<String>,
    pub method: Option<Method>,
}

/// Who `<Dial>` calls: a phone number (E.164) or a Twilio Client identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialNoun {
    Number(String),
    Client(String),
    Conference(Conference),
}

/// `<Conference>` inside `<Dial>`: a named room. Until a participant who starts it joins, the caller
/// hears `wait_url` (looped by Twilio): that is the waiting room.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conference {
    pub name: String,
    pub wait_url: Option<String>,
    pub start_conference_on_enter: Option<bool>,
    pub end_conference_on_exit: Option<bool>,
    pub beep: Option<bool>,
    pub status_callback: Option<String>,
    /// Space-separated: `start end join leave mute hold speaker announcement`.
    pub status_callback_event: Option<String>,
}

/// `<Redirect>`: continue with the TwiML at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Redirect {
    pub url: String,
    pub method: Option<Method>,
}

/// `<Reject>`: refuse an incoming call without billing it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reject {
    pub reason: Option<RejectReason>,
}

/// Builder setters for optional fields: strings take `impl Into<String>`, everything else its own type.
macro_rules! setters {
    ($($field:ident: $kind:tt),* $(,)?) => { $( setters!(@one $field $kind); )* };
    (@one $field:ident string) => {
        pub fn $field(mut self, value: impl Into<String>) -> Self {
            self.$field = Some(value.into());
            self
        }
    };
    (@one $field:ident $ty:ty) => {
        pub fn $field(mut self, value: $ty) -> Self {
            self.$field = Some(value);
            self
        }
    };
}

impl Response {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a verb.
    pub fn verb(mut self, verb: impl Into<Verb>) -> Self {
        self.verbs.push(verb.into());
        self
    }

    /// The XML document, UTF-8, with declaration; empty elements are self-closed.
    pub fn render(&self) -> String {
        let mut w = Writer::default();
        w.out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        if self.verbs.is_empty() {
            w.empty("Response", &[]);
        } else {
            w.open("Response", &[]);
            for verb in &self.verbs {
                verb.write(&mut w);
            }
            w.close("Response");
        }
        w.out
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl From<Vec<Verb>> for Response {
    fn from(verbs: Vec<Verb>) -> Self {
        Self { verbs }
    }
}

impl Verb {
    fn write(&self, w: &mut Writer) {
        match self {
            Verb::Say(say) => say.write(w),
            Verb::Play(play) => play.write(w),
            Verb::Pause(pause) => pause.write(w),
            Verb::Gather(gather) => gather.write(w),
            Verb::Record(record) => record.write(w),
            Verb::Dial(dial) => dial.write(w),
            Verb::Hangup => w.empty("Hangup", &[]),
            Verb::Redirect(redirect) => redirect.write(w),
            Verb::Reject(reject) => reject.write(w),
        }
    }
}

impl Say {
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into(), ..Self::default() }
    }

    setters!(language: string, voice: string, loop_: u32);

    fn write(&self, w: &mut Writer) {
        let attrs = [
            ("language", self.language.clone()),
            ("voice", self.voice.clone()),
            ("loop", self.loop_.map(|n| n.to_string())),
        ];
        w.text_element("Say", &attrs, &self.text);
    }
}

impl Play {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Self::default() }
    }

    setters!(loop_: u32);

    fn write(&self, w: &mut Writer) {
        w.text_element("Play", &[("loop", self.loop_.map(|n| n.to_string()))], &self.url);
    }
}

impl Pause {
    pub fn seconds(length: u32) -> Self {
        Self { length: Some(length) }
    }

    fn write(&self, w: &mut Writer) {
        w.empty("Pause", &[("length", self.length.map(|n| n.to_string()))]);
    }
}

impl Gather {
    pub fn new() -> Self {
        Self::default()
    }

    setters!(
        input: GatherInput,
        num_digits: u32,
        timeout: u32,
        action: string,
        method: Method,
        finish_on_key: string,
        action_on_empty_result: bool,
        language: string,
    );

    /// Appends something to play while gathering.
    pub fn child(mut self, child: impl Into<GatherChild>) -> Self {
        self.children.push(child.into());
        self
    }

    fn write(&self, w: &mut Writer) {
        let attrs = [
            ("input", self.input.map(|i| i.as_str().to_owned())),
            ("numDigits", self.num_digits.map(|n| n.to_string())),
            ("timeout", self.timeout.map(|n| n.to_string())),
            ("action", self.action.clone()),
            ("method", self.method.map(|m| m.as_str().to_owned())),
            ("finishOnKey", self.finish_on_key.clone()),
            ("actionOnEmptyResult", self.action_on_empty_result.map(|b| b.to_string())),
            ("language", self.language.clone()),
        ];
        if self.children.is_empty() {
            w.empty("Gather", &attrs);
            return;
        }
        w.open("Gather", &attrs);
        for child in &self.children {
            match child {
                GatherChild::Say(say) => say.write(w),
                GatherChild::Play(play) => play.write(w),
                GatherChild::Pause(pause) => pause.write(w),
            }
        }
        w.close("Gather");
    }
}

impl Record {
    pub fn new() -> Self {
        Self::default()
    }

    setters!(
        action: string,
        method: Method,
        max_length: u32,
        play_beep: bool,
        timeout: u32,
        finish_on_key: string,
    );

    fn write(&self, w: &mut Writer) {
        let attrs = [
            ("action", self.action.clone()),
            ("method", self.method.map(|m| m.as_str().to_owned())),
            ("maxLength", self.max_length.map(|n| n.to_string())),
            ("playBeep", self.play_beep.map(|b| b.to_string())),
            ("timeout", self.timeout.map(|n| n.to_string())),
            ("finishOnKey", self.finish_on_key.clone()),
        ];
        w.empty("Record", &attrs);
    }
}

impl Dial {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a phone number to ring.
    pub fn number(mut self, number: impl Into<String>) -> Self {
        self.targets.push(DialNoun::Number(number.into()));
        self
    }

    /// Adds a Twilio Client identity to ring.
    pub fn client(mut self, identity: impl Into<String>) -> Self {
        self.targets.push(DialNoun::Client(identity.into()));
        self
    }

    /// Joins a conference (the only noun then, as Twilio requires).
    pub fn conference(mut self, conference: Conference) -> Self {
        self.targets.push(DialNoun::Conference(conference));
        self
    }

    setters!(caller_id: string, timeout: u32, action: string, method: Method);

    fn write(&self, w: &mut Writer) {
        let attrs = [
            ("callerId", self.caller_id.clone()),
            ("timeout", self.timeout.map(|n| n.to_string())),
            ("action", self.action.clone()),
            ("method", self.method.map(|m| m.as_str().to_owned())),
        ];
        if self.targets.is_empty() {
            w.empty("Dial", &attrs);
            return;
        }
        w.open("Dial", &attrs);
        for target in &self.targets {
            match target {
                DialNoun::Number(number) => w.text_element("Number", &[], number),
                DialNoun::Client(identity) => w.text_element("Client", &[], identity),
                DialNoun::Conference(c) => c.write(w),
            }
        }
        w.close("Dial");
    }
}

impl Conference {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }

    setters!(
        wait_url: string,
        start_conference_on_enter: bool,
        end_conference_on_exit: bool,
        beep: bool,
        status_callback: string,
        status_callback_event: string,
    );

    fn write(&self, w: &mut Writer) {
        let b = |v: Option<bool>| v.map(|v| v.to_string());
        let attrs = [
            ("waitUrl", self.wait_url.clone()),
            ("waitMethod", self.wait_url.as_ref().map(|_| "POST".to_string())),
            ("startConferenceOnEnter", b(self.start_conference_on_enter)),
            ("endConferenceOnExit", b(self.end_conference_on_exit)),
            ("beep", b(self.beep)),
            ("statusCallback", self.status_callback.clone()),
            ("statusCallbackMethod", self.status_callback.as_ref().map(|_| "POST".to_string())),
            ("statusCallbackEvent", self.status_callback_event.clone()),
        ];
        w.text_element("Conference", &attrs, &self.name);
    }
}

impl Redirect {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), method: None }
    }

    setters!(method: Method);

    fn write(&self, w: &mut Writer) {
        w.text_element("Redirect", &[("method", self.method.map(|m| m.as_str().to_owned()))], &self.url);
    }
}

impl Reject {
    pub fn new(reason: RejectReason) -> Self {
        Self { reason: Some(reason) }
    }

    fn write(&self, w: &mut Writer) {
        w.empty("Reject", &[("reason", self.reason.map(|r| r.as_str().to_owned()))]);
    }
}

/// Messaging TwiML: the answer to an inbound SMS, `<Response>` with zero or more `<Message>` replies.
/// Kept apart from the voice [`Response`]: `<Message>` is not a voice verb.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessagingResponse {
    pub messages: Vec<String>,
}

impl MessagingResponse {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn message(mut self, body: impl Into<String>) -> Self {
        self.messages.push(body.into());
        self
    }

    pub fn render(&self) -> String {
        let mut w = Writer::default();
        w.out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        if self.messages.is_empty() {
            w.empty("Response", &[]);
        } else {
            w.open("Response", &[]);
            for m in &self.messages {
                w.text_element("Message", &[], m);
            }
            w.close("Response");
        }
        w.out
    }
}

macro_rules! into_verb {
    ($($ty:ident),*) => { $(
        impl From<$ty> for Verb {
            fn from(v: $ty) -> Self {
                Verb::$ty(v)
            }
        }
    )* };
}
into_verb!(Say, Play, Pause, Gather, Record, Dial, Redirect, Reject);

impl From<Say> for GatherChild {
    fn from(v: Say) -> Self {
        GatherChild::Say(v)
    }
}

impl From<Play> for GatherChild {
    fn from(v: Play) -> Self {
        GatherChild::Play(v)
    }
}

impl From<Pause> for GatherChild {
    fn from(v: Pause) -> Self {
        GatherChild::Pause(v)
    }
}

/// The XML writer: tags and attribute names are our own constants; every text and attribute value is
/// escaped.
#[derive(Default)]
struct Writer {
    out: String,
}

type Attrs<'a> = [(&'a str, Option<String>)];

impl Writer {
    fn start_tag(&mut self, tag: &str, attrs: &Attrs<'_>) {
        self.out.push('<');
        self.out.push_str(tag);
        for (name, value) in attrs {
            if let Some(value) = value {
                self.out.push(' ');
                self.out.push_str(name);
                self.out.push_str("=\"");
                escape_into(&mut self.out, value, true);
                self.out.push('"');
            }
        }
    }

    fn open(&mut self, tag: &str, attrs: &Attrs<'_>) {
        self.start_tag(tag, attrs);
        self.out.push('>');
    }

    fn empty(&mut self, tag: &str, attrs: &Attrs<'_>) {
        self.start_tag(tag, attrs);
        self.out.push_str("/>");
    }

    fn close(&mut self, tag: &str) {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    fn text_element(&mut self, tag: &str, attrs: &Attrs<'_>, text: &str) {
        if text.is_empty() {
            self.empty(tag, attrs);
        } else {
            self.open(tag, attrs);
            escape_into(&mut self.out, text, false);
            self.close(tag);
        }
    }
}

/// Escapes the five XML specials everywhere. Carriage returns (and, in attributes, tabs and newlines) become
/// character references so a parser's whitespace normalisation gives back the original string. Characters
/// XML 1.0 cannot represent at all (most C0 controls, U+FFFE, U+FFFF) are dropped: an unparseable response
/// would end the call.
fn escape_into(out: &mut String, s: &str, in_attribute: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if in_attribute => out.push_str("&#10;"),
            '\t' if in_attribute => out.push_str("&#9;"),
            '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}' => out.push(c),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str, in_attribute: bool) -> String {
        let mut out = String::new();
        escape_into(&mut out, s, in_attribute);
        out
    }

    #[test]
    fn specials_are_escaped_and_japanese_passes_through() {
        assert_eq!(escaped(r#"a&b<c>d"e'f 山田"#, false), "a&amp;b&lt;c&gt;d&quot;e&apos;f 山田");
    }

    #[test]
    fn whitespace_survives_attribute_normalisation_and_controls_are_dropped() {
        assert_eq!(escaped("a\tb\nc\rd", true), "a&#9;b&#10;c&#13;d");
        assert_eq!(escaped("a\tb\nc\rd", false), "a\tb\nc&#13;d");
        assert_eq!(escaped("a\u{0}b\u{1b}c\u{FFFE}", false), "abc");
    }

    #[test]
    fn an_empty_response_is_a_self_closed_element() {
        assert_eq!(Response::new().render(), r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#);
    }

    #[test]
    fn attributes_render_in_field_order_and_absent_ones_are_omitted() {
        let xml = Response::new()
            .verb(Say::new("hi").voice("Polly.Mizuki").language("ja-JP"))
            .verb(Pause::default())
            .verb(Verb::Hangup)
            .render();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say language="ja-JP" voice="Polly.Mizuki">hi</Say><Pause/><Hangup/></Response>"#
        );
    }
}
