//! `contacts`: imports (COPY, all or nothing), pushes through the API (idempotent, duplicates skipped),
//! reads and removal. Claims and the moves that follow a call are
//! attempt transitions (`transitions`).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use super::{Result, Store, StoreError};
use crate::domain::compliance::{ContactZone, ZoneSource};
use crate::domain::{AnsweredBy, AttemptState, CallSid, CallStatus, CampaignStatus, ContactState, Outcome, Tz, E164};

impl NewContact {
    /// The `timezone` column: the zone the import gave, if it gave one.
    fn given_zone(&self) -> Option<&'static str> {
        (self.zone.source == ZoneSource::Given).then(|| self.zone.zones.first().map(|z| z.name())).flatten()
    }

    /// The `zones` column as a PostgreSQL array literal (`{Asia/Tokyo,America/Denver}`): zone names never
    /// hold commas, quotes or braces.
    fn zones_literal(&self) -> String {
        format!("{{{}}}", self.zone.zones.iter().map(|z| z.name()).collect::<Vec<_>>().join(","))
    }
}

/// A contact ready to insert (already parsed and validated).
#[derive(Debug, Clone, PartialEq)]
pub struct NewContact {
    pub phone: E164,
    /// Resolved at import ([`crate::domain::compliance::Zoning::resolve`]).
    pub zone: ContactZone,
    pub external_id: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

impl Store {
    /// Numbers among `phones`, and references among `external_ids`, that the campaign already has.
    pub async fn contacts_existing(
        &self,
        campaign_id: i64,
        phones: &[E164],
        external_ids: &[&str],
    ) -> Result<(Vec<E164>, Vec<String>)> {
        let rows = sqlx::query!(
            r#"SELECT phone AS "phone: E164", external_id FROM contacts
               WHERE campaign_id = $1 AND (phone = ANY($2::text[]) OR external_id = ANY($3::text[]))"#,
            campaign_id,
            phones as _,
            external_ids as _,
        )
        .fetch_all(&self.pool)
        .await?;
        let want: HashSet<&str> = phones.iter().map(E164::as_str).collect();
        let want_ext: HashSet<&str> = external_ids.iter().copied().collect();
        let ext = rows.iter().filter_map(|r| r.external_id.clone()).filter(|x| want_ext.contains(x.as_str())).collect();
        Ok((rows.into_iter().map(|r| r.phone).filter(|p| want.contains(p.as_str())).collect(), ext))
    }

    /// Inserts all contacts in one transaction (all or nothing) with `COPY … FROM STDIN` (one round trip
    /// per ~5,000 rows, no parameter arrays or per-row JSON values; 1.8× the rows/s of `INSERT … unnest()`,
    /// see BENCHMARKS.md). `progress` is told how many rows are sent so far. A number the campaign already
    /// has makes the whole import fail with `Duplicate`, so nothing is half-written.
    pub async fn contacts_insert_many(
        &self,
        campaign_id: i64,
        rows: &[NewContact],
        mut progress: impl FnMut(usize),
    ) -> Result<u64> {
        /// Rows per `COPY` data message (and per `progress` call): about 0.5 MB of text.
        const COPY_CHUNK: usize = 5_000;

        /// Appends `s` as a `COPY … FROM STDIN` text-format field: backslash, tab, newline and CR escaped.
        fn copy_text_field(out: &mut Vec<u8>, s: &str) {
            for &b in s.as_bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    _ => out.push(b),
                }
            }
        }

        fn copy_opt_field(out: &mut Vec<u8>, s: Option<&str>) {
            match s {
                Some(s) => copy_text_field(out, s),
                None => out.extend_from_slice(b"\\N"),
            }
        }

        let mut tx = self.pool.begin().await?;
        let mut copy =
            tx.copy_in_raw("COPY contacts (campaign_id, phone, timezone, zones, zone_source, region, external_id, attributes) FROM STDIN").await?;
        let campaign = campaign_id.to_string();
        let mut buf = Vec::with_capacity(COPY_CHUNK * 128);
        let mut json = Vec::with_capacity(256);
        let mut sent = 0usize;
        for chunk in rows.chunks(COPY_CHUNK) {
            buf.clear();
            for c in chunk {
                buf.extend_from_slice(campaign.as_bytes());
                buf.push(b'\t');
                copy_text_field(&mut buf, c.phone.as_str());
                buf.push(b'\t');
                copy_opt_field(&mut buf, c.given_zone());
                buf.push(b'\t');
                copy_text_field(&mut buf, &c.zones_literal());
                buf.push(b'\t');
                copy_text_field(&mut buf, c.zone.source.as_str());
                buf.push(b'\t');
                copy_opt_field(&mut buf, c.zone.region.as_deref());
                buf.push(b'\t');
                copy_opt_field(&mut buf, c.external_id.as_deref());
                buf.push(b'\t');
                json.clear();
                serde_json::to_writer(&mut json, &c.attributes).expect("string map");
                copy_text_field(&mut buf, std::str::from_utf8(&json).expect("JSON is UTF-8"));
                buf.push(b'\n');
            }
            if let Err(e) = copy.send(buf.as_slice()).await {
                // The server ends COPY at the first error it sees (e.g. a duplicate); report that one.
                return Err(copy.abort("import failed").await.err().unwrap_or(e).into());
            }
            sent += chunk.len();
            progress(sent);
        }
        let written = copy.finish().await?;
        tx.commit().await?;
        progress(written as usize);
        Ok(written)
    }
}

