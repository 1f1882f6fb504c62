//! Label handles resolved per snapshot. Tenant and model handles are created on first use
//! (`OnceLock`), so a 10,000-tenant config neither exports series nor holds counters for tenants
//! that never called; after that, recording is an atomic add.

use std::sync::{Arc, OnceLock};

use prometheus::{Counter, Histogram, IntCounter, IntGauge};

use super::{Metrics, UNKNOWN};
use crate::ids::{EndpointIdx, ModelIdx, TenantIdx};
use crate::limits::LimitKind;
use crate::policy::Policy;
use crate::reason::{Decision, Reason};
use crate::route::OPERATION_LABELS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Prompt,
    Completion,
    /// Charged at the worst case: the upstream reported no usage.
    Unmetered,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Prompt => "prompt",
            Self::Completion => "completion",
            Self::Unmetered => "unmetered",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Protocol,
    Auth,
    Http5xx,
    Stream,
    StreamIdleTimeout,
    StreamMaxDuration,
}

impl UpstreamErrorKind {
    const ALL: [UpstreamErrorKind; 8] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Protocol,
        UpstreamErrorKind::Auth,
        UpstreamErrorKind::Http5xx,
        UpstreamErrorKind::Stream,
        UpstreamErrorKind::StreamIdleTimeout,
        UpstreamErrorKind::StreamMaxDuration,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
            Self::Auth => "auth",
            Self::Http5xx => "http_5xx",
            Self::Stream => "stream",
            Self::StreamIdleTimeout => "stream_idle_timeout",
            Self::StreamMaxDuration => "stream_max_duration",
        }
    }
}

struct TenantHandles {
    tenant: Box<str>,
    jurisdiction: Box<str>,
    requests: [OnceLock<IntCounter>; Reason::COUNT],
    tokens: [OnceLock<IntCounter>; 3],
    flops: OnceLock<Counter>,
    rejections: [OnceLock<IntCounter>; 4],
}

