//! CSV contact import: parse every row into a [`NewContact`] or a [`RowError`] naming the line and column.
//!
//! Lines are read one by one so a broken line (a quote opened and never closed) is reported on its own and
//! does not swallow the rows after it. A quoted field may still span lines when the record it makes is
//! well formed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::domain::compliance::Zoning;
use crate::domain::Tz;

use crate::domain::E164;
use crate::store::NewContact;

/// One bad row: 1-based physical line number, the column (when one is to blame) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    pub column: Option<String>,
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}, column {}: {}", self.line, c, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// A contact with the line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRow {
    pub line: usize,
    pub contact: NewContact,
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: Vec<ParsedRow>,
    pub errors: Vec<RowError>,
}

/// A quoted field may span at most this many lines before the quote counts as never closed.
const MAX_RECORD_LINES: usize = 20;

fn err(line: usize, column: Option<&str>, reason: impl Into<String>) -> RowError {
    RowError { line, column: column.map(str::to_string), reason: reason.into() }
}

/// Parses one record (which may contain newlines inside quotes) into its raw fields.
fn parse_record(bytes: &[u8]) -> Result<csv::ByteRecord, String> {
    // Most rows have no quotes at all: split on commas without building a CSV reader (its setup cost
    // dominated a profile of the import).
    if !bytes.contains(&b'"') {
        return Ok(csv::ByteRecord::from(bytes.split(|&b| b == b',').collect::<Vec<&[u8]>>()));
    }
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut rec = csv::ByteRecord::new();
    match rdr.read_byte_record(&mut rec) {
        Ok(true) => {}
        Ok(false) => return Ok(csv::ByteRecord::new()),
        Err(e) => return Err(e.to_string()),
    }
    // Anything after the first record means the quoting split it in two.
    let mut extra = csv::ByteRecord::new();
    if rdr.read_byte_record(&mut extra).map_err(|e| e.to_string())? {
        return Err("bad quoting: a quote closes in the middle of a field".into());
    }
    Ok(rec)
}

fn quotes_balanced(bytes: &[u8]) -> bool {
    bytes.iter().filter(|&&b| b == b'"').count() % 2 == 0
}

/// Splits input into records: (first line number, bytes) or an error for a line whose quote never closes.
fn records(input: &[u8]) -> Vec<Result<(usize, Vec<u8>), RowError>> {
    let lines: Vec<&[u8]> = input.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        if quotes_balanced(lines[i]) {
            out.push(Ok((line_no, lines[i].to_vec())));
            i += 1;
            continue;
        }
        // An open quote: join following lines until it closes, if it does soon.
        let mut joined = lines[i].to_vec();
        let mut closed_at = None;
        for (j, next) in lines.iter().enumerate().skip(i + 1).take(MAX_RECORD_LINES) {
            joined.push(b'\n');
            joined.extend_from_slice(next);
            if quotes_balanced(&joined) {
                closed_at = Some(j);
                break;
            }
        }
        match closed_at {
            Some(j) if parse_record(&joined).is_ok() && !joined_swallows_rows(&lines[i + 1..=j]) => {
                out.push(Ok((line_no, joined)));
                i = j + 1;
            }
            _ => {
                out.push(Err(err(line_no, None, "bad quoting: a quote is opened and never closed")));
                i += 1;
            }
        }
    }
    out
}

/// A quote that "closes" on a later line which itself looks like a complete row was really never closed.
fn joined_swallows_rows(following: &[&[u8]]) -> bool {
    following.iter().any(|l| l.contains(&b',') && quotes_balanced(l) && l.first() != Some(&b'"')) && following.len() > 1
}

