//! Parses TwiML (with `roxmltree`) into verbs and walks them for one answered call: Say/Play/Pause take
//! simulated time, Gather draws a keypress and posts it to its action, Redirect/Record/Dial fetch the next
//! document, Hangup/Reject or the end of the document hang up.

use std::sync::Arc;

use super::calls::{CallCtx, Stop, FOREVER_SECS};
use super::conference::{ConfEvents, Conference, JoinSpec, JoinedBy, LeaveReason, View};
use super::state::{lock, NewDoc, TwimlRequest};
use super::webhook::{fetch_twiml, Params};

/// At most this many verbs and fetches per call (guards against Redirect loops).
pub const MAX_STEPS: usize = 50;

/// `loop="0"` means "until hangup"; the simulator plays it this many times.
const INFINITE_LOOPS: u32 = 10;

#[derive(Debug, Clone, PartialEq)]
pub enum Verb {
    /// The text and how many times it is spoken.
    Say {
        text: String,
        loops: u32,
    },
    Play {
        loops: u32,
    },
    Pause {
        secs: f64,
    },
    Gather {
        action: Option<String>,
        method: String,
        timeout_secs: f64,
        /// `numDigits`: how many keys end the input (`None`: Twilio's default, until `#` or the timeout;
        /// a scripted caller then keys one digit).
        num_digits: Option<u32>,
        action_on_empty: bool,
        prompts: Vec<Verb>,
    },
    Redirect {
        url: String,
        method: String,
    },
    /// A transfer to `number` (the text of the verb, or of its `<Number>`/`<Client>`/`<Sip>` noun).
    Dial {
        number: String,
        action: Option<String>,
        method: String,
    },
    /// `<Dial><Conference>NAME</Conference></Dial>`: the call joins the conference named `name`.
    Conference {
        name: String,
        action: Option<String>,
        method: String,
        noun: ConferenceNoun,
    },
    Record {
        action: Option<String>,
        method: String,
        max_length_secs: f64,
    },
    Hangup,
    Reject,
    /// A verb the simulator does not act on (Sms, Enqueue, ...): skipped.
    Other(String),
}

/// The attributes of a `<Conference>` noun the simulator acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct ConferenceNoun {
    /// Default true.
    pub start_conference_on_enter: bool,
    /// Default false.
    pub end_conference_on_exit: bool,
    pub muted: bool,
    pub beep: String,
    /// Hold music until the conference starts (as written; relative to the document).
    pub wait_url: Option<String>,
    /// Default POST.
    pub wait_method: String,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    /// `statusCallbackEvent`, space separated, as written.
    pub status_callback_event: Option<String>,
    pub participant_label: Option<String>,
}

fn flag(n: roxmltree::Node, attr: &str, default: bool) -> bool {
    match n.attribute(attr).map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        _ => default,
    }
}

fn method_attr(n: roxmltree::Node, attr: &str) -> String {
    match n.attribute(attr) {
        Some(m) if m.trim().eq_ignore_ascii_case("GET") => "GET".into(),
        _ => "POST".into(),
    }
}

fn conference_noun(c: roxmltree::Node) -> ConferenceNoun {
    let attr = |a: &str| c.attribute(a).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    ConferenceNoun {
        start_conference_on_enter: flag(c, "startConferenceOnEnter", true),
        end_conference_on_exit: flag(c, "endConferenceOnExit", false),
        muted: flag(c, "muted", false),
        beep: attr("beep").unwrap_or_else(|| "true".into()),
        wait_url: attr("waitUrl"),
        wait_method: method_attr(c, "waitMethod"),
        status_callback: attr("statusCallback"),
        status_callback_method: method_attr(c, "statusCallbackMethod"),
        status_callback_event: attr("statusCallbackEvent"),
        participant_label: attr("participantLabel"),
    }
}

fn loops(n: roxmltree::Node) -> u32 {
    match n.attribute("loop").and_then(|v| v.trim().parse::<u32>().ok()) {
        Some(0) => INFINITE_LOOPS,
        Some(l) => l,
        None => 1,
    }
}

fn method(n: roxmltree::Node) -> String {
    match n.attribute("method") {
        Some(m) if m.eq_ignore_ascii_case("GET") => "GET".into(),
        _ => "POST".into(),
    }
}

fn num(n: roxmltree::Node, attr: &str, default: f64) -> f64 {
    n.attribute(attr)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(default)
}

