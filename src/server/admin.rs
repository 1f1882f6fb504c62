//! The admin listener, kept off the inference port: `/healthz` (the process is up) and `/readyz`
//! (a policy is loaded and it knows at least one upstream).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use crate::gateway::Shared;

pub async fn handle<B>(shared: Arc<Shared>, req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => {
            let policy = shared.policy.load();
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
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    Ok(res)
}
