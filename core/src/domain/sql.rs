//! How domain types cross into PostgreSQL: each is stored as `TEXT` and parsed again on the way out, so a
//! row read from the store already carries an `E164`, a `CallSid` or a state enum, never a raw string.

/// Implements sqlx's `Type`, `Encode`, `Decode` and `PgHasArrayType` for `$ty` as a `TEXT` value, given how
/// to spell it (the method `$to(&self) -> &str`) and how to parse it back (`$from(&str) -> Result<$ty, E>`).
macro_rules! text_type {
    ($ty:ty, $to:ident, $from:path) => {
        impl sqlx::Type<sqlx::Postgres> for $ty {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $ty {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
            fn array_compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::postgres::PgHasArrayType>::array_compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $ty {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.$to(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $ty {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let s = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok($from(s)?)
            }
        }
    };
}
pub(crate) use text_type;

use super::compliance::ZoneSource;
use super::{AmdMode, AnsweredBy, CallSid, CallStatus, Outcome, Scope, Tz, E164};

text_type!(E164, as_str, E164::from_stored);
text_type!(CallSid, as_str, CallSid::parse);
text_type!(Tz, name, Tz::parse);
text_type!(Outcome, as_str, Outcome::parse);
text_type!(CallStatus, as_str, CallStatus::parse);
text_type!(AnsweredBy, as_str, AnsweredBy::parse);
text_type!(AmdMode, as_str, amd_mode);
text_type!(Scope, as_str, Scope::parse);

fn amd_mode(s: &str) -> Result<AmdMode, super::ParseError> {
    AmdMode::parse(s).ok_or_else(|| super::ParseError::new("AmdMode", s))
}
text_type!(ZoneSource, as_str, ZoneSource::parse);
text_type!(super::sms::MessageStatus, as_str, super::sms::MessageStatus::parse);
text_type!(super::operators::Identity, as_str, super::operators::Identity::parse);