fn action(n: roxmltree::Node) -> Option<String> {
    n.attribute("action").map(str::trim).filter(|a| !a.is_empty()).map(str::to_string)
}

fn verb(n: roxmltree::Node) -> Verb {
    match n.tag_name().name() {
        "Say" => Verb::Say { text: text_of(n), loops: loops(n) },
        "Play" => Verb::Play { loops: loops(n) },
        "Pause" => Verb::Pause { secs: num(n, "length", 1.0) },
        "Gather" => Verb::Gather {
            action: action(n),
            method: method(n),
            timeout_secs: num(n, "timeout", 5.0),
            num_digits: n.attribute("numDigits").and_then(|v| v.trim().parse::<u32>().ok()).filter(|d| *d > 0),
            action_on_empty: n.attribute("actionOnEmptyResult").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            prompts: n.children().filter(|c| c.is_element()).map(verb).collect(),
        },
        "Redirect" => Verb::Redirect { url: text_of(n), method: method(n) },
        "Dial" => match n.children().find(|c| c.is_element() && c.tag_name().name() == "Conference") {
            Some(c) => {
                Verb::Conference { name: text_of(c), action: action(n), method: method(n), noun: conference_noun(c) }
            }
            None => Verb::Dial { number: text_of(n), action: action(n), method: method(n) },
        },
        "Record" => Verb::Record { action: action(n), method: method(n), max_length_secs: num(n, "maxLength", 3600.0) },
        "Hangup" => Verb::Hangup,
        "Reject" => Verb::Reject,
        other => Verb::Other(other.to_string()),
    }
}

fn text_of(n: roxmltree::Node) -> String {
    n.descendants().filter(|d| d.is_text()).filter_map(|d| d.text()).collect::<String>().trim().to_string()
}

/// Parses a TwiML document: a `<Response>` root whose element children are verbs.
pub fn parse_twiml(xml: &str) -> Result<Vec<Verb>, String> {
    let doc =
        roxmltree::Document::parse(xml.trim_start_matches('\u{feff}').trim()).map_err(|e| format!("bad TwiML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "Response" {
        return Err(format!("bad TwiML: root element is <{}>, not <Response>", root.tag_name().name()));
    }
    Ok(root.children().filter(|c| c.is_element()).map(verb).collect())
}

/// The bodies of the `<Message>` verbs of a messaging TwiML answer: the text of its `<Body>` noun, or its
/// own text. An empty answer (no content) is no reply at all.
pub fn message_bodies(xml: &str) -> Result<Vec<String>, String> {
    let xml = xml.trim_start_matches('\u{feff}').trim();
    if xml.is_empty() {
        return Ok(Vec::new());
    }
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("bad TwiML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "Response" {
        return Err(format!("bad TwiML: root element is <{}>, not <Response>", root.tag_name().name()));
    }
    Ok(root
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "Message")
        .map(|m| match m.children().find(|c| c.is_element() && c.tag_name().name() == "Body") {
            Some(body) => text_of(body),
            None => {
                m.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect::<String>().trim().to_string()
            }
        })
        .collect())
}

/// Resolves a (possibly relative) URL against the current document's URL.
pub fn resolve(base: Option<&str>, target: &str) -> Option<String> {
    if let Ok(abs) = url::Url::parse(target) {
        // Absolute: kept exactly as written, since that is the URL the signature covers.
        return Some(target.to_string()).filter(|_| matches!(abs.scheme(), "http" | "https"));
    }
    let base = url::Url::parse(base?).ok()?;
    base.join(target).ok().map(|u| u.to_string())
}

/// Why a walk ended early.
#[derive(Debug)]
pub(crate) enum WalkEnd {
    Stop(Stop),
    Error(String),
}

impl From<Stop> for WalkEnd {
    fn from(s: Stop) -> Self {
        WalkEnd::Stop(s)
    }
}

/// The next document of a walk.
enum Doc {
    /// Fetch it: (url, method, extra params).
    Url(String, String, Params),
    /// Inline TwiML (the create's `Twiml`, an update's `Twiml`).
    Inline(String),
}

impl From<NewDoc> for Doc {
    fn from(d: NewDoc) -> Self {
        match d {
            NewDoc::Url { url, method } => Doc::Url(url, method, Vec::new()),
            NewDoc::Twiml(t) => Doc::Inline(t),
        }
    }
}

