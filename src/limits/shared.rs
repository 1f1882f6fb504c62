//! Limits shared across replicas (cluster mode). Each replica leases a slice of a tenant's limit
//! from the store and spends it locally, so most requests make no round trip: only the request
//! that finds the slice spent (or older than [`LEASE`]) waits for the store, and it hands back
//! what is left of the old lease in the same call. When the store cannot be reached, the tenant's
//! fallback limiter (its limits divided by the replicas last seen) decides instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::cluster::limits::RateSpec;

use super::{
    Demand, GFLOP, Headroom, LimitKind, LimitSpec, Limiter, RateHeadroom, RateLimited, Ticket, gflops,
    until_next_utc_day,
};

/// How long a lease may be spent locally. It bounds how stale a replica's view of a shared
/// limit can be: past it, the next request settles with the store.
pub const LEASE: Duration = Duration::from_secs(1);

/// Names each lease, so a limiter rebuilt by a reload never overwrites the slots that its
/// predecessor's requests still hold in the store.
static LEASE_IDS: AtomicU64 = AtomicU64::new(0);

/// The store could not be reached (or was recently found down): decide with the fallback.
pub(super) struct Down;

/// Units leased from the store for one limit.
#[derive(Default)]
struct Balance {
    /// Left to spend; negative when usage settled above its reservation and is owed.
    units: AtomicI64,
    /// When the lease ends, in nanoseconds since [`Leases::base`] (0: no lease).
    until: AtomicU64,
    /// The day a budget's lease counts against (0 for rates).
    day: AtomicI64,
    /// The store's answer at the last lease, for the rate-limit headers.
    left: AtomicU64,
    reset_at: AtomicU64,
    /// After the store refused `refused_need` units: until when requests needing as much are
    /// refused here without asking again, and when the store said they would fit.
    refused_until: AtomicU64,
    refused_need: AtomicU64,
    fits_at: AtomicU64,
}

impl Balance {
    fn take(&self, n: u64, now: u64, day: i64) -> bool {
        if self.until.load(Ordering::Acquire) <= now || self.day.load(Ordering::Acquire) != day {
            return false;
        }
        let n = signed(n);
        self.units.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| (u >= n).then(|| u - n)).is_ok()
    }

    /// How long until `n` units could fit, while a refusal of as many is fresh. A tenant over
    /// its limit is then refused here, not by a round trip per request; never for longer than
    /// a lease, as other replicas may give units back sooner.
    fn refused(&self, n: u64, now: u64) -> Option<Duration> {
        (now < self.refused_until.load(Ordering::Acquire) && n >= self.refused_need.load(Ordering::Acquire))
            .then(|| Duration::from_nanos(self.fits_at.load(Ordering::Acquire).saturating_sub(now)))
    }

    /// Notes that the store refused `need` units at `now`, saying they fit after `wait`.
    fn refuse(&self, need: u64, now: u64, wait: Duration) {
        let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.refused_need.store(need, Ordering::Release);
        self.fits_at.store(now.saturating_add(wait), Ordering::Release);
        self.refused_until.store(now.saturating_add(wait.min(LEASE.as_nanos() as u64)), Ordering::Release);
    }

    /// Gives `n` units back to the lease (negative: charges them).
    fn give(&self, n: i64) {
        self.units.fetch_add(n, Ordering::AcqRel);
    }

    fn headroom(&self, limit: u64, now: u64) -> Headroom {
        let own = u64::try_from(self.units.load(Ordering::Acquire)).unwrap_or(0);
        Headroom {
            limit,
            remaining: self.left.load(Ordering::Acquire).saturating_add(own).min(limit),
            reset: Duration::from_nanos(self.reset_at.load(Ordering::Acquire).saturating_sub(now)),
        }
    }
}

/// Units as a signed count, saturating.
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A failed call to the store: logged, the store skipped for a second, the fallback decides.
fn failed(store: &Cluster, at: Instant, e: &crate::cluster::ClusterError) -> Down {
    tracing::warn!(error = %e, "Shared limits: the cluster store failed; per-replica limits decide.");
    store.mark_limits_down(at);
    Down
}

