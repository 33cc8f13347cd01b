//! `ApiError` as an HTTP response: the contract's status and `{"error":{"code","message"}}`
//! body. A cause the error carries is logged here, once, as the request's failure is handled.

use crate::error::ApiError;
use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use parley_protocol::{ErrorBody, ErrorDetail};

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(cause) = &self.cause {
            tracing::warn!(error = %cause, code = self.code.as_str(), "request failed");
        }
        let mut r = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after_secs {
            r.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        r.json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        })
    }
}

/// A full disk is the node's condition, not a fault: `unavailable`, retry later.
pub(super) fn io_error(e: std::io::Error) -> ApiError {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    let mut err = match e.kind() {
        StorageFull | QuotaExceeded => {
            ApiError::unavailable("the server's storage is full; retry later")
        }
        _ => ApiError::internal(&e),
    };
    err.cause = Some(e.to_string());
    err
}
