//! Per-tenant limits: requests per minute with a burst (GCRA, `governor`), tokens per minute
//! (reserved before forwarding, settled against the upstream's reported usage), concurrent
//! requests in flight, and a daily inference-compute budget in FLOPs. Each tenant has its own
//! [`Limiter`], indexed by tenant, so checking a limit touches no shared map and takes no lock.
//! In cluster mode the same limits hold across replicas through leases on the store
//! ([`shared`]).

mod bucket;
mod shared;

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

pub use bucket::{DailyBudget, TokenBucket};
pub use shared::LEASE;

use crate::cluster::Cluster;
use crate::reason::Reason;
use shared::Leases;

/// FLOPs per GFLOP: the compute budget is kept in whole GFLOPs so it fits a `u64` at any scale.
const GFLOP: f64 = 1e9;

/// A tenant's effective limits, merged from its own and its jurisdiction's at config load.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimitSpec {
    pub requests_per_minute: Option<NonZeroU32>,
    pub request_burst: Option<NonZeroU32>,
    pub tokens_per_minute: Option<NonZeroU64>,
    pub max_concurrent: Option<NonZeroU32>,
    /// Inference FLOPs per UTC day, charged as 2 x parameters x tokens.
    pub daily_inference_flops: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
    Concurrency,
    Compute,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::Concurrency => "concurrency",
            Self::Compute => "compute",
        }
    }

    pub fn reason(self) -> Reason {
        match self {
            Self::Requests => Reason::RateLimitExceeded,
            Self::Tokens => Reason::TokenRateLimitExceeded,
            Self::Concurrency => Reason::ConcurrencyLimitExceeded,
            Self::Compute => Reason::ComputeQuotaExceeded,
        }
    }
}

/// What is left under one rate limit: its size, how much of it remains, and how long until it is
/// whole again, as OpenAI's `x-ratelimit-*` headers report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

/// The headroom under a tenant's request and token rate limits, for response headers; `None`
/// for a limit the tenant does not have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeadroom {
    pub requests: Option<Headroom>,
    pub tokens: Option<Headroom>,
}

/// A refusal: which limit, when to retry, and the headroom left under each rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", message(*kind))]
pub struct RateLimited {
    pub kind: LimitKind,
    pub retry_after: Duration,
    pub headroom: RateHeadroom,
}

fn message(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::Requests => "Rate limit reached for requests per minute.",
        LimitKind::Tokens => "Rate limit reached for tokens per minute.",
        LimitKind::Concurrency => "Too many requests in flight for this tenant.",
        LimitKind::Compute => "The tenant's daily inference-compute quota is used up.",
    }
}

type RequestLimiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// One tenant's live limit state.
pub struct Limiter {
    spec: LimitSpec,
    requests: Option<RequestLimiter>,
    tokens: Option<TokenBucket>,
    in_flight: AtomicU32,
    /// Requests between authentication and their end, bodies still being read included: the
    /// concurrency limit applied before a body is read ([`Limiter::enter`]).
    in_progress: AtomicU32,
    compute: Option<DailyBudget>,
    /// Cluster mode: this tenant's leases on the store, made on its first request.
    leases: OnceLock<Leases>,
    /// Cluster mode: what decides while the store cannot be reached, made the first time.
    fallback: OnceLock<Arc<Limiter>>,
}

/// A decision in cluster mode, and whether the per-replica fallback made it.
pub struct Admission {
    pub result: Result<(Ticket, RateHeadroom), RateLimited>,
    pub fallback: bool,
}

/// What a request needs from the limits: its token estimate and, for models with a declared
/// parameter count, the FLOPs one token costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    pub tokens: u64,
    pub flops_per_token: Option<f64>,
    pub day: i64,
}

/// A request's place among its tenant's requests in progress, given up when dropped.
pub struct Place {
    limiter: Arc<Limiter>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.limiter.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An admitted request's reservations; settled when the response ends, released if dropped.
pub struct Ticket {
    limiter: Arc<Limiter>,
    tokens: u64,
    gflops: u64,
    flops_per_token: Option<f64>,
    day: i64,
    holds_slot: bool,
    /// Admitted on the tenant's leases on the cluster store.
    shared: bool,
}

// === impl Limiter ===

impl Limiter {
    pub fn new(spec: LimitSpec) -> Self {
        Self::with_clock(spec, &DefaultClock::default())
    }