impl TenantHandles {
    fn new(tenant: &str, jurisdiction: &str) -> Self {
        Self {
            tenant: tenant.into(),
            jurisdiction: jurisdiction.into(),
            requests: std::array::from_fn(|_| OnceLock::new()),
            tokens: std::array::from_fn(|_| OnceLock::new()),
            flops: OnceLock::new(),
            rejections: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

struct ModelHandles {
    model: Box<str>,
    requests: [OnceLock<IntCounter>; Reason::COUNT],
    tokens: [OnceLock<IntCounter>; 3],
}

impl ModelHandles {
    fn new(model: &str) -> Self {
        Self {
            model: model.into(),
            requests: std::array::from_fn(|_| OnceLock::new()),
            tokens: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// One endpoint's upstream metrics, resolved eagerly (endpoints are few).
pub struct EndpointHandles {
    pub first_byte: Histogram,
    pub duration: Histogram,
    errors: [IntCounter; UpstreamErrorKind::ALL.len()],
    ejections: IntCounter,
    ejected: IntGauge,
}

impl EndpointHandles {
    pub fn error(&self, kind: UpstreamErrorKind) {
        self.errors[kind as usize].inc();
    }

    /// The endpoint was ejected (`true`) or put back after a probe.
    pub fn ejected(&self, out: bool) {
        if out {
            self.ejections.inc();
        }
        self.ejected.set(i64::from(out));
    }
}

/// A tenant's handles, allocated on its first request: most tenants of a large config may
/// never call, and each set holds 30 counters.
struct LazyTenant {
    jurisdiction: u32,
    handles: OnceLock<Box<TenantHandles>>,
}

/// A snapshot's resolved handles.
pub struct Handles {
    metrics: Arc<Metrics>,
    tenant_ids: Box<[Arc<str>]>,
    jurisdiction_ids: Box<[Box<str>]>,
    tenants: Box<[LazyTenant]>,
    unknown_tenant: TenantHandles,
    models: Box<[ModelHandles]>,
    unknown_model: ModelHandles,
    endpoints: Box<[EndpointHandles]>,
    /// Per operation label and reason, created on first use.
    operations: Box<[[OnceLock<IntCounter>; Reason::COUNT]; OPERATION_LABELS.len()]>,
    /// End-to-end duration, indexed by [`Decision`].
    duration: [Histogram; 3],
    pub overhead: Histogram,
    pub in_flight: IntGauge,
}

// === impl Handles ===

impl Handles {
    pub fn new(metrics: &Arc<Metrics>, policy: &Policy) -> Self {
        let tenants = policy
            .tenants()
            .iter()
            .map(|t| LazyTenant { jurisdiction: t.jurisdiction, handles: OnceLock::new() })
            .collect();
        let tenant_ids = policy.tenants().iter().map(|t| t.id.clone()).collect();
        let jurisdiction_ids = policy.jurisdictions().iter().map(|j| j.id.clone()).collect();
        let models = policy.models().iter().map(|m| ModelHandles::new(&m.id)).collect();
        let mut per_model = vec![0usize; policy.models().len()];
        let endpoints = policy
            .endpoints()
            .iter()
            .map(|e| {
                let n = per_model.get_mut(e.model as usize).map_or(0, |c| {
                    *c += 1;
                    *c - 1
                });
                let name = format!("{}#{n}", policy.model(e.model).map_or(UNKNOWN, |m| &*m.id));
                let labels = [name.as_str(), &*e.residency];
                EndpointHandles {
                    first_byte: metrics.upstream_first_byte.with_label_values(&labels),
                    duration: metrics.upstream_duration.with_label_values(&labels),
                    errors: UpstreamErrorKind::ALL
                        .map(|k| metrics.upstream_errors.with_label_values(&[&name, k.as_str()])),
                    ejections: metrics.upstream_ejections.with_label_values(&[&name]),
                    ejected: metrics.upstream_ejected.with_label_values(&[&name]),
                }
            })
            .collect();
        Self {
            metrics: metrics.clone(),
            tenant_ids,
            jurisdiction_ids,
            tenants,
            unknown_tenant: TenantHandles::new(UNKNOWN, UNKNOWN),
            models,
            unknown_model: ModelHandles::new(UNKNOWN),
            endpoints,
            operations: Box::new(std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new()))),
            duration: Decision::ALL.map(|d| metrics.duration.with_label_values(&[d.as_str()])),
            overhead: metrics.overhead.clone(),
            in_flight: metrics.in_flight.clone(),
        }
    }

    fn tenant(&self, t: Option<TenantIdx>) -> &TenantHandles {
        let Some((i, lazy)) = t.and_then(|t| Some((t as usize, self.tenants.get(t as usize)?))) else {
            return &self.unknown_tenant;
        };
        lazy.handles.get_or_init(|| {
            let tenant = self.tenant_ids.get(i).map_or(UNKNOWN, |s| &**s);
            let jurisdiction = self.jurisdiction_ids.get(lazy.jurisdiction as usize).map_or(UNKNOWN, |s| &**s);
            Box::new(TenantHandles::new(tenant, jurisdiction))
        })
    }

    fn model(&self, m: Option<ModelIdx>) -> &ModelHandles {
        m.and_then(|m| self.models.get(m as usize)).unwrap_or(&self.unknown_model)
    }

    pub fn endpoint(&self, e: EndpointIdx) -> Option<&EndpointHandles> {
        self.endpoints.get(e as usize)
    }

    /// Counts one request's outcome.
    pub fn request(&self, tenant: Option<TenantIdx>, model: Option<ModelIdx>, reason: Reason) {
        let t = self.tenant(tenant);
        t.requests[reason.index()]
            .get_or_init(|| {
                let labels = [&*t.tenant, &*t.jurisdiction, reason.decision().as_str(), reason.as_str()];
                self.metrics.requests.with_label_values(&labels)
            })
            .inc();
        let m = self.model(model);
        m.requests[reason.index()]
            .get_or_init(|| {
                self.metrics.model_requests.with_label_values(&[&*m.model, reason.decision().as_str(), reason.as_str()])
            })
            .inc();
    }

    /// Counts one request under its operation (an index into [`OPERATION_LABELS`]).
    pub fn operation(&self, operation: usize, reason: Reason) {
        let Some(cells) = self.operations.get(operation) else { return };
        cells[reason.index()]
            .get_or_init(|| {
                let labels = [OPERATION_LABELS[operation], reason.decision().as_str(), reason.as_str()];
                self.metrics.operation_requests.with_label_values(&labels)
            })
            .inc();
    }

    pub fn rejection(&self, tenant: Option<TenantIdx>, kind: LimitKind) {
        let t = self.tenant(tenant);
        t.rejections[kind as usize]
            .get_or_init(|| self.metrics.rejections.with_label_values(&[&*t.tenant, kind.as_str()]))
            .inc();
    }

    pub fn tokens(&self, tenant: Option<TenantIdx>, model: Option<ModelIdx>, kind: TokenKind, n: u64) {
        let t = self.tenant(tenant);
        t.tokens[kind as usize]
            .get_or_init(|| self.metrics.tokens.with_label_values(&[&*t.tenant, kind.as_str()]))
            .inc_by(n);
        let m = self.model(model);
        m.tokens[kind as usize]
            .get_or_init(|| self.metrics.model_tokens.with_label_values(&[&*m.model, kind.as_str()]))
            .inc_by(n);
    }

    pub fn flops(&self, tenant: Option<TenantIdx>, flops: f64) {
        let t = self.tenant(tenant);
        t.flops.get_or_init(|| self.metrics.flops.with_label_values(&[&*t.tenant])).inc_by(flops);
    }

    pub fn duration(&self, reason: Reason) -> &Histogram {
        &self.duration[reason.decision() as usize]
    }
}
