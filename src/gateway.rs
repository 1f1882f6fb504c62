//! The inference service: route, authenticate, read and peek the body, decide, forward. It loads
//! the snapshot once per request and uses that same policy version for every phase.

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
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use tower::Service;

use crate::audit::{Audit, RuleRef};
use crate::auth;
use crate::body_rate::{MinRate, RateChecked, TooSlow};
use crate::error::{self, GatewayError};
use crate::ids::{EndpointIdx, ModelIdx, TenantIdx};
use crate::limits::Demand;
use crate::outcome::{Body, Exchange};
use crate::owners::{Owner, Owners};
use crate::peek::{self, Peeked};
use crate::policy::{Day, DayClock, Denial, Policy, Verdict};
use crate::proxy::client::UpstreamBody;
use crate::proxy::metered::{BodyEnd, Metered};
use crate::proxy::{Forwarded, UpstreamPath, Upstreams};
use crate::reason::Reason;
use crate::request_id::{self, RequestIdBuf};
use crate::route::{self, Operation, Route, Stored};
use crate::snapshot::Snapshot;
use crate::telemetry::Metrics;
use crate::usage::{self, Ask, UsageScanner};

pub const PURPOSE_HEADER: HeaderName = HeaderName::from_static("x-customs-purpose");
pub const POLICY_VERSION_HEADER: HeaderName = HeaderName::from_static("x-customs-policy-version");

/// State shared by every request: the swappable snapshot, the upstream client, limits and the
/// audit trail.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub upstreams: Upstreams,
    pub max_body_bytes: u64,
    /// `server.max_header_bytes` and `server.max_header_fields`.
    pub max_header_bytes: u32,
    pub max_header_fields: u32,
    /// Bytes of request bodies all requests together may hold (`server.max_buffered_body_bytes`).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    pub body_read_timeout: Duration,
    /// Raised while resident memory is above `server.max_memory_bytes`: requests with bodies are
    /// shed before they are read.
    pub memory_pressure: Arc<std::sync::atomic::AtomicBool>,
    /// `server.min_body_rate` (0: off) after `server.body_rate_grace`.
    pub min_body_rate: MinRate,
    /// The day the policy decides as of: the real one unless `serve --at` fixed it.
    pub day: DayClock,
    pub audit: Audit,
    /// Cluster mode: the shared store and how current this replica is.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Which tenant created each stored response.
    pub owners: Arc<Owners>,
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
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
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

/// The panic boundary around the request path: a panic in `work` becomes
/// [`GatewayError::Internal`] (500 `internal_error` in the API's error shape, on record and in the
/// metrics like any refusal), counted in `customs_panics_total` and logged, instead of a dropped
/// connection.
pub async fn guard_panics<F, T>(work: F, panics: &prometheus::IntCounter) -> Result<T, GatewayError>
where
    F: Future<Output = Result<T, GatewayError>>,
{
    match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(work)).await {
        Ok(answer) => answer,
        Err(payload) => {
            panics.inc();
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(not a string)");
            tracing::error!(panic = what, "A request panicked; answered 500 internal_error.");
            Err(GatewayError::Internal)
        }
    }
}

/// What `serve` answers with: the gateway's own response, or the upstream's to stream back, with
/// whether the gateway asked for usage the client did not ask for.
enum Answer {
    Gateway(Response<Full<Bytes>>),
    Upstream(Response<UpstreamBody>, bool),
}

