//! `contacts`: imports (COPY, all or nothing) and cancel. Claims and the moves that follow a call are
//! attempt transitions (`transitions`).

use std::collections::BTreeMap;

use super::{Result, Store};
use crate::domain::{Tz, E164};

/// A contact ready to insert (already parsed and validated).
#[derive(Debug, Clone, PartialEq)]
pub struct NewContact {
    pub phone: E164,
    pub timezone: Option<Tz>,
    pub external_id: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

impl Store {
    /// Numbers among `phones` that the campaign already has.
    pub async fn contacts_existing_phones(&self, campaign_id: i64, phones: &[E164]) -> Result<Vec<E164>> {
        Ok(sqlx::query_scalar!(
            r#"SELECT phone AS "phone: E164" FROM contacts WHERE campaign_id = $1 AND phone = ANY($2::text[])"#,
            campaign_id,
            phones as _
        )
        .fetch_all(&self.pool)
        .await?)
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
            tx.copy_in_raw("COPY contacts (campaign_id, phone, timezone, external_id, attributes) FROM STDIN").await?;
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
                copy_opt_field(&mut buf, c.timezone.as_ref().map(Tz::name));
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