/// How a call's stay in a conference ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfExit {
    /// The conference ended (or had ended before the call could join).
    Ended,
    /// The participant was removed (`DELETE …/Participants/{CallSid}`).
    Kicked,
    /// The call hung up: a callee out of patience on hold, an operator done talking.
    HungUp,
}

/// Resolves after `d`, or never.
async fn sleep_opt(d: Option<std::time::Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Leaves the conference if the call's stay there ends without saying how (its task ended or was
/// dropped: a hang-up, the time limit); a no-op once it has left.
struct Membership {
    sim: Arc<super::state::Sim>,
    conf: Arc<Conference>,
    call_sid: String,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if !self.sim.shutdown.is_cancelled() {
            self.conf.leave(&self.sim, &self.call_sid, LeaveReason::HungUp);
        }
    }
}

impl CallCtx {
    /// The keys pressed in the current `<Gather>`, if any: a scripted caller's next `num_digits` keys (one
    /// when unset; fewer if the script runs out), else one draw from the configured distribution.
    fn keys_for_gather(&mut self, num_digits: Option<u32>) -> Option<String> {
        match &mut self.keyed {
            Some(script) => {
                let n = num_digits.unwrap_or(1) as usize;
                let keys: String = std::iter::from_fn(|| script.pop_front()).take(n).collect();
                (!keys.is_empty()).then_some(keys)
            }
            None => {
                let pressed = lock(&self.entry.state).digits.len();
                self.sim.config.digits.draw_nth(pressed, &mut self.rng).map(String::from)
            }
        }
    }

    fn say_secs(&self, text: &str, loops: u32) -> f64 {
        text.chars().count() as f64 / self.sim.config.say_chars_per_second * f64::from(loops)
    }

    /// Time spent on a prompt verb (inside or outside a Gather).
    async fn prompt(&self, v: &Verb) -> Result<(), Stop> {
        match v {
            Verb::Say { text, loops } => {
                lock(&self.entry.state).says.push(text.clone());
                self.sleep(self.say_secs(text, *loops)).await
            }
            Verb::Play { loops } => self.sleep(self.sim.config.play_secs * f64::from(*loops)).await,
            Verb::Pause { secs } => self.sleep(*secs).await,
            _ => Ok(()),
        }
    }

    /// Fetches and parses one document (signed, with the call's parameters and `extra`), recorded in the
    /// call's `twiml_requests`. Cut short by a hang-up or a redirect.
    async fn fetch_doc(&self, url: &str, method: &str, extra: Params) -> Result<Vec<Verb>, WalkEnd> {
        let mut params = self.twiml_params();
        params.extend(extra);
        let sim = self.sim.clone();
        let asked = std::time::Instant::now();
        let answer = tokio::select! {
            r = fetch_twiml(&sim, url, method, &params) => r,
            _ = self.entry.cancel.cancelled() => return Err(WalkEnd::Stop(self.stop_reason())),
            _ = self.redirected() => return Err(WalkEnd::Stop(Stop::Redirect)),
        };
        // A fetch takes real time on a real call too: counted as it was, not scaled.
        self.on_the_line(asked.elapsed().as_secs_f64());
        lock(&self.entry.state).twiml_requests.push(TwimlRequest {
            url: url.to_string(),
            method: method.to_string(),
            status: answer.status,
        });
        parse_twiml(&answer.body.map_err(WalkEnd::Error)?).map_err(WalkEnd::Error)
    }

    /// [`Self::fetch_doc`], counted against the call's [`MAX_STEPS`].
    async fn fetch(&self, steps: &mut usize, url: &str, method: &str, extra: Params) -> Result<Vec<Verb>, WalkEnd> {
        *steps += 1;
        if *steps > MAX_STEPS {
            return Err(WalkEnd::Error(format!("more than {MAX_STEPS} TwiML steps")));
        }
        self.fetch_doc(url, method, extra).await
    }

    fn take_redirect(&self) -> Option<Doc> {
        lock(&self.entry.redirect).take().map(Doc::from)
    }

