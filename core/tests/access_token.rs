//! Our Access Tokens against Twilio's official helper library for Python (`twilio` from PyPI, unmodified):
//! for the same inputs and the same clock (`time.time` patched to a fixed instant) the JWT strings must be
//! identical, and PyJWT must verify ours with the API key secret. Needs `target/pyenv/bin/python`
//! (scripts/test makes it) or a `python3` that can import `twilio`; without either the test says it
//! skipped, or fails when `CI` is set.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dialer_core::twilio::access_token::{AccessToken, VoiceGrant};
use secrecy::SecretString;
use serde_json::{json, Value};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const KEY: &str = "SK00000000111111112222222233333333";
const SECRET: &str = "0123456789abcdefghijklmnopqrstuv";
const APP: &str = "APabcdefabcdefabcdefabcdefabcdef12";
const NOW: i64 = 1_765_000_000;

/// Builds each case with twilio-python and prints, per case, its JWT and PyJWT's decoding (signature
/// verified) of both its JWT and ours.
const SCRIPT: &str = r#"
import json, sys, time
cases = json.loads(sys.argv[1])
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant
import jwt as pyjwt

def decoded(token, secret):
    options = {"verify_exp": False, "verify_nbf": False}
    return {
        "header": pyjwt.get_unverified_header(token),
        "claims": pyjwt.decode(token, secret, algorithms=["HS256"], options=options),
    }

out = []
for c in cases:
    time.time = lambda: c["now"]
    token = AccessToken(c["account_sid"], c["api_key_sid"], c["api_key_secret"], identity=c["identity"], ttl=c["ttl"])
    v = c["voice"]
    if v is not None:
        token.add_grant(VoiceGrant(
            incoming_allow=v["incoming_allow"],
            outgoing_application_sid=v["outgoing_application_sid"],
            outgoing_application_params=v["outgoing_params"],
        ))
    theirs = token.to_jwt()
    out.append({
        "jwt": theirs,
        "theirs": decoded(theirs, c["api_key_secret"]),
        "ours": decoded(c["ours"], c["api_key_secret"]),
    })
print(json.dumps(out))
"#;

struct Case {
    identity: &'static str,
    ttl: u64,
    voice: Option<VoiceGrant>,
}

fn cases() -> Vec<Case> {
    let incoming = |app: Option<&str>| VoiceGrant {
        incoming_allow: true,
        outgoing_application_sid: app.map(str::to_owned),
        outgoing_params: None,
    };
    let params = BTreeMap::from([
        ("campaign".to_owned(), "Zoë's \"spring\" list 東京 😀".to_owned()),
        ("agent_id".to_owned(), "42".to_owned()),
        ("path".to_owned(), "a/b\\c\nd".to_owned()),
    ]);
    vec![
        Case { identity: "alice", ttl: 600, voice: Some(incoming(Some(APP))) },
        Case { identity: "alice", ttl: 600, voice: Some(incoming(None)) },
        Case { identity: "bob.smith@example.com", ttl: 3600, voice: Some(incoming(Some(APP))) },
        Case { identity: "op_7-night.shift", ttl: 86_400, voice: Some(incoming(None)) },
        Case {
            identity: "carol",
            ttl: 1,
            voice: Some(VoiceGrant {
                incoming_allow: false,
                outgoing_application_sid: Some(APP.into()),
                outgoing_params: Some(params),
            }),
        },
        Case { identity: "dave", ttl: 300, voice: Some(VoiceGrant::default()) },
        Case { identity: "erin", ttl: 300, voice: None },
    ]
}

fn token(case: &Case) -> AccessToken {
    AccessToken::new(
        ACCOUNT,
        KEY,
        SecretString::from(SECRET),
        case.identity,
        Duration::from_secs(case.ttl),
        case.voice.clone(),
    )
    .unwrap()
}

fn decode_segment(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url without padding")).expect("JSON")
}

#[test]
fn tokens_are_byte_for_byte_those_of_the_official_python_library() {
    let Some(python) = testkit::twilio_python() else { return };
    let cases = cases();
    let input: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "now": NOW,
                "account_sid": ACCOUNT,
                "api_key_sid": KEY,
                "api_key_secret": SECRET,
                "identity": c.identity,
                "ttl": c.ttl,
                "voice": c.voice.as_ref().map(|v| json!({
                    "incoming_allow": v.incoming_allow,
                    "outgoing_application_sid": v.outgoing_application_sid,
                    // serde_json writes map keys sorted, as our BTreeMap iterates them.
                    "outgoing_params": v.outgoing_params,
                })),
                "ours": token(c).to_jwt(NOW),
            })
        })
        .collect();
    let out = Command::new(&python)
        .args(["-c", SCRIPT, &serde_json::to_string(&input).unwrap()])
        .output()
        .expect("python runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Python script failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let results: Vec<Value> = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(results.len(), cases.len());

    for (case, result) in cases.iter().zip(&results) {
        let ours = token(case).to_jwt(NOW);
        let theirs = result["jwt"].as_str().unwrap();
        assert_eq!(ours, theirs, "identity {:?}, ttl {}: JWTs differ", case.identity, case.ttl);

        // The same, decoded: by PyJWT (which verified both signatures) and by us.
        assert_eq!(result["ours"], result["theirs"], "identity {:?}", case.identity);
        let parts: Vec<&str> = ours.split('.').collect();
        assert_eq!(parts.len(), 3);
        let (header, claims) = (decode_segment(parts[0]), decode_segment(parts[1]));
        assert_eq!(header, result["theirs"]["header"]);
        assert_eq!(claims, result["theirs"]["claims"]);
        assert_eq!(header, json!({"alg": "HS256", "cty": "twilio-fpa;v=1", "typ": "JWT"}));

        assert_eq!(claims["exp"], json!(NOW + case.ttl as i64));
        assert_eq!(claims["nbf"], json!(NOW));
        assert_eq!(claims["iss"], json!(KEY));
        assert_eq!(claims["sub"], json!(ACCOUNT));
        assert_eq!(claims["jti"], json!(format!("{KEY}-{NOW}")));
        assert_eq!(claims["grants"]["identity"], json!(case.identity));
    }
}
