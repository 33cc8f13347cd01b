//! The one error type that crosses the boundary to clients.
//!
//! An `ApiError` carries a contract error code and a message that is safe to show. A failure
//! inside the server (storage, I/O) keeps its cause beside it, never shown to clients, so that
//! whoever finally handles the error (the HTTP layer rendering a response, a session sending an
//! `error` frame, a node answering a forwarded request) logs it exactly once. Nothing here
//! logs. It is plain data (serde), so it crosses the cluster bus as it is; the cause stays on
//! the node where it happened.
//!
//! The HTTP rendering (`actix_web::ResponseError`) lives in `gateway::error`.

use crate::storage::StoreError;
use parley_protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// What actually went wrong, for the log; never sent to a client or another node.
    #[serde(skip)]
    pub cause: Option<String>,
    /// v1.1: for `rate_limited` over HTTP, the seconds to send as `Retry-After`.
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            cause: None,
            retry_after_secs: None,
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, m)
    }
    pub fn too_large(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, m)
    }
    pub fn rate_limited(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::RateLimited, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, m)
    }
    /// v1.1: `rate_limited` with the time after which a retry may succeed (HTTP 429 with
    /// `Retry-After`, whole seconds, at least 1).
    pub fn retry_after(m: impl Into<String>, after: std::time::Duration) -> Self {
        ApiError {
            retry_after_secs: Some(after.as_secs_f64().ceil().max(1.0) as u64),
            ..Self::rate_limited(m)
        }
    }
    /// A server fault: the client sees only "internal error"; `cause` is for the log.
    pub fn internal(cause: impl fmt::Display) -> Self {
        ApiError {
            code: ErrorCode::Internal,
            message: "internal error".into(),
            cause: Some(cause.to_string()),
            retry_after_secs: None,
        }
    }

    /// Takes the cause out for logging; the error left behind is safe to pass on.
    pub fn take_cause(&mut self) -> Option<String> {
        self.cause.take()
    }

    /// Logs the cause, if any, once; call where the error is finally handled.
    pub fn log_cause(&mut self, context: &str) {
        if let Some(cause) = self.take_cause() {
            match self.code {
                ErrorCode::Internal => tracing::error!(error = %cause, "{context}"),
                _ => tracing::warn!(error = %cause, code = self.code.as_str(), "{context}"),
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("not found"),
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::Unavailable(m) => ApiError {
                cause: Some(m),
                ..ApiError::unavailable("storage unavailable, retry")
            },
            StoreError::Internal(m) => ApiError::internal(m),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