/// Parses the whole CSV. `region` is the default region for local numbers ("JP").
/// `required` are attribute columns the campaign's script needs; `zoning` resolves each contact's zone
/// (a row whose zone can't be known is an error on its `timezone` column).
pub fn parse_csv(input: &[u8], region: Option<&str>, required: &[&str], zoning: &Zoning) -> Parsed {
    let mut parsed = Parsed::default();
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input); // UTF-8 BOM
    let mut recs = records(input).into_iter();
    let header = loop {
        match recs.next() {
            None => {
                parsed.errors.push(err(1, None, "empty file: a header row with a `phone` column is required"));
                return parsed;
            }
            Some(Ok((_, bytes))) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
            Some(Ok((line, bytes))) => match parse_record(&bytes) {
                Ok(r) => break (line, r),
                Err(e) => {
                    parsed.errors.push(err(line, None, format!("header: {e}")));
                    return parsed;
                }
            },
            Some(Err(e)) => {
                parsed.errors.push(e);
                return parsed;
            }
        }
    };
    let (header_line, header) = header;
    let mut names = Vec::new();
    for (i, raw) in header.iter().enumerate() {
        match std::str::from_utf8(raw) {
            Ok(s) => names.push(s.trim().to_lowercase()),
            Err(_) => {
                parsed.errors.push(err(header_line, None, format!("header column {}: invalid UTF-8", i + 1)));
                return parsed;
            }
        }
    }
    let Some(phone_col) = names.iter().position(|n| n == "phone") else {
        parsed.errors.push(err(header_line, None, "header has no `phone` column"));
        return parsed;
    };
    for r in required {
        if !names.iter().any(|n| n == r) {
            parsed.errors.push(err(header_line, None, format!("header has no `{r}` column, which the script uses")));
            return parsed;
        }
    }
    let tz_col = names.iter().position(|n| n == "timezone");
    let ext_col = names.iter().position(|n| n == "external_id");
    let region = region.map(str::to_ascii_uppercase);
    if let Some(r) = &region {
        if r.parse::<phonenumber::country::Id>().is_err() {
            parsed.errors.push(err(header_line, None, format!("unknown region {r:?}")));
            return parsed;
        }
    }
    let columns =
        Columns { names: &names, phone: phone_col, tz: tz_col, ext: ext_col, region: region.as_deref(), zoning };
    let recs: Vec<_> = recs.collect();
    // Rows are checked on every core (number parsing dominates); duplicates are found after, in order.
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    let chunk = recs.len().div_ceil(workers).max(1);
    let checked: Vec<Result<ParsedRow, RowError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = recs
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().filter_map(|r| check_row(r, &columns)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("row check does not panic")).collect()
    });
    // A number, or a parcel / appointment reference, is one contact per campaign.
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(checked.len());
    let mut seen_ext: HashMap<&str, usize> = HashMap::new();
    let mut dups: HashMap<usize, RowError> = HashMap::new();
    for r in checked.iter().flatten() {
        if let Some(first) = seen.get(r.contact.phone.as_str()) {
            dups.insert(r.line, err(r.line, Some("phone"), format!("duplicate of line {first} ({})", r.contact.phone)));
            continue;
        }
        if let Some(x) = r.contact.external_id.as_deref() {
            if let Some(first) = seen_ext.get(x) {
                dups.insert(r.line, err(r.line, Some("external_id"), format!("duplicate of line {first} ({x})")));
                continue;
            }
            seen_ext.insert(x, r.line);
        }
        seen.insert(r.contact.phone.as_str(), r.line);
    }
    for row in checked {
        match row {
            Ok(r) => match dups.remove(&r.line) {
                Some(e) => parsed.errors.push(e),
                None => parsed.rows.push(r),
            },
            Err(e) => parsed.errors.push(e),
        }
    }
    parsed
}

/// The header's column layout, shared by the row checkers.
#[derive(Clone, Copy)]
struct Columns<'a> {
    names: &'a [String],
    phone: usize,
    tz: Option<usize>,
    ext: Option<usize>,
    region: Option<&'a str>,
    zoning: &'a Zoning,
}

/// Checks one record into a contact or an error naming its line and column; `None` for blank lines.
fn check_row(rec: &Result<(usize, Vec<u8>), RowError>, c: &Columns<'_>) -> Option<Result<ParsedRow, RowError>> {
    let (line, bytes) = match rec {
        Ok((line, bytes)) => (*line, bytes),
        Err(e) => return Some(Err(e.clone())),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None; // blank lines, including the trailing newline
    }
    Some(check_fields(line, bytes, c))
}

