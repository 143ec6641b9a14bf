//! Parses TwiML (with `roxmltree`) into verbs and walks them for one answered call: Say/Play/Pause take
//! simulated time, Gather draws a keypress and posts it to its action, Redirect/Record/Dial fetch the next
//! document, Hangup/Reject or the end of the document hang up.

use super::calls::{CallCtx, Stop};
use super::state::{lock, TwimlRequest};
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
        "Dial" => Verb::Dial { number: text_of(n), action: action(n), method: method(n) },
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
    async fn prompt(&mut self, v: &Verb) -> Result<(), Stop> {
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

    async fn fetch(&mut self, steps: &mut usize, url: &str, method: &str, extra: Params) -> Result<Vec<Verb>, WalkEnd> {
        *steps += 1;
        if *steps > MAX_STEPS {
            return Err(WalkEnd::Error(format!("more than {MAX_STEPS} TwiML steps")));
        }
        let mut params = self.twiml_params();
        params.extend(extra);
        let sim = self.sim.clone();
        let asked = std::time::Instant::now();
        let answer = tokio::select! {
            r = fetch_twiml(&sim, url, method, &params) => r,
            _ = self.entry.cancel.cancelled() => return Err(WalkEnd::Stop(self.stop_reason())),
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

    /// Walks the call's TwiML from its `Url` (or inline `Twiml`) to the end.
    pub(crate) async fn walk(&mut self) -> Result<(), WalkEnd> {
        let mut steps = 0usize;
        let req = self.entry.req.clone();
        let (mut doc_url, mut verbs) = match (&req.twiml, &req.url) {
            (Some(t), _) => (None, parse_twiml(t).map_err(WalkEnd::Error)?),
            (None, Some(u)) => (Some(u.clone()), self.fetch(&mut steps, u, &req.method, Vec::new()).await?),
            (None, None) => return Err(WalkEnd::Error("neither Url nor Twiml".into())),
        };
        // An inbound call rings until its TwiML arrives.
        self.answer_if_ringing()?;
        'document: loop {
            for v in std::mem::take(&mut verbs) {
                steps += 1;
                if steps > MAX_STEPS {
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
                        let target =
                            action.as_deref().map(|a| resolve(doc_url.as_deref(), a)).unwrap_or(doc_url.clone());
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
                    Verb::Record { action, method, max_length_secs } => {
                        let secs = self.rng_secs(3.0, 10.0).min(max_length_secs);
                        self.sleep(secs).await?;
                        let target =
                            action.as_deref().map(|a| resolve(doc_url.as_deref(), a)).unwrap_or(doc_url.clone());
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
                    Verb::Hangup | Verb::Reject => return Ok(()),
                    Verb::Other(_) => None,
                };
                if let Some((url, method, extra)) = next {
                    verbs = self.fetch(&mut steps, &url, &method, extra).await?;
                    doc_url = Some(url);
                    continue 'document;
                }
            }
            return Ok(());
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