    /// Walks the call's TwiML from its `Url` (or inline `Twiml`) to the end; a Participants API leg first
    /// joins its conference. A redirect (REST update with `Url`/`Twiml`) interrupts whatever the call
    /// does and the walk goes on from the new document.
    pub(crate) async fn walk(&mut self) -> Result<(), WalkEnd> {
        let mut steps = 0usize;
        self.redirectable = true;
        let leg = self.entry.req.conference_leg.clone();
        let mut next = match (self.take_redirect(), leg) {
            (Some(doc), leg) => {
                // Redirected before the answer: the new document replaces the call's own.
                if let Some(leg) = leg {
                    leg.conference.leave(&self.sim, self.entry.sid.as_str(), LeaveReason::Redirected);
                }
                Some(doc)
            }
            (None, Some(leg)) => {
                let talk = self.leg_talk_secs();
                match self.in_conference(&leg.conference, &leg.spec, talk, None).await {
                    // The leg's only instruction was the conference: once out of it, it hangs up.
                    Ok(_) => return Ok(()),
                    Err(Stop::Redirect) => self.take_redirect(),
                    Err(s) => return Err(s.into()),
                }
            }
            (None, None) => {
                let req = &self.entry.req;
                match (&req.twiml, &req.url) {
                    (Some(t), _) => Some(Doc::Inline(t.clone())),
                    (None, Some(u)) => Some(Doc::Url(u.clone(), req.method.clone(), Vec::new())),
                    (None, None) => return Err(WalkEnd::Error("neither Url nor Twiml".into())),
                }
            }
        };
        while let Some(doc) = next {
            next = match self.document(&mut steps, doc).await {
                Ok(n) => n,
                Err(WalkEnd::Stop(Stop::Redirect)) => self.take_redirect(),
                Err(e) => return Err(e),
            };
        }
        Ok(())
    }

    /// How long a Participants API leg talks once in its conference: an operator's `talk_secs`, else a
    /// draw from `--talk-time`.
    fn leg_talk_secs(&mut self) -> Option<f64> {
        let configured = self.entry.req.to.client().and_then(|n| self.sim.people.operator(n)).and_then(|o| o.talk_secs);
        Some(configured.unwrap_or_else(|| self.sim.config.talk_time.draw(&mut self.rng)))
    }

