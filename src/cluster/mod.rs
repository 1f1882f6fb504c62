//! Cluster mode: the run-time state that replicas share through a Redis (or Valkey) store, so
//! that several replicas behind a load balancer act as one gateway. It owns the store's keys and
//! scripts, this replica's view of how current it is ([`Health`]), and the loop that keeps the
//! kill switch in step with the store ([`sync`]).
//!
//! The kill switch lives in the store as a hash of suspensions and an epoch. Every change runs as
//! one script that edits the hash, bumps the epoch and publishes it, so no replica can see one
//! without the other. Each replica applies the store's set whenever the epoch moves (told by the
//! channel, or at the latest at its next poll) and counts as current only while it has confirmed
//! the store's epoch within `max_staleness`.
//!
//! Limits shared across replicas are kept there too ([`limits`]): each replica leases slices of
//! a tenant's limits and spends them locally.

pub mod limits;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::killswitch::{Suspension, Suspensions};

/// `[cluster]` in gateway.toml: the store (Redis or Valkey) that replicas share the kill switch
/// and limits through.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// Where the store's URL comes from: written in the file (no password allowed there) or read
    /// from an environment variable at start-up.
    pub url: ClusterUrl,
    /// Prepended to every key and channel, so several gateways can share one store.
    pub key_prefix: String,
    /// This replica's name in the store; unset: `$HOSTNAME`, then `pid-<pid>`.
    pub replica_id: Option<String>,
    /// Each call to the store, connecting included.
    pub timeout: Duration,
    /// Longest a replica goes without confirming the cluster's kill-switch epoch before it stops
    /// calling itself ready and refuses the tenants of `fail_closed` jurisdictions.
    pub max_staleness: Duration,
    /// Jurisdiction ids whose tenants are refused (`cluster_unavailable`) while this replica is
    /// stale; `"*"` means all.
    pub fail_closed: Vec<String>,
    /// The most of a tenant's limit a replica leases from the store at a time, as a fraction of
    /// it: larger slices mean fewer round trips and a looser bound across replicas.
    pub lease_fraction: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClusterUrl {
    Literal(String),
    Env(String),
}

impl ClusterSettings {
    pub const DEFAULT_PREFIX: &str = "customs:";
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
    pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(5);
    pub const DEFAULT_LEASE_FRACTION: f64 = 0.01;
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.url_env: environment variable {0} is not set")]
    UrlUnset(String),
    /// Never carries the URL, which may hold a password.
    #[error("cluster store URL is not valid: {0:?}")]
    Url(redis::ErrorKind),
    #[error("the cluster store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the cluster store refused the call: {0}")]
    Store(String),
}

impl From<redis::RedisError> for ClusterError {
    fn from(e: redis::RedisError) -> Self {
        // Kind and detail only: a connection error's full text can name the server's address,
        // never its credentials, but the detail is all an operator needs.
        Self::Store(match e.detail() {
            Some(d) => format!("{:?}: {d}", e.kind()),
            None => format!("{:?}", e.kind()),
        })
    }
}

/// The store's key names, under the configured prefix.
struct Keys {
    prefix: String,
    /// When each replica last called a limits script, beside its kill-switch heartbeat.
    lease_stamps: String,
    suspensions: String,
    epoch: String,
    replicas: String,
    channel: String,
}

/// How current this replica's view of the cluster is. Read on the request path without locks.
pub struct Health {
    base: Instant,
    /// When the store's epoch was last confirmed as the one applied, as nanoseconds since
    /// `base` plus one (0: never).
    confirmed: AtomicU64,
    applied: AtomicU64,
    pub max_staleness: Duration,
}

impl Health {
    fn new(max_staleness: Duration, applied: u64) -> Self {
        Self { base: Instant::now(), confirmed: AtomicU64::new(0), applied: AtomicU64::new(applied), max_staleness }
    }

