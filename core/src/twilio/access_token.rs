//! Twilio Access Tokens for the browser Voice SDK: the JWT that `Twilio.Device` registers with.
//!
//! The output is byte for byte what Twilio's official helper library for Python (twilio-python 9.x, which
//! signs with PyJWT) produces for `AccessToken(account_sid, api_key_sid, api_key_secret, identity=…,
//! ttl=…)` with one `VoiceGrant(incoming_allow=…, outgoing_application_sid=…,
//! outgoing_application_params=…)`, `time.time()` being `now`. `core/tests/access_token.rs` compares the
//! two. Concretely:
//!
//! * header, keys sorted (PyJWT's default): `{"alg":"HS256","cty":"twilio-fpa;v=1","typ":"JWT"}`;
//! * claims, in twilio-python's insertion order: `jti` = `"{api_key_sid}-{now}"`, `grants` =
//!   `{"voice": {...}, "identity": "..."}` (the voice grant first, then the identity), `iss` = the API key
//!   SID, `exp` = now + ttl, `nbf` = now, `sub` = the account SID. No `iat`.
//! * the voice grant: `"incoming": {"allow": true}` only when incoming calls are allowed, `"outgoing":
//!   {"application_sid": "AP…", "params": {...}}` only with an application (`params` only when non-empty);
//!   with neither it is `{}`, as in Python;
//! * JSON without spaces (`separators=(",", ":")`) and with Python's `ensure_ascii`: every character
//!   outside printable ASCII is written as `\uXXXX` (lowercase hex, UTF-16 surrogate pairs);
//! * segments in unpadded base64url, signature HMAC-SHA256 over `header.payload` keyed with the API key
//!   secret's UTF-8 bytes.
//!
//! Unlike the Python library, which signs whatever it is given, [`AccessToken::new`] refuses what Twilio
//! would reject later: malformed SIDs, an empty secret, a TTL outside 1 s ..= 24 h (Twilio's maximum), an
//! identity that is empty, longer than 121 characters, or has characters other than ASCII letters, digits
//! and `_ . @ -` (Twilio's docs recommend letters, digits and `_` for Voice; its `<Client>` names refuse
//! spaces, control characters and URI delimiters such as `< > # % "` and `{ } | \ ^ [ ] `` ` ``), and
//! `params` without an application (Python would drop them silently).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The header as PyJWT writes it for twilio-python (keys sorted, no spaces).
const HEADER_JSON: &str = r#"{"alg":"HS256","cty":"twilio-fpa;v=1","typ":"JWT"}"#;
/// Twilio refuses tokens that live longer than a day.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest identity accepted.
pub const MAX_IDENTITY_LEN: usize = 121;

/// Why a token cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    #[error("{what} must be {prefix} followed by 32 hex digits")]
    Sid { what: &'static str, prefix: &'static str },
    #[error("the API key secret is empty")]
    EmptySecret,
    #[error("the identity is empty")]
    EmptyIdentity,
    #[error("the identity is {0} characters long; at most {MAX_IDENTITY_LEN} are allowed")]
    IdentityTooLong(usize),
    #[error("the identity contains {0:?}; only ASCII letters, digits and _ . @ - are allowed")]
    IdentityChar(char),
    #[error("the TTL must be whole seconds between 1 s and 24 h, not {0:?}")]
    Ttl(Duration),
    #[error("outgoing parameters need an outgoing application SID")]
    ParamsWithoutApplication,
    #[error("an outgoing parameter has an empty name")]
    EmptyParamName,
}

/// What the Voice SDK may do with the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoiceGrant {
    /// Calls to `client:<identity>` ring this device.
    pub incoming_allow: bool,
    /// The TwiML application (`AP…`) whose voice URL `device.connect()` calls.
    pub outgoing_application_sid: Option<String>,
    /// Parameters passed to that application's voice URL (written in key order).
    pub outgoing_params: Option<BTreeMap<String, String>>,
}

/// A validated Access Token; [`AccessToken::to_jwt`] signs it for a given instant.
#[derive(Debug, Clone)]
pub struct AccessToken {
    account_sid: String,
    api_key_sid: String,
    api_key_secret: SecretString,
    identity: String,
    ttl: Duration,
    voice: Option<VoiceGrant>,
}

