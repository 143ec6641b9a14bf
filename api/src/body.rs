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
