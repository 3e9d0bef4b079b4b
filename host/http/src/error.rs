//! Errors in Prometheus' HTTP API shape: `{"status":"error","errorType":...,"error":...}`.
//!
//! Every handler returns [`ApiError`] so that clients (Grafana, promtool, vmagent) always get the
//! shape they parse, with the status code that tells them whether to retry: 4xx means "your
//! request is wrong, do not retry", 503 means "try again later", other 5xx means "our bug".

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The `errorType` values Prometheus uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// The request is malformed (400, 413, 415).
    BadData,
    /// The query could not be executed (422).
    Execution,
    /// No such endpoint or object (404).
    NotFound,
    /// The method is not allowed here (405).
    NotAcceptable,
    /// Overloaded or shutting down; retry later (503).
    Unavailable,
    /// The request took too long (503).
    Timeout,
    /// Our fault (500).
    Internal,
    /// No or unknown credentials (401). Not one of Prometheus' own types, which has no
    /// authentication; same shape, so clients show the message.
    Unauthorized,
    /// Valid credentials without the right role or tenant (403).
    Forbidden,
}

impl ErrorType {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::NotFound => "not_found",
            ErrorType::NotAcceptable => "not_acceptable",
            ErrorType::Unavailable => "unavailable",
            ErrorType::Timeout => "timeout",
            ErrorType::Internal => "internal",
            ErrorType::Unauthorized => "unauthorized",
            ErrorType::Forbidden => "forbidden",
        }
    }
}

/// An error answered to an HTTP client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// The Prometheus error type.
    pub error_type: ErrorType,
    /// A message for the user: what was wrong and, where possible, what to do. Never internal
    /// details such as file paths of the server.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }

    /// 400 bad_data.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::BadData, message)
    }

    /// 404 not_found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorType::NotFound, message)
    }

    /// 413 bad_data: the body is larger than allowed.
    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::BadData,
            format!("request body is larger than the limit of {limit} bytes (http.max_request_body)"),
        )
    }

    /// 503 unavailable: the client should retry later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorType::Unavailable, message)
    }

    /// 401 unauthorized: no credentials or unknown ones. The response carries
    /// `WWW-Authenticate` challenges for Basic (so browsers prompt) and Bearer.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorType::Unauthorized, message)
    }

    /// 403 forbidden: the credentials are valid but lack the role or the tenant.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorType::Forbidden, message)
    }

    /// 500 internal: a bug or an unexpected failure on our side.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorType::Internal, message)
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::json!({
            "status": "error",
            "errorType": self.error_type.as_str(),
            "error": self.message,
        })
        .to_string()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let headers = response.headers_mut();
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"strata\", charset=\"UTF-8\""),
            );
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"strata\""),
            );
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.error_type.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_prometheus_shape() {
        let err = ApiError::bad_request("bad \"x\"");
        let value: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
        assert_eq!(value["status"], "error");
        assert_eq!(value["errorType"], "bad_data");
        assert_eq!(value["error"], "bad \"x\"");
    }

    #[test]
    fn unavailable_asks_client_to_retry() {
        let response = ApiError::unavailable("busy").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn unauthorized_challenges_basic_and_bearer() {
        let response = ApiError::unauthorized("who are you").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = response.headers().get_all(header::WWW_AUTHENTICATE).iter().collect();
        assert_eq!(challenges.len(), 2);
        assert!(challenges[0].to_str().unwrap().starts_with("Basic "));
        let forbidden = ApiError::forbidden("no");
        assert!(forbidden.body().contains("\"errorType\":\"forbidden\""));
        assert!(
            !forbidden
                .into_response()
                .headers()
                .contains_key(header::WWW_AUTHENTICATE)
        );
    }
}