fn check_fields(line: usize, bytes: &[u8], c: &Columns<'_>) -> Result<ParsedRow, RowError> {
    let record = parse_record(bytes).map_err(|e| err(line, None, e))?;
    if record.len() != c.names.len() {
        return Err(err(line, None, format!("expected {} fields, found {}", c.names.len(), record.len())));
    }
    let mut fields = Vec::with_capacity(c.names.len());
    for (i, raw) in record.iter().enumerate() {
        let s = std::str::from_utf8(raw).map_err(|_| err(line, Some(&c.names[i]), "invalid UTF-8"))?;
        fields.push(s.trim());
    }
    let phone = E164::parse(fields[c.phone], c.region)
        .map_err(|e| err(line, Some("phone"), format!("{e} ({:?})", fields[c.phone])))?;
    let timezone = match c.tz.map(|i| fields[i]).filter(|s| !s.is_empty()) {
        None => None,
        Some(z) => Some(Tz::parse(z).map_err(|_| err(line, Some("timezone"), format!("unknown time zone {z:?}")))?),
    };
    let external_id = c.ext.map(|i| fields[i]).filter(|s| !s.is_empty()).map(str::to_string);
    let attributes: BTreeMap<String, String> = c
        .names
        .iter()
        .zip(&fields)
        .enumerate()
        .filter(|(i, _)| *i != c.phone && Some(*i) != c.tz && Some(*i) != c.ext)
        .map(|(_, (n, v))| (n.clone(), v.to_string()))
        .collect();
    let zone =
        c.zoning.resolve(timezone, &phone, external_id.as_deref()).map_err(|(col, why)| err(line, Some(col), why))?;
    Ok(ParsedRow { line, contact: NewContact { phone, zone, external_id, attributes } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokyo() -> Zoning {
        Zoning { campaign_tz: Tz::parse("Asia/Tokyo").unwrap(), fallback: false, require_reference: false, rules: None }
    }

    #[test]
    fn local_numbers_attributes_and_errors_with_lines() {
        let csv = "phone,name,timezone,external_id\n\
                   080-1234-5678,Taro,Asia/Tokyo,P1\n\
                   12345,Bad,,\n\
                   090-1111-2222,Jiro,Mars/Olympus,P3\n\
                   080-1234-5678,Dup,,\n\
                   ,Empty,,\n\
                   \"090-3333-4444,Broken,,\n\
                   090-5555-6666,\"Yamada, \"\"Hanako\"\"\",,P7\n";
        let p = parse_csv(csv.as_bytes(), Some("JP"), &["name"], &tokyo());
        let lines: Vec<usize> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7], "{:?}", p.errors);
        assert_eq!(p.errors[1].column.as_deref(), Some("timezone"));
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].contact.phone.as_str(), "+818012345678");
        assert_eq!(p.rows[0].contact.attributes["name"], "Taro");
        assert_eq!(p.rows[1].line, 8);
        assert_eq!(p.rows[1].contact.attributes["name"], "Yamada, \"Hanako\"");
    }

    #[test]
    fn quoted_newlines_are_kept_and_bad_utf8_names_its_column() {
        let mut csv = b"phone,note\n+818012345678,\"two\nlines\"\n+818012345679,".to_vec();
        csv.extend_from_slice(b"\xff\xfe\n");
        let p = parse_csv(&csv, None, &[], &tokyo());
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.rows[0].contact.attributes["note"], "two\nlines");
        assert_eq!(p.errors, vec![err(4, Some("note"), "invalid UTF-8")]);
    }

    #[test]
    fn missing_columns_are_reported_on_the_header() {
        assert_eq!(parse_csv(b"name\nx\n", None, &[], &tokyo()).errors[0].reason, "header has no `phone` column");
        let p = parse_csv(b"phone\n+818012345678\n", None, &["parcel"], &tokyo());
        assert!(p.errors[0].reason.contains("`parcel`"));
    }

    #[test]
    fn each_row_gets_its_zone_or_an_error_naming_the_column() {
        use crate::domain::compliance::ZoneSource;
        let csv = "phone,timezone,external_id\n\
                   +12135550100,,P1\n\
                   +12125550100,America/Chicago,P2\n\
                   +80012345678,,P3\n\
                   +818012345678,,\n";
        let new_york = Zoning { campaign_tz: Tz::parse("America/New_York").unwrap(), ..tokyo() };
        let p = parse_csv(csv.as_bytes(), None, &[], &new_york);
        let zones: Vec<(String, ZoneSource)> =
            p.rows.iter().map(|r| (r.contact.zone.names(), r.contact.zone.source)).collect();
        assert_eq!(
            zones,
            [
                ("America/Los_Angeles".to_string(), ZoneSource::Number),
                ("America/Chicago".to_string(), ZoneSource::Given),
                ("Asia/Tokyo".to_string(), ZoneSource::Number),
            ]
        );
        assert_eq!(p.rows[0].contact.zone.region.as_deref(), Some("CA"));
        // International freephone has no zone: refused, never called on a guess.
        assert_eq!((p.errors.len(), p.errors[0].line, p.errors[0].column.as_deref()), (1, 4, Some("timezone")));

        // With the campaign's zone allowed as the fallback it is called in New York time, and says so.
        let fallback = Zoning { fallback: true, ..new_york.clone() };
        let p = parse_csv(csv.as_bytes(), None, &[], &fallback);
        assert!(p.errors.is_empty());
        assert_eq!(
            (p.rows[2].contact.zone.names(), p.rows[2].contact.zone.source),
            ("America/New_York".into(), ZoneSource::Campaign)
        );

        // One notification per parcel needs the parcel: a row without its reference is refused.
        let per_parcel = Zoning { require_reference: true, ..new_york };
        let p = parse_csv(csv.as_bytes(), None, &[], &per_parcel);
        let errors: Vec<(usize, Option<&str>)> = p.errors.iter().map(|e| (e.line, e.column.as_deref())).collect();
        assert_eq!(errors, [(4, Some("timezone")), (5, Some("external_id"))]);
    }
}