    /// Builds a limiter on a shared clock: each clock of its own would calibrate and allocate
    /// again, for every one of thousands of tenants.
    pub fn with_clock(spec: LimitSpec, clock: &DefaultClock) -> Self {
        let requests = spec.requests_per_minute.map(|rpm| {
            let burst = spec.request_burst.unwrap_or(rpm);
            RateLimiter::direct_with_clock(Quota::per_minute(rpm).allow_burst(burst), clock.clone())
                .with_middleware::<StateInformationMiddleware>()
        });
        Self {
            spec,
            requests,
            tokens: spec.tokens_per_minute.map(|t| TokenBucket::per_minute(t.get())),
            in_flight: AtomicU32::new(0),
            in_progress: AtomicU32::new(0),
            compute: spec.daily_inference_flops.map(|f| DailyBudget::new((f / GFLOP) as u64)),
            leases: OnceLock::new(),
            fallback: OnceLock::new(),
        }
    }

    /// Takes a place among the tenant's requests in progress on this replica, before its body
    /// is read: a tenant at `max_concurrent` cannot make the gateway hold one more body. The
    /// admission after the body (`admit`, and in cluster mode the store's slots) still decides the
    /// limit proper; this only bounds what waits in front of it.
    pub fn enter(self: &Arc<Self>) -> Result<Option<Place>, RateLimited> {
        let Some(max) = self.spec.max_concurrent else { return Ok(None) };
        let before = self.in_progress.fetch_add(1, Ordering::AcqRel);
        let place = Place { limiter: self.clone() };
        if before >= max.get() {
            drop(place);
            return Err(RateLimited {
                kind: LimitKind::Concurrency,
                retry_after: Duration::from_secs(1),
                headroom: RateHeadroom::default(),
            });
        }
        Ok(Some(place))
    }

    pub fn is_unlimited(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none() && self.spec.max_concurrent.is_none() && self.compute.is_none()
    }

    /// Admits a request against every configured limit, or refuses it with the first limit it
    /// breaks. Reservations already made are released when a later check refuses.
    pub fn admit(self: &Arc<Self>, demand: Demand) -> Result<(Ticket, RateHeadroom), RateLimited> {
        // The token bucket's checks share one clock read, taken only when there is a bucket
        // (the request-rate limiter reads its own clock).
        let tokens = self.tokens.as_ref().map(|bucket| (bucket, Instant::now()));
        let mut headroom = RateHeadroom::default();
        if let Some(rl) = &self.requests {
            let limit = u64::from(self.spec.requests_per_minute.map_or(0, NonZeroU32::get));
            match rl.check() {
                Ok(snap) => {
                    let remaining = u64::from(snap.remaining_burst_capacity());
                    let per = 60_000_000_000 / limit.max(1);
                    let burst =
                        u64::from(self.spec.request_burst.or(self.spec.requests_per_minute).map_or(1, NonZeroU32::get));
                    let reset = Duration::from_nanos(burst.saturating_sub(remaining).saturating_mul(per));
                    headroom.requests = Some(Headroom { limit, remaining, reset });
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(rl.clock().now());
                    headroom.requests = Some(Headroom { limit, remaining: 0, reset: wait });
                    headroom.tokens = token_headroom(tokens);
                    return Err(RateLimited { kind: LimitKind::Requests, retry_after: wait, headroom });
                }
            }
        }
        let mut ticket = Ticket {
            limiter: self.clone(),
            tokens: 0,
            gflops: 0,
            flops_per_token: demand.flops_per_token,
            day: demand.day,
            holds_slot: false,
            shared: false,
        };
        if let Some(max) = self.spec.max_concurrent {
            let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
            ticket.holds_slot = true;
            if before >= max.get() {
                headroom.tokens = token_headroom(tokens);
                // Dropping the ticket gives the slot back.
                return Err(RateLimited {
                    kind: LimitKind::Concurrency,
                    retry_after: Duration::from_secs(1),
                    headroom,
                });
            }
        }
        if let Some((bucket, now)) = tokens {
            if let Err(wait) = bucket.take(demand.tokens, now) {
                headroom.tokens =
                    Some(Headroom { limit: bucket.capacity(), remaining: bucket.remaining(now), reset: wait });
                return Err(RateLimited { kind: LimitKind::Tokens, retry_after: wait, headroom });
            }
            ticket.tokens = demand.tokens;
        }
        if let (Some(budget), Some(fpt)) = (&self.compute, demand.flops_per_token) {
            let gflops = gflops(fpt, demand.tokens);
            if !budget.take(gflops, demand.day) {
                if let Some((bucket, now)) = tokens {
                    bucket.settle(std::mem::take(&mut ticket.tokens), 0, now);
                }
                headroom.tokens = token_headroom(tokens);
                let retry_after = until_next_utc_day();
                return Err(RateLimited { kind: LimitKind::Compute, retry_after, headroom });
            }
            ticket.gflops = gflops;
        }
        headroom.tokens = token_headroom(tokens);
        Ok((ticket, headroom))
    }

