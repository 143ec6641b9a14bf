//! A price table: per-minute voice rates by number prefix (country and number type) and per-segment SMS
//! rates, with Twilio's billing rules. The sample table is `core/data/prices/twilio-sample.toml`.

use serde::{Deserialize, Serialize};

use super::EstimateError;
use crate::domain::E164;

const SAMPLE: &str = include_str!("../../data/prices/twilio-sample.toml");

/// One voice rate: calls to numbers starting with any of `prefixes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoiceRate {
    /// ISO 3166 country, for the report.
    pub country: String,
    /// `local`, `mobile`, `landline`, `toll_free`…, for the report.
    pub number_type: String,
    /// E.164 prefixes (`+8190`); the longest match over the whole table wins.
    pub prefixes: Vec<String>,
    /// Per started minute of an answered call.
    pub per_minute: f64,
}

/// One SMS rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsRate {
    pub country: String,
    pub prefixes: Vec<String>,
    /// Per segment sent.
    pub per_segment: f64,
}

/// A price table (TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// ISO 4217, e.g. "USD".
    pub currency: String,
    /// Where the figures come from.
    pub source: String,
    /// When they were taken.
    pub date: String,
    #[serde(default)]
    pub voice: Vec<VoiceRate>,
    #[serde(default)]
    pub sms: Vec<SmsRate>,
}

impl PriceTable {
    /// The sample table shipped in the binary.
    pub fn sample() -> Self {
        Self::from_toml(SAMPLE, "core/data/prices/twilio-sample.toml").expect("the sample price table parses")
    }

    pub fn from_toml(text: &str, file: &str) -> Result<Self, EstimateError> {
        let t: Self = toml::from_str(text).map_err(|e| EstimateError::Prices(format!("{file}: {e}")))?;
        let mut issues = Vec::new();
        let prefix_ok =
            |p: &str| p.strip_prefix('+').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
        for (i, v) in t.voice.iter().enumerate() {
            if !(v.per_minute.is_finite() && v.per_minute >= 0.0) {
                issues.push(format!("voice[{i}].per_minute: must be >= 0, got {}", v.per_minute));
            }
            if let Some(p) = v.prefixes.iter().find(|p| !prefix_ok(p)) {
                issues.push(format!("voice[{i}].prefixes: {p:?} is not an E.164 prefix like +81"));
            }
        }
        for (i, s) in t.sms.iter().enumerate() {
            if !(s.per_segment.is_finite() && s.per_segment >= 0.0) {
                issues.push(format!("sms[{i}].per_segment: must be >= 0, got {}", s.per_segment));
            }
            if let Some(p) = s.prefixes.iter().find(|p| !prefix_ok(p)) {
                issues.push(format!("sms[{i}].prefixes: {p:?} is not an E.164 prefix like +81"));
            }
        }
        if issues.is_empty() {
            Ok(t)
        } else {
            Err(EstimateError::Prices(format!("{file}: {}", issues.join("; "))))
        }
    }

    /// The voice rate for a number (longest prefix), if the table has one.
    pub fn voice_rate(&self, phone: &E164) -> Option<&VoiceRate> {
        longest(self.voice.iter().map(|v| (&v.prefixes, v)), phone.as_str())
    }

    pub fn sms_rate(&self, phone: &E164) -> Option<&SmsRate> {
        longest(self.sms.iter().map(|s| (&s.prefixes, s)), phone.as_str())
    }
}

fn longest<'a, T>(rates: impl Iterator<Item = (&'a Vec<String>, &'a T)>, number: &str) -> Option<&'a T> {
    rates
        .flat_map(|(prefixes, r)| prefixes.iter().filter(|p| number.starts_with(p.as_str())).map(move |p| (p.len(), r)))
        .max_by_key(|(len, _)| *len)
        .map(|(_, r)| r)
}

/// Minutes Twilio bills for a call answered for `talk_s` seconds: every started minute.
pub fn billed_minutes(talk_s: f64) -> u64 {
    if talk_s <= 0.0 {
        0
    } else {
        (talk_s / 60.0).ceil() as u64
    }
}

/// GSM 03.38's basic character set: one septet each.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Its extension table: two septets each (escape + character).
const GSM7_EXTENDED: &str = "^{}\\[~]|€\u{0C}";

/// Segments of one SMS body: GSM-7 when every character has a septet (160 in one segment, 153 each when
/// split), else UCS-2 counted in UTF-16 units (70, or 67 each).
pub fn sms_segments(body: &str) -> u64 {
    let mut septets = 0u64;
    let mut gsm = true;
    for c in body.chars() {
        if GSM7_BASIC.contains(c) {
            septets += 1;
        } else if GSM7_EXTENDED.contains(c) {
            septets += 2;
        } else {
            gsm = false;
            break;
        }
    }
    let (units, single, multi) = if gsm { (septets, 160, 153) } else { (body.encode_utf16().count() as u64, 70, 67) };
    match units {
        0 => 1,
        n if n <= single => 1,
        n => n.div_ceil(multi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(s: &str) -> E164 {
        E164::parse(s, None).unwrap()
    }

    #[test]
    fn japanese_mobiles_are_told_from_landlines_by_prefix() {
        let t = PriceTable::sample();
        assert_eq!(t.voice_rate(&phone("+819012345678")).unwrap().number_type, "mobile");
        assert_eq!(t.voice_rate(&phone("+818012345678")).unwrap().number_type, "mobile");
        assert_eq!(t.voice_rate(&phone("+81312345678")).unwrap().number_type, "landline");
        assert_eq!(t.voice_rate(&phone("+18005550100")).unwrap().number_type, "toll_free");
        assert_eq!(t.voice_rate(&phone("+12125550100")).unwrap().number_type, "local");
        assert!(t.voice_rate(&phone("+442071234567")).is_none());
        assert_eq!(t.sms_rate(&phone("+819012345678")).unwrap().country, "JP");
    }

    #[test]
    fn calls_are_billed_per_started_minute() {
        assert_eq!(billed_minutes(0.0), 0);
        assert_eq!(billed_minutes(1.0), 1);
        assert_eq!(billed_minutes(60.0), 1);
        assert_eq!(billed_minutes(60.5), 2);
        assert_eq!(billed_minutes(179.0), 3);
    }

    #[test]
    fn sms_segments_follow_gsm7_and_ucs2() {
        assert_eq!(sms_segments(&"a".repeat(160)), 1);
        assert_eq!(sms_segments(&"a".repeat(161)), 2);
        assert_eq!(sms_segments(&"a".repeat(306)), 2);
        assert_eq!(sms_segments(&"a".repeat(307)), 3);
        // Extension characters take two septets.
        assert_eq!(sms_segments(&"€".repeat(80)), 1);
        assert_eq!(sms_segments(&"€".repeat(81)), 2);
        assert_eq!(sms_segments(&"あ".repeat(70)), 1);
        assert_eq!(sms_segments(&"あ".repeat(71)), 2);
        assert_eq!(sms_segments(&"あ".repeat(134)), 2);
        assert_eq!(sms_segments(&"あ".repeat(135)), 3);
    }

    #[test]
    fn a_bad_table_names_its_field() {
        let e = PriceTable::from_toml(
            "currency = \"USD\"\nsource = \"x\"\ndate = \"2026\"\n[[voice]]\ncountry = \"JP\"\nnumber_type = \"m\"\nprefixes = [\"81\"]\nper_minute = -1.0\n",
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("voice[0].per_minute") && e.contains("voice[0].prefixes"), "{e}");
    }
}
