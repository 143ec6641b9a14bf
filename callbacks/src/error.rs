use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// How a request fails, as Twilio sees it: a status and no detail. Internal errors are logged here, once.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad signature or token, or a CallSid that is not the attempt's: nothing was written.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<dialer_core::store::StoreError> for ApiError {
    fn from(e: dialer_core::store::StoreError) -> Self {
        ApiError::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Forbidden(why) => {
                tracing::warn!(reason = why, "callback refused");
                StatusCode::FORBIDDEN
            }
            ApiError::BadRequest(why) => {
                tracing::warn!(reason = %why, "bad callback");
                StatusCode::BAD_REQUEST
            }
            ApiError::NotFound(what) => {
                tracing::warn!(what = %what, "callback for an unknown attempt");
                StatusCode::NOT_FOUND
            }
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "callback failed");
                dialer_core::metrics::Metrics::global().internal_error("callbacks");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        status.into_response()
    }
}