    /// Walks one document: `Ok(Some(next))` when a verb moves on to another one, `Ok(None)` when the call
    /// ends (its end, `<Hangup>`, a callee hanging up).
    async fn document(&mut self, steps: &mut usize, doc: Doc) -> Result<Option<Doc>, WalkEnd> {
        let (doc_url, verbs) = match doc {
            Doc::Url(url, method, extra) => {
                let verbs = self.fetch(steps, &url, &method, extra).await?;
                (Some(url), verbs)
            }
            Doc::Inline(t) => (None, parse_twiml(&t).map_err(WalkEnd::Error)?),
        };
        // An inbound call rings until its TwiML arrives.
        self.answer_if_ringing()?;
        for v in verbs {
            *steps += 1;
            if *steps > MAX_STEPS {
                return Err(WalkEnd::Error(format!("more than {MAX_STEPS} TwiML steps")));
            }
            // The next document, if this verb moves to one: (url, method, extra params).
            let next: Option<(String, String, Params)> = match v {
                Verb::Say { .. } | Verb::Play { .. } | Verb::Pause { .. } => {
                    self.prompt(&v).await?;
                    None
                }
                Verb::Gather { action, method, timeout_secs, num_digits, action_on_empty, prompts } => {
                    for p in &prompts {
                        self.prompt(p).await?;
                    }
                    let keys = self.keys_for_gather(num_digits);
                    let target = action.as_deref().map(|a| resolve(doc_url.as_deref(), a)).unwrap_or(doc_url.clone());
                    match keys {
                        Some(keys) => {
                            self.sleep(1.0).await?;
                            lock(&self.entry.state).digits.push_str(&keys);
                            target.map(|t| (t, method, vec![("Digits".to_string(), keys)]))
                        }
                        None => {
                            self.sleep(timeout_secs).await?;
                            if action_on_empty {
                                target.map(|t| (t, method, vec![("Digits".to_string(), String::new())]))
                            } else {
                                None
                            }
                        }
                    }
                }
                Verb::Redirect { url, method } => match resolve(doc_url.as_deref(), &url) {
                    Some(t) => Some((t, method, Vec::new())),
                    None => return Err(WalkEnd::Error(format!("<Redirect> to unusable URL {url:?}"))),
                },
                Verb::Dial { number, action, method } => {
                    lock(&self.entry.state).dialed.push(number);
                    let talk = self.sim.config.talk_time.draw(&mut self.rng);
                    self.sleep(talk).await?;
                    action.and_then(|a| resolve(doc_url.as_deref(), &a)).map(|t| {
                        let extra = vec![
                            ("DialCallStatus".to_string(), "completed".to_string()),
                            ("DialCallDuration".to_string(), format!("{}", talk.ceil() as u64)),
                        ];
                        (t, method, extra)
                    })
                }
                Verb::Conference { name, action, method, noun } => {
                    let spec = self.join_spec(&noun, doc_url.as_deref())?;
                    let conf = self.sim.conferences.get_or_create(&self.sim, &name);
                    let before = lock(&self.entry.state).talk_secs;
                    let patience = Some(self.hold_patience_secs);
                    match self.in_conference(&conf, &spec, None, patience).await? {
                        ConfExit::HungUp => return Ok(None),
                        ConfExit::Ended | ConfExit::Kicked => {
                            let secs = (lock(&self.entry.state).talk_secs - before).max(0.0);
                            action.and_then(|a| resolve(doc_url.as_deref(), &a)).map(|t| {
                                let extra = vec![
                                    ("DialCallStatus".to_string(), "completed".to_string()),
                                    ("DialCallDuration".to_string(), format!("{}", secs.ceil() as u64)),
                                ];
                                (t, method, extra)
                            })
                        }
                    }
                }
                Verb::Record { action, method, max_length_secs } => {
                    let secs = self.rng_secs(3.0, 10.0).min(max_length_secs);
                    self.sleep(secs).await?;
                    let target = action.as_deref().map(|a| resolve(doc_url.as_deref(), a)).unwrap_or(doc_url.clone());
                    target.map(|t| {
                        let rec = format!("RE{}", uuid::Uuid::new_v4().simple());
                        let extra = vec![
                            (
                                "RecordingUrl".to_string(),
                                format!(
                                    "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{rec}",
                                    self.sim.config.account_sid
                                ),
                            ),
                            ("RecordingSid".to_string(), rec),
                            ("RecordingDuration".to_string(), format!("{}", secs.ceil() as u64)),
                            ("Digits".to_string(), "hangup".to_string()),
                        ];
                        (t, method, extra)
                    })
                }
                Verb::Hangup | Verb::Reject => return Ok(None),
                Verb::Other(_) => None,
            };
            if let Some((url, method, extra)) = next {
                return Ok(Some(Doc::Url(url, method, extra)));
            }
        }
        Ok(None)
    }

    /// How a `<Conference>` noun joins, its URLs resolved against the document.
    fn join_spec(&self, noun: &ConferenceNoun, doc_url: Option<&str>) -> Result<JoinSpec, WalkEnd> {
        let url = |u: &Option<String>, what: &str| -> Result<Option<String>, WalkEnd> {
            match u {
                None => Ok(None),
                Some(u) => resolve(doc_url, u)
                    .map(Some)
                    .ok_or_else(|| WalkEnd::Error(format!("<Conference {what}> is an unusable URL: {u:?}"))),
            }
        };
        Ok(JoinSpec {
            joined_by: JoinedBy::Twiml,
            label: noun.participant_label.clone(),
            start_on_enter: noun.start_conference_on_enter,
            end_on_exit: noun.end_conference_on_exit,
            muted: noun.muted,
            wait_url: url(&noun.wait_url, "waitUrl")?,
            wait_method: noun.wait_method.clone(),
            status_callback: url(&noun.status_callback, "statusCallback")?,
            status_callback_method: noun.status_callback_method.clone(),
            events: ConfEvents::parse(noun.status_callback_event.as_deref()).map_err(WalkEnd::Error)?,
        })
    }