async fn handle<B>(shared: Arc<Shared>, req: Request<B>) -> Result<Response<Body>, Infallible>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let at = (Instant::now(), SystemTime::now());
    let snapshot = shared.snapshot.load_full();
    let (parts, body) = req.into_parts();
    let request_id = RequestIdBuf::new(parts.headers.get(request_id::HEADER).map_or(&[][..], HeaderValue::as_bytes));
    let mut exchange = Exchange::begin(snapshot.clone(), at, request_id, shared.audit.reserve());
    // Routed, or `Err` with the route the path names when the method is not the route's.
    let route = route::classify(parts.uri.path()).map(|r| r.with_method(&parts.method).ok_or(r));
    let named = route.map(|r| r.unwrap_or_else(|r| r));
    let anthropic = named.is_some_and(|r| r.anthropic());
    if let Some(r) = named {
        exchange.operation = r.label();
    }
    let result = if exchange.recordable() {
        guard_panics(serve(&shared, &snapshot, &parts, route, body, &mut exchange), &shared.metrics.panics).await
    } else {
        Err(GatewayError::AuditUnavailable)
    };
    let (mut res, reason) = match result {
        Ok(Answer::Gateway(res)) => (res.map(Either::Left), Reason::Allowed),
        Ok(Answer::Upstream(res, hide)) => {
            let (mut head, body) = res.into_parts();
            let scanner =
                UsageScanner::for_content_type(head.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes), hide);
            if scanner.rewrites() {
                head.headers.remove(CONTENT_LENGTH);
            }
            // Placeholder until the exchange is handed to the body below, after the last read.
            (Response::from_parts(head, Either::Right((body, scanner))), Reason::Allowed)
        }
        Err(e) => {
            let reason = e.reason();
            if let GatewayError::RateLimited(r) = &e {
                snapshot.metrics.rejection(exchange.tenant, r.kind);
            }
            (e.into_response(anthropic).map(Either::Left), reason)
        }
    };
    if exchange.undecided() {
        // The gateway's own answer, a refusal or not, is on record before the client has it.
        exchange.decide_answer(reason, res.status().as_u16()).await;
    }
    let elapsed = exchange.respond(reason, res.status().as_u16());
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
        tenant = exchange.tenant.and_then(|t| policy.tenant(t)).map_or("-", |t| &*t.id),
        model = exchange.model.and_then(|m| policy.model(m)).map_or("-", |m| &*m.id),
        endpoint = exchange.endpoint().and_then(|e| policy.endpoint(e)).map_or("-", |e| &*e.url),
        status = res.status().as_u16(),
        reason = reason.as_str(),
        micros = elapsed.as_micros() as u64,
        "Request."
    );
    let (head, body) = res.into_parts();
    let body = match body {
        Either::Left(full) => {
            exchange.finish(BodyEnd::Complete, None);
            Either::Left(full)
        }
        Either::Right((upstream, scanner)) => {
            let timers = shared.upstreams.stream_timers(exchange.endpoint().and_then(|e| policy.endpoint(e)));
            Either::Right(Metered::new(upstream, scanner, exchange, timers, anthropic))
        }
    };
    Ok(Response::from_parts(head, body))
}

/// The head within the limits, measured as HTTP/1 writes it (request line, then `name: value`
/// and CRLF per field) on either protocol: the HTTP layer's own limits are twice these, so a head
/// between the two gets the gateway's JSON refusal, record and metric.
fn check_head(parts: &Parts, max_bytes: u32, max_fields: u32) -> Result<(), GatewayError> {
    if parts.headers.len() > max_fields as usize {
        return Err(GatewayError::HeaderTooLarge);
    }
    let line = parts.method.as_str().len()
        + parts.uri.authority().map_or(0, |a| a.as_str().len())
        + parts.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len();
    let fields: usize = parts.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    if line + fields > max_bytes as usize {
        return Err(GatewayError::HeaderTooLarge);
    }
    Ok(())
}

