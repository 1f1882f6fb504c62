//! Hot reload: the config folder is loaded and compiled off the request path, and only a config
//! that is valid as a whole replaces the running one, in one atomic swap. Requests already
//! decided keep the snapshot they loaded (streams included); an invalid config changes nothing
//! and is counted, logged with its file and key, and audited. Triggers: SIGHUP, a change in the
//! folder (debounced) and `POST /admin/reload`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::AdminState;
use crate::config::{
    self, AdminSettings, AuditSettings, ConfigErrors, ReloadSettings, ServerSettings, Settings, UpstreamSettings,
};
use crate::snapshot::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new config has errors; the running policy is unchanged:\n{0}")]
    Config(ConfigErrors),
    #[error("the reload task failed: {0}")]
    Task(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub previous: String,
    pub version: String,
    /// gateway.toml changed in a section that only applies at start-up.
    pub restart_required: bool,
}

/// The part of gateway.toml that a reload cannot apply (listeners, timeouts, the audit trail's
/// settings, admin, reload). Paths the demo overrides are left out, so a demo reload of its own
/// folder does not ask for a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct StartupSettings {
    server: ServerSettings,
    upstream: UpstreamSettings,
    reload: ReloadSettings,
    audit: AuditSettings,
    admin: AdminSettings,
}

pub fn startup_settings(s: &Settings) -> StartupSettings {
    StartupSettings {
        server: s.server.clone(),
        upstream: s.upstream.clone(),
        reload: s.reload.clone(),
        audit: AuditSettings { dir: None, ..s.audit.clone() },
        admin: AdminSettings { state_file: None, ..s.admin.clone() },
    }
}

impl Reloaded {
    pub fn changed(&self) -> bool {
        self.previous != self.version
    }
}

/// Loads the config folder again and swaps it in if it is valid and differs.
pub async fn reload(admin: &AdminState, trigger: &'static str) -> Result<Reloaded, ReloadError> {
    let shared = &admin.shared;
    let _one_at_a_time = admin.lock.lock().await;
    reload_certificates(admin, trigger);
    let previous = shared.snapshot.load_full();
    let previous_version = previous.policy.version().to_owned();
    let dir = admin.config_dir.clone();
    let env = admin.env.clone();
    let metrics = shared.metrics.clone();
    let built = tokio::task::spawn_blocking(move || -> Result<Option<(Snapshot, StartupSettings)>, ConfigErrors> {
        let config = config::load_after(&dir, &*env, Some(&previous.policy))?;
        if config.policy.version() == previous.policy.version() {
            return Ok(None);
        }
        let startup = startup_settings(&config.settings);
        Ok(Some((Snapshot::reloaded(config.policy, &config.settings.limits, &metrics, &previous), startup)))
    })
    .await
    .map_err(|e| ReloadError::Task(e.to_string()))?;
    let mut fields = serde_json::Map::new();
    fields.insert("trigger".into(), trigger.into());
    fields.insert("previous_version".into(), previous_version.as_str().into());
    match built {
        Err(errors) => {
            shared.metrics.reloads.with_label_values(&["failure"]).inc();
            tracing::error!(trigger, errors = %errors, "Config reload rejected; the running policy is unchanged.");
            fields.insert("result".into(), "failure".into());
            fields.insert("errors".into(), errors.0.iter().map(ToString::to_string).collect::<Vec<_>>().into());
            shared.audit.admin("reload", fields);
            Err(ReloadError::Config(errors))
        }
        Ok(None) => {
            tracing::debug!(trigger, version = %previous_version, "Config unchanged; nothing to reload.");
            Ok(Reloaded { version: previous_version.clone(), previous: previous_version, restart_required: false })
        }
        Ok(Some((snapshot, startup))) => {
            let restart_required = startup != admin.startup_settings;
            if restart_required {
                tracing::warn!(
                    trigger,
                    "gateway.toml changed outside [limits]; those sections apply at the next restart."
                );
            }
            fields.insert("restart_required".into(), restart_required.into());
            let version = snapshot.policy.version().to_owned();
            shared.snapshot.store(Arc::new(snapshot));
            shared.metrics.reloads.with_label_values(&["success"]).inc();
            mark_loaded(&shared.metrics);
            tracing::info!(trigger, previous = %previous_version, version = %version, "Config reloaded.");
            fields.insert("result".into(), "success".into());
            fields.insert("policy_version".into(), version.as_str().into());
            shared.audit.admin("reload", fields);
            Ok(Reloaded { previous: previous_version, version, restart_required })
        }
    }
}

/// Reads the listeners' certificate files again, whatever the policy files say: a renewed
/// certificate (a cert-manager secret, say) changes no config file. A file that does not load
/// leaves the certificate in use as it is; either way it is logged and audited.
fn reload_certificates(admin: &AdminState, trigger: &'static str) {
    for (section, cert) in &admin.certificates {
        let result = cert.reload();
        if matches!(result, Ok(false)) {
            continue;
        }
        let mut fields = serde_json::Map::new();
        fields.insert("trigger".into(), trigger.into());
        fields.insert("listener".into(), (*section).into());
        fields.insert("cert_file".into(), cert.settings().cert_file.display().to_string().into());
        match result {
            Ok(_) => {
                tracing::info!(trigger, listener = section, "TLS certificate reloaded.");
                fields.insert("result".into(), "success".into());
            }
            Err(e) => {
                tracing::error!(trigger, listener = section, error = %e, "TLS certificate reload failed; the one in use stays.");
                fields.insert("result".into(), "failure".into());
                fields.insert("errors".into(), vec![e.to_string()].into());
            }
        }
        admin.shared.audit.admin("tls_reload", fields);
    }
}

/// Sets the last-successful-load time to now.
pub fn mark_loaded(metrics: &crate::telemetry::Metrics) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    metrics.last_reload_success.set(now.as_secs_f64());
}

/// Reloads on SIGHUP until the task is aborted.
#[cfg(unix)]
pub fn on_sighup(admin: Arc<AdminState>) -> std::io::Result<JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = reload(&admin, "sighup").await;
        }
    }))
}

/// Watches the config folder (and its `tenants.d/`, when there is one at start) and reloads once
/// it has been quiet for `debounce`. The returned
/// watcher must be kept alive. Paths in `ignore` (an audit folder or state file kept inside the
/// config folder) do not count as changes.
pub fn watch(
    admin: Arc<AdminState>,
    debounce: Duration,
    ignore: Vec<PathBuf>,
) -> notify::Result<(RecommendedWatcher, JoinHandle<()>)> {
    let dir = admin.config_dir.clone();
    let ignore: Vec<PathBuf> = ignore.into_iter().map(|p| absolute(&p)).collect();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let relevant = event.paths.iter().any(|p| !ignore.iter().any(|i| absolute(p).starts_with(i)));
        if relevant {
            let _ = tx.send(());
        }
    })?;
    // Not recursive: ConfigMap updates swap a symlinked folder inside it, which shows up as
    // events on the folder's own entries.
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let tenants_d = dir.join(crate::config::TENANTS_DIR);
    if tenants_d.is_dir() {
        watcher.watch(&tenants_d, RecursiveMode::NonRecursive)?;
    }
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Editors and ConfigMaps write several files; wait until the folder is quiet.
            loop {
                tokio::select! {
                    more = rx.recv() => if more.is_none() { return },
                    () = tokio::time::sleep(debounce) => break,
                }
            }
            let _ = reload(&admin, "watch").await;
        }
    });
    Ok((watcher, task))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}