    /// The call's stay in a conference: joins it, hears the hold music while it has not started (hanging
    /// up after `patience` simulated seconds of it), then stays until the conference ends, the participant
    /// is removed, or it hangs up after `talk` simulated seconds in the conference. A redirect takes it out
    /// (`Err(Stop::Redirect)`, after it left).
    pub(crate) async fn in_conference(
        &mut self,
        conf: &Arc<Conference>,
        spec: &JoinSpec,
        talk: Option<f64>,
        patience: Option<f64>,
    ) -> Result<ConfExit, Stop> {
        let sim = self.sim.clone();
        let sid = self.entry.sid.to_string();
        let mut changes = conf.subscribe();
        if !conf.join(&sim, &self.entry, spec) {
            return Ok(ConfExit::Ended);
        }
        lock(&self.entry.state).conferences.push(conf.sid.clone());
        let _membership = Membership { sim: sim.clone(), conf: conf.clone(), call_sid: sid.clone() };
        let speed = sim.config.speed;
        let (mut waited, mut talked) = (0.0_f64, 0.0_f64);
        let outcome = loop {
            changes.borrow_and_update();
            let since = std::time::Instant::now();
            let this = &*self;
            let view = conf.view(&sid);
            let step: Result<Option<ConfExit>, Stop> = match view {
                View::Ended => Ok(Some(ConfExit::Ended)),
                View::Left => Ok(Some(ConfExit::Kicked)),
                View::Waiting => {
                    let left = patience.map(|p| sim.config.real((p - waited).max(0.0)));
                    tokio::select! {
                        stop = this.hold_music(conf, spec) => Err(stop),
                        _ = changes.changed() => Ok(None),
                        _ = sleep_opt(left) => {
                            lock(&this.entry.state).abandoned_in_conference = true;
                            conf.leave(&sim, &sid, LeaveReason::HungUp);
                            Ok(Some(ConfExit::HungUp))
                        }
                    }
                }
                View::Live => {
                    let left = talk.map(|t| sim.config.real((t - talked).max(0.0)));
                    tokio::select! {
                        r = this.sleep(FOREVER_SECS) => r.and(Ok(None)),
                        _ = changes.changed() => Ok(None),
                        _ = sleep_opt(left) => {
                            conf.leave(&sim, &sid, LeaveReason::HungUp);
                            Ok(Some(ConfExit::HungUp))
                        }
                    }
                }
            };
            let passed = since.elapsed().as_secs_f64() * speed;
            match view {
                View::Waiting => waited += passed,
                View::Live => talked += passed,
                _ => {}
            }
            match step {
                Ok(None) => continue,
                Ok(Some(exit)) => break Ok(exit),
                Err(Stop::Redirect) => {
                    conf.leave(&sim, &sid, LeaveReason::Redirected);
                    break Err(Stop::Redirect);
                }
                Err(s) => break Err(s),
            }
        };
        if matches!(outcome, Ok(ConfExit::Ended | ConfExit::Kicked) | Err(Stop::Redirect)) {
            // Out of the conference and still on the line: a scripted callee's after-hold keys now.
            if let Some(k) = self.keys_after_hold.take() {
                self.keyed = Some(k);
            }
        }
        outcome
    }

