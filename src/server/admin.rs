//! The admin listener, kept off the inference port: `/metrics` (Prometheus text format),
//! `/healthz` (the process is up) and `/readyz` (a policy is loaded and it knows upstreams).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use crate::gateway::Shared;

pub async fn handle<B>(shared: Arc<Shared>, req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut content_type = "text/plain; charset=utf-8";
    let (status, body) = match req.uri().path() {
        "/metrics" => {
            content_type = "text/plain; version=0.0.4; charset=utf-8";
            (StatusCode::OK, shared.metrics.render())
        }
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => {
            content_type = "application/json";
            let snapshot = shared.snapshot.load();
            let policy = &snapshot.policy;
            let ready = !policy.endpoints().is_empty();
            let body = serde_json::json!({
                "status": if ready { "ready" } else { "not_ready" },
                "policy_version": policy.version(),
                "tenants": policy.tenants().len(),
                "models": policy.models().len(),
                "endpoints": policy.endpoints().len(),
            });
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (status, body.to_string())
        }
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(res)
}
