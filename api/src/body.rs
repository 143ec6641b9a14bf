//! Request bodies: JSON parsed once into the handler's type, every error a problem naming the field by its
//! JSON Pointer (syntax errors are 400, wrong or missing values 422).

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::problem::{FieldError, Problem};

/// Whether the request says its body is of this media type (parameters such as `charset` ignored).
pub fn content_type_is(headers: &axum::http::HeaderMap, media: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(media))
}

/// Parses JSON into `T`, or a problem whose pointer names the bad value.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let parsed = parse_typed(bytes)?;
    if let Some(at) = nul_pointer(bytes) {
        return Err(Problem::field(&at, "must not contain the NUL character (\\u0000)"));
    }
    Ok(parsed)
}

/// Where the first string (or key) holding U+0000 is, if any: PostgreSQL text and jsonb cannot store it,
/// so it is refused as a bad value here rather than failing in the store as a 500. The raw scan keeps
/// the common case to one pass; only a body that has one is parsed again to name the place.
fn nul_pointer(bytes: &[u8]) -> Option<String> {
    // `\u0000` is an escape only after an even number of backslashes (else the first is escaped).
    let escaped = bytes
        .windows(6)
        .enumerate()
        .any(|(i, w)| w == b"\\u0000" && bytes[..i].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 0);
    if !escaped {
        return None;
    }
    fn find(v: &serde_json::Value, at: String) -> Option<String> {
        let step = |k: &str| format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
        match v {
            serde_json::Value::String(s) if s.contains('\0') => Some(at),
            serde_json::Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| find(v, step(&i.to_string()))),
            serde_json::Value::Object(m) => m.iter().find_map(|(k, v)| {
                if k.contains('\0') {
                    Some(step(&k.replace('\0', "\\u0000")))
                } else {
                    find(v, step(k))
                }
            }),
            _ => None,
        }
    }
    find(&serde_json::from_slice(bytes).ok()?, String::new()).or(Some(String::new()))
}

fn parse_typed<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let pointer = pointer(e.path());
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let detail = strip_position(&inner.to_string());
                let field = pointer.trim_start_matches('/').replace('/', ".");
                Problem::validation(
                    if field.is_empty() { detail.clone() } else { format!("{field}: {detail}") },
                    vec![FieldError {
                        pointer: Some(pointer.clone()),
                        field: (!field.is_empty()).then_some(field),
                        row: None,
                        detail,
                    }],
                )
            }
            _ => Problem::bad_request(format!("the body is not valid JSON: {inner}")),
        }
    })
}

/// serde's messages end with " at line 1 column 57"; the pointer says where, better.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde_path_to_error's path as a JSON Pointer (RFC 6901).
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        out.push('/');
        match seg {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } => out.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { variant } => out.push_str(variant),
            Segment::Unknown => out.push('?'),
        }
    }
    out.strip_suffix("/?").map(str::to_string).unwrap_or(out)
}

/// A JSON request body parsed into `T` (`Content-Type: application/json` required).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !content_type_is(req.headers(), "application/json") {
            return Err(Problem::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as application/json",
            ));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The whole body (within the route's size limit).
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<bytes::Bytes, Problem> {
    bytes::Bytes::from_request(req, state).await.map_err(|e| {
        Problem::new(e.status(), if e.status().as_u16() == 413 { "too-large" } else { "bad-request" }, e.body_text())
    })
}
