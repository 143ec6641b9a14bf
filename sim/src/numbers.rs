//! The numbers we own, Twilio's `IncomingPhoneNumbers` resource: where inbound calls (`VoiceUrl`) and
//! inbound messages (`SmsUrl`) go. Creating one "buys" the number; nothing is checked against a carrier.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::server::{
    bad_request, http_method, is_http_url, non_empty, not_found, parse_form, parse_query, serve, ApiError, Paging,
};
use super::state::{lock, rfc2822, Sim};
use dialer_core::domain::E164;

/// One number we own and where its traffic goes.
#[derive(Debug, Clone)]
pub(crate) struct PhoneNumber {
    pub sid: String,
    pub number: E164,
    pub friendly_name: String,
    pub voice_url: Option<String>,
    pub voice_method: String,
    pub sms_url: Option<String>,
    pub sms_method: String,
    /// Where the `completed` StatusCallback of an inbound call goes.
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PhoneNumber {
    fn new(number: E164, now: DateTime<Utc>) -> Self {
        Self {
            sid: format!("PN{}", uuid::Uuid::new_v4().simple()),
            friendly_name: number.to_string(),
            number,
            voice_url: None,
            voice_method: "POST".into(),
            sms_url: None,
            sms_method: "POST".into(),
            status_callback: None,
            status_callback_method: "POST".into(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies the form fields of a create or update. An empty URL clears it, as on Twilio.
    fn apply(&mut self, form: &[(String, String)]) -> Result<(), ApiError> {
        let url = |key: &str| -> Result<Option<Option<String>>, ApiError> {
            match super::server::first(form, key).map(str::trim) {
                None => Ok(None),
                Some("") => Ok(Some(None)),
                Some(u) if is_http_url(u) => Ok(Some(Some(u.to_string()))),
                Some(u) => Err(bad_request(21502, format!("{key} is not a valid URL: {u}"))),
            }
        };
        let method = |key: &str| -> Result<Option<String>, ApiError> {
            non_empty(form, key).map(|_| http_method(form, key)).transpose()
        };
        // Parse everything before changing anything: a bad field leaves the number as it was.
        let (voice_url, sms_url, status_callback) = (url("VoiceUrl")?, url("SmsUrl")?, url("StatusCallback")?);
        let (voice_method, sms_method, status_callback_method) =
            (method("VoiceMethod")?, method("SmsMethod")?, method("StatusCallbackMethod")?);
        if let Some(v) = voice_url {
            self.voice_url = v;
        }
        if let Some(v) = sms_url {
            self.sms_url = v;
        }
        if let Some(v) = status_callback {
            self.status_callback = v;
        }
        if let Some(m) = voice_method {
            self.voice_method = m;
        }
        if let Some(m) = sms_method {
            self.sms_method = m;
        }
        if let Some(m) = status_callback_method {
            self.status_callback_method = m;
        }
        if let Some(name) = non_empty(form, "FriendlyName") {
            self.friendly_name = name.to_string();
        }
        Ok(())
    }
}

/// The numbers we own, in creation order. Kept across `POST /sim/reset` (they are configuration, not record).
#[derive(Default)]
pub(crate) struct NumberStore {
    inner: std::sync::Mutex<Vec<PhoneNumber>>,
}

impl NumberStore {
    pub fn all(&self) -> Vec<PhoneNumber> {
        lock(&self.inner).clone()
    }

    pub fn by_number(&self, number: &str) -> Option<PhoneNumber> {
        lock(&self.inner).iter().find(|n| n.number.as_str() == number).cloned()
    }

    fn by_sid(&self, sid: &str) -> Option<PhoneNumber> {
        lock(&self.inner).iter().find(|n| n.sid == sid).cloned()
    }

    /// Adds `n` unless its number is already owned.
    fn insert(&self, n: PhoneNumber) -> bool {
        let mut g = lock(&self.inner);
        if g.iter().any(|o| o.number == n.number) {
            return false;
        }
        g.push(n);
        true
    }

    /// Changes the number `sid` with `f` (on a copy, stored only if `f` succeeds).
    fn update<E>(
        &self,
        sid: &str,
        f: impl FnOnce(&mut PhoneNumber) -> Result<(), E>,
    ) -> Option<Result<PhoneNumber, E>> {
        let mut g = lock(&self.inner);
        let slot = g.iter_mut().find(|n| n.sid == sid)?;
        let mut copy = slot.clone();
        Some(f(&mut copy).map(|()| {
            *slot = copy.clone();
            copy
        }))
    }

    /// `SimHandle::set_number`: creates the number, or replaces the three URLs of the one we own.
    pub fn set(
        &self,
        number: E164,
        voice_url: Option<String>,
        sms_url: Option<String>,
        status_callback: Option<String>,
        now: DateTime<Utc>,
    ) -> PhoneNumber {
        let mut g = lock(&self.inner);
        let pos = match g.iter().position(|n| n.number == number) {
            Some(i) => i,
            None => {
                g.push(PhoneNumber::new(number, now));
                g.len() - 1
            }
        };
        let n = &mut g[pos];
        n.voice_url = voice_url;
        n.sms_url = sms_url;
        n.status_callback = status_callback;
        n.updated_at = now;
        n.clone()
    }
}

/// The resource (`api.v2010.account.incoming_phone_number`).
pub(crate) fn number_json(account: &str, n: &PhoneNumber) -> Value {
    json!({
        "account_sid": account,
        "address_sid": null,
        "address_requirements": "none",
        "api_version": "2010-04-01",
        "beta": false,
        "capabilities": { "voice": true, "sms": true, "mms": false, "fax": false },
        "date_created": rfc2822(n.created_at),
        "date_updated": rfc2822(n.updated_at),
        "friendly_name": n.friendly_name,
        "identity_sid": null,
        "phone_number": n.number.as_str(),
        "origin": "twilio",
        "sid": n.sid,
        "sms_application_sid": null,
        "sms_fallback_method": "POST",
        "sms_fallback_url": null,
        "sms_method": n.sms_method,
        "sms_url": n.sms_url,
        "status_callback": n.status_callback,
        "status_callback_method": n.status_callback_method,
        "trunk_sid": null,
        "uri": format!("/2010-04-01/Accounts/{account}/IncomingPhoneNumbers/{}.json", n.sid),
        "voice_receive_mode": "voice",
        "voice_application_sid": null,
        "voice_caller_id_lookup": false,
        "voice_fallback_method": "POST",
        "voice_fallback_url": null,
        "voice_method": n.voice_method,
        "voice_url": n.voice_url,
        "emergency_status": "Inactive",
        "emergency_address_sid": null,
        "emergency_address_status": "unregistered",
        "bundle_sid": null,
        "status": "in-use",
    })
}

pub(crate) async fn create(
    State(sim): State<Arc<Sim>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&sim, &headers, &account_sid, "number_create", || {
        let form = parse_form(&body);
        let raw = non_empty(&form, "PhoneNumber")
            .ok_or_else(|| bad_request(21452, "PhoneNumber is required (the simulator does not search by AreaCode)"))?;
        let number =
            E164::parse(raw, None).map_err(|_| bad_request(21421, format!("PhoneNumber is invalid: {raw}")))?;
        let mut n = PhoneNumber::new(number, sim.clock.now());
        n.apply(&form)?;
        if !sim.numbers.insert(n.clone()) {
            return Err(bad_request(21422, format!("PhoneNumber {raw} is not available: this account owns it")));
        }
        Ok((StatusCode::CREATED, Json(number_json(&sim.config.account_sid, &n))).into_response())
    })
}

fn sid_of<'a>(account_sid: &str, number: &'a str) -> Result<&'a str, ApiError> {
    number
        .strip_suffix(".json")
        .ok_or_else(|| not_found(&format!("/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{number}")))
}

pub(crate) async fn fetch(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(&sim, &headers, &account_sid, "number_fetch", || {
        let sid = sid_of(&account_sid, &number)?;
        let n = sim.numbers.by_sid(sid).ok_or_else(|| not_found(&format!("IncomingPhoneNumbers/{number}")))?;
        Ok(Json(number_json(&sim.config.account_sid, &n)).into_response())
    })
}

pub(crate) async fn update(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, number)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&sim, &headers, &account_sid, "number_update", || {
        let sid = sid_of(&account_sid, &number)?;
        let form = parse_form(&body);
        let now = sim.clock.now();
        let n = sim
            .numbers
            .update(sid, |n| {
                n.apply(&form)?;
                n.updated_at = now;
                Ok::<(), ApiError>(())
            })
            .ok_or_else(|| not_found(&format!("IncomingPhoneNumbers/{number}")))??;
        Ok(Json(number_json(&sim.config.account_sid, &n)).into_response())
    })
}

pub(crate) async fn list(
    State(sim): State<Arc<Sim>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    serve(&sim, &headers, &account_sid, "number_list", || {
        let q = parse_query(query);
        let paging = Paging::parse(&q)?;
        let phone = non_empty(&q, "PhoneNumber").map(super::server::normalise_number);
        let name = non_empty(&q, "FriendlyName");
        let matching: Vec<PhoneNumber> = sim
            .numbers
            .all()
            .into_iter()
            .filter(|n| phone.as_deref().is_none_or(|p| n.number.as_str().contains(p)))
            .filter(|n| name.is_none_or(|f| n.friendly_name == f))
            .collect();
        let path = format!("/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers.json");
        let account = &sim.config.account_sid;
        let body = paging.page(&path, &q, "incoming_phone_numbers", matching, |n| number_json(account, n));
        Ok(Json(body).into_response())
    })
}
