//! Forwarding to the upstream: an HTTP/1.1 client over rustls whose pooled connections are driven
//! by the request's own task (`client`), request headers rewritten (client credentials and
//! hop-by-hop headers out, the upstream's credential in), the original body bytes sent
//! unchanged, and the response streamed back as it arrives, frames already read forwarded
//! together.
//!
//! Which endpoint a request goes to, and which are out of rotation, is `balance`'s. A request is
//! sent again, once and to another endpoint, only when no connection could be made, so it never
//! reached an upstream; anything after that is answered as it is.

mod balance;
pub mod client;
mod coalesce;
mod headers;
pub mod metered;
mod pools;
pub mod redact;

use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;

use crate::config::{OutlierSettings, UpstreamSettings};
use crate::endpoint::Endpoint;
use crate::ids::EndpointIdx;
use crate::route::{Operation, Stored};
use crate::telemetry::{Handles, UpstreamErrorKind};
use balance::InFlight;
use client::{Client, Connector, Dial, SendError, UpstreamBody};
use metered::StreamTimers;

pub use headers::{request_headers, response_headers};
pub use pools::Pools;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("The model endpoint is unavailable.")]
    Unavailable,
    #[error("The model endpoint did not answer in time.")]
    Timeout,
    #[error("The model endpoint is unavailable.")]
    Rejected,
    /// Every endpoint that may serve the request is ejected or at its in-flight cap.
    #[error("Every endpoint for this model is failing or at capacity; retry after the time in Retry-After.")]
    Overloaded { retry_after: Duration },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("upstream.ca_file: {0}")]
    Ca(#[from] crate::tls::TlsError),
}

/// Where a request may go, in order of preference, with the tables to reach it: the endpoints
/// and pools of the snapshot it was decided under.
pub struct Targets<'a> {
    pub endpoints: &'a [EndpointIdx],
    pub table: &'a [Endpoint],
    pub pools: &'a Pools,
    pub metrics: &'a Handles,
}

/// What a request is sent upstream as: an operation, or an action on a stored response.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamPath<'a> {
    Operation(Operation),
    Stored(Stored, &'a str),
}

impl From<Operation> for UpstreamPath<'_> {
    fn from(op: Operation) -> Self {
        Self::Operation(op)
    }
}

/// An upstream response head, with where and when it came from.
pub struct Forwarded {
    pub endpoint: EndpointIdx,
    /// Whether the body sent was the one asking for usage.
    pub asked: bool,
    pub response: Response<UpstreamBody>,
    pub started: std::time::Instant,
    /// From sending the request (the first attempt's) to the response head.
    pub first_byte: Duration,
}

pub struct Upstreams {
    client: Client,
    first_byte_timeout: Duration,
    stream_timers: StreamTimers,
    max_in_flight: u32,
    outlier: OutlierSettings,
}

// === impl Upstreams ===

impl Upstreams {
    pub fn new(settings: &UpstreamSettings) -> Result<Self, ClientError> {
        let roots = settings.ca_file.as_deref().map(crate::tls::roots).transpose()?;
        Ok(Self::with_connector(Connector::net(settings.connect_timeout, roots)?, settings))
    }

    /// Upstreams reached through `dial` instead of the network, whatever their URLs say: for
    /// running the whole request path in one process (the in-process benchmark).
    pub fn in_memory(dial: Dial, settings: &UpstreamSettings) -> Self {
        Self::with_connector(Connector::Memory(dial), settings)
    }

    fn with_connector(connector: Connector, settings: &UpstreamSettings) -> Self {
        Self {
            client: Client::new(connector, settings.pool_idle_timeout),
            first_byte_timeout: settings.first_byte_timeout,
            stream_timers: StreamTimers { idle: settings.stream_idle_timeout, max: settings.stream_max_duration },
            max_in_flight: settings.max_in_flight,
            outlier: settings.outlier.clone(),
        }
    }

    /// How long a streamed response from `endpoint` may go quiet, and run: its own timers where
    /// it sets them, else the gateway's.
    pub fn stream_timers(&self, endpoint: Option<&Endpoint>) -> StreamTimers {
        StreamTimers {
            idle: endpoint.and_then(|e| e.stream_idle_timeout).unwrap_or(self.stream_timers.idle),
            max: endpoint.and_then(|e| e.stream_max_duration).unwrap_or(self.stream_timers.max),
        }
    }

    /// Closes pooled connections idle for longer than the configured timeout; run periodically.
    pub fn evict_idle(&self, pools: &Pools) {
        for pool in pools.iter() {
            pool.evict(self.client.idle_timeout());
        }
    }

