//! The unit the request path reads: a compiled [`Policy`] plus what serving it needs at run time
//! (each tenant's limiter and the resolved metric handles). One `Arc<Snapshot>` is loaded per
//! request and used for every phase of it.

use std::sync::Arc;

use crate::config::raw::LimitsSection;
use crate::limits::Limiter;
use crate::policy::{Policy, TenantIdx};
use crate::telemetry::{Handles, Metrics};

pub struct Snapshot {
    pub policy: Policy,
    pub metrics: Handles,
    limiters: Box<[Arc<Limiter>]>,
    /// Completion tokens reserved for a request without `max_tokens`.
    pub default_max_tokens: u64,
    pub bytes_per_token: u64,
}

impl Snapshot {
    pub fn new(policy: Policy, estimate: &LimitsSection, metrics: &Arc<Metrics>) -> Self {
        let clock = governor::clock::DefaultClock::default();
        let limiters = policy.tenants().iter().map(|t| Arc::new(Limiter::with_clock(t.limits, &clock))).collect();
        metrics.policy_info.with_label_values(&[policy.version()]).set(1);
        Self {
            metrics: Handles::new(metrics, &policy),
            policy,
            limiters,
            default_max_tokens: estimate.default_max_tokens,
            bytes_per_token: estimate.bytes_per_token.max(1),
        }
    }

    pub fn limiter(&self, t: TenantIdx) -> Option<&Arc<Limiter>> {
        self.limiters.get(t as usize)
    }
}