/// A request's `Idempotency-Key`, scoped to the API key that sent it, with a hash of the request.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub api_key_id: i64,
    pub key: &'a str,
    pub request_hash: [u8; 32],
}

/// What a push did, row by row (indexes into the pushed rows).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pushed {
    /// (row, new contact id).
    pub created: Vec<(usize, i64)>,
    /// (row, the existing contact it duplicates: same number or same external id; `None` when it repeats
    /// an earlier row of the same push).
    pub duplicates: Vec<(usize, Option<i64>)>,
    /// The campaign was completed and is running again because of these contacts.
    pub reopened: bool,
}

/// The answer to a push.
#[derive(Debug, Clone, PartialEq)]
pub enum PushAnswer {
    /// Done now; the caller's answer (status, body) was stored with the idempotency key, if any.
    Done(Pushed, u16, serde_json::Value),
    /// The same key and body were seen before: the first answer, and nothing was written.
    Replayed(u16, serde_json::Value),
    /// The key was used before with another body: nothing was written.
    KeyReused,
}

/// A contact with everything known about it.
#[derive(Debug, Clone, Serialize)]
pub struct ContactDetail {
    pub id: i64,
    pub campaign_id: i64,
    pub phone: E164,
    /// The zone the import gave, if any.
    pub timezone: Option<Tz>,
    /// Every zone the calling rules must be open in (several when the number's prefix spans zones).
    pub zones: Vec<Tz>,
    pub zone_source: ZoneSource,
    /// The US state of the number, when known (state calling rules).
    pub region: Option<String>,
    pub external_id: Option<String>,
    pub attributes: serde_json::Value,
    pub state: ContactState,
    pub attempts_made: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub final_outcome: Option<Outcome>,
    pub final_reason: Option<String>,
    pub result: Option<String>,
    pub last_call_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub attempts: Vec<AttemptSummary>,
}

/// One attempt of a contact, as shown by the API.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptSummary {
    pub attempt_no: i32,
    pub state: AttemptState,
    pub call_sid: Option<CallSid>,
    pub call_status: Option<CallStatus>,
    pub outcome: Option<Outcome>,
    pub result: Option<String>,
    pub answered_by: Option<AnsweredBy>,
    pub requested_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_s: Option<i32>,
    pub twilio_error_code: Option<i32>,
}

/// One of a campaign's latest attempts, with the contact it called.
#[derive(Debug, Clone, Serialize)]
pub struct RecentAttempt {
    pub attempt_id: i64,
    pub contact_id: i64,
    pub external_id: Option<String>,
    /// The contact's attributes (the script's variables), as stored.
    pub attributes: serde_json::Value,
    pub phone: E164,
    #[serde(flatten)]
    pub attempt: AttemptSummary,
}

