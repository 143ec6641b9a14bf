use std::fmt;

use serde::{Deserialize, Serialize};

/// A phone number in E.164 form (`+818012345678`), valid for its region. Built only by [`E164::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("empty phone number")]
    Empty,
    #[error("unknown region {0:?} (expected an ISO 3166 code such as JP or US)")]
    UnknownRegion(String),
    #[error("not a phone number: {0}")]
    Unparsable(String),
    #[error("not a valid number for its region")]
    Invalid,
}

impl E164 {
    /// Parses a number written in international form, or in the local form of `region` ("080-1234-5678"
    /// with `JP`). Numbers that parse but are not valid for their region are rejected too.
    pub fn parse(raw: &str, region: Option<&str>) -> Result<Self, PhoneError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PhoneError::Empty);
        }
        let country = match region {
            Some(r) => Some(
                r.to_ascii_uppercase()
                    .parse::<phonenumber::country::Id>()
                    .map_err(|_| PhoneError::UnknownRegion(r.to_string()))?,
            ),
            None => None,
        };
        let number = phonenumber::parse(country, raw).map_err(|e| PhoneError::Unparsable(e.to_string()))?;
        if !phonenumber::is_valid(&number) {
            return Err(PhoneError::Invalid);
        }
        // What `number.format().mode(Mode::E164)` writes, without its formatter: that also picks the
        // national display pattern by regex (through a global, locked cache), unused for E.164 and most
        // of the cost of a parse (see BENCHMARKS.md, "API push").
        Ok(Self(format!("+{}{}", number.code().value(), number.national())))
    }

    /// Rebuilds from a value this type wrote (the database); still checked, never trusted blindly.
    pub fn from_stored(s: &str) -> Result<Self, PhoneError> {
        Self::parse(s, None)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country calling code (`81` for `+818012345678`).
    pub fn country_code(&self) -> u16 {
        phonenumber::parse(None, &self.0).map(|n| n.code().value()).expect("an E164 always parses")
    }
}

impl TryFrom<String> for E164 {
    type Error = PhoneError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s, None)
    }
}

impl From<E164> for String {
    fn from(n: E164) -> String {
        n.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_local_mobile_becomes_e164() {
        assert_eq!(E164::parse("080-1234-5678", Some("JP")).unwrap().as_str(), "+818012345678");
        assert_eq!(E164::parse("+81 80 1234 5678", None).unwrap().as_str(), "+818012345678");
    }

    #[test]
    fn rejections_say_why() {
        assert_eq!(E164::parse("  ", Some("JP")), Err(PhoneError::Empty));
        assert!(matches!(E164::parse("080-1234-5678", Some("XX")), Err(PhoneError::UnknownRegion(_))));
        assert!(matches!(E164::parse("hello", Some("JP")), Err(PhoneError::Unparsable(_))));
        assert_eq!(E164::parse("080-1234", Some("JP")), Err(PhoneError::Invalid));
        assert!(E164::parse("080-1234-5678", None).is_err());
    }

    proptest::proptest! {
        /// `parse` writes the E.164 form itself; it must be exactly what the library's formatter writes,
        /// leading zeros of the national number (Italian landlines) included.
        #[test]
        fn writes_what_the_e164_formatter_writes(
            (region, local) in proptest::prop_oneof![
                (proptest::strategy::Just("JP"), "0[789]0[1-9][0-9]{7}"),
                (proptest::strategy::Just("US"), "[2-9][0-9]{2}[2-9][0-9]{6}"),
                (proptest::strategy::Just("IT"), "0[1-9][0-9]{6,8}"),
                (proptest::strategy::Just("GB"), "07[1-9][0-9]{8}"),
            ]
        ) {
            let Ok(number) = phonenumber::parse(Some(region.parse().unwrap()), &local) else { return Ok(()) };
            if let Ok(e) = E164::parse(&local, Some(region)) {
                proptest::prop_assert_eq!(e.as_str(), number.format().mode(phonenumber::Mode::E164).to_string());
            }
        }
    }
}