    pub(crate) fn confirm(&self, now: Instant) {
        self.confirmed.fetch_max(self.nanos(now) + 1, Ordering::AcqRel);
    }

    /// `now` as nanoseconds since this replica's base instant.
    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Whether, at `now`, the last confirmation is older than `max_staleness` (or never came).
    pub fn stale_at(&self, now: Instant) -> bool {
        match self.confirmed.load(Ordering::Acquire) {
            0 => true,
            n => {
                let confirmed = self.base + Duration::from_nanos(n - 1);
                now.saturating_duration_since(confirmed) > self.max_staleness
            }
        }
    }

    pub(crate) fn set_applied(&self, epoch: u64) {
        self.applied.store(epoch, Ordering::Release);
    }

    /// The kill-switch epoch this replica has applied.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// How long ago the epoch was last confirmed, if ever.
    pub fn confirmed_ago(&self) -> Option<Duration> {
        match self.confirmed.load(Ordering::Acquire) {
            0 => None,
            n => Some(Instant::now().saturating_duration_since(self.base + Duration::from_nanos(n - 1))),
        }
    }
}

/// One replica as the store last heard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub id: String,
    pub epoch: u64,
    /// Milliseconds since its last heartbeat, by the store's clock.
    pub seen_ms_ago: u64,
}

/// The store's kill-switch state at one epoch.
pub struct State {
    pub epoch: u64,
    pub suspensions: Suspensions,
}

pub struct Cluster {
    client: redis::Client,
    conn: ArcSwapOption<ConnectionManager>,
    keys: Keys,
    pub replica: String,
    pub timeout: Duration,
    pub health: Health,
    /// The share of a tenant's limit one lease may take.
    pub lease_fraction: f64,
    /// Until when (nanoseconds on the health clock) limits skip the store after a failed call.
    limits_down_until: AtomicU64,
    /// Replicas alive at the last heartbeat, by the store's count.
    live: AtomicU32,
}

// Each script is one atomic step on the store. KEYS: suspensions, epoch (and replicas).
const SUSPEND: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local e = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], e)
return e";
const REINSTATE: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local e = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], e)
return {1, e}";
const STATE: &str = r"
return {tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('HGETALL', KEYS[1])}";
// The heartbeat stamps the store's own clock, so replicas' clocks need not agree. It returns the
// store's epoch and how many replicas have sent a heartbeat within ARGV[3] milliseconds.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local ms = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. ' ' .. ms)
local live = 0
for _, v in ipairs(redis.call('HVALS', KEYS[3])) do
  if ms - tonumber(string.match(v, ' (%d+)$') or '0') <= tonumber(ARGV[3]) then live = live + 1 end
end
return {tonumber(redis.call('GET', KEYS[2]) or '0'), live}";
const REPLICAS: &str = r"
local t = redis.call('TIME')
return {t[1] * 1000 + math.floor(t[2] / 1000), redis.call('HGETALL', KEYS[3])}";
// A store that came back empty (restarted without persistence, or flushed) has an epoch older
// than the replicas' own: the first replica to notice gives it back the set it had applied.
const RESEED: &str = r"
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1";

impl Cluster {
    /// Resolves the URL (from the environment when so configured) and names this replica. Does
    /// not connect: the store may be down at start-up, and the admin side's loop keeps trying.
    pub fn new(
        settings: &ClusterSettings,
        env: &dyn Fn(&str) -> Option<String>,
        applied: u64,
    ) -> Result<Self, ClusterError> {
        let url = match &settings.url {
            ClusterUrl::Literal(u) => u.clone(),
            ClusterUrl::Env(var) => {
                env(var).filter(|v| !v.is_empty()).ok_or_else(|| ClusterError::UrlUnset(var.clone()))?
            }
        };
        let client = redis::Client::open(url).map_err(|e| ClusterError::Url(e.kind()))?;
        let replica = settings
            .replica_id
            .clone()
            .or_else(|| env("HOSTNAME").filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("pid-{}", std::process::id()));
        let p = &settings.key_prefix;
        Ok(Self {
            client,
            conn: ArcSwapOption::empty(),
            keys: Keys {
                prefix: p.clone(),
                lease_stamps: format!("{p}limits:replicas"),
                suspensions: format!("{p}killswitch:suspensions"),
                epoch: format!("{p}killswitch:epoch"),
                replicas: format!("{p}killswitch:replicas"),
                channel: format!("{p}killswitch:events"),
            },
            replica,
            timeout: settings.timeout,
            health: Health::new(settings.max_staleness, applied),
            lease_fraction: settings.lease_fraction,
            limits_down_until: AtomicU64::new(0),
            live: AtomicU32::new(1),
        })
    }