/// The request path, phase by phase; every refusal returns early with its reason.
async fn serve<B>(
    shared: &Shared,
    snapshot: &Arc<Snapshot>,
    parts: &Parts,
    route: Option<Result<Route<'_>, Route<'_>>>,
    body: B,
    exchange: &mut Exchange,
) -> Result<Answer, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let policy = &snapshot.policy;
    check_head(parts, shared.max_header_bytes, shared.max_header_fields)?;
    let route = route.ok_or(GatewayError::RouteNotFound)?.map_err(|_| GatewayError::MethodNotAllowed)?;
    let tenant = auth::authenticate(policy.keys(), &parts.headers, parts.extensions.get())?;
    exchange.tenant = Some(tenant);
    if snapshot.kill_switched(tenant) {
        exchange.rule = Some(RuleRef::KillSwitch);
        return Err(GatewayError::Policy(Denial::TenantSuspended));
    }
    // A replica that cannot confirm the cluster's kill switch may be missing a suspension.
    if let Some(cluster) = &shared.cluster
        && policy.cluster_fail_closed(tenant)
        && cluster.health.stale_at(exchange.started())
    {
        exchange.rule = Some(RuleRef::ClusterStale);
        return Err(GatewayError::ClusterUnavailable);
    }
    // The day the request arrived on, from the time its record carries: one clock read fewer.
    let time = exchange.time();
    let today = shared.day.day_of(time);
    let read_by = tokio::time::Instant::from_std(exchange.started()) + shared.body_read_timeout;
    let (op, deployment) = match route {
        Route::ListModels => return Ok(Answer::Gateway(list_models(policy, tenant, today))),
        Route::GetModel(id) => return get_model(policy, tenant, id, today).map(Answer::Gateway),
        // Whatever the body would name, this tenant is refused: refused before it is read, so
        // that a refused key cannot make the gateway hold a body.
        _ if let Some((denial, rule)) = policy.tenant_refusal(tenant, today) => {
            exchange.rule = rule.map(RuleRef::Policy);
            return Err(GatewayError::Policy(denial));
        }
        Route::Stored { action, id } => {
            enter(snapshot, tenant, exchange)?;
            let mut room = body_room(shared, &body)?;
            let bytes = read_body(parts, body, shared.max_body_bytes, read_by, shared.min_body_rate).await?;
            fit(&mut room, bytes.len());
            return stored(shared, snapshot, parts, bytes, exchange, tenant, today, action, id).await;
        }
        Route::Inference { op, deployment } => (op, deployment),
    };

    enter(snapshot, tenant, exchange)?;
    // Held until the body is let go of, once it is forwarded (when this function returns).
    let mut room = body_room(shared, &body)?;
    let bytes = read_body(parts, body, shared.max_body_bytes, read_by, shared.min_body_rate).await?;
    fit(&mut room, bytes.len());
    let peeked = peek::peek(&bytes)?;
    // A request continuing a stored response is its owner's only, and goes where it is stored.
    let continued = match peeked.continues.as_deref() {
        Some(id) if op == Operation::Responses => Some(
            owned(&shared.owners, policy, tenant, id)
                .await
                .ok_or(GatewayError::ResponseNotFound { param: Some("previous_response_id") })?,
        ),
        _ => None,
    };
    let model_name = model_name(policy, deployment, &peeked)?;
    let purpose = purpose(parts)?;
    exchange.purpose = purpose.map(Into::into);

    let (model, endpoints) = decide(policy, exchange, tenant, model_name, purpose, today)?;
    let endpoints = match &continued {
        None => endpoints,
        Some(owner) => only_endpoint(policy, endpoints, &owner.endpoint)?,
    };
    let spec = policy.model(model);
    // A chat request naming an embeddings model (or the reverse) is refused here, not forwarded.
    if spec.is_some_and(|m| !m.serves(op)) {
        return Err(GatewayError::OperationNotSupported);
    }

    let prompt = (bytes.len() as u64).div_ceil(snapshot.bytes_per_token);
    // Reserved: what the client allows per completion, or the gateway's default. The worst case,
    // charged when the upstream reports no usage: what the client allows, or the model's output
    // limit. `n` and `best_of` completions each cost as much.
    let (reserve, worst) = match op {
        Operation::Embeddings | Operation::CountTokens => (0, 0),
        _ => {
            let worst =
                peeked.max_tokens.or(spec.and_then(|m| m.max_output_tokens)).unwrap_or(snapshot.default_max_tokens);
            let reserve = peeked.max_tokens.unwrap_or(snapshot.default_max_tokens.min(worst));
            (reserve.saturating_mul(peeked.choices), worst.saturating_mul(peeked.choices))
        }
    };
    let flops_per_token = spec.and_then(|m| m.parameters).map(|p| 2.0 * p);
    // Daily quotas count real days even when the policy's day is fixed.
    let demand = Demand { tokens: prompt.saturating_add(reserve), flops_per_token, day: Day::of(time).0 };
    let (ticket, status) = admit(shared, snapshot, tenant, demand).await?;
    if op == Operation::CountTokens {
        // Counting tokens generates none: it counts as a request, not as the tokens it counts.
        exchange.charge_request(ticket);
    } else {
        exchange.charge(ticket, prompt.saturating_add(worst));
    }
    // An Azure-path body need not name its model, but an OpenAI-kind upstream would then serve
    // its own default: such a body names the deployment's model before it goes anywhere else.
    let named = deployment.filter(|_| peeked.model.is_none()).filter(|_| {
        endpoints.iter().any(|&e| policy.endpoint(e).is_some_and(|ep| ep.kind != crate::endpoint::EndpointKind::Azure))
    });
    let sent = match named {
        Some(d) => with_model(&bytes, d),
        None => bytes.clone(),
    };
    // Responses and Messages streams report usage unasked (`response.completed`,
    // `message_start` and `message_delta`).
    let asking = match op {
        Operation::ChatCompletions | Operation::Completions => match usage::ask(&sent, &peeked) {
            Ask::Inserted(asking) => Some(asking),
            Ask::Asked | Ask::Untouched => None,
        },
        Operation::Embeddings | Operation::Responses | Operation::Messages | Operation::CountTokens => None,
    };
    exchange.decide_forward().await.map_err(|_| GatewayError::AuditUnavailable)?;

    let Forwarded { endpoint, asked, response, started, first_byte } =
        shared.upstreams.forward(snapshot.targets(endpoints), op.into(), parts, sent, asking).await?;
    let (mut head, body) = response.into_parts();
    exchange.forwarded(endpoint, started, first_byte, head.status.is_success());
    let body = upstream_error(policy, endpoint, &head, body).await?;
    if op == Operation::Responses
        && head.status.is_success()
        && let (Some(t), Some(m), Some(e)) = (policy.tenant(tenant), spec, policy.endpoint(endpoint))
    {
        let owner = Owner { tenant: (*t.id).into(), model: m.id.clone(), endpoint: e.url.clone() };
        exchange.bind_to(shared.owners.clone(), owner);
    }
    error::rate_limit_headers(&mut head.headers, &status, false);
    Ok(Answer::Upstream(Response::from_parts(head, body), asked))
}