/// Slots held in the store and in flight here, in one word so that both move together.
fn split(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

/// One tenant's leases on this replica.
pub(super) struct Leases {
    store: Arc<Cluster>,
    base: Instant,
    /// This lease's field in the store's concurrency hash: `replica/lease`.
    field: String,
    requests_key: String,
    tokens_key: String,
    compute_key: String,
    slots_key: String,
    requests: Balance,
    tokens: Balance,
    compute: Balance,
    slots: AtomicU64,
    /// One call to the store at a time per tenant: requests that find the lease spent while
    /// another is renewing it wait for that renewal instead of each making their own.
    renew: tokio::sync::Mutex<()>,
}

/// A limit as leased: the slice one lease adds beyond what the request needs.
fn extra(limit: u64, fraction: f64) -> u64 {
    ((limit as f64 * fraction) as u64).max(1) - 1
}

impl Leases {
    pub(super) fn new(tenant: &str, store: &Arc<Cluster>) -> Self {
        let id = LEASE_IDS.fetch_add(1, Ordering::Relaxed);
        Self {
            store: store.clone(),
            base: Instant::now(),
            field: format!("{}/{id}", store.replica),
            requests_key: store.limit_key(tenant, "requests"),
            tokens_key: store.limit_key(tenant, "tokens"),
            compute_key: store.limit_key(tenant, "compute"),
            slots_key: store.limit_key(tenant, "concurrency"),
            requests: Balance::default(),
            tokens: Balance::default(),
            compute: Balance::default(),
            slots: AtomicU64::new(0),
            renew: tokio::sync::Mutex::new(()),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Admits a request against the tenant's shared limits: `Ok(Err(_))` is a refusal, `Err`
    /// means the store was needed and could not be reached (what this call took is given back).
    pub(super) async fn admit(
        &self,
        limiter: &Arc<Limiter>,
        demand: Demand,
    ) -> Result<Result<(Ticket, RateHeadroom), RateLimited>, Down> {
        let now = self.nanos(Instant::now());
        let mut headroom = RateHeadroom::default();
        let mut ticket = Ticket {
            limiter: limiter.clone(),
            tokens: 0,
            gflops: 0,
            flops_per_token: demand.flops_per_token,
            day: demand.day,
            holds_slot: false,
            shared: true,
        };
        let mut took_request = false;
        match self.admit_steps(demand, now, &mut ticket, &mut took_request, &mut headroom).await {
            Ok(Ok(())) => Ok(Ok((ticket, headroom))),
            Ok(Err(kind_wait)) => {
                let (kind, retry_after) = kind_wait;
                Ok(Err(RateLimited { kind, retry_after, headroom }))
            }
            Err(Down) => {
                // The fallback decides this request afresh: nothing taken here may count twice.
                if took_request {
                    self.requests.give(1);
                }
                self.undo(&mut ticket);
                Err(Down)
            }
        }
    }

    async fn admit_steps(
        &self,
        demand: Demand,
        now: u64,
        ticket: &mut Ticket,
        took_request: &mut bool,
        headroom: &mut RateHeadroom,
    ) -> Result<Result<(), (LimitKind, Duration)>, Down> {
        let spec = ticket.limiter.spec;
        let fraction = self.store.lease_fraction;
        if let Some(rpm) = spec.requests_per_minute {
            let rpm = u64::from(rpm.get());
            let burst = u64::from(spec.request_burst.map_or(rpm as u32, |b| b.get()));
            let per = 60e6 / rpm as f64;
            let rate = RateSpec { micros_per_cell: per, tolerance_micros: per * burst as f64 };
            let outcome = if self.requests.take(1, now, 0) {
                Ok(())
            } else if let Some(wait) = self.requests.refused(1, now) {
                Err(wait)
            } else {
                let extra = extra(rpm, fraction).min(burst.saturating_sub(1));
                self.renew_rate(&self.requests, &self.requests_key, rate, 1, extra).await?
            };
            headroom.requests = Some(self.requests.headroom(rpm, now));
            if let Err(wait) = outcome {
                headroom.tokens = self.token_headroom(&spec, now);
                return Ok(Err((LimitKind::Requests, wait)));
            }
            *took_request = true;
        }
        if let Some(max) = spec.max_concurrent {
            let spare = extra(u64::from(max.get()), fraction) as u32;
            if !self.take_slot() && !self.renew_slot(max.get(), spare).await? {
                headroom.tokens = self.token_headroom(&spec, now);
                return Ok(Err((LimitKind::Concurrency, Duration::from_secs(1))));
            }
            ticket.holds_slot = true;
        }
        if let Some(tpm) = spec.tokens_per_minute {
            let tpm = tpm.get();
            let rate = RateSpec { micros_per_cell: 60e6 / tpm as f64, tolerance_micros: 60e6 };
            let outcome = if self.tokens.take(demand.tokens, now, 0) {
                Ok(())
            } else if let Some(wait) = self.tokens.refused(demand.tokens, now) {
                Err(wait)
            } else {
                self.renew_rate(&self.tokens, &self.tokens_key, rate, demand.tokens, extra(tpm, fraction)).await?
            };
            headroom.tokens = Some(self.tokens.headroom(tpm, now));
            if let Err(wait) = outcome {
                return Ok(Err((LimitKind::Tokens, wait)));
            }
            ticket.tokens = demand.tokens;
        }
        if let (Some(flops), Some(fpt)) = (spec.daily_inference_flops, demand.flops_per_token) {
            let budget = (flops / GFLOP) as u64;
            let need = gflops(fpt, demand.tokens);
            let granted = self.compute.take(need, now, demand.day)
                || (self.compute.refused(need, now).is_none()
                    && self.renew_budget(budget, need, extra(budget, fraction), demand.day).await?);
            if !granted {
                self.tokens.give(signed(std::mem::take(&mut ticket.tokens)));
                headroom.tokens = self.token_headroom(&spec, now);
                return Ok(Err((LimitKind::Compute, until_next_utc_day())));
            }
            ticket.gflops = need;
        }
        Ok(Ok(()))
    }

    fn token_headroom(&self, spec: &LimitSpec, now: u64) -> Option<Headroom> {
        spec.tokens_per_minute.map(|t| self.tokens.headroom(t.get(), now))
    }

    /// Gives back what `ticket` reserved, when the request is decided elsewhere.
    fn undo(&self, ticket: &mut Ticket) {
        self.tokens.give(signed(std::mem::take(&mut ticket.tokens)));
        self.compute.give(signed(std::mem::take(&mut ticket.gflops)));
        if std::mem::take(&mut ticket.holds_slot) {
            self.slots.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Settles the old lease and takes a new one of `need` plus up to `extra` cells.
    async fn renew_rate(
        &self,
        balance: &Balance,
        key: &str,
        rate: RateSpec,
        need: u64,
        extra: u64,
    ) -> Result<Result<(), Duration>, Down> {
        let store = &*self.store;
        let _one = self.renew.lock().await;
        let at = Instant::now();
        let now = self.nanos(at);
        if balance.take(need, now, 0) {
            return Ok(Ok(()));
        }
        // The renewal this one waited for may have been refused.
        if let Some(wait) = balance.refused(need, now) {
            return Ok(Err(wait));
        }
        if store.limits_down(at) {
            return Err(Down);
        }
        // What is left of the old lease goes back in the same step (what is owed is charged).
        let leftover = balance.units.swap(0, Ordering::AcqRel);
        match store.take_rate(key, rate, -leftover, need, need.saturating_add(extra)).await {
            Err(e) => {
                balance.give(leftover);
                Err(failed(store, at, &e))
            }
            Ok(g) => {
                balance.left.store(g.left, Ordering::Release);
                balance.reset_at.store(now.saturating_add(g.reset.as_nanos() as u64), Ordering::Release);
                if g.granted < need || (need > 0 && g.granted == 0) {
                    balance.until.store(0, Ordering::Release);
                    balance.refuse(need, now, g.wait);
                    return Ok(Err(g.wait));
                }
                balance.refused_until.store(0, Ordering::Release);
                balance.give(signed(g.granted - need));
                balance.until.store(now + LEASE.as_nanos() as u64, Ordering::Release);
                Ok(Ok(()))
            }
        }
    }

    /// The same for a daily budget; whether the need was granted.
    async fn renew_budget(&self, budget: u64, need: u64, extra: u64, day: i64) -> Result<bool, Down> {
        let store = &*self.store;
        let _one = self.renew.lock().await;
        let at = Instant::now();
        let now = self.nanos(at);
        if self.compute.take(need, now, day) {
            return Ok(true);
        }
        if self.compute.refused(need, now).is_some() {
            return Ok(false);
        }
        if store.limits_down(at) {
            return Err(Down);
        }
        let b = &self.compute;
        let leftover = b.units.swap(0, Ordering::AcqRel);
        // A lease from an earlier day is not carried into this one.
        let adjust = if b.day.load(Ordering::Acquire) == day { -leftover } else { 0 };
        let key = format!("{}:{day}", self.compute_key);
        match store.take_budget(&key, budget, adjust, need, need.saturating_add(extra)).await {
            Err(e) => {
                b.give(leftover);
                Err(failed(store, at, &e))
            }
            Ok(granted) if granted >= need && (need == 0 || granted > 0) => {
                b.refused_until.store(0, Ordering::Release);
                b.day.store(day, Ordering::Release);
                b.give(signed(granted - need));
                b.until.store(now + LEASE.as_nanos() as u64, Ordering::Release);
                Ok(true)
            }
            Ok(_) => {
                b.day.store(day, Ordering::Release);
                b.until.store(0, Ordering::Release);
                // The day's budget only comes back as reservations settle: ask again a lease on.
                b.refuse(need, now, LEASE);
                Ok(false)
            }
        }
    }

    /// Takes a slot this replica already holds, if one is free.
    fn take_slot(&self) -> bool {
        self.slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                let (held, in_flight) = split(w);
                (in_flight < held).then_some(w + 1)
            })
            .is_ok()
    }

    /// Asks the store for a slot (and up to `spare` more); whether one was granted.
    async fn renew_slot(&self, max: u32, spare: u32) -> Result<bool, Down> {
        let store = &*self.store;
        let _one = self.renew.lock().await;
        if self.take_slot() {
            return Ok(true);
        }
        let at = Instant::now();
        if store.limits_down(at) {
            return Err(Down);
        }
        // Only this lock moves `held`, so what is sent is what the store should record.
        let (held, in_flight) = split(self.slots.load(Ordering::Acquire));
        let need = (in_flight + 1).saturating_sub(held).max(1);
        match store.take_slots(&self.slots_key, &self.field, max, held, need, need.saturating_add(spare)).await {
            Err(e) => Err(failed(store, at, &e)),
            Ok(granted) if granted >= need => {
                self.slots.fetch_add((u64::from(granted) << 32) + 1, Ordering::AcqRel);
                Ok(true)
            }
            Ok(_) => Ok(false),
        }
    }

    /// Ends a request's hold on its slot. Slots left idle beyond twice the spare a lease takes
    /// go back to the store off the response path, so idle replicas do not sit on a tenant's
    /// concurrency.
    pub(super) fn release_slot(&self, limiter: &Arc<Limiter>) {
        let Some(max) = limiter.spec.max_concurrent else { return };
        let spare = extra(u64::from(max.get()), self.store.lease_fraction) as u32;
        let (held, in_flight) = split(self.slots.fetch_sub(1, Ordering::AcqRel) - 1);
        if held - in_flight <= spare.saturating_mul(2) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let limiter = limiter.clone();
        runtime.spawn(async move {
            if let Some(leases) = limiter.leases.get() {
                leases.give_back_slots(max.get(), spare).await;
            }
        });
    }

    async fn give_back_slots(&self, max: u32, spare: u32) {
        let store = &*self.store;
        let _one = self.renew.lock().await;
        let mut keep = 0;
        // Lowered here first: the store counting a slot too many for a moment is the safe side.
        let lowered = self.slots.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            let (held, in_flight) = split(w);
            keep = in_flight.saturating_add(spare);
            (held > keep).then_some((u64::from(keep) << 32) | u64::from(in_flight))
        });
        if lowered.is_err() || store.limits_down(Instant::now()) {
            return;
        }
        // A failure leaves the store counting too many until this lease's next call corrects it.
        if let Err(e) = store.take_slots(&self.slots_key, &self.field, max, keep, 0, 0).await {
            tracing::debug!(error = %e, "Shared limits: slots not given back yet.");
            store.mark_limits_down(Instant::now());
        }
    }

    /// Settles a shared ticket's reservations against what the request used.
    pub(super) fn settle(&self, tokens: (u64, u64), gflops: (u64, u64), day: i64) {
        let unused = |(reserved, used): (u64, u64)| signed(reserved).saturating_sub(signed(used));
        self.tokens.give(unused(tokens));
        if self.compute.day.load(Ordering::Acquire) == day {
            self.compute.give(unused(gflops));
        }
    }
}

impl LimitSpec {
    /// Each replica's share of these limits when `replicas` split them without the store.
    pub fn per_replica(&self, replicas: u32) -> Self {
        let n = replicas.max(1);
        let share32 = |v: Option<std::num::NonZeroU32>| v.and_then(|v| std::num::NonZeroU32::new(v.get().div_ceil(n)));
        Self {
            requests_per_minute: share32(self.requests_per_minute),
            request_burst: share32(self.request_burst),
            tokens_per_minute: self
                .tokens_per_minute
                .and_then(|v| std::num::NonZeroU64::new(v.get().div_ceil(u64::from(n)))),
            max_concurrent: share32(self.max_concurrent),
            daily_inference_flops: self.daily_inference_flops.map(|f| f / f64::from(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_spends_only_within_its_lease_and_day() {
        let b = Balance::default();
        assert!(!b.take(1, 0, 0), "no lease yet");
        b.give(10);
        b.until.store(100, Ordering::Release);
        assert!(b.take(4, 50, 0));
        assert!(!b.take(7, 50, 0), "only 6 left");
        assert!(!b.take(1, 50, 3), "a budget leased for another day");
        assert!(!b.take(1, 100, 0), "the lease has ended");
        b.give(-10);
        assert!(!b.take(0, 50, 0), "a lease in debt grants nothing");
    }

    #[test]
    fn a_refusal_is_kept_for_as_much_or_more_and_at_most_a_lease() {
        let b = Balance::default();
        let second = LEASE.as_nanos() as u64;
        b.refuse(10, 1_000, Duration::from_secs(5));
        assert_eq!(b.refused(10, 1_000), Some(Duration::from_secs(5)));
        assert_eq!(b.refused(20, 1_000 + second / 2), Some(Duration::from_secs(5) - LEASE / 2));
        assert_eq!(b.refused(9, 1_000), None, "a smaller need may fit: ask the store");
        assert_eq!(b.refused(10, 1_000 + second), None, "kept no longer than a lease");
        b.refuse(1, 0, Duration::from_millis(10));
        assert_eq!(b.refused(1, 10_000_000), None, "nor longer than the store's wait");
    }

    #[test]
    fn slices_are_a_fraction_of_the_limit_and_exact_when_small() {
        assert_eq!(extra(6_000, 0.01), 59);
        assert_eq!(extra(60, 0.01), 0, "a slice under one: every request asks the store");
        assert_eq!(extra(0, 0.5), 0);
    }

    #[test]
    fn per_replica_shares_round_up_and_keep_every_limit() {
        let spec = LimitSpec {
            requests_per_minute: std::num::NonZeroU32::new(100),
            request_burst: None,
            tokens_per_minute: std::num::NonZeroU64::new(1_000),
            max_concurrent: std::num::NonZeroU32::new(2),
            daily_inference_flops: Some(3e12),
        };
        let share = spec.per_replica(3);
        assert_eq!(share.requests_per_minute.unwrap().get(), 34);
        assert_eq!(share.tokens_per_minute.unwrap().get(), 334);
        assert_eq!(share.max_concurrent.unwrap().get(), 1);
        assert_eq!(share.daily_inference_flops, Some(1e12));
        assert_eq!(spec.per_replica(0), spec, "no count known: the whole limit");
    }
}