impl Store {
    /// A campaign's `limit` latest attempts, newest first.
    pub async fn attempts_recent(&self, campaign_id: i64, limit: i64) -> Result<Vec<RecentAttempt>> {
        let rows = sqlx::query!(
            r#"SELECT a.id, a.contact_id, c.external_id, c.attributes, a.phone AS "phone: E164",
                      a.attempt_no, a.state AS "state: AttemptState", a.call_sid AS "call_sid: CallSid",
                      a.call_status AS "call_status: CallStatus", a.outcome AS "outcome: Outcome", a.result,
                      a.answered_by AS "answered_by: AnsweredBy", a.requested_at, a.answered_at, a.ended_at,
                      a.duration_s, a.twilio_error_code
               FROM attempts a JOIN contacts c ON c.id = a.contact_id
               WHERE a.campaign_id = $1 ORDER BY a.id DESC LIMIT $2"#,
            campaign_id,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| RecentAttempt {
                attempt_id: r.id,
                contact_id: r.contact_id,
                external_id: r.external_id,
                attributes: r.attributes,
                phone: r.phone,
                attempt: AttemptSummary {
                    attempt_no: r.attempt_no,
                    state: r.state,
                    call_sid: r.call_sid,
                    call_status: r.call_status,
                    outcome: r.outcome,
                    result: r.result,
                    answered_by: r.answered_by,
                    requested_at: r.requested_at,
                    answered_at: r.answered_at,
                    ended_at: r.ended_at,
                    duration_s: r.duration_s,
                    twilio_error_code: r.twilio_error_code,
                },
            })
            .collect())
    }

    /// Adds contacts to a campaign as one transaction, skipping (and reporting) those whose number or
    /// external id the campaign already has, so a contact pushed twice is never dialled twice. With an
    /// idempotency key, the key is claimed first in the same transaction (a concurrent replay waits for
    /// it) and `answer(pushed)` is stored as the reply for replays. A completed campaign runs again; a
    /// canceled one refuses new contacts (`Conflict`).
    pub async fn contacts_push(
        &self,
        campaign_id: i64,
        rows: &[NewContact],
        idem: Option<Idempotency<'_>>,
        answer: impl FnOnce(&Pushed) -> (u16, serde_json::Value),
    ) -> Result<PushAnswer> {
        let mut tx = self.pool.begin().await?;
        if let Some(i) = idem {
            let claimed = sqlx::query!(
                "INSERT INTO idempotency_keys (api_key_id, key, request_hash, status, response)
                 VALUES ($1, $2, $3, 0, 'null') ON CONFLICT DO NOTHING",
                i.api_key_id,
                i.key,
                &i.request_hash[..]
            )
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !claimed {
                let first = sqlx::query!(
                    "SELECT request_hash, status, response FROM idempotency_keys WHERE api_key_id = $1 AND key = $2",
                    i.api_key_id,
                    i.key
                )
                .fetch_one(&mut *tx)
                .await?;
                return Ok(if first.request_hash == i.request_hash {
                    PushAnswer::Replayed(first.status as u16, first.response)
                } else {
                    PushAnswer::KeyReused
                });
            }
        }
        let status = sqlx::query_scalar!(
            r#"SELECT status AS "status: CampaignStatus" FROM campaigns WHERE id = $1"#,
            campaign_id
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("campaign {campaign_id}")))?;
        if status == CampaignStatus::Canceled {
            return Err(StoreError::Conflict(format!("campaign {campaign_id} is canceled; it takes no new contacts")));
        }
        let phones: Vec<&str> = rows.iter().map(|r| r.phone.as_str()).collect();
        let given: Vec<Option<&str>> = rows.iter().map(NewContact::given_zone).collect();
        let zones: Vec<String> = rows.iter().map(NewContact::zones_literal).collect();
        let sources: Vec<&str> = rows.iter().map(|r| r.zone.source.as_str()).collect();
        let regions: Vec<Option<&str>> = rows.iter().map(|r| r.zone.region.as_deref()).collect();
        let externals: Vec<Option<&str>> = rows.iter().map(|r| r.external_id.as_deref()).collect();
        let attributes: Vec<Json<&BTreeMap<String, String>>> = rows.iter().map(|r| Json(&r.attributes)).collect();
        // No conflict target: a second number or a second external id in the campaign are both skipped.
        let inserted = sqlx::query!(
            r#"INSERT INTO contacts (campaign_id, phone, timezone, zones, zone_source, region, external_id, attributes)
               SELECT $1, n.phone, n.tz, n.zones::text[], n.src, n.region, n.ext, n.attrs
               FROM unnest($2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[], $8::text[])
                    WITH ORDINALITY AS n(phone, tz, ext, attrs, zones, src, region, i)
               ORDER BY n.i
               ON CONFLICT DO NOTHING
               RETURNING id, phone, external_id"#,
            campaign_id,
            &phones as _,
            &given as _,
            &externals as _,
            &attributes as _,
            &zones,
            &sources as _,
            &regions as _,
        )
        .fetch_all(&mut *tx)
        .await?;
        // A new row is known by its number and external id together (either alone may repeat in the push);
        // the first input row with both owns it, a later one repeats it.
        let mut new_ids: HashMap<(&str, Option<&str>), i64> =
            inserted.iter().map(|r| ((r.phone.as_str(), r.external_id.as_deref()), r.id)).collect();
        let mut pushed = Pushed::default();
        let mut skipped = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            match new_ids.remove(&(r.phone.as_str(), r.external_id.as_deref())) {
                Some(id) => pushed.created.push((i, id)),
                None => skipped.push(i),
            }
        }
        if !skipped.is_empty() {
            let (sp, se): (Vec<&str>, Vec<&str>) = (
                skipped.iter().map(|&i| rows[i].phone.as_str()).collect(),
                skipped.iter().filter_map(|&i| rows[i].external_id.as_deref()).collect(),
            );
            let created: HashSet<i64> = pushed.created.iter().map(|&(_, id)| id).collect();
            let existing = sqlx::query!(
                "SELECT id, phone, external_id FROM contacts
                 WHERE campaign_id = $1 AND (phone = ANY($2::text[]) OR external_id = ANY($3::text[]))",
                campaign_id,
                &sp as _,
                &se as _,
            )
            .fetch_all(&mut *tx)
            .await?;
            for i in skipped {
                let r = &rows[i];
                let of = existing
                    .iter()
                    .filter(|e| !created.contains(&e.id))
                    .find(|e| {
                        e.phone == r.phone.as_str() || (r.external_id.is_some() && e.external_id == r.external_id)
                    })
                    .map(|e| e.id);
                pushed.duplicates.push((i, of));
            }
        }
        if status == CampaignStatus::Completed && !pushed.created.is_empty() {
            pushed.reopened = sqlx::query!(
                "UPDATE campaigns SET status = 'running', status_reason = 'new contacts arrived', updated_at = now()
                 WHERE id = $1 AND status = 'completed'",
                campaign_id
            )
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        }
        let (code, body) = answer(&pushed);
        if let Some(i) = idem {
            sqlx::query!(
                "UPDATE idempotency_keys SET status = $3, response = $4 WHERE api_key_id = $1 AND key = $2",
                i.api_key_id,
                i.key,
                code as i16,
                &body
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(PushAnswer::Done(pushed, code, body))
    }

    /// Forgets idempotency keys older than `age` (a replay after that pushes again, and duplicates are
    /// still caught by number and external id). Index: idempotency_keys_created.
    pub async fn idempotency_keys_purge(&self, age: std::time::Duration) -> Result<u64> {
        Ok(sqlx::query!(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
            age.as_secs_f64()
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// A contact with its attempts, or `None`.
    pub async fn contacts_get(&self, id: i64) -> Result<Option<ContactDetail>> {
        let Some(c) = sqlx::query!(
            r#"SELECT c.id, c.campaign_id, c.phone AS "phone: E164", c.timezone AS "timezone: Tz",
                      CASE WHEN cardinality(c.zones) = 0 THEN ARRAY[k.timezone] ELSE c.zones END AS "zones!: Vec<Tz>",
                      c.zone_source AS "zone_source: ZoneSource", c.region, c.external_id, c.attributes,
                      c.state AS "state: ContactState", c.attempts_made, c.next_attempt_at, c.final_outcome AS "final_outcome: Outcome",
                      c.final_reason, c.result, c.last_call_at, c.finished_at, c.created_at
               FROM contacts c JOIN campaigns k ON k.id = c.campaign_id WHERE c.id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query_as!(
            AttemptSummary,
            r#"SELECT attempt_no, state AS "state: AttemptState", call_sid AS "call_sid: CallSid",
                      call_status AS "call_status: CallStatus", outcome AS "outcome: Outcome", result,
                      answered_by AS "answered_by: AnsweredBy", requested_at, answered_at, ended_at, duration_s,
                      twilio_error_code
               FROM attempts WHERE contact_id = $1 ORDER BY attempt_no"#,
            id
        )
        .fetch_all(&self.pool)
        .await?;
        let open = matches!(c.state, ContactState::Pending);
        Ok(Some(ContactDetail {
            id: c.id,
            campaign_id: c.campaign_id,
            phone: c.phone,
            timezone: c.timezone,
            zones: c.zones,
            zone_source: c.zone_source,
            region: c.region,
            external_id: c.external_id,
            attributes: c.attributes,
            state: c.state,
            attempts_made: c.attempts_made,
            next_attempt_at: open.then_some(c.next_attempt_at),
            final_outcome: c.final_outcome,
            final_reason: c.final_reason,
            result: c.result,
            last_call_at: c.last_call_at,
            finished_at: c.finished_at,
            created_at: c.created_at,
            attempts,
        }))
    }

    /// Deletes a contact that has never been claimed (no attempt was ever made or started). A contact
    /// being called or already called is a `Conflict`: its history stays.
    pub async fn contacts_remove_uncalled(&self, id: i64) -> Result<()> {
        let gone = sqlx::query!("DELETE FROM contacts WHERE id = $1 AND state = 'pending' AND attempt_seq = 0", id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if gone == 1 {
            return Ok(());
        }
        match sqlx::query!(r#"SELECT state AS "state: ContactState", attempt_seq FROM contacts WHERE id = $1"#, id)
            .fetch_optional(&self.pool)
            .await?
        {
            None => Err(StoreError::NotFound(format!("contact {id}"))),
            Some(c) => Err(StoreError::Conflict(format!(
                "contact {id} is {} with {} attempt(s) started; only a contact never called can be removed",
                c.state, c.attempt_seq
            ))),
        }
    }
}