/// A request about a stored response: its owner's only, decided again by the policy on the
/// model that created it (access lost since is access lost), counted as a request and charged
/// no tokens, and sent to the endpoint that stores it.
#[expect(clippy::too_many_arguments, reason = "the phases' shared state, passed down once")]
async fn stored(
    shared: &Shared,
    snapshot: &Arc<Snapshot>,
    parts: &Parts,
    bytes: Bytes,
    exchange: &mut Exchange,
    tenant: TenantIdx,
    today: Day,
    action: Stored,
    id: &str,
) -> Result<Answer, GatewayError> {
    let policy = &snapshot.policy;
    let owner =
        owned(&shared.owners, policy, tenant, id).await.ok_or(GatewayError::ResponseNotFound { param: None })?;
    let purpose = purpose(parts)?;
    exchange.purpose = purpose.map(Into::into);
    let (_, endpoints) = decide(policy, exchange, tenant, &owner.model, purpose, today)?;
    let endpoints = only_endpoint(policy, endpoints, &owner.endpoint)?;
    let demand = Demand { tokens: 0, flops_per_token: None, day: Day::of(exchange.time()).0 };
    let (ticket, status) = admit(shared, snapshot, tenant, demand).await?;
    exchange.charge_request(ticket);
    exchange.decide_forward().await.map_err(|_| GatewayError::AuditUnavailable)?;
    let target = UpstreamPath::Stored(action, id);
    let Forwarded { endpoint, response, started, first_byte, .. } =
        shared.upstreams.forward(snapshot.targets(endpoints), target, parts, bytes, None).await?;
    let (mut head, body) = response.into_parts();
    exchange.forwarded(endpoint, started, first_byte, head.status.is_success());
    let body = upstream_error(policy, endpoint, &head, body).await?;
    if action == Stored::Delete && head.status.is_success() {
        shared.owners.forget(id);
    }
    error::rate_limit_headers(&mut head.headers, &status, false);
    Ok(Answer::Upstream(Response::from_parts(head, body), false))
}

