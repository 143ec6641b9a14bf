//! The people behind the simulated endpoints: operators (the `client:NAME` endpoints that Participants API
//! legs ring) and callees who behave per number (their keys, how long they wait on hold).
//!
//! - `POST /sim/operators` `{"name", "answer_after_secs", "talk_secs"}` (or an array of them) adds or
//!   changes operators; `GET /sim/operators` lists them.
//! - `POST /sim/callees` `{"number", "keys", "hold_patience_secs", "keys_after_hold"}` (or an array) adds
//!   or changes callees; `GET /sim/callees` lists them.

use std::collections::{BTreeMap, VecDeque};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use anyhow::ensure;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::config::SimConfig;
use super::inbound::{parse_json, parse_keys, parse_number, InboundError};
use super::state::{lock, Sim};

/// A simulated operator: `client:NAME` rings until it answers `answer_after_secs` (simulated) after
/// it started ringing (`None`: never), then talks `talk_secs` (`None`: a draw from `--talk-time`) and
/// hangs up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    /// The client identity, without `client:`.
    pub name: String,
    #[serde(default)]
    pub answer_after_secs: Option<f64>,
    #[serde(default)]
    pub talk_secs: Option<f64>,
}

fn valid_identity(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

fn secs_ok(v: Option<f64>) -> bool {
    v.is_none_or(|s| s.is_finite() && s >= 0.0)
}

impl Operator {
    /// `client:alice` is taken as `alice`.
    fn normalise(mut self) -> Self {
        if self.name.len() >= 7 && self.name[..7].eq_ignore_ascii_case("client:") {
            self.name = self.name[7..].to_string();
        }
        self
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            valid_identity(&self.name),
            "operator name {:?} must be letters, digits, _ - . or @ (the identity of client:NAME)",
            self.name
        );
        ensure!(secs_ok(self.answer_after_secs), "answer_after_secs must be >= 0 seconds or null (never)");
        ensure!(secs_ok(self.talk_secs), "talk_secs must be >= 0 seconds");
        Ok(())
    }
}

/// `NAME=SECS`, `NAME=never`, `NAME=SECS:TALK`.
impl FromStr for Operator {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let Some((name, rest)) = s.split_once('=') else {
            anyhow::bail!("--operator takes NAME=SECS, NAME=never or NAME=SECS:TALK, not {s:?}");
        };
        let (answer, talk) = match rest.split_once(':') {
            Some((a, t)) => (a, Some(t)),
            None => (rest, None),
        };
        let num = |t: &str| -> anyhow::Result<f64> {
            t.trim().parse::<f64>().map_err(|_| anyhow::anyhow!("not a number of seconds: {t:?} in {s:?}"))
        };
        let answer_after_secs = match answer.trim() {
            a if a.eq_ignore_ascii_case("never") => None,
            a => Some(num(a)?),
        };
        let talk_secs = talk.map(num).transpose()?;
        let op = Operator { name: name.trim().to_string(), answer_after_secs, talk_secs }.normalise();
        op.validate()?;
        Ok(op)
    }
}

/// A callee who behaves per number: the keys it presses in its `<Gather>`s (then none), how long it waits
/// in a conference that has not started before hanging up, and the keys it presses once it was taken out
/// of a conference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Callee {
    /// E.164.
    pub number: String,
    /// Keys pressed in order, `numDigits` per `<Gather>` (one when unset); none once they run out.
    #[serde(default)]
    pub keys: String,
    /// Simulated seconds in a waiting room before hanging up; `None`: `--hold-patience`.
    #[serde(default)]
    pub hold_patience_secs: Option<f64>,
    /// Keys pressed after the call left a conference (redirected out of it, or its `<Dial>` ended);
    /// `None`: the rest of `keys`.
    #[serde(default)]
    pub keys_after_hold: Option<String>,
}

/// What a call task needs of its callee.
#[derive(Debug, Clone)]
pub(crate) struct CalleeScript {
    pub keys: VecDeque<char>,
    pub hold_patience_secs: Option<f64>,
    pub keys_after_hold: Option<VecDeque<char>>,
}

impl Callee {
    fn checked(mut self) -> Result<Self, InboundError> {
        self.number = parse_number("number", &self.number)?.to_string();
        parse_keys(&self.keys)?;
        if let Some(k) = &self.keys_after_hold {
            parse_keys(k)?;
        }
        if !secs_ok(self.hold_patience_secs) {
            return Err(InboundError::BadRequest("hold_patience_secs must be >= 0 seconds".into()));
        }
        Ok(self)
    }

    fn script(&self) -> CalleeScript {
        CalleeScript {
            keys: self.keys.chars().collect(),
            hold_patience_secs: self.hold_patience_secs,
            keys_after_hold: self.keys_after_hold.as_ref().map(|k| k.chars().collect()),
        }
    }
}

/// The operators and callees (configuration: `/sim/reset` keeps them).
pub(crate) struct People {
    operators: Mutex<BTreeMap<String, Operator>>,
    callees: Mutex<BTreeMap<String, Callee>>,
}

impl People {
    pub fn new(config: &SimConfig) -> Self {
        let operators = config.operators.iter().map(|o| (o.name.clone(), o.clone())).collect();
        Self { operators: Mutex::new(operators), callees: Mutex::default() }
    }

    pub fn operator(&self, name: &str) -> Option<Operator> {
        lock(&self.operators).get(name).cloned()
    }

    pub fn set_operator(&self, op: Operator) -> Result<(), InboundError> {
        let op = op.normalise();
        op.validate().map_err(|e| InboundError::BadRequest(e.to_string()))?;
        lock(&self.operators).insert(op.name.clone(), op);
        Ok(())
    }

    pub fn operators(&self) -> Vec<Operator> {
        lock(&self.operators).values().cloned().collect()
    }

    pub fn callee_script(&self, number: &str) -> Option<CalleeScript> {
        lock(&self.callees).get(number).map(Callee::script)
    }

    pub fn set_callee(&self, c: Callee) -> Result<(), InboundError> {
        let c = c.checked()?;
        lock(&self.callees).insert(c.number.clone(), c);
        Ok(())
    }

    pub fn callees(&self) -> Vec<Callee> {
        lock(&self.callees).values().cloned().collect()
    }
}

/// One object or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

pub(crate) async fn get_operators(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.people.operators()).into_response()
}

/// `POST /sim/operators`: adds or changes operators; answers with every operator.
pub(crate) async fn post_operators(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let r = (|| {
        let ops: OneOrMany<Operator> = parse_json(&body)?;
        let ops = ops.into_vec();
        for op in &ops {
            op.clone().normalise().validate().map_err(|e| InboundError::BadRequest(e.to_string()))?;
        }
        for op in ops {
            sim.people.set_operator(op)?;
        }
        Ok::<_, InboundError>(Json(sim.people.operators()).into_response())
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn get_callees(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.people.callees()).into_response()
}

/// `POST /sim/callees`: adds or changes callees; answers with every callee.
pub(crate) async fn post_callees(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let r = (|| {
        let callees: OneOrMany<Callee> = parse_json(&body)?;
        let callees = callees.into_vec().into_iter().map(Callee::checked).collect::<Result<Vec<_>, _>>()?;
        for c in callees {
            sim.people.set_callee(c)?;
        }
        Ok::<_, InboundError>(Json(sim.people.callees()).into_response())
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}
