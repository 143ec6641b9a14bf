//! An IANA time zone, parsed once: contacts and campaigns carry this, never a zone name as text.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// An IANA time zone (`Asia/Tokyo`). Derefs to [`chrono_tz::Tz`] for date arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tz(chrono_tz::Tz);

impl Tz {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        s.parse::<chrono_tz::Tz>().map(Self).map_err(|_| ParseError::new("IANA time zone", s))
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    pub fn get(self) -> chrono_tz::Tz {
        self.0
    }
}

impl From<chrono_tz::Tz> for Tz {
    fn from(tz: chrono_tz::Tz) -> Self {
        Self(tz)
    }
}

impl Deref for Tz {
    type Target = chrono_tz::Tz;
    fn deref(&self) -> &chrono_tz::Tz {
        &self.0
    }
}

impl TryFrom<String> for Tz {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<Tz> for String {
    fn from(tz: Tz) -> String {
        tz.name().to_string()
    }
}

impl fmt::Display for Tz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