impl AccessToken {
    /// Checks every input (see the module docs); the token is then infallible to sign.
    pub fn new(
        account_sid: &str,
        api_key_sid: &str,
        api_key_secret: SecretString,
        identity: &str,
        ttl: Duration,
        voice: Option<VoiceGrant>,
    ) -> Result<Self, AccessTokenError> {
        check_sid(account_sid, "AC", "the account SID")?;
        check_sid(api_key_sid, "SK", "the API key SID")?;
        if api_key_secret.expose_secret().is_empty() {
            return Err(AccessTokenError::EmptySecret);
        }
        check_identity(identity)?;
        if ttl.subsec_nanos() != 0 || ttl.is_zero() || ttl > MAX_TTL {
            return Err(AccessTokenError::Ttl(ttl));
        }
        if let Some(v) = &voice {
            if let Some(app) = &v.outgoing_application_sid {
                check_sid(app, "AP", "the outgoing application SID")?;
            }
            if let Some(params) = v.outgoing_params.as_ref().filter(|p| !p.is_empty()) {
                if v.outgoing_application_sid.is_none() {
                    return Err(AccessTokenError::ParamsWithoutApplication);
                }
                if params.keys().any(String::is_empty) {
                    return Err(AccessTokenError::EmptyParamName);
                }
            }
        }
        Ok(Self {
            account_sid: account_sid.to_owned(),
            api_key_sid: api_key_sid.to_owned(),
            api_key_secret,
            identity: identity.to_owned(),
            ttl,
            voice,
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The `exp` claim of a token signed at `now` (unix seconds).
    pub fn expires_at(&self, now: i64) -> i64 {
        now + self.ttl.as_secs() as i64
    }

    /// The signed JWT, issued at `now` (unix seconds): `nbf` = `now`, `exp` = `now` + TTL.
    pub fn to_jwt(&self, now: i64) -> String {
        let header = URL_SAFE_NO_PAD.encode(HEADER_JSON);
        let payload = URL_SAFE_NO_PAD.encode(self.claims_json(now));
        let signing_input = format!("{header}.{payload}");
        let mut mac = Hmac::<Sha256>::new_from_slice(self.api_key_secret.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// The claims exactly as twilio-python serialises them (see the module docs for the order).
    fn claims_json(&self, now: i64) -> String {
        let mut grants = String::from("{");
        if let Some(voice) = &self.voice {
            grants.push_str(r#""voice":"#);
            voice_json(&mut grants, voice);
            grants.push(',');
        }
        grants.push_str(r#""identity":"#);
        push_json_str(&mut grants, &self.identity);
        grants.push('}');

        let mut out = String::from(r#"{"jti":"#);
        push_json_str(&mut out, &format!("{}-{now}", self.api_key_sid));
        let _ = write!(out, r#","grants":{grants},"iss":"#);
        push_json_str(&mut out, &self.api_key_sid);
        let _ = write!(out, r#","exp":{},"nbf":{now},"sub":"#, self.expires_at(now));
        push_json_str(&mut out, &self.account_sid);
        out.push('}');
        out
    }
}

/// twilio-python's `VoiceGrant.to_payload()`: incoming, then outgoing (application_sid, params).
fn voice_json(out: &mut String, voice: &VoiceGrant) {
    let mut fields = Vec::new();
    if voice.incoming_allow {
        fields.push(r#""incoming":{"allow":true}"#.to_owned());
    }
    if let Some(app) = &voice.outgoing_application_sid {
        let mut outgoing = String::from(r#""outgoing":{"application_sid":"#);
        push_json_str(&mut outgoing, app);
        if let Some(params) = voice.outgoing_params.as_ref().filter(|p| !p.is_empty()) {
            outgoing.push_str(r#","params":{"#);
            for (i, (k, v)) in params.iter().enumerate() {
                if i > 0 {
                    outgoing.push(',');
                }
                push_json_str(&mut outgoing, k);
                outgoing.push(':');
                push_json_str(&mut outgoing, v);
            }
            outgoing.push('}');
        }
        outgoing.push('}');
        fields.push(outgoing);
    }
    out.push('{');
    out.push_str(&fields.join(","));
    out.push('}');
}

/// A JSON string as Python's `json.dumps` writes it with `ensure_ascii=True` (the default): `"` and `\`
/// and `\b \f \n \r \t` escaped by name, everything else outside `' '..='~'` as `\uXXXX` in lowercase hex,
/// characters beyond the BMP as surrogate pairs.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

fn check_sid(sid: &str, prefix: &'static str, what: &'static str) -> Result<(), AccessTokenError> {
    let ok = sid.len() == 34 && sid.starts_with(prefix) && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(AccessTokenError::Sid { what, prefix })
    }
}

fn check_identity(identity: &str) -> Result<(), AccessTokenError> {
    if identity.is_empty() {
        return Err(AccessTokenError::EmptyIdentity);
    }
    if let Some(c) = identity.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'))) {
        return Err(AccessTokenError::IdentityChar(c));
    }
    // Only ASCII is left, so bytes are characters.
    if identity.len() > MAX_IDENTITY_LEN {
        return Err(AccessTokenError::IdentityTooLong(identity.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
    const KEY: &str = "SKfedcba9876543210fedcba9876543210";
    const SECRET: &str = "s3cr3t-0123456789abcdef-0123456789";
    const APP: &str = "AP00112233445566778899aabbccddeeff";
    const NOW: i64 = 1_700_000_000;

    fn token(identity: &str, ttl: u64, voice: Option<VoiceGrant>) -> Result<AccessToken, AccessTokenError> {
        AccessToken::new(ACCOUNT, KEY, SecretString::from(SECRET), identity, Duration::from_secs(ttl), voice)
    }

    fn voice(app: Option<&str>) -> VoiceGrant {
        VoiceGrant { incoming_allow: true, outgoing_application_sid: app.map(str::to_owned), outgoing_params: None }
    }

    fn decode(segment: &str) -> String {
        String::from_utf8(URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    /// Produced by twilio-python 9.13.0 (PyJWT 2.15.1) with `time.time = lambda: 1700000000`:
    /// `AccessToken(ACCOUNT, KEY, SECRET, identity="alice", ttl=600)` +
    /// `VoiceGrant(incoming_allow=True, outgoing_application_sid=APP)`.
    const PYTHON_ALICE: &str = "eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTS2ZlZGNiYTk4NzY1NDMyMTBmZWRjYmE5ODc2NTQzMjEwLTE3MDAwMDAwMDAiLCJncmFudHMiOnsidm9pY2UiOnsiaW5jb21pbmciOnsiYWxsb3ciOnRydWV9LCJvdXRnb2luZyI6eyJhcHBsaWNhdGlvbl9zaWQiOiJBUDAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmIn19LCJpZGVudGl0eSI6ImFsaWNlIn0sImlzcyI6IlNLZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTAiLCJleHAiOjE3MDAwMDA2MDAsIm5iZiI6MTcwMDAwMDAwMCwic3ViIjoiQUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZiJ9.vYzk8LBvcNGS3u_y4K5ST1KrbTK87ieUY1h0fE0gO-o";
    /// The same library, `identity="bob.smith@example.com", ttl=3600`, `VoiceGrant(incoming_allow=True)`.
    const PYTHON_BOB: &str = "eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTS2ZlZGNiYTk4NzY1NDMyMTBmZWRjYmE5ODc2NTQzMjEwLTE3MDAwMDAwMDAiLCJncmFudHMiOnsidm9pY2UiOnsiaW5jb21pbmciOnsiYWxsb3ciOnRydWV9fSwiaWRlbnRpdHkiOiJib2Iuc21pdGhAZXhhbXBsZS5jb20ifSwiaXNzIjoiU0tmZWRjYmE5ODc2NTQzMjEwZmVkY2JhOTg3NjU0MzIxMCIsImV4cCI6MTcwMDAwMzYwMCwibmJmIjoxNzAwMDAwMDAwLCJzdWIiOiJBQzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIn0.wiFylHQrJcrINMyiYO28YSKyimlNc8pZyPmWQ5Z3VNE";

    #[test]
    fn matches_tokens_recorded_from_twilio_python() {
        assert_eq!(token("alice", 600, Some(voice(Some(APP)))).unwrap().to_jwt(NOW), PYTHON_ALICE);
        assert_eq!(token("bob.smith@example.com", 3600, Some(voice(None))).unwrap().to_jwt(NOW), PYTHON_BOB);
    }

    #[test]
    fn header_and_claims_in_twilio_python_order() {
        let jwt = token("alice", 600, Some(voice(Some(APP)))).unwrap().to_jwt(NOW);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| !p.contains('=') && !p.contains('+') && !p.contains('/')));
        assert_eq!(decode(parts[0]), r#"{"alg":"HS256","cty":"twilio-fpa;v=1","typ":"JWT"}"#);
        assert_eq!(
            decode(parts[1]),
            concat!(
                r#"{"jti":"SKfedcba9876543210fedcba9876543210-1700000000","#,
                r#""grants":{"voice":{"incoming":{"allow":true},"#,
                r#""outgoing":{"application_sid":"AP00112233445566778899aabbccddeeff"}},"identity":"alice"},"#,
                r#""iss":"SKfedcba9876543210fedcba9876543210","exp":1700000600,"nbf":1700000000,"#,
                r#""sub":"AC0123456789abcdef0123456789abcdef"}"#
            )
        );
    }

    #[test]
    fn exp_is_now_plus_ttl_and_nbf_is_now() {
        let t = token("alice", 900, None).unwrap();
        let claims: serde_json::Value =
            serde_json::from_str(&decode(t.to_jwt(NOW).split('.').nth(1).unwrap())).unwrap();
        assert_eq!(claims["exp"], NOW + 900);
        assert_eq!(claims["nbf"], NOW);
        assert_eq!(t.expires_at(NOW), NOW + 900);
        // Without a voice grant only the identity is granted, as in Python.
        assert_eq!(claims["grants"], serde_json::json!({"identity": "alice"}));
    }

    #[test]
    fn signature_is_hmac_sha256_of_header_dot_payload() {
        let jwt = token("alice", 600, None).unwrap().to_jwt(NOW);
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
    }

    #[test]
    fn voice_grant_shapes() {
        let grant = |v: VoiceGrant| {
            let mut s = String::new();
            voice_json(&mut s, &v);
            s
        };
        assert_eq!(grant(VoiceGrant::default()), "{}");
        assert_eq!(grant(voice(None)), r#"{"incoming":{"allow":true}}"#);
        let params = BTreeMap::from([("b".to_owned(), "2".to_owned()), ("a".to_owned(), "Zoë".to_owned())]);
        let v = VoiceGrant {
            incoming_allow: false,
            outgoing_application_sid: Some(APP.into()),
            outgoing_params: Some(params),
        };
        assert_eq!(
            grant(v),
            r#"{"outgoing":{"application_sid":"AP00112233445566778899aabbccddeeff","params":{"a":"Zo\u00eb","b":"2"}}}"#
        );
        let empty = VoiceGrant { outgoing_params: Some(BTreeMap::new()), ..voice(Some(APP)) };
        assert_eq!(
            grant(empty),
            r#"{"incoming":{"allow":true},"outgoing":{"application_sid":"AP00112233445566778899aabbccddeeff"}}"#
        );
    }

    #[test]
    fn strings_are_escaped_like_python_ensure_ascii() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c/\n\t\u{1}\u{7f}é東😀");
        assert_eq!(s, r#""a\"b\\c/\n\t\u0001\u007f\u00e9\u6771\ud83d\ude00""#);
    }

    #[test]
    fn refuses_what_twilio_would_reject() {
        use AccessTokenError as E;
        assert_eq!(token("", 600, None).unwrap_err(), E::EmptyIdentity);
        assert_eq!(token("a b", 600, None).unwrap_err(), E::IdentityChar(' '));
        assert_eq!(token("alice<", 600, None).unwrap_err(), E::IdentityChar('<'));
        assert_eq!(token("zoë", 600, None).unwrap_err(), E::IdentityChar('ë'));
        assert!(token(&"a".repeat(MAX_IDENTITY_LEN), 600, None).is_ok());
        assert_eq!(token(&"a".repeat(122), 600, None).unwrap_err(), E::IdentityTooLong(122));
        assert!(token("Op_1.bob@example-co.com", 600, None).is_ok());
        assert_eq!(token("alice", 0, None).unwrap_err(), E::Ttl(Duration::ZERO));
        assert!(token("alice", 86_400, None).is_ok());
        assert!(matches!(token("alice", 86_401, None).unwrap_err(), E::Ttl(_)));
        let sub_second = Duration::from_millis(1500);
        assert_eq!(
            AccessToken::new(ACCOUNT, KEY, SecretString::from(SECRET), "alice", sub_second, None).unwrap_err(),
            E::Ttl(sub_second)
        );
        let new = |account: &str, key: &str, secret: &str, voice: Option<VoiceGrant>| {
            AccessToken::new(account, key, SecretString::from(secret), "alice", Duration::from_secs(60), voice)
        };
        assert!(matches!(new(KEY, KEY, SECRET, None).unwrap_err(), E::Sid { prefix: "AC", .. }));
        assert!(matches!(new(ACCOUNT, ACCOUNT, SECRET, None).unwrap_err(), E::Sid { prefix: "SK", .. }));
        assert!(matches!(new(ACCOUNT, &KEY[..33], SECRET, None).unwrap_err(), E::Sid { prefix: "SK", .. }));
        assert!(matches!(
            new(ACCOUNT, "SKfedcba9876543210fedcba987654321g", SECRET, None).unwrap_err(),
            E::Sid { prefix: "SK", .. }
        ));
        assert_eq!(new(ACCOUNT, KEY, "", None).unwrap_err(), E::EmptySecret);
        assert!(matches!(new(ACCOUNT, KEY, SECRET, Some(voice(Some(KEY)))).unwrap_err(), E::Sid { prefix: "AP", .. }));
        let params = Some(BTreeMap::from([("k".to_owned(), "v".to_owned())]));
        let orphan = VoiceGrant { outgoing_params: params.clone(), ..voice(None) };
        assert_eq!(new(ACCOUNT, KEY, SECRET, Some(orphan)).unwrap_err(), E::ParamsWithoutApplication);
        let unnamed =
            VoiceGrant { outgoing_params: Some(BTreeMap::from([(String::new(), "v".into())])), ..voice(Some(APP)) };
        assert_eq!(new(ACCOUNT, KEY, SECRET, Some(unnamed)).unwrap_err(), E::EmptyParamName);
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let t = token("alice", 600, None).unwrap();
        assert!(!format!("{t:?}").contains(SECRET));
    }
}
