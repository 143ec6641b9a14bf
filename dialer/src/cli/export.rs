//! `dialer results export`: the rows from [`dialer_core::store::Store::results_export`] as CSV or JSON.

use std::io::Write;

use dialer_core::store::ResultRow;

/// CSV with a header: contact_id, external_id, phone, state, outcome, result, attempts, last_call_at
/// (RFC 3339, UTC). Empty fields for missing values.
pub fn write_csv<W: Write>(rows: &[ResultRow], writer: W) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(writer);
    w.write_record(["contact_id", "external_id", "phone", "state", "outcome", "result", "attempts", "last_call_at"])?;
    for r in rows {
        w.write_record([
            r.contact_id.to_string(),
            r.external_id.clone().unwrap_or_default(),
            r.phone.to_string(),
            r.state.to_string(),
            r.outcome.map(|o| o.to_string()).unwrap_or_default(),
            r.result.clone().unwrap_or_default(),
            r.attempts.to_string(),
            r.last_call_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// A JSON array of objects with the same fields as the CSV (nulls for missing values).
pub fn write_json<W: Write>(rows: &[ResultRow], writer: W) -> serde_json::Result<()> {
    serde_json::to_writer_pretty(writer, rows)
}
