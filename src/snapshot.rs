//! The unit the request path reads: a compiled [`Policy`] plus what serving it needs at run time
//! (each tenant's limiter, each endpoint's connection pool, the resolved metric handles and the
//! kill switch's suspensions). One `Arc<Snapshot>` is loaded per request and used for every phase
//! of it; reloads and the kill switch build a new one and swap it in whole.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::config::LimitSettings;
use crate::ids::{EndpointIdx, TenantIdx};
use crate::killswitch::Suspensions;
use crate::limits::Limiter;
use crate::policy::{Policy, TenantSegment};
use crate::proxy::{Pools, Targets};
use crate::telemetry::{Handles, Metrics};

/// A tenant's limiter, once made.
type LimiterCell = OnceLock<Arc<Limiter>>;

pub struct Snapshot {
    pub policy: Arc<Policy>,
    pub metrics: Arc<Handles>,
    /// Each tenant's limiter, made on its first request: a provider's million tenants are mostly
    /// idle at any one time, and each limiter is a few hundred bytes. Shared by the snapshots of
    /// one policy (kill switch changes), and carried into a reloaded one. By tenant segment, so a
    /// segment a reload kept keeps its cells in one step.
    limiters: Arc<[Arc<[Arc<LimiterCell>]>]>,
    clock: governor::clock::DefaultClock,
    pools: Arc<Pools>,
    /// Operator suspensions by tenant id, as persisted.
    pub suspensions: Arc<Suspensions>,
    /// The same, resolved against this policy's tenants for the request path.
    suspended: Box<[bool]>,
    /// Completion tokens reserved for a request without `max_tokens`.
    pub default_max_tokens: u64,
    pub bytes_per_token: u64,
}

impl Snapshot {
    pub fn new(
        policy: Policy,
        estimate: &LimitSettings,
        metrics: &Arc<Metrics>,
        suspensions: Arc<Suspensions>,
    ) -> Self {
        Self::build(policy, estimate, metrics, suspensions, None)
    }

    /// A snapshot for a reloaded policy. Tenants whose limits did not change keep their limiter,
    /// so a reload neither resets a quota nor forgets requests in flight.
    pub fn reloaded(policy: Policy, estimate: &LimitSettings, metrics: &Arc<Metrics>, previous: &Snapshot) -> Self {
        Self::build(policy, estimate, metrics, previous.suspensions.clone(), Some(previous))
    }

    fn build(
        policy: Policy,
        estimate: &LimitSettings,
        metrics: &Arc<Metrics>,
        suspensions: Arc<Suspensions>,
        previous: Option<&Snapshot>,
    ) -> Self {
        let clock = governor::clock::DefaultClock::default();
        // A tenant whose limits did not change keeps its cell, made or not: a limiter first made
        // on the old snapshot while this one is built is still the one the new snapshot uses.
        let limiters = carried_limiters(&policy, previous);
        let pools = Arc::new(Pools::new(policy.endpoints(), previous.map(|p| (p.policy.endpoints(), &*p.pools))));
        metrics.policy_info.reset();
        metrics.policy_info.with_label_values(&[policy.version()]).set(1);
        let suspended = resolve(&policy, &suspensions, metrics);
        Self {
            metrics: Arc::new(Handles::new(metrics, &policy)),
            policy: Arc::new(policy),
            limiters,
            clock,
            pools,
            suspensions,
            suspended,
            default_max_tokens: estimate.default_max_tokens,
            bytes_per_token: estimate.bytes_per_token.max(1),
        }
    }

    /// The same snapshot with another set of suspensions.
    pub fn with_suspensions(&self, suspensions: Arc<Suspensions>, metrics: &Metrics) -> Self {
        let suspended = resolve(&self.policy, &suspensions, metrics);
        Self {
            policy: self.policy.clone(),
            metrics: self.metrics.clone(),
            limiters: self.limiters.clone(),
            clock: self.clock.clone(),
            pools: self.pools.clone(),
            suspensions,
            suspended,
            default_max_tokens: self.default_max_tokens,
            bytes_per_token: self.bytes_per_token,
        }
    }

    pub fn limiter(&self, t: TenantIdx) -> Option<&Arc<Limiter>> {
        let (s, k) = self.policy.tenants().position(t)?;
        let cell = self.limiters.get(s)?.get(k)?;
        if let Some(made) = cell.get() {
            return Some(made);
        }
        let spec = self.policy.tenant(t)?.limits;
        Some(cell.get_or_init(|| Arc::new(Limiter::with_clock(spec, &self.clock))))
    }

