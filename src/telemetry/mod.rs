//! Telemetry: Prometheus metrics. Every family is registered once in [`Metrics`]; each policy
//! snapshot resolves its label handles ([`Handles`]) per tenant, model and endpoint, so recording
//! on the request path is an array index and an atomic add: no label lookup, no formatting, no
//! allocation after a handle's first use. Label values come only from config ids; anything else
//! is recorded as `unknown`.
//!
//! Per-tenant and per-model families are kept apart rather than crossed, so the number of series
//! grows with tenants + models, not tenants x models.

mod handles;

use prometheus::{
    CounterVec, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub use handles::{EndpointHandles, Handles, TokenKind, UpstreamErrorKind};

pub const UNKNOWN: &str = "unknown";

/// Every metric family the gateway exports. The names are a contract (see README).
pub struct Metrics {
    pub registry: Registry,
    pub(crate) requests: IntCounterVec,
    pub(crate) model_requests: IntCounterVec,
    pub(crate) operation_requests: IntCounterVec,
    pub(crate) duration: HistogramVec,
    pub(crate) overhead: Histogram,
    pub(crate) upstream_first_byte: HistogramVec,
    pub(crate) upstream_duration: HistogramVec,
    pub(crate) upstream_errors: IntCounterVec,
    pub(crate) upstream_ejections: IntCounterVec,
    pub(crate) upstream_ejected: IntGaugeVec,
    pub(crate) tokens: IntCounterVec,
    pub(crate) model_tokens: IntCounterVec,
    pub(crate) flops: CounterVec,
    pub(crate) rejections: IntCounterVec,
    pub(crate) in_flight: IntGauge,
    pub memory_shedding: IntGauge,
    pub(crate) policy_info: IntGaugeVec,
    pub audit: AuditFamilies,
    pub reloads: IntCounterVec,
    pub last_reload_success: Gauge,
    pub kill_switch_suspended: IntGauge,
    /// Cluster mode: the kill-switch epoch this replica has applied.
    pub killswitch_epoch: IntGauge,
    /// Cluster mode: 1 while this replica has not confirmed the cluster's epoch within
    /// `max_staleness`; always 0 outside cluster mode, so an alert on it needs no mode check.
    pub cluster_stale: IntGauge,
    /// Cluster mode: calls to the store that failed or timed out.
    pub cluster_errors: IntCounter,
    /// Cluster mode: requests whose limits the per-replica fallback decided, the store being
    /// out of reach.
    pub limits_fallback: IntCounter,
    /// Requests whose task panicked (answered 500 `internal_error`).
    pub panics: IntCounter,
}

/// The audit trail's health.
pub struct AuditFamilies {
    pub written: IntCounter,
    pub write_errors: IntCounter,
    pub dropped: IntCounter,
    pub pending: IntGauge,
    pub up: IntGauge,
    pub head_seq: IntGauge,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics registration failed: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

const LATENCY_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
const OVERHEAD_BUCKETS: &[f64] =
    &[0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1];

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram =
            |name: &str, help: &str, labels: &[&str], buckets: &[f64]| -> Result<HistogramVec, MetricsError> {
                let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let requests = counter(
            "customs_requests_total",
            "Requests by tenant, its jurisdiction, decision (allow, deny, error) and reason code.",
            &["tenant", "jurisdiction", "decision", "reason"],
        )?;
        let model_requests = counter(
            "customs_model_requests_total",
            "Requests by requested model, decision and reason code.",
            &["model", "decision", "reason"],
        )?;
        let operation_requests = counter(
            "customs_operation_requests_total",
            "Requests by API operation (chat, responses, messages, ...; `none` for unrouted paths), decision and reason code.",
            &["operation", "decision", "reason"],
        )?;
        let duration = histogram(
            "customs_request_duration_seconds",
            "End-to-end request time, until the last byte of the response (streams included).",
            &["decision"],
            LATENCY_BUCKETS,
        )?;
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "customs_gateway_overhead_seconds",
                "Time spent in the gateway until the response head is sent, excluding the upstream's time to first byte.",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(overhead.clone()))?;
        let upstream_first_byte = histogram(
            "customs_upstream_first_byte_seconds",
            "Upstream time to the response head, by endpoint.",
            &["endpoint", "residency"],
            LATENCY_BUCKETS,
        )?;
        let upstream_duration = histogram(
            "customs_upstream_duration_seconds",
            "Upstream time until the last byte of the response, by endpoint.",
            &["endpoint", "residency"],
            LATENCY_BUCKETS,
        )?;
        let upstream_errors = counter(
            "customs_upstream_errors_total",
            "Upstream failures by endpoint and kind (connect, timeout, protocol, auth, http_5xx, stream).",
            &["endpoint", "kind"],
        )?;
        let upstream_ejections = counter(
            "customs_upstream_ejections_total",
            "Endpoints taken out of rotation after failing (consecutive failures, or a failed probe).",
            &["endpoint"],
        )?;
        let upstream_ejected = IntGaugeVec::new(
            Opts::new(
                "customs_upstream_ejected",
                "1 while an endpoint is out of rotation: ejected, or waiting for a probe to succeed.",
            ),
            &["endpoint"],
        )?;
        registry.register(Box::new(upstream_ejected.clone()))?;
        let tokens = counter(
            "customs_tokens_total",
            "Tokens by tenant and kind: prompt and completion as the upstream reported them, unmetered: the worst case charged where it reported none.",
            &["tenant", "kind"],
        )?;
        let model_tokens = counter("customs_model_tokens_total", "Tokens by model and kind.", &["model", "kind"])?;
        let flops = CounterVec::new(
            Opts::new(
                "customs_inference_flops_total",
                "Inference FLOPs charged (2 x parameters x tokens) for models with a declared parameter count.",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(flops.clone()))?;
        let rejections = counter(
            "customs_ratelimit_rejections_total",
            "Requests refused by a limit, by tenant and limit kind (requests, tokens, concurrency, compute).",
            &["tenant", "limit"],
        )?;
        let in_flight = IntGauge::new("customs_in_flight_requests", "Requests being served, streams included.")?;
        registry.register(Box::new(in_flight.clone()))?;
        let memory_shedding = IntGauge::new(
            "customs_memory_shedding",
            "1 while resident memory is above server.max_memory_bytes and requests with bodies are shed.",
        )?;
        registry.register(Box::new(memory_shedding.clone()))?;
        let policy_info = IntGaugeVec::new(
            Opts::new("customs_policy_info", "The loaded policy version (content hash); value 1."),
            &["version"],
        )?;
        registry.register(Box::new(policy_info.clone()))?;
        let int_counter = |name: &str, help: &str| -> Result<IntCounter, MetricsError> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let int_gauge = |name: &str, help: &str| -> Result<IntGauge, MetricsError> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let audit = AuditFamilies {
            written: int_counter("customs_audit_records_total", "Audit records written to the trail.")?,
            write_errors: int_counter(
                "customs_audit_write_errors_total",
                "Failed writes to the audit trail; the records are kept and retried.",
            )?,
            dropped: int_counter(
                "customs_audit_dropped_total",
                "Decisions that could not be recorded: refused with audit_unavailable, or served unrecorded when audit.on_failure = allow.",
            )?,
            pending: int_gauge(
                "customs_audit_pending_records",
                "Audit records promised but not yet on disk (requests in flight plus the write backlog).",
            )?,
            up: int_gauge("customs_audit_up", "1 while the audit trail takes records, 0 while writes fail.")?,
            head_seq: int_gauge(
                "customs_audit_head_seq",
                "The seq of the last audit record written: a witness kept outside the trail, against which a trail cut short shows.",
            )?,
        };
        let reloads = counter(
            "customs_config_reloads_total",
            "Config reload attempts by result (success, failure).",
            &["result"],
        )?;
        // Both results exist from the start, so `increase()` sees the first failure.
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        let last_reload_success = Gauge::new(
            "customs_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load (start-up or reload).",
        )?;
        registry.register(Box::new(last_reload_success.clone()))?;
        let kill_switch_suspended =
            int_gauge("customs_kill_switch_suspended_tenants", "Tenants suspended through the admin kill switch.")?;
        let killswitch_epoch = int_gauge(
            "customs_killswitch_epoch",
            "Cluster mode: the kill-switch epoch this replica has applied (0 when not in cluster mode).",
        )?;
        let cluster_stale = int_gauge(
            "customs_cluster_stale",
            "Cluster mode: 1 while this replica has not confirmed the cluster's kill-switch epoch within cluster.max_staleness.",
        )?;
        let cluster_errors = int_counter(
            "customs_cluster_errors_total",
            "Cluster mode: calls to the shared store that failed or timed out.",
        )?;
        let limits_fallback = int_counter(
            "customs_limits_fallback_total",
            "Cluster mode: requests whose limits were decided by this replica's fallback share, the store being out of reach.",
        )?;
        let panics = int_counter(
            "customs_panics_total",
            "Requests whose handling panicked: each was answered 500 internal_error, and the panic logged.",
        )?;
        Ok(Self {
            registry,
            requests,
            model_requests,
            operation_requests,
            duration,
            overhead,
            upstream_first_byte,
            upstream_duration,
            upstream_errors,
            upstream_ejections,
            upstream_ejected,
            tokens,
            model_tokens,
            flops,
            rejections,
            in_flight,
            memory_shedding,
            policy_info,
            audit,
            reloads,
            last_reload_success,
            kill_switch_suspended,
            killswitch_epoch,
            cluster_stale,
            cluster_errors,
            limits_fallback,
            panics,
        })
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
