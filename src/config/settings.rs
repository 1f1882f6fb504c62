//! The gateway's settings as the running gateway reads them: compiled from `gateway.toml` once,
//! with every default applied, so no runtime module depends on how the file is spelled or parsed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

// The cluster module owns its settings, so that it needs nothing from config.
pub use crate::cluster::{ClusterSettings, ClusterUrl};
pub use crate::tls::TlsSettings;

/// Everything `gateway.toml` sets: listeners, limits and timeouts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub server: ServerSettings,
    pub upstream: UpstreamSettings,
    pub limits: LimitSettings,
    pub audit: AuditSettings,
    pub admin: AdminSettings,
    pub reload: ReloadSettings,
    pub report: ReportDefaults,
    pub responses: ResponseSettings,
    /// Shared run-time state across replicas; `None` keeps every replica on its own.
    pub cluster: Option<ClusterSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: u64,
    /// Request bodies the gateway holds at once, all requests together; past it new requests
    /// are shed with 503 `overloaded`.
    pub max_buffered_body_bytes: u64,
    pub header_read_timeout: Duration,
    /// Whole request body, from the end of the head: a trickling client cannot hold a slot.
    pub body_read_timeout: Duration,
    /// Bytes per second a body must average once `body_rate_grace` is over; 0 turns it off.
    pub min_body_rate: u64,
    pub body_rate_grace: Duration,
    pub max_connections: u64,
    /// Resident memory above which requests with bodies are shed (503 `overloaded`); `Some(0)`
    /// never, `None` nine tenths of the cgroup's limit when there is one.
    pub max_memory_bytes: Option<u64>,
    /// A request head (request line and fields, as HTTP/1 writes them) larger than this, or
    /// with more fields than `max_header_fields`, is refused with 431 `header_too_large`.
    pub max_header_bytes: u32,
    pub max_header_fields: u32,
    /// A connection that starts no request for this long is closed gracefully (requests in
    /// flight on it finish).
    pub idle_timeout: Duration,
    /// An HTTP/2 connection is sent a PING this often (zero: never) and closed when the ack
    /// takes longer than the timeout: a client that vanished without closing is found while its
    /// stream still runs, and its upstream request is cancelled.
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
    pub shutdown_grace: Duration,
    /// HTTPS on the inference listener; `None` serves plain HTTP.
    pub tls: Option<TlsSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub pool_idle_timeout: Duration,
    /// A streamed (SSE) response that sends nothing for this long is ended with an error event.
    pub stream_idle_timeout: Duration,
    /// A streamed response still running after this long is ended with an error event.
    pub stream_max_duration: Duration,
    /// Requests one endpoint may have in flight; a full endpoint takes nothing more until one
    /// ends, and when every endpoint is full the client gets 503 `upstream_overloaded`.
    pub max_in_flight: u32,
    pub outlier: OutlierSettings,
    /// A PEM bundle of the CAs upstream certificates must chain to, in place of the public
    /// (webpki) roots.
    pub ca_file: Option<PathBuf>,
}

/// When an endpoint is taken out of rotation, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierSettings {
    /// Connect failures, timeouts and 5xx answers in a row that eject an endpoint.
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; each failed probe doubles it.
    pub ejection: Duration,
    pub max_ejection: Duration,
}

/// Stored responses (the Responses API) and the tenants they are bound to.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseSettings {
    /// Bindings this replica keeps in memory; past it the least used go (their owners are then
    /// refused them, unless the cluster store still has them).
    pub max_bound_ids: u64,
    /// How long the cluster store keeps a binding: as long as the upstream keeps responses.
    pub bound_for: Duration,
}

/// How token use is estimated before the upstream reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    /// Completion tokens reserved when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// Prompt bytes per token for the prompt estimate.
    pub bytes_per_token: u64,
}

/// The audit trail. Off unless `dir` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSettings {
    /// Folder for `audit-NNNNNN.jsonl` files; relative paths are from the working directory.
    pub dir: Option<PathBuf>,
    /// A file is closed and a new one started once it reaches this size.
    pub max_file_bytes: u64,
    /// Records that may be pending at once: requests in flight plus records not yet on disk.
    pub queue: usize,
    /// What to do when a record cannot be taken: refuse the request (`deny`) or serve it unrecorded.
    pub on_failure: OnAuditFailure,
    /// How far a request's decision record must have gone before the request is answered or
    /// forwarded.
    pub sync: AuditSync,
    /// Environment variable holding a key: the chain is then HMAC-SHA-256, which only key holders
    /// can recompute.
    pub key_env: Option<String>,
}

/// Where a decision record must be before its request goes on. Either way it is written before:
/// the difference is what a crash of the whole machine can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditSync {
    /// On stable storage: one `fdatasync` covers every record gathered since the last, so a
    /// record survives a power loss.
    Always,
    /// Handed to the operating system: a record survives a crash or `kill -9` of the gateway;
    /// a power loss or kernel crash can take the records of the last second, which the next
    /// start reports as a damaged tail.
    Interval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnAuditFailure {
    Deny,
    Allow,
}

/// The admin API's write side: reload and the kill switch.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    /// Environment variable holding the bearer token for admin writes; unset means they are off.
    pub token_env: String,
    /// Where kill-switch suspensions are kept across restarts and reloads.
    pub state_file: Option<PathBuf>,
    /// Connections the admin listener serves at once, apart from the gateway's.
    pub max_connections: usize,
    /// HTTPS on the admin listener; `None` serves plain HTTP.
    pub tls: Option<TlsSettings>,
}

/// Reloading the config folder without a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadSettings {
    /// Reload when files in the config folder change.
    pub watch: bool,
    /// Changes are applied once the folder has been quiet this long.
    pub debounce: Duration,
}

/// Defaults for `customs report`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportDefaults {
    /// The provider's own jurisdictions; access from any other counts as foreign.
    pub home_jurisdictions: Vec<String>,
    /// Models trained with at least this many FLOPs are reported.
    pub flops_line: Option<f64>,
}

// Each default is what an unset key in gateway.toml means.

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            max_body_bytes: 4 * 1024 * 1024,
            max_buffered_body_bytes: 256 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            min_body_rate: 1024,
            body_rate_grace: Duration::from_secs(5),
            max_connections: 10_000,
            max_memory_bytes: None,
            max_header_bytes: 32 * 1024,
            max_header_fields: 100,
            idle_timeout: Duration::from_secs(60),
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(30),
            tls: None,
        }
    }
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(120),
            pool_idle_timeout: Duration::from_secs(90),
            stream_idle_timeout: Duration::from_secs(60),
            stream_max_duration: Duration::from_secs(15 * 60),
            max_in_flight: 1024,
            ca_file: None,
            outlier: OutlierSettings {
                consecutive_failures: 5,
                ejection: Duration::from_secs(30),
                max_ejection: Duration::from_secs(300),
            },
        }
    }
}

impl Default for ResponseSettings {
    fn default() -> Self {
        Self { max_bound_ids: 100_000, bound_for: Duration::from_secs(30 * 24 * 3600) }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self { default_max_tokens: 1024, bytes_per_token: 4 }
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            dir: None,
            max_file_bytes: 64 * 1024 * 1024,
            queue: 65_536,
            on_failure: OnAuditFailure::Deny,
            sync: AuditSync::Always,
            key_env: None,
        }
    }
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self { token_env: "CUSTOMS_ADMIN_TOKEN".into(), state_file: None, max_connections: 64, tls: None }
    }
}

impl Default for ReloadSettings {
    fn default() -> Self {
        Self { watch: true, debounce: Duration::from_millis(500) }
    }
}
