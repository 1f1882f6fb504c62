//! The inference service: route, authenticate, read and peek the body, decide, forward. It loads
//! the policy snapshot once per request and uses that same version for every phase.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use tower::Service;

use crate::admin::AdminState;
use crate::audit::{Audit, DecisionRecord, OpenRecord, RequestIdBuf, RuleRef, Slot};
use crate::auth;
use crate::error::{self, GatewayError};
use crate::limits::Demand;
use crate::peek::{self, Peeked};
use crate::policy::{Day, DayClock, Denial, Policy, TenantIdx, Verdict};
use crate::proxy::metered::{Metered, Settlement, UsageScanner};
use crate::proxy::{Forwarded, Upstreams};
use crate::reason::Reason;
use crate::request_id;
use crate::route::{self, Operation, Route};
use crate::snapshot::Snapshot;
use crate::telemetry::Metrics;

/// Response bodies: a canned body from the gateway, or the upstream's, streamed through.
pub type Body = Either<Full<Bytes>, Metered>;

pub const PURPOSE_HEADER: HeaderName = HeaderName::from_static("x-customs-purpose");
pub const POLICY_VERSION_HEADER: HeaderName = HeaderName::from_static("x-customs-policy-version");

/// State shared by every request: the swappable snapshot, the upstream client, limits, the
/// audit trail, and what the admin side needs to swap snapshots.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub upstreams: Upstreams,
    pub max_body_bytes: u64,
    pub body_read_timeout: Duration,
    /// The day the policy decides as of: the real one unless `serve --at` fixed it.
    pub day: DayClock,
    pub audit: Audit,
    pub admin: AdminState,
}

#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

// === impl Gateway ===

impl<B> Service<Request<B>> for Gateway
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        Box::pin(handle(self.shared.clone(), req))
    }
}

/// What the audit record, access log and metrics say about a request, filled in as phases
/// complete.
#[derive(Default)]
struct Trail {
    tenant: Option<TenantIdx>,
    model: Option<u32>,
    endpoint: Option<u32>,
    rule: Option<RuleRef>,
    /// The name the client sent, kept only when it did not resolve.
    requested_model: Option<Box<str>>,
    /// Kept only when the client stated one.
    purpose: Option<Box<str>>,
    /// The upstream's time to first byte, which is not the gateway's overhead.
    upstream_first_byte: Option<Duration>,
    /// The request's place in the audit trail, until the record is handed over.
    slot: Option<Slot>,
}

async fn handle<B>(shared: Arc<Shared>, req: Request<B>) -> Result<Response<Body>, Infallible>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let time = SystemTime::now();
    let snapshot = shared.snapshot.load_full();
    let metrics = &snapshot.metrics;
    metrics.in_flight.inc();
    let (parts, body) = req.into_parts();
    let request_id = RequestIdBuf::new(parts.headers.get(request_id::HEADER).map_or(&[][..], HeaderValue::as_bytes));
    let mut trail = Trail { slot: shared.audit.reserve(), ..Trail::default() };
    let result = if trail.slot.is_none() {
        Err(GatewayError::AuditUnavailable)
    } else {
        serve(&shared, &snapshot, &parts, body, &mut trail, (started, time, request_id)).await
    };
    let (mut res, reason) = match result {
        // The metered body settles the rest (duration, tokens, in-flight) when it ends.
        Ok(res) => (res, Reason::Allowed),
        Err(e) => {
            let reason = e.reason();
            if let GatewayError::RateLimited(r) = &e {
                metrics.rejection(trail.tenant, r.kind);
            }
            metrics.duration(reason).observe(started.elapsed().as_secs_f64());
            metrics.in_flight.dec();
            (e.into_response(), reason)
        }
    };
    metrics.request(trail.tenant, trail.model, reason);
    let elapsed = started.elapsed();
    if let Some(slot) = trail.slot.take() {
        // Refusals and gateway-answered requests; forwarded ones are recorded when they end.
        slot.send(|| DecisionRecord {
            time,
            request_id,
            snapshot: snapshot.clone(),
            tenant: trail.tenant,
            model: trail.model,
            requested_model: trail.requested_model.take(),
            purpose: trail.purpose.take(),
            reason,
            status: res.status().as_u16(),
            rule: trail.rule,
            endpoint: None,
            usage: None,
            flops: None,
            latency: elapsed,
        });
    }
    metrics.overhead.observe(elapsed.saturating_sub(trail.upstream_first_byte.unwrap_or_default()).as_secs_f64());
    let policy = &snapshot.policy;
    res.headers_mut().insert(POLICY_VERSION_HEADER, policy.version_header().clone());
    // One line per request, at debug: formatting it was the largest single cost in an early
    // profile, and metrics already account for every request. The field values are looked up
    // inside the macro, so only when the line is on.
    tracing::debug!(
        target: "customs::access",
        request_id = parts.headers.get(request_id::HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-"),
        method = %parts.method,
        path = parts.uri.path(),
        tenant = trail.tenant.and_then(|t| policy.tenant(t)).map_or("-", |t| &*t.id),
        model = trail.model.and_then(|m| policy.model(m)).map_or("-", |m| &*m.id),
        endpoint = trail.endpoint.and_then(|e| policy.endpoint(e)).map_or("-", |e| &*e.url),
        status = res.status().as_u16(),
        reason = reason.as_str(),
        micros = elapsed.as_micros() as u64,
        "Request."
    );
    Ok(res)
}