    /// Admits a request against limits shared across replicas through `store` (cluster mode).
    /// When the store is needed and cannot be reached, the tenant's limits divided by the
    /// replicas last seen decide on this replica alone.
    pub async fn admit_shared(self: &Arc<Self>, tenant: &str, demand: Demand, store: &Arc<Cluster>) -> Admission {
        if self.is_unlimited() {
            return Admission { result: self.admit(demand), fallback: false };
        }
        let leases = self.leases.get_or_init(|| Leases::new(tenant, store));
        match leases.admit(self, demand).await {
            Ok(result) => Admission { result, fallback: false },
            Err(shared::Down) => {
                let fallback =
                    self.fallback.get_or_init(|| Arc::new(Limiter::new(self.spec.per_replica(store.live_replicas()))));
                Admission { result: fallback.admit(demand), fallback: true }
            }
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// GFLOPs of inference compute used on `day`.
    pub fn compute_used(&self, day: i64) -> Option<u64> {
        self.compute.as_ref().map(|c| c.used(day))
    }
}

fn gflops(flops_per_token: f64, tokens: u64) -> u64 {
    (flops_per_token * tokens as f64 / GFLOP).ceil() as u64
}

fn until_next_utc_day() -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    Duration::from_secs(86_400 - now % 86_400)
}

/// The token bucket's state as of `at`, for the rate-limit headers.
fn token_headroom(tokens: Option<(&TokenBucket, Instant)>) -> Option<Headroom> {
    tokens.map(|(b, at)| Headroom { limit: b.capacity(), remaining: b.remaining(at), reset: b.reset(at) })
}

// === impl Ticket ===

impl Ticket {
    /// Replaces the reservations, as of `at`, with what the request actually used. Returns the
    /// FLOPs charged to the compute quota, when the model declares a parameter count.
    pub fn settle(mut self, tokens_used: u64, at: Instant) -> Option<f64> {
        let flops = self.flops_per_token.map(|fpt| fpt * tokens_used as f64);
        if self.shared {
            let used_gflops = self.flops_per_token.map_or(0, |fpt| gflops(fpt, tokens_used));
            let tokens = (
                std::mem::take(&mut self.tokens),
                if self.limiter.spec.tokens_per_minute.is_some() { tokens_used } else { 0 },
            );
            let compute = (
                std::mem::take(&mut self.gflops),
                if self.limiter.spec.daily_inference_flops.is_some() { used_gflops } else { 0 },
            );
            if let Some(leases) = self.limiter.leases.get() {
                leases.settle(tokens, compute, self.day);
            }
            return flops;
        }
        if let Some(bucket) = &self.limiter.tokens {
            bucket.settle(std::mem::take(&mut self.tokens), tokens_used, at);
        }
        if let (Some(budget), Some(fpt)) = (&self.limiter.compute, self.flops_per_token) {
            budget.settle(std::mem::take(&mut self.gflops), gflops(fpt, tokens_used), self.day);
        }
        flops
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.holds_slot {
            return;
        }
        match self.limiter.leases.get().filter(|_| self.shared) {
            Some(leases) => leases.release_slot(&self.limiter),
            None => {
                self.limiter.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        }
        // A request that never reported usage keeps its reservations: it is charged the estimate.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    fn demand(tokens: u64) -> Demand {
        Demand { tokens, flops_per_token: None, day: 0 }
    }

    #[test]
    fn limits_requests_burst_then_429_with_retry_after() {
        let l = Arc::new(Limiter::new(LimitSpec { requests_per_minute: nz(3), ..Default::default() }));
        for want in [2, 1, 0] {
            let (_, headroom) = l.admit(demand(1)).ok().unwrap();
            assert_eq!(headroom.requests.unwrap().remaining, want);
        }
        let e = l.admit(demand(1)).err().unwrap();
        assert_eq!(e.kind, LimitKind::Requests);
        assert!(e.retry_after > Duration::from_secs(19) && e.retry_after <= Duration::from_secs(20), "{e:?}");
        assert_eq!(e.headroom.requests.unwrap().remaining, 0);
    }

    #[test]
    fn limits_concurrency_slot_is_held_until_the_ticket_drops() {
        let l = Arc::new(Limiter::new(LimitSpec { max_concurrent: nz(2), ..Default::default() }));
        let a = l.admit(demand(1)).ok().unwrap();
        let b = l.admit(demand(1)).ok().unwrap();
        assert_eq!(l.admit(demand(1)).err().unwrap().kind, LimitKind::Concurrency);
        assert_eq!(l.in_flight(), 2, "a refused request does not keep a slot");
        drop(a);
        assert!(l.admit(demand(1)).is_ok());
        drop(b);
        assert_eq!(l.in_flight(), 0);
    }

    #[test]
    fn limits_tokens_are_reserved_then_settled_to_usage() {
        let l = Arc::new(Limiter::new(LimitSpec { tokens_per_minute: NonZeroU64::new(1_000), ..Default::default() }));
        let (t, headroom) = l.admit(demand(900)).ok().unwrap();
        assert!(headroom.tokens.unwrap().remaining <= 100);
        assert_eq!(l.admit(demand(200)).err().unwrap().kind, LimitKind::Tokens);
        assert_eq!(t.settle(50, Instant::now()), None);
        assert!(l.admit(demand(900)).is_ok(), "unused tokens were given back");
    }

    #[test]
    fn limits_compute_quota_charges_two_n_per_token() {
        // 2 x 8e9 parameters = 1.6e10 FLOPs per token; 1.6e13 FLOPs a day = 1,000 tokens.
        let spec = LimitSpec { daily_inference_flops: Some(1.6e13), ..Default::default() };
        let l = Arc::new(Limiter::new(spec));
        let d = |tokens| Demand { tokens, flops_per_token: Some(1.6e10), day: 7 };
        let (t, _) = l.admit(d(600)).ok().unwrap();
        assert_eq!(t.settle(500, Instant::now()), Some(8e12));
        assert_eq!(l.compute_used(7), Some(8_000));
        assert!(l.admit(d(500)).is_ok());
        let e = l.admit(d(1)).err().unwrap();
        assert_eq!(e.kind, LimitKind::Compute);
        assert!(e.retry_after <= Duration::from_secs(86_400));
        // Models without a parameter count are not charged.
        assert!(l.admit(demand(10_000)).is_ok());
    }

    #[test]
    fn limits_unlimited_spec_admits_everything() {
        let l = Arc::new(Limiter::new(LimitSpec::default()));
        assert!(l.is_unlimited());
        for _ in 0..1000 {
            let (t, headroom) = l.admit(demand(1_000_000)).ok().unwrap();
            assert_eq!(headroom, RateHeadroom::default());
            drop(t);
        }
    }
}