    /// The upstream connection pools, one per origin.
    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// What forwarding to `endpoints` (in order of preference) needs from this snapshot.
    pub fn targets<'a>(&'a self, endpoints: &'a [EndpointIdx]) -> Targets<'a> {
        Targets { endpoints, table: self.policy.endpoints(), pools: &self.pools, metrics: &self.metrics }
    }

    /// Whether an operator has suspended this tenant.
    pub fn kill_switched(&self, t: TenantIdx) -> bool {
        self.suspended.get(t as usize).copied().unwrap_or(false)
    }

    /// How many of this policy's tenants the kill switch suspends.
    pub fn kill_switched_count(&self) -> usize {
        self.suspended.iter().filter(|s| **s).count()
    }
}

/// A cell per tenant of `policy`, by segment: the previous snapshot's for a tenant whose limits
/// did not change. A segment the reload kept takes its cells as they are.
fn carried_limiters(policy: &Policy, previous: Option<&Snapshot>) -> Arc<[Arc<[Arc<LimiterCell>]>]> {
    let fresh = |n: usize| -> Arc<[Arc<LimiterCell>]> { (0..n).map(|_| Arc::default()).collect() };
    let segments = policy.tenants().segments();
    let Some(p) = previous else { return segments.iter().map(|s| fresh(s.tenants.len())).collect() };
    let kept: HashMap<*const TenantSegment, &Arc<[Arc<LimiterCell>]>> =
        p.policy.tenants().segments().iter().map(Arc::as_ptr).zip(p.limiters.iter()).collect();
    let cell = |old: TenantIdx| {
        let (s, k) = p.policy.tenants().position(old)?;
        p.limiters.get(s)?.get(k).cloned()
    };
    segments
        .iter()
        .map(|segment| match kept.get(&Arc::as_ptr(segment)) {
            Some(&cells) => cells.clone(),
            None => segment
                .tenants
                .iter()
                .map(|t| {
                    let old = p
                        .policy
                        .tenant_by_id(&t.id)
                        .filter(|&o| p.policy.tenant(o).is_some_and(|o| o.limits == t.limits));
                    old.and_then(cell).unwrap_or_default()
                })
                .collect(),
        })
        .collect()
}

/// The suspensions as a flag per tenant of `policy`; the gauge follows.
fn resolve(policy: &Policy, suspensions: &Suspensions, metrics: &Metrics) -> Box<[bool]> {
    // By the suspensions, which are few, not by the tenants, which may be a million.
    let mut suspended = vec![false; policy.tenants().len()].into_boxed_slice();
    for t in suspensions.iter().filter_map(|(id, _)| policy.tenant_by_id(id)) {
        if let Some(s) = suspended.get_mut(t as usize) {
            *s = true;
        }
    }
    metrics.kill_switch_suspended.set(suspended.iter().filter(|s| **s).count() as i64);
    suspended
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Demand;

    fn example() -> Policy {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        crate::config::load(&dir, &|_| Some("test".into())).unwrap().policy
    }

    fn admits(s: &Snapshot, tenant: &str) -> bool {
        let t = s.policy.tenant_by_id(tenant).unwrap();
        s.limiter(t).unwrap().admit(Demand { tokens: 1, flops_per_token: None, day: 0 }).is_ok()
    }

    #[test]
    fn a_reload_keeps_each_limiter_made_or_not_while_the_limits_stay() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let settings = LimitSettings::default();
        let old = Snapshot::new(example(), &settings, &metrics, Arc::default());
        // demo-limited may make 3 requests a minute.
        assert!((0..3).all(|_| admits(&old, "demo-limited")));
        let new = Snapshot::reloaded(example(), &settings, &metrics, &old);
        assert!(!admits(&new, "demo-limited"), "the reload reset the tenant's quota");
        // A limiter first made on the old snapshot after the new one was built is the new one's.
        let us = |s: &Snapshot| s.limiter(s.policy.tenant_by_id("demo-us").unwrap()).unwrap().clone();
        assert!(Arc::ptr_eq(&us(&old), &us(&new)));

        // Changed limits make a new limiter; the other tenants keep theirs.
        let dir = crate::config::example_copy();
        let tenants = std::fs::read_to_string(dir.path().join("tenants.toml")).unwrap();
        let tenants = tenants.replacen("requests_per_minute = 3 ", "requests_per_minute = 10 ", 1);
        std::fs::write(dir.path().join("tenants.toml"), tenants).unwrap();
        let changed = crate::config::load_after(dir.path(), &|_| Some("test".into()), Some(&new.policy)).unwrap();
        let after = Snapshot::reloaded(changed.policy, &settings, &metrics, &new);
        assert!(admits(&after, "demo-limited"));
        assert!(Arc::ptr_eq(&us(&new), &us(&after)));
    }
}