/// The upstream's body to stream back, or for an error status the gateway's own error in its
/// place: upstream errors can carry what a tenant must not see (the gateway's key echoed,
/// internal names). The upstream's body goes to the log, redacted, with its request id, which
/// the client gets too.
async fn upstream_error(
    policy: &Policy,
    endpoint: EndpointIdx,
    head: &http::response::Parts,
    body: UpstreamBody,
) -> Result<UpstreamBody, GatewayError> {
    if head.status.as_u16() < 400 {
        return Ok(body);
    }
    let upstream_request_id = head.headers.get("x-upstream-request-id").cloned();
    let ep = policy.endpoint(endpoint);
    let secret = ep.and_then(|e| e.credential()).and_then(|(_, v)| v.to_str().ok());
    let secret = secret.map(|s| s.strip_prefix("Bearer ").unwrap_or(s));
    let text = crate::proxy::redact::error_body(body).await;
    tracing::warn!(
        endpoint = ep.map_or("-", |e| &*e.url),
        status = head.status.as_u16(),
        upstream_request_id = upstream_request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
        body = %crate::proxy::redact::redact(&String::from_utf8_lossy(&text), secret),
        "Upstream answered with an error; the client got upstream_error."
    );
    Err(GatewayError::UpstreamStatus {
        status: head.status,
        upstream_request_id,
        retry_after: head.headers.get(http::header::RETRY_AFTER).cloned(),
    })
}

/// The policy's decision on `tenant` using `model_name`, on record in `exchange`: the model and
/// the endpoints that may serve it, or the refusal.
fn decide<'p>(
    policy: &'p Policy,
    exchange: &mut Exchange,
    tenant: TenantIdx,
    model_name: &str,
    purpose: Option<&str>,
    today: Day,
) -> Result<(ModelIdx, &'p [EndpointIdx]), GatewayError> {
    let decision = policy.decide(tenant, model_name, purpose, today);
    exchange.model = decision.model;
    exchange.rule = decision.rule.map(RuleRef::Policy);
    if decision.model.is_none() {
        exchange.requested_model = Some(model_name.chars().take(256).collect());
    }
    let endpoints = match decision.verdict {
        Verdict::Deny(reason) => return Err(GatewayError::Policy(reason)),
        Verdict::Allow { endpoints } => endpoints,
    };
    let Some(model) = decision.model else { return Err(GatewayError::Policy(Denial::ModelNotFound)) };
    Ok((model, endpoints))
}

/// `demand` against the tenant's limits: this replica's, or in cluster mode the store's (this
/// replica's share when the store is out of reach, counted).
async fn admit(
    shared: &Shared,
    snapshot: &Snapshot,
    tenant: TenantIdx,
    demand: Demand,
) -> Result<(crate::limits::Ticket, crate::limits::RateHeadroom), GatewayError> {
    let limiter = snapshot.limiter(tenant).ok_or(GatewayError::Policy(Denial::TenantSuspended))?;
    let Some(cluster) = &shared.cluster else { return Ok(limiter.admit(demand)?) };
    let id = snapshot.policy.tenant(tenant).map_or("", |t| &t.id[..]);
    let admission = limiter.admit_shared(id, demand, cluster).await;
    if admission.fallback {
        shared.metrics.limits_fallback.inc();
    }
    Ok(admission.result?)
}

/// The owner of the stored response `id`, when that is `tenant`. An unknown id and another
/// tenant's look the same to the caller.
async fn owned(owners: &Owners, policy: &Policy, tenant: TenantIdx, id: &str) -> Option<Arc<Owner>> {
    if !route::valid_response_id(id) {
        return None;
    }
    let owner = owners.owner(id).await?;
    let t = policy.tenant(tenant)?;
    (*owner.tenant == *t.id).then_some(owner)
}

/// Of the endpoints the policy allows, the one that stores a response: a response stored where
/// the tenant may no longer be served is out of its reach.
fn only_endpoint<'p>(
    policy: &Policy,
    allowed: &'p [EndpointIdx],
    url: &str,
) -> Result<&'p [EndpointIdx], GatewayError> {
    allowed
        .iter()
        .position(|&e| policy.endpoint(e).is_some_and(|ep| &*ep.url == url))
        .map(|i| &allowed[i..=i])
        .ok_or(GatewayError::Policy(Denial::NoResidentEndpoint))
}

