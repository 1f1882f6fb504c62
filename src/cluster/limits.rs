//! The store's side of shared limits: one script per kind of limit, each a single atomic step
//! that settles what a replica gives back or owes and grants it a new lease. Every script reads
//! the store's clock, so replicas' clocks need not agree.
//!
//! Grants are partial: a replica asks for what the request needs plus a slice to spend locally,
//! and gets as much of that as fits, or nothing when even the need does not. Near a tenant's
//! limit leases shrink on their own, which keeps the bound across replicas tight where it counts.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::Script;

use super::{Cluster, ClusterError};

/// Requests and tokens per minute: GCRA over weighted cells. The key holds the theoretical
/// arrival time in microseconds of the store's clock. ARGV: microseconds per cell, tolerance in
/// microseconds, cells to charge (negative: to give back), cells needed, cells wanted.
/// Returns {granted, remaining after, microseconds until full, microseconds until `need` fits}.
static RATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local per, tol = tonumber(ARGV[1]), tonumber(ARGV[2])
local adjust, need, want = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tat = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
tat = math.max(now, tat + adjust * per)
local room = math.floor((now + tol - tat) / per)
local grant = 0
if room >= need then grant = math.min(want, room) end
tat = tat + grant * per
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
local wait = 0
if grant == 0 and need > 0 then wait = math.max(0, tat + need * per - now - tol) end
return {grant, math.max(0, room - grant), math.floor(tat - now), math.floor(wait)}",
    )
});

/// A daily budget: the key (one per day) holds the units used. ARGV: budget, units to charge
/// (negative: to give back), needed, wanted, seconds the key outlives the day by.
/// Returns the units granted.
static BUDGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local budget, adjust = tonumber(ARGV[1]), tonumber(ARGV[2])
local need, want = tonumber(ARGV[3]), tonumber(ARGV[4])
local used = math.max(0, tonumber(redis.call('GET', KEYS[1]) or '0') + adjust)
local room = budget - used
local grant = 0
if room >= need then grant = math.min(want, room) end
used = used + grant
redis.call('SET', KEYS[1], string.format('%.0f', used), 'EX', ARGV[5])
return grant",
    )
});

/// Concurrency: the hash holds, per replica lease, the slots it holds. A replica states what it
/// holds (so a lost release or an emptied store is corrected by its next call) and asks for more;
/// the slots of replicas that stopped sending heartbeats are freed first.
/// KEYS: slots, heartbeats, lease stamps. ARGV: field (`replica/lease`), max, held, needed,
/// wanted, milliseconds after which a silent replica counts as gone. Returns the slots granted.
static SLOTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local field, max = ARGV[1], tonumber(ARGV[2])
local held, need, want, gone = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local replica = string.match(field, '^(.*)/[^/]*$') or field
redis.call('HSET', KEYS[3], replica, now)
local total = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= field then
    local r = string.match(all[i], '^(.*)/[^/]*$') or all[i]
    local seen = tonumber(redis.call('HGET', KEYS[3], r) or '0')
    local beat = redis.call('HGET', KEYS[2], r)
    if beat then seen = math.max(seen, tonumber(string.match(beat, ' (%d+)$') or '0')) end
    if now - seen <= gone then total = total + tonumber(all[i + 1]) else redis.call('HDEL', KEYS[1], all[i]) end
  end
end
local room = max - total - held
local grant = 0
if room >= need then grant = math.min(want, room) end
if held + grant > 0 then redis.call('HSET', KEYS[1], field, held + grant) else redis.call('HDEL', KEYS[1], field) end
return grant",
    )
});

/// What the store granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: u64,
    /// Cells left to grant after this one.
    pub left: u64,
    /// Until the rate is whole again.
    pub reset: Duration,
    /// Until the units needed would fit, when none were granted.
    pub wait: Duration,
}

/// One kind of rate limit as the store enforces it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    pub micros_per_cell: f64,
    pub tolerance_micros: f64,
}

impl Cluster {
    /// The key of one of `tenant`'s limits.
    pub fn limit_key(&self, tenant: &str, kind: &str) -> String {
        format!("{}limits:{tenant}:{kind}", self.keys.prefix)
    }

    /// Settles `adjust` cells and asks for `need` (at least) to `want` (at most) under a rate.
    pub async fn take_rate(
        &self,
        key: &str,
        rate: RateSpec,
        adjust: i64,
        need: u64,
        want: u64,
    ) -> Result<Grant, ClusterError> {
        let mut c = self.conn().await?;
        let mut call = RATE.key(key);
        call.arg(rate.micros_per_cell).arg(rate.tolerance_micros).arg(adjust).arg(need).arg(want);
        let (granted, left, reset, wait): (u64, u64, u64, u64) = self.within(call.invoke_async(&mut c)).await?;
        Ok(Grant { granted, left, reset: Duration::from_micros(reset), wait: Duration::from_micros(wait) })
    }

    /// Settles `adjust` units and asks for `need` to `want` of a daily budget; returns how many
    /// were granted.
    pub async fn take_budget(
        &self,
        key: &str,
        budget: u64,
        adjust: i64,
        need: u64,
        want: u64,
    ) -> Result<u64, ClusterError> {
        let mut c = self.conn().await?;
        let mut call = BUDGET.key(key);
        // A day's key outlives the day, so a replica settling just after midnight finds it.
        call.arg(budget).arg(adjust).arg(need).arg(want).arg(2 * 86_400);
        self.within(call.invoke_async(&mut c)).await
    }

    /// States that lease `field` holds `held` slots of `max` and asks for `need` to `want` more;
    /// returns how many were granted.
    pub async fn take_slots(
        &self,
        key: &str,
        field: &str,
        max: u32,
        held: u32,
        need: u32,
        want: u32,
    ) -> Result<u32, ClusterError> {
        let mut c = self.conn().await?;
        let mut call = SLOTS.key(key);
        call.key(&self.keys.replicas).key(&self.keys.lease_stamps);
        call.arg(field).arg(max).arg(held).arg(need).arg(want).arg(self.staleness_ms());
        self.within(call.invoke_async(&mut c)).await
    }

    /// Whether limits should skip the store at `now`: it failed a call less than a second ago,
    /// or this replica has lost touch with it. Requests then go to the per-replica fallback at
    /// once instead of each waiting out the timeout.
    pub fn limits_down(&self, now: Instant) -> bool {
        let until = self.limits_down_until.load(std::sync::atomic::Ordering::Acquire);
        self.health.stale_at(now) || self.health.nanos(now) < until
    }

    /// Notes a failed limits call at `now`.
    pub fn mark_limits_down(&self, now: Instant) {
        let until = self.health.nanos(now + Duration::from_secs(1));
        self.limits_down_until.fetch_max(until, std::sync::atomic::Ordering::AcqRel);
    }

    /// Replicas the store last counted as alive, this one included (at least 1).
    pub fn live_replicas(&self) -> u32 {
        self.live.load(std::sync::atomic::Ordering::Acquire).max(1)
    }
}