async fn serve<B>(
    shared: &Shared,
    snapshot: &Arc<Snapshot>,
    parts: &Parts,
    body: B,
    trail: &mut Trail,
    (started, time, request_id): (Instant, SystemTime, RequestIdBuf),
) -> Result<Response<Body>, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let policy = &snapshot.policy;
    let route = route::classify(parts.uri.path()).ok_or(GatewayError::RouteNotFound)?;
    let expected = if matches!(route, Route::Inference { .. }) { Method::POST } else { Method::GET };
    if parts.method != expected {
        return Err(GatewayError::MethodNotAllowed);
    }
    let tenant = auth::authenticate(policy.keys(), &parts.headers)?;
    trail.tenant = Some(tenant);
    if snapshot.kill_switched(tenant) {
        trail.rule = Some(RuleRef::KillSwitch);
        return Err(GatewayError::Policy(Denial::TenantSuspended));
    }
    // The day the request arrived on, from the time its record carries: one clock read fewer.
    let today = shared.day.day_of(time);
    let (op, deployment) = match route {
        Route::ListModels => return Ok(list_models(policy, tenant, today)),
        Route::GetModel(id) => return get_model(policy, tenant, id, today),
        Route::Inference { op, deployment } => (op, deployment),
    };

    let read_by = tokio::time::Instant::from_std(started) + shared.body_read_timeout;
    let bytes = read_body(parts, body, shared.max_body_bytes, read_by).await?;
    let peeked = peek::peek(&bytes)?;
    let model_name = model_name(policy, deployment, &peeked)?;
    let purpose = purpose(parts)?;
    trail.purpose = purpose.map(Into::into);

    let decision = policy.decide(tenant, model_name, purpose, today);
    trail.model = decision.model;
    trail.rule = decision.rule.map(RuleRef::Policy);
    if decision.model.is_none() {
        trail.requested_model = Some(model_name.chars().take(256).collect());
    }
    let endpoints = match decision.verdict {
        Verdict::Deny(reason) => return Err(GatewayError::Policy(reason)),
        Verdict::Allow { endpoints } => endpoints,
    };
    let Some(model) = decision.model else { return Err(GatewayError::Policy(Denial::ModelNotFound)) };

    let prompt = (bytes.len() as u64).div_ceil(snapshot.bytes_per_token);
    let completion = match op {
        Operation::Embeddings => 0,
        _ => peeked.max_tokens.unwrap_or(snapshot.default_max_tokens),
    };
    let estimate = prompt.saturating_add(completion);
    let flops_per_token = policy.model(model).and_then(|m| m.parameters).map(|p| 2.0 * p);
    let limiter = snapshot.limiter(tenant).ok_or(GatewayError::Policy(Denial::TenantSuspended))?;
    // Daily quotas count real days even when the policy's day is fixed.
    let quota_day = Day::of(time).0;
    let (ticket, status) = limiter.admit(Demand { tokens: estimate, flops_per_token, day: quota_day })?;

    let forwarded = shared.upstreams.forward(snapshot, endpoints, op, parts, bytes).await;
    let Forwarded { endpoint, response, started: upstream_started, first_byte } = match forwarded {
        Ok(f) => f,
        Err(e) => {
            // Nothing was served: give the reservations back.
            ticket.settle(0, Instant::now());
            return Err(e.into());
        }
    };
    trail.endpoint = Some(endpoint);
    trail.upstream_first_byte = Some(first_byte);
    let (mut head, body) = response.into_parts();
    error::rate_limit_headers(&mut head.headers, &status, false);
    let scanner = UsageScanner::for_content_type(head.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes));
    let record =
        OpenRecord { time, request_id, purpose: trail.purpose.take(), rule: trail.rule, status: head.status.as_u16() };
    let settlement = Settlement {
        audit: trail.slot.take().map(|slot| (slot, record)),
        snapshot: snapshot.clone(),
        tenant,
        model,
        endpoint,
        ticket,
        estimate,
        succeeded: head.status.is_success(),
        started,
        upstream_started,
    };
    Ok(Response::from_parts(head, Either::Right(Metered::new(body, scanner, settlement))))
}