/// `body` (one JSON object) with a last member `"model": name`. Appended at the end, so every
/// span the peek found stays where it was.
fn with_model(body: &Bytes, name: &str) -> Bytes {
    let Some(end) = body.iter().rposition(|&b| b == b'}') else { return body.clone() };
    let empty = body[..end].iter().rposition(|b| !b.is_ascii_whitespace()).is_some_and(|i| body[i] == b'{');
    let name = serde_json::to_string(name).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + name.len() + 10);
    out.extend_from_slice(&body[..end]);
    out.extend_from_slice(if empty { br#""model":"# } else { br#","model":"# });
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&body[end..]);
    Bytes::from(out)
}

/// The tenant's concurrency limit, before its body is read: a place held until the request ends.
fn enter(snapshot: &Snapshot, tenant: TenantIdx, exchange: &mut Exchange) -> Result<(), GatewayError> {
    let limiter = snapshot.limiter(tenant).ok_or(GatewayError::Policy(Denial::TenantSuspended))?;
    if let Some(place) = limiter.enter()? {
        exchange.hold(place);
    }
    Ok(())
}

/// Room in the gateway-wide body budget for this request's body, held while the gateway holds
/// the body: as much as it announced (an empty body: none), or the most one may be when it
/// announced nothing. None left, or memory above its limit, sheds the request at once with 503
/// `overloaded`, rather than letting held bodies grow without bound.
fn body_room<B: http_body::Body>(
    shared: &Shared,
    body: &B,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, GatewayError> {
    if body.is_end_stream() {
        return Ok(None);
    }
    if shared.memory_pressure.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(GatewayError::Overloaded);
    }
    let need = body.size_hint().exact().unwrap_or(shared.max_body_bytes).min(shared.max_body_bytes);
    // Over the per-request limit is refused by the read (413), not counted here.
    let need = u32::try_from(need).unwrap_or(u32::MAX);
    if need == 0 {
        return Ok(None);
    }
    shared.body_budget.clone().try_acquire_many_owned(need).map(Some).map_err(|_| GatewayError::Overloaded)
}

/// Gives back what a body that announced no length did not use.
fn fit(room: &mut Option<tokio::sync::OwnedSemaphorePermit>, len: usize) {
    if let Some(permit) = room {
        let spare = permit.num_permits().saturating_sub(len);
        drop(permit.split(spare));
    }
}

/// Buffers the body once, refusing anything over the limit (by `Content-Length` before reading a
/// byte, and by counting when the length is not declared) or not all read by `deadline`.
async fn read_body<B>(
    parts: &Parts,
    body: B,
    limit: u64,
    deadline: tokio::time::Instant,
    rate: MinRate,
) -> Result<Bytes, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::TooLarge);
    }
    let collect = Limited::new(RateChecked::new(body, rate), usize::try_from(limit).unwrap_or(usize::MAX)).collect();
    match tokio::time::timeout_at(deadline, collect).await.map_err(|_| GatewayError::BodyTimeout)? {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(GatewayError::TooLarge),
        Err(e) if e.is::<TooSlow>() => Err(GatewayError::BodyTimeout),
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
    if values.next().is_some() || !crate::policy::valid_purpose(v.as_bytes()) {
        return Err(GatewayError::InvalidRequest { message: crate::policy::PURPOSE_FORMAT, param: None });
    }
    Ok(v.to_str().ok())
}

fn json(body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
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
fn list_models(policy: &Policy, tenant: TenantIdx, today: Day) -> Response<Full<Bytes>> {
    let data: Vec<_> = policy.allowed_models(tenant, today).map(model_object).collect();
    json(&serde_json::json!({ "object": "list", "data": data }))
}

fn get_model(policy: &Policy, tenant: TenantIdx, id: &str, today: Day) -> Result<Response<Full<Bytes>>, GatewayError> {
    let decision = policy.decide(tenant, id, None, today);
    match (decision.verdict, decision.model.and_then(|m| policy.model(m))) {
        (Verdict::Allow { .. }, Some(m)) => Ok(json(&model_object(m))),
        (Verdict::Deny(reason), _) => Err(GatewayError::Policy(reason)),
        (Verdict::Allow { .. }, None) => Err(GatewayError::Policy(Denial::ModelNotFound)),
    }
}
