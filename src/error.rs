//! The one place a refusal becomes an HTTP response: status, JSON body in the shape the client's
//! API uses (OpenAI's `{"error":{"message","type","param","code"}}`, or on Anthropic's routes
//! `{"type":"error","error":{"type","message","code"}}`), the `x-customs-reason` header, and for
//! rate limits `Retry-After` and OpenAI's `x-ratelimit-*` headers. Rendering has no side effects
//! and never includes upstream or internal detail.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::auth::AuthError;
use crate::limits::{Headroom, RateHeadroom, RateLimited};
use crate::peek::PeekError;
use crate::policy::Denial;
use crate::proxy::UpstreamError;
use crate::reason::Reason;

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
    #[error("The request's headers are larger, or more numerous, than this gateway accepts.")]
    HeaderTooLarge,
    #[error("The request body was not received in time.")]
    BodyTimeout,
    #[error("Unknown request URL.")]
    RouteNotFound,
    #[error("This method is not allowed on this URL.")]
    MethodNotAllowed,
    #[error("This model does not serve this operation (its `operations` in the gateway's models.toml).")]
    OperationNotSupported,
    /// The id is unknown, or bound to another tenant: the two look the same.
    #[error("No response with this id was found.")]
    ResponseNotFound { param: Option<&'static str> },
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream answered with an error status: the client gets that status and this error,
    /// not the upstream's body (which the gateway logs, redacted).
    #[error("The model endpoint answered with an error (HTTP {}); the gateway logged its answer.", .status.as_u16())]
    UpstreamStatus { status: StatusCode, upstream_request_id: Option<HeaderValue>, retry_after: Option<HeaderValue> },
    #[error("The gateway cannot record decisions right now, so it is not making any. Retry later.")]
    AuditUnavailable,
    #[error("The gateway holds as many request bodies as it may; retry shortly.")]
    Overloaded,
    #[error(
        "This gateway replica cannot confirm the cluster's kill switch, so it is not serving this tenant. Retry later."
    )]
    ClusterUnavailable,
    /// The request's task panicked: a bug, answered rather than left hanging.
    #[error("The gateway failed on this request; the failure is logged. Retry later.")]
    Internal,
}

