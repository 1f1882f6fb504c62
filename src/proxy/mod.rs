//! Forwarding to the upstream: a pooled hyper client over rustls, request headers rewritten
//! (client credentials and hop-by-hop headers out, the upstream's credential in), the original
//! body bytes sent unchanged, and the response streamed back frame by frame as it arrives.
//!
//! Retries happen only when a connection could not be made, so the request never reached an
//! upstream; anything after that is answered as it is.

mod coalesce;
mod headers;
pub mod metered;

use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::telemetry::{Handles, UpstreamErrorKind};

use crate::config::raw::UpstreamSection;
use crate::policy::{EndpointIdx, Policy};
use crate::route::Operation;

pub use headers::{request_headers, response_headers};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("The model endpoint is unavailable.")]
    Unavailable,
    #[error("The model endpoint did not answer in time.")]
    Timeout,
    #[error("The model endpoint is unavailable.")]
    Rejected,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// An upstream response head, with where and when it came from.
pub struct Forwarded {
    pub endpoint: EndpointIdx,
    pub response: Response<Incoming>,
    pub started: std::time::Instant,
    /// From sending the request (the first attempt's) to the response head.
    pub first_byte: Duration,
}

pub struct Upstreams {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    first_byte_timeout: Duration,
}

// === impl Upstreams ===

impl Upstreams {
    pub fn new(settings: &UpstreamSection) -> Result<Self, ClientError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let https = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Self { client, first_byte_timeout: settings.first_byte_timeout })
    }

    /// Sends the request to the first endpoint that accepts a connection, within one deadline
    /// for the upstream's response head.
    pub async fn forward(
        &self,
        policy: &Policy,
        metrics: &Handles,
        endpoints: &[EndpointIdx],
        op: Operation,
        parts: &Parts,
        body: Bytes,
    ) -> Result<Forwarded, UpstreamError> {
        let started = std::time::Instant::now();
        let deadline = Instant::now() + self.first_byte_timeout;
        for &e in endpoints {
            let Some(ep) = policy.endpoint(e) else { continue };
            let error = |kind| {
                if let Some(h) = metrics.endpoint(e) {
                    h.error(kind);
                }
            };
            let mut req = Request::new(Full::new(body.clone()));
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = ep.uri(op);
            *req.headers_mut() = request_headers(&parts.headers, ep.credential());
            let res = match tokio::time::timeout_at(deadline, self.client.request(req)).await {
                Err(_) => {
                    error(UpstreamErrorKind::Timeout);
                    tracing::warn!(endpoint = %ep.url, "Upstream response head timed out.");
                    return Err(UpstreamError::Timeout);
                }
                Ok(Err(err)) if err.is_connect() => {
                    error(UpstreamErrorKind::Connect);
                    tracing::warn!(endpoint = %ep.url, error = %err, "Upstream connect failed; trying the next endpoint.");
                    continue;
                }
                Ok(Err(err)) => {
                    error(UpstreamErrorKind::Protocol);
                    tracing::warn!(endpoint = %ep.url, error = %err, "Upstream request failed.");
                    return Err(UpstreamError::Unavailable);
                }
                Ok(Ok(res)) => res,
            };
            let first_byte = started.elapsed();
            if let Some(h) = metrics.endpoint(e) {
                h.first_byte.observe(first_byte.as_secs_f64());
            }
            if matches!(res.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                // The client's key was checked by us; an upstream auth failure is ours to fix
                // and must not look to the client like its own key was wrong.
                error(UpstreamErrorKind::Auth);
                tracing::error!(endpoint = %ep.url, status = %res.status(), "Upstream refused the gateway's credentials.");
                return Err(UpstreamError::Rejected);
            }
            if res.status().is_server_error() {
                error(UpstreamErrorKind::Http5xx);
            }
            let (mut head, body) = res.into_parts();
            response_headers(&mut head.headers);
            return Ok(Forwarded { endpoint: e, response: Response::from_parts(head, body), started, first_byte });
        }
        Err(UpstreamError::Unavailable)
    }
}
