//! The one place a refusal becomes an HTTP response: status, OpenAI-shaped JSON body
//! (`{"error":{"message","type","param","code"}}`) and the `x-customs-reason` header. Rendering has
//! no side effects and never includes upstream or internal detail.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};

use crate::auth::AuthError;
use crate::gateway::Body;
use crate::peek::PeekError;
use crate::policy::Denial;
use crate::proxy::UpstreamError;

pub const REASON_HEADER: &str = "x-customs-reason";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{}", .0.message())]
    Policy(Denial),
    #[error(transparent)]
    Body(#[from] PeekError),
    #[error("{message}")]
    InvalidRequest { message: &'static str, param: Option<&'static str> },
    #[error("The request body is larger than this gateway accepts.")]
    TooLarge,
    #[error("The request body was not received in time.")]
    BodyTimeout,
    #[error("Unknown request URL.")]
    RouteNotFound,
    #[error("This method is not allowed on this URL.")]
    MethodNotAllowed,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::Policy(d) => d.status(),
            Self::Body(_) | Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Upstream(UpstreamError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Auth(_) => "invalid_api_key",
            Self::Policy(d) => d.code(),
            Self::Body(_) | Self::InvalidRequest { .. } => "invalid_request",
            Self::TooLarge => "request_too_large",
            Self::BodyTimeout => "request_timeout",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Upstream(UpstreamError::Timeout) => "upstream_timeout",
            Self::Upstream(_) => "upstream_unavailable",
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Policy(d) => d.error_type(),
            Self::Upstream(_) => "upstream_error",
            _ => "invalid_request_error",
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            Self::Policy(Denial::ModelNotFound | Denial::ModelNotAllowed | Denial::ComputeThresholdExceeded) => {
                Some("model")
            }
            Self::Body(e) => e.param(),
            Self::InvalidRequest { param, .. } => *param,
            _ => None,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": self.error_type(),
                "param": self.param(),
                "code": self.code(),
            }
        });
        let mut res = Response::new(Either::Left(Full::new(Bytes::from(body.to_string()))));
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(REASON_HEADER, HeaderValue::from_static(self.code()));
        if matches!(self, Self::Auth(_)) {
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}