    /// The channel on which every epoch is published.
    pub fn channel(&self) -> &str {
        &self.keys.channel
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The shared connection, made on first use. The manager reconnects by itself after that.
    async fn conn(&self) -> Result<ConnectionManager, ClusterError> {
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.timeout);
        let c = self.within(self.client.get_connection_manager_with_config(config)).await?;
        self.conn.store(Some(std::sync::Arc::new(c.clone())));
        Ok(c)
    }

    async fn within<T>(&self, f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, ClusterError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ClusterError::Timeout(self.timeout)),
        }
    }

    /// Binds a stored response's id to its owner (as JSON) for `ttl`.
    pub async fn bind_response(&self, id: &str, json: &str, ttl: Duration) -> Result<(), ClusterError> {
        let mut c = self.conn().await?;
        let key = format!("{}responses:{id}", self.keys.prefix);
        self.within(redis::cmd("SET").arg(key).arg(json).arg("EX").arg(ttl.as_secs().max(1)).exec_async(&mut c)).await
    }

    /// Forgets a stored response's binding.
    pub async fn unbind_response(&self, id: &str) -> Result<(), ClusterError> {
        let mut c = self.conn().await?;
        let key = format!("{}responses:{id}", self.keys.prefix);
        self.within(redis::cmd("DEL").arg(key).exec_async(&mut c)).await
    }

    /// The owner (as JSON) a stored response's id is bound to, if any.
    pub async fn response_owner(&self, id: &str) -> Result<Option<String>, ClusterError> {
        let mut c = self.conn().await?;
        let key = format!("{}responses:{id}", self.keys.prefix);
        self.within(redis::cmd("GET").arg(key).query_async(&mut c)).await
    }

    /// Suspends `tenant` cluster-wide; returns the new epoch.
    pub async fn suspend(&self, tenant: &str, s: &Suspension) -> Result<u64, ClusterError> {
        let mut c = self.conn().await?;
        let json = serde_json::to_string(s).map_err(|e| ClusterError::Store(e.to_string()))?;
        let script = Script::new(SUSPEND);
        let mut call = script.key(&self.keys.suspensions);
        call.key(&self.keys.epoch).arg(tenant).arg(json).arg(&self.keys.channel);
        self.within(call.invoke_async(&mut c)).await
    }

    /// Reinstates `tenant` cluster-wide; returns whether it was suspended, and the epoch after.
    pub async fn reinstate(&self, tenant: &str) -> Result<(bool, u64), ClusterError> {
        let mut c = self.conn().await?;
        let script = Script::new(REINSTATE);
        let mut call = script.key(&self.keys.suspensions);
        call.key(&self.keys.epoch).arg(tenant).arg(&self.keys.channel);
        let (changed, epoch): (u8, u64) = self.within(call.invoke_async(&mut c)).await?;
        Ok((changed == 1, epoch))
    }

    /// The store's suspensions and the epoch they are at, read in one step. An entry that does
    /// not parse still suspends its tenant: reading it as absent would lift a suspension.
    pub async fn state(&self) -> Result<State, ClusterError> {
        let mut c = self.conn().await?;
        let script = Script::new(STATE);
        let mut call = script.key(&self.keys.suspensions);
        call.key(&self.keys.epoch);
        let (epoch, flat): (u64, Vec<String>) = self.within(call.invoke_async(&mut c)).await?;
        let mut suspended = BTreeMap::new();
        for pair in flat.chunks_exact(2) {
            let s = serde_json::from_str(&pair[1]).unwrap_or_else(|_| Suspension {
                reason: "unreadable entry in the cluster store".into(),
                by: "cluster".into(),
                at: String::new(),
            });
            suspended.insert(pair[0].clone(), s);
        }
        Ok(State { epoch, suspensions: Suspensions::from_cluster(suspended, epoch) })
    }

    /// Tells the store this replica is alive at the epoch it has applied; returns the store's
    /// epoch, and keeps the count of live replicas that limits fall back on.
    pub async fn heartbeat(&self) -> Result<u64, ClusterError> {
        let mut c = self.conn().await?;
        let script = Script::new(HEARTBEAT);
        let mut call = script.key(&self.keys.suspensions);
        call.key(&self.keys.epoch).key(&self.keys.replicas).arg(&self.replica).arg(self.health.applied());
        call.arg(self.staleness_ms());
        let (epoch, live): (u64, u32) = self.within(call.invoke_async(&mut c)).await?;
        self.live.store(live.max(1), Ordering::Release);
        Ok(epoch)
    }

    /// Gives an emptied store the set this replica applied at `epoch`; whether it took it.
    pub async fn reseed(&self, epoch: u64, suspensions: &Suspensions) -> Result<bool, ClusterError> {
        let mut c = self.conn().await?;
        let script = Script::new(RESEED);
        let mut call = script.key(&self.keys.suspensions);
        call.key(&self.keys.epoch).arg(epoch).arg(&self.keys.channel);
        for (tenant, s) in suspensions.iter() {
            let json = serde_json::to_string(s).map_err(|e| ClusterError::Store(e.to_string()))?;
            call.arg(tenant).arg(json);
        }
        let took: u8 = self.within(call.invoke_async(&mut c)).await?;
        Ok(took == 1)
    }

    /// Every replica that has sent a heartbeat, with the epoch it reported.
    pub async fn replicas(&self) -> Result<Vec<Replica>, ClusterError> {
        let mut c = self.conn().await?;
        let script = Script::new(REPLICAS);
        let mut call = script.key(&self.keys.suspensions);
        call.key(&self.keys.epoch).key(&self.keys.replicas);
        let (now, flat): (u64, Vec<String>) = self.within(call.invoke_async(&mut c)).await?;
        let mut out: Vec<Replica> = flat
            .chunks_exact(2)
            .filter_map(|pair| {
                let (epoch, ms) = pair[1].split_once(' ')?;
                let ms: u64 = ms.parse().ok()?;
                Some(Replica { id: pair[0].clone(), epoch: epoch.parse().ok()?, seen_ms_ago: now.saturating_sub(ms) })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// `max_staleness` in milliseconds, as the store's scripts count a silent replica gone.
    fn staleness_ms(&self) -> u64 {
        u64::try_from(self.health.max_staleness.as_millis()).unwrap_or(u64::MAX)
    }

    /// The store's epoch alone.
    pub async fn epoch(&self) -> Result<u64, ClusterError> {
        let mut c = self.conn().await?;
        let e: Option<u64> = self.within(c.get(&self.keys.epoch)).await?;
        Ok(e.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_stale_until_confirmed_and_again_after_max_staleness() {
        let h = Health::new(Duration::from_millis(50), 0);
        let t0 = Instant::now();
        assert!(h.stale_at(t0));
        h.confirm(t0);
        assert!(!h.stale_at(t0 + Duration::from_millis(49)));
        assert!(h.stale_at(t0 + Duration::from_millis(51)));
        // An older confirmation never moves it back.
        h.confirm(t0 - Duration::from_millis(10));
        assert!(!h.stale_at(t0 + Duration::from_millis(40)));
    }
}
