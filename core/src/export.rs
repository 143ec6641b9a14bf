//! Results as files: CSV (for `dialer results export` and the API's streamed download) and JSON.

use std::io::Write;

use crate::store::ResultRow;

pub const CSV_HEADER: [&str; 14] = [
    "contact_id",
    "external_id",
    "phone",
    "state",
    "outcome",
    "result",
    "attempts",
    "last_call_at",
    "zones",
    "zone_source",
    "inbound_calls",
    "sms",
    "operator",
    "handle_s",
];

/// CSV with a header: contact_id, external_id, phone, state, outcome, result, attempts, last_call_at
/// (RFC 3339, UTC), zones (the callee's, `&`-separated) and where they came from (given, number, campaign),
/// calls the contact made to us, the SMS fallback's status, and the operator who answered and for how long
/// (seconds). Empty fields for missing values. Free-text cells (the external reference, the
/// result) that a spreadsheet would run as a formula are neutralized ([`spreadsheet_safe`]).
pub fn write_csv<W: Write>(rows: &[ResultRow], writer: W) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(writer);
    w.write_record(CSV_HEADER)?;
    for r in rows {
        write_csv_row(&mut w, r)?;
    }
    w.flush()?;
    Ok(())
}

/// One row in [`CSV_HEADER`]'s columns.
pub fn write_csv_row<W: Write>(w: &mut csv::Writer<W>, r: &ResultRow) -> Result<(), csv::Error> {
    w.write_record([
        r.contact_id.to_string(),
        spreadsheet_safe(r.external_id.as_deref().unwrap_or_default()),
        r.phone.to_string(),
        r.state.to_string(),
        r.outcome.map(|o| o.to_string()).unwrap_or_default(),
        spreadsheet_safe(r.result.as_deref().unwrap_or_default()),
        r.attempts.to_string(),
        r.last_call_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        r.zones.clone(),
        r.zone_source.to_string(),
        r.inbound_calls.to_string(),
        r.sms.clone().unwrap_or_default(),
        r.operator.clone().unwrap_or_default(),
        r.handle_s.map(|s| format!("{s:.1}")).unwrap_or_default(),
    ])
}

/// A cell that a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, CR first: CSV injection,
/// OWASP) gets a leading `'`, which spreadsheets show as text. Only free text needs it: the phone column is
/// a validated E.164 number (`+` and digits, never a formula) and keeps its `+` so that files round-trip.
pub fn spreadsheet_safe(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

/// A JSON array of objects with the same fields as the CSV (nulls for missing values).
pub fn write_json<W: Write>(rows: &[ResultRow], writer: W) -> serde_json::Result<()> {
    serde_json::to_writer_pretty(writer, rows)
}

#[cfg(test)]
mod tests {
    use super::spreadsheet_safe;

    #[test]
    fn formulas_in_free_text_are_neutralized_and_plain_text_is_kept() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"http://x\")"), "'=HYPERLINK(\"http://x\")");
        assert_eq!(spreadsheet_safe("+1+1"), "'+1+1");
        assert_eq!(spreadsheet_safe("-2"), "'-2");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("\t=1"), "'\t=1");
        assert_eq!(spreadsheet_safe("parcel-1234"), "parcel-1234");
        assert_eq!(spreadsheet_safe("reschedule:morning"), "reschedule:morning");
        assert_eq!(spreadsheet_safe(""), "");
    }
}