    /// Sends the request to the endpoint `balance` picks, and once more to another if no
    /// connection could be made to the first (so none of it reached an upstream), all within one
    /// deadline for the upstream's response head: `asking` (the body asking for a stream's usage)
    /// where the endpoint takes it, else `body`.
    pub async fn forward(
        &self,
        targets: Targets<'_>,
        target: UpstreamPath<'_>,
        parts: &Parts,
        body: Bytes,
        asking: Option<Bytes>,
    ) -> Result<Forwarded, UpstreamError> {
        let started = std::time::Instant::now();
        let deadline = Instant::from_std(started) + self.first_byte_timeout;
        let metrics = targets.metrics;
        let mut tried = None;
        loop {
            let (e, mut held) =
                match balance::pick(targets.endpoints, |e| targets.pools.health(e), tried, self.max_in_flight) {
                    Ok(picked) => picked,
                    // The retry found nothing else: the first attempt's failure stands.
                    Err(_) if tried.is_some() => return Err(UpstreamError::Unavailable),
                    Err(none) => return Err(UpstreamError::Overloaded { retry_after: none.retry_after }),
                };
            let (Some(ep), Some(pool)) = (targets.table.get(e as usize), targets.pools.get(e)) else {
                return Err(UpstreamError::Unavailable);
            };
            let handles = metrics.endpoint(e);
            let failed = |held: &mut InFlight, kind| {
                if let Some(h) = handles {
                    h.error(kind);
                }
                if held.failed(&self.outlier) {
                    tracing::warn!(endpoint = %ep.url, "Endpoint ejected after failing; it is probed again later.");
                    if let Some(h) = handles {
                        h.ejected(true);
                    }
                }
            };
            let (sent, asked) = match &asking {
                Some(a) if ep.ask_stream_usage => (a.clone(), true),
                _ => (body.clone(), false),
            };
            let mut req = Request::new(Full::new(sent));
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = match target {
                UpstreamPath::Operation(op) => ep.path(op).clone().into(),
                UpstreamPath::Stored(action, id) => match ep.stored_path(action, id, parts.uri.query()) {
                    Some(path) => path.into(),
                    None => return Err(UpstreamError::Unavailable),
                },
            };
            *req.headers_mut() = request_headers(&parts.headers, ep.host(), ep.credential());
            let res = match tokio::time::timeout_at(deadline, self.client.send(pool, ep.origin(), req)).await {
                Err(_) => {
                    failed(&mut held, UpstreamErrorKind::Timeout);
                    tracing::warn!(endpoint = %ep.url, "Upstream response head timed out.");
                    return Err(UpstreamError::Timeout);
                }
                Ok(Err(err @ SendError::Connect(_))) => {
                    failed(&mut held, UpstreamErrorKind::Connect);
                    tracing::warn!(endpoint = %ep.url, error = %err, "Upstream connect failed.");
                    if tried.is_some() {
                        return Err(UpstreamError::Unavailable);
                    }
                    tried = Some(e);
                    continue;
                }
                Ok(Err(err)) => {
                    failed(&mut held, UpstreamErrorKind::Protocol);
                    tracing::warn!(endpoint = %ep.url, error = %err, "Upstream request failed.");
                    return Err(UpstreamError::Unavailable);
                }
                Ok(Ok(res)) => res,
            };
            let first_byte = started.elapsed();
            if let Some(h) = handles {
                h.first_byte.observe(first_byte.as_secs_f64());
            }
            if matches!(res.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                // The client's key was checked by us; an upstream auth failure is ours to fix
                // and must not look to the client like its own key was wrong. An endpoint that
                // refuses the gateway's credential fails every request, so it counts to ejection.
                failed(&mut held, UpstreamErrorKind::Auth);
                tracing::error!(endpoint = %ep.url, status = %res.status(), "Upstream refused the gateway's credentials.");
                return Err(UpstreamError::Rejected);
            }
            if res.status().is_server_error() {
                failed(&mut held, UpstreamErrorKind::Http5xx);
            } else if held.succeeded() {
                tracing::info!(endpoint = %ep.url, "Ejected endpoint answered its probe; back in rotation.");
                if let Some(h) = handles {
                    h.ejected(false);
                }
            }
            let (mut head, mut body) = res.into_parts();
            body.hold(held);
            response_headers(&mut head.headers);
            return Ok(Forwarded {
                endpoint: e,
                asked,
                response: Response::from_parts(head, body),
                started,
                first_byte,
            });
        }
    }
}