/// Buffers the body once, refusing anything over the limit (by `Content-Length` before reading a
/// byte, and by counting when the length is not declared) or not all read by `deadline`.
async fn read_body<B>(parts: &Parts, body: B, limit: u64, deadline: tokio::time::Instant) -> Result<Bytes, GatewayError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::TooLarge);
    }
    let collect = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).collect();
    match tokio::time::timeout_at(deadline, collect).await.map_err(|_| GatewayError::BodyTimeout)? {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(GatewayError::TooLarge),
        Err(_) => Err(GatewayError::InvalidRequest { message: "The request body could not be read.", param: None }),
    }
}

/// The model the request names. On Azure paths the deployment names it; a body `model` that
/// disagrees is refused rather than either one being picked.
fn model_name<'a>(
    policy: &Policy,
    deployment: Option<&'a str>,
    peeked: &'a Peeked<'a>,
) -> Result<&'a str, GatewayError> {
    match (deployment, peeked.model.as_deref()) {
        (Some(d), None) => Ok(d),
        (Some(d), Some(m)) if m == d => Ok(d),
        (Some(d), Some(m)) => {
            let same = matches!((policy.model_names.get(d), policy.model_names.get(m)), (Some(a), Some(b)) if a == b);
            if same {
                Ok(d)
            } else {
                Err(GatewayError::InvalidRequest {
                    message: "The body's `model` names a different model than the deployment in the URL.",
                    param: Some("model"),
                })
            }
        }
        (None, Some(m)) => Ok(m),
        (None, None) => Err(GatewayError::InvalidRequest { message: "`model` is required.", param: Some("model") }),
    }
}

/// The declared purpose from `x-customs-purpose`, if the client stated one.
fn purpose(parts: &Parts) -> Result<Option<&str>, GatewayError> {
    let mut values = parts.headers.get_all(&PURPOSE_HEADER).iter();
    let Some(v) = values.next() else { return Ok(None) };
    let valid = values.next().is_none()
        && !v.is_empty()
        && v.as_bytes().iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !valid {
        return Err(GatewayError::InvalidRequest {
            message: "x-customs-purpose must be one purpose id (lowercase letters, digits and '-').",
            param: None,
        });
    }
    Ok(v.to_str().ok())
}

fn json(body: &serde_json::Value) -> Response<Body> {
    let mut res = Response::new(Either::Left(Full::new(Bytes::from(body.to_string()))));
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn model_object(m: &crate::policy::Model) -> serde_json::Value {
    serde_json::json!({
        "id": &*m.id,
        "object": "model",
        "created": 0,
        "owned_by": m.developer.as_deref().unwrap_or("customs"),
    })
}

/// `GET /v1/models`: only the models this tenant may use today.
fn list_models(policy: &Policy, tenant: TenantIdx, today: Day) -> Response<Body> {
    let data: Vec<_> = policy.allowed_models(tenant, today).map(model_object).collect();
    json(&serde_json::json!({ "object": "list", "data": data }))
}

fn get_model(policy: &Policy, tenant: TenantIdx, id: &str, today: Day) -> Result<Response<Body>, GatewayError> {
    let decision = policy.decide(tenant, id, None, today);
    match (decision.verdict, decision.model.and_then(|m| policy.model(m))) {
        (Verdict::Allow { .. }, Some(m)) => Ok(json(&model_object(m))),
        (Verdict::Deny(reason), _) => Err(GatewayError::Policy(reason)),
        (Verdict::Allow { .. }, None) => Err(GatewayError::Policy(Denial::ModelNotFound)),
    }
}
