//! The operator's side of the gateway, on its own listener: health, readiness and metrics; and,
//! behind a bearer token, config reload and the kill switch. Everything here changes what the
//! request path sees only by swapping in a new snapshot, one change at a time.

pub mod cluster;
pub mod http;
pub mod reload;

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::gateway::Shared;

/// Looks up environment variables; shared so reloads read credentials the way start-up did.
pub type SharedEnv = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What admin actions need: the gateway they change, where the config came from, the token,
/// and the state file. The gateway knows nothing of it.
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub config_dir: PathBuf,
    pub env: SharedEnv,
    /// SHA-256 of the admin token; `None` turns admin writes off.
    token_digest: Option<[u8; 32]>,
    pub token_env: String,
    pub state_file: Option<PathBuf>,
    /// One admin change at a time, so a reload and a suspension cannot undo each other.
    pub lock: tokio::sync::Mutex<()>,
    /// What the running gateway.toml says outside `[limits]` ([`reload::startup_settings`]).
    pub startup_settings: reload::StartupSettings,
    /// The listeners' certificates (`server`, `admin`), read again on every reload.
    pub certificates: Vec<(&'static str, Arc<crate::tls::Certificate>)>,
}

impl AdminState {
    pub fn new(
        shared: Arc<Shared>,
        config_dir: PathBuf,
        env: SharedEnv,
        settings: &crate::config::Settings,
        certificates: Vec<(&'static str, Arc<crate::tls::Certificate>)>,
    ) -> Self {
        let token_env = settings.admin.token_env.clone();
        let token_digest = env(&token_env).filter(|t| !t.is_empty()).map(|t| Sha256::digest(t.as_bytes()).into());
        Self {
            shared,
            config_dir,
            env,
            token_digest,
            token_env,
            state_file: settings.admin.state_file.clone(),
            lock: tokio::sync::Mutex::new(()),
            startup_settings: reload::startup_settings(settings),
            certificates,
        }
    }

    pub fn writes_enabled(&self) -> bool {
        self.token_digest.is_some()
    }

    /// Compares digests in constant time, so neither the token nor its length leaks by timing.
    pub fn token_matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.token_digest.is_some_and(|d| bool::from(d.ct_eq(&presented)))
    }
}