    /// The hold music of a conference that has not started: the `waitUrl` fetched (signed, with the call's
    /// parameters plus `ConferenceSid` and `FriendlyName`) and its Say/Play/Pause walked, over and over
    /// (at least one simulated second a round). No `waitUrl`, or one that fails: silence. Returns only
    /// when the call is ended or redirected.
    async fn hold_music(&self, conf: &Conference, spec: &JoinSpec) -> Stop {
        let Some(url) = spec.wait_url.as_deref() else {
            return self.sleep(FOREVER_SECS).await.err().unwrap_or(Stop::Hangup);
        };
        loop {
            let round = std::time::Instant::now();
            let extra: Params =
                vec![("ConferenceSid".into(), conf.sid.clone()), ("FriendlyName".into(), conf.friendly_name.clone())];
            match self.fetch_doc(url, &spec.wait_method, extra).await {
                Ok(verbs) => {
                    for v in &verbs {
                        if let Err(s) = self.prompt(v).await {
                            return s;
                        }
                    }
                }
                Err(WalkEnd::Stop(s)) => return s,
                Err(WalkEnd::Error(e)) => {
                    tracing::debug!(sid = %self.entry.sid, error = %e, "waitUrl failed: silence");
                    return self.sleep(FOREVER_SECS).await.err().unwrap_or(Stop::Hangup);
                }
            }
            let spent = round.elapsed().as_secs_f64() * self.sim.config.speed;
            if spent < 1.0 {
                if let Err(s) = self.sleep(1.0 - spent).await {
                    return s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_verbs_and_nesting() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <Response>
              <Say language="ja-JP" loop="2">こんにちは</Say>
              <Gather action="/gather/tok" numDigits="1" timeout="3" actionOnEmptyResult="true">
                <Say>Press 1</Say><Play>https://x/a.mp3</Play>
              </Gather>
              <Pause length="2"/>
              <Redirect method="GET">/next</Redirect>
              <Dial action="/dial">+15551234567</Dial>
              <Record maxLength="5"/>
              <Sms>x</Sms>
              <Hangup/>
            </Response>"#;
        let v = parse_twiml(xml).unwrap();
        assert_eq!(v[0], Verb::Say { text: "こんにちは".into(), loops: 2 });
        assert_eq!(
            v[1],
            Verb::Gather {
                action: Some("/gather/tok".into()),
                method: "POST".into(),
                timeout_secs: 3.0,
                num_digits: Some(1),
                action_on_empty: true,
                prompts: vec![Verb::Say { text: "Press 1".into(), loops: 1 }, Verb::Play { loops: 1 }],
            }
        );
        assert_eq!(v[2], Verb::Pause { secs: 2.0 });
        assert_eq!(v[3], Verb::Redirect { url: "/next".into(), method: "GET".into() });
        assert_eq!(
            v[4],
            Verb::Dial { number: "+15551234567".into(), action: Some("/dial".into()), method: "POST".into() }
        );
        assert_eq!(v[5], Verb::Record { action: None, method: "POST".into(), max_length_secs: 5.0 });
        assert_eq!(v[6], Verb::Other("Sms".into()));
        assert_eq!(v[7], Verb::Hangup);
    }

    #[test]
    fn parses_dial_conference() {
        let xml = r#"<Response><Dial action="/done" method="GET"><Conference waitUrl="/wait" waitMethod="GET"
            startConferenceOnEnter="false" endConferenceOnExit="true" beep="false" statusCallback="https://e.com/s"
            statusCallbackEvent="start end join leave" participantLabel="callee"> transfer-123 </Conference></Dial>
            <Dial><Conference>room</Conference></Dial></Response>"#;
        let v = parse_twiml(xml).unwrap();
        assert_eq!(
            v[0],
            Verb::Conference {
                name: "transfer-123".into(),
                action: Some("/done".into()),
                method: "GET".into(),
                noun: ConferenceNoun {
                    start_conference_on_enter: false,
                    end_conference_on_exit: true,
                    muted: false,
                    beep: "false".into(),
                    wait_url: Some("/wait".into()),
                    wait_method: "GET".into(),
                    status_callback: Some("https://e.com/s".into()),
                    status_callback_method: "POST".into(),
                    status_callback_event: Some("start end join leave".into()),
                    participant_label: Some("callee".into()),
                },
            }
        );
        let Verb::Conference { noun, .. } = &v[1] else { panic!("{:?}", v[1]) };
        assert!(noun.start_conference_on_enter && !noun.end_conference_on_exit, "Twilio's defaults");
        assert_eq!((noun.wait_url.as_deref(), noun.wait_method.as_str()), (None, "POST"));
    }

    #[test]
    fn message_bodies_read_text_or_body_noun() {
        let xml = r#"<Response><Message>You are unsubscribed.</Message>
            <Message><Body> Reply START </Body><Media>https://x/a.png</Media></Message><Redirect>/x</Redirect></Response>"#;
        assert_eq!(message_bodies(xml).unwrap(), vec!["You are unsubscribed.", "Reply START"]);
        assert_eq!(message_bodies("").unwrap(), Vec::<String>::new());
        assert_eq!(message_bodies("<Response/>").unwrap(), Vec::<String>::new());
        assert!(message_bodies("<html/>").is_err());
    }

    #[test]
    fn rejects_non_twiml() {
        assert!(parse_twiml("<html/>").is_err());
        assert!(parse_twiml("not xml").is_err());
        assert_eq!(parse_twiml("<Response/>").unwrap(), vec![]);
    }

    #[test]
    fn resolves_relative_urls() {
        let base = Some("http://127.0.0.1:8080/twiml/abc?x=1");
        assert_eq!(resolve(base, "/gather/abc").unwrap(), "http://127.0.0.1:8080/gather/abc");
        assert_eq!(resolve(base, "next").unwrap(), "http://127.0.0.1:8080/twiml/next");
        assert_eq!(resolve(None, "https://e.com/a").unwrap(), "https://e.com/a");
        assert_eq!(resolve(None, "/a"), None);
        assert_eq!(resolve(base, "ftp://e.com/a"), None);
    }
}