impl GatewayError {
    pub fn reason(&self) -> Reason {
        match self {
            Self::Auth(AuthError::CertificateRequired) => Reason::ClientCertificateRequired,
            Self::Auth(_) => Reason::InvalidApiKey,
            Self::Policy(d) => d.reason(),
            Self::Body(_) | Self::InvalidRequest { .. } => Reason::InvalidRequest,
            Self::TooLarge => Reason::RequestTooLarge,
            Self::HeaderTooLarge => Reason::HeaderTooLarge,
            Self::BodyTimeout => Reason::RequestTimeout,
            Self::RouteNotFound => Reason::RouteNotFound,
            Self::MethodNotAllowed => Reason::MethodNotAllowed,
            Self::OperationNotSupported => Reason::OperationNotSupported,
            Self::ResponseNotFound { .. } => Reason::ResponseNotFound,
            Self::RateLimited(r) => r.kind.reason(),
            Self::Upstream(UpstreamError::Timeout) => Reason::UpstreamTimeout,
            Self::Upstream(UpstreamError::Overloaded { .. }) => Reason::UpstreamOverloaded,
            Self::Upstream(_) => Reason::UpstreamUnavailable,
            Self::UpstreamStatus { .. } => Reason::UpstreamError,
            Self::AuditUnavailable => Reason::AuditUnavailable,
            Self::Overloaded => Reason::Overloaded,
            Self::ClusterUnavailable => Reason::ClusterUnavailable,
            Self::Internal => Reason::InternalError,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::UpstreamStatus { status, .. } => *status,
            _ => self.reason().status(),
        }
    }

    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        self.reason().as_str()
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Policy(d) => d.error_type(),
            Self::RateLimited(_) => "rate_limit_error",
            Self::AuditUnavailable
            | Self::ClusterUnavailable
            | Self::Overloaded
            | Self::Upstream(UpstreamError::Overloaded { .. }) => "service_unavailable",
            Self::Upstream(_) | Self::UpstreamStatus { .. } => "upstream_error",
            Self::Internal => "server_error",
            _ => "invalid_request_error",
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            Self::Policy(Denial::ModelNotFound | Denial::ModelNotAllowed | Denial::ComputeThresholdExceeded)
            | Self::OperationNotSupported => Some("model"),
            Self::Body(e) => e.param(),
            Self::InvalidRequest { param, .. } | Self::ResponseNotFound { param } => *param,
            _ => None,
        }
    }

    /// The response in OpenAI's error shape, or with `anthropic` in Anthropic's.
    pub fn into_response(self, anthropic: bool) -> Response<Full<Bytes>> {
        let body = if anthropic {
            serde_json::json!({
                "type": "error",
                "error": {
                    "type": anthropic_type(self.status()),
                    "message": self.to_string(),
                    "code": self.code(),
                }
            })
        } else {
            serde_json::json!({
                "error": {
                    "message": self.to_string(),
                    "type": self.error_type(),
                    "param": self.param(),
                    "code": self.code(),
                }
            })
        };
        let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(REASON_HEADER, HeaderValue::from_static(self.code()));
        match &self {
            Self::Auth(_) if !anthropic => {
                h.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited(r) => {
                let secs = r.retry_after.as_secs() + u64::from(r.retry_after.subsec_nanos() > 0);
                h.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
                h.insert(
                    HeaderName::from_static("retry-after-ms"),
                    HeaderValue::from(r.retry_after.as_millis() as u64),
                );
                rate_limit_headers(h, &r.headroom, true);
            }
            Self::AuditUnavailable | Self::ClusterUnavailable | Self::Overloaded => {
                h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::Upstream(UpstreamError::Overloaded { retry_after }) => {
                h.insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            Self::UpstreamStatus { upstream_request_id, retry_after, .. } => {
                if let Some(id) = upstream_request_id {
                    h.insert(HeaderName::from_static("x-upstream-request-id"), id.clone());
                }
                if let Some(after) = retry_after {
                    h.insert(RETRY_AFTER, after.clone());
                }
            }
            _ => {}
        }
        res
    }
}

/// Anthropic's `error.type` for a status, which its SDKs map to their typed errors.
pub fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// OpenAI's `x-ratelimit-*` headers for the limits a tenant has. Successful responses carry
/// limit and remaining; refusals also carry the reset times.
pub fn rate_limit_headers(h: &mut HeaderMap, headroom: &RateHeadroom, with_reset: bool) {
    let mut put = |w: &Option<Headroom>, names: [HeaderName; 3]| {
        if let Some(w) = w {
            let [limit, remaining, reset] = names;
            h.insert(limit, HeaderValue::from(w.limit));
            h.insert(remaining, HeaderValue::from(w.remaining));
            if with_reset {
                if let Ok(v) = HeaderValue::try_from(openai_duration(w.reset)) {
                    h.insert(reset, v);
                }
            }
        }
    };
    put(&headroom.requests, [LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS]);
    put(&headroom.tokens, [LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS]);
}

/// Durations the way OpenAI writes them in reset headers: `120ms`, `1s`, `6m0s`, `1h2m3s`.
pub fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shapes_openai_and_anthropic() {
        let body = |res: Response<Full<Bytes>>| {
            let (head, body) = res.into_parts();
            let bytes = full_bytes(body);
            (head, serde_json::from_slice::<serde_json::Value>(&bytes).unwrap())
        };
        let (head, openai) = body(GatewayError::Policy(Denial::ModelNotAllowed).into_response(false));
        assert_eq!(head.status, StatusCode::FORBIDDEN);
        assert_eq!(head.headers[REASON_HEADER], "model_not_allowed");
        assert_eq!(openai["error"]["code"], "model_not_allowed");
        assert_eq!(openai["error"]["param"], "model");
        let (head, anthropic) = body(GatewayError::Policy(Denial::ModelNotAllowed).into_response(true));
        assert_eq!(head.headers[REASON_HEADER], "model_not_allowed");
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "permission_error");
        assert_eq!(anthropic["error"]["code"], "model_not_allowed");
        let kinds = [
            (GatewayError::Auth(AuthError::Unknown), "authentication_error"),
            (GatewayError::ResponseNotFound { param: None }, "not_found_error"),
            (GatewayError::TooLarge, "request_too_large"),
            (GatewayError::OperationNotSupported, "invalid_request_error"),
            (GatewayError::Upstream(UpstreamError::Timeout), "timeout_error"),
            (GatewayError::AuditUnavailable, "api_error"),
        ];
        for (e, want) in kinds {
            let (head, b) = body(e.into_response(true));
            assert_eq!(b["error"]["type"], want, "{}", head.status);
            assert!(head.headers.get(WWW_AUTHENTICATE).is_none());
        }
    }

    /// A `Full` body's bytes, without a runtime.
    fn full_bytes(body: Full<Bytes>) -> Bytes {
        use http_body::Body as _;
        let mut body = std::pin::pin!(body);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match body.as_mut().poll_frame(&mut cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
            _ => Bytes::new(),
        }
    }

    #[test]
    fn openai_duration_formats_like_openai() {
        let cases =
            [(12, "12ms"), (999, "999ms"), (1000, "1s"), (1200, "2s"), (360_000, "6m0s"), (3_723_000, "1h2m3s")];
        for (ms, want) in cases {
            assert_eq!(openai_duration(Duration::from_millis(ms)), want);
        }
    }
}
