//! The audit trail: one hash-chained JSON line per decision (allow and deny) and per operator
//! action, written off the request path by one thread, and `customs audit verify`.
//!
//! Every request takes a [`Slot`] before anything is decided. A slot is a promise that its record
//! fits: it counts against `audit.queue` until the record is on disk. When no slot can be had
//! (the queue is full, or the disk refuses writes) the request is refused with
//! `audit_unavailable` unless `audit.on_failure = "allow"`: an unrecorded decision is not made.
//! Shutdown writes every record that was handed over, then a `stop` record.

pub mod chain;
pub mod record;
pub mod verify;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, SystemTime};

use prometheus::{IntCounter, IntGauge};

pub use chain::Sealer;
pub use record::{AdminRecord, DecisionRecord, Event, RuleRef};
pub use writer::trail_files;

use crate::config::{AuditSettings, OnAuditFailure};
use crate::telemetry::Metrics;
use writer::{Msg, Sink};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit trail in {dir}: {source}")]
    Open { dir: PathBuf, source: std::io::Error },
    #[error("audit.key_env names {0}, which is not set")]
    MissingKey(String),
    #[error("cannot start the audit writer thread: {0}")]
    Thread(std::io::Error),
}

struct AuditMetrics {
    written: IntCounter,
    write_errors: IntCounter,
    dropped: IntCounter,
    pending: IntGauge,
    up: IntGauge,
}

struct State {
    pending: AtomicUsize,
    capacity: usize,
    healthy: AtomicBool,
    fail_closed: bool,
    metrics: AuditMetrics,
}

struct Inner {
    tx: Sender<Msg>,
    state: Arc<State>,
}

/// The request path's handle on the trail. Disabled when `audit.dir` is not set.
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

/// A reserved place in the trail for one request's record.
pub struct Slot {
    inner: Option<Arc<Inner>>,
}

impl Audit {
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Opens the trail and starts the writer thread, which first records a `start`.
    pub fn open(
        settings: &AuditSettings,
        env: &dyn Fn(&str) -> Option<String>,
        metrics: &Metrics,
        policy_version: &str,
    ) -> Result<Self, AuditError> {
        let Some(dir) = &settings.dir else {
            tracing::warn!("audit.dir is not set: decisions are not recorded in an audit trail.");
            return Ok(Self::disabled());
        };
        let key = match &settings.key_env {
            Some(name) => Some(env(name).ok_or_else(|| AuditError::MissingKey(name.clone()))?),
            None => None,
        };
        let sealer = Sealer::new(key.as_deref().map(str::as_bytes));
        let (sink, resume) = Sink::open(dir, sealer, settings.max_file_bytes)
            .map_err(|source| AuditError::Open { dir: dir.clone(), source })?;
        let m = &metrics.audit;
        let state = Arc::new(State {
            pending: AtomicUsize::new(0),
            capacity: settings.queue.max(1),
            healthy: AtomicBool::new(true),
            fail_closed: settings.on_failure == OnAuditFailure::Deny,
            metrics: AuditMetrics {
                written: m.written.clone(),
                write_errors: m.write_errors.clone(),
                dropped: m.dropped.clone(),
                pending: m.pending.clone(),
                up: m.up.clone(),
            },
        });
        state.metrics.up.set(1);
        let (tx, rx) = mpsc::channel();
        let thread_state = state.clone();
        // Detached: `close` waits for the writer's acknowledgement, sent after its last sync.
        std::thread::Builder::new()
            .name("customs-audit".into())
            .spawn(move || writer::run(rx, thread_state, sink))
            .map_err(AuditError::Thread)?;
        let audit = Self { inner: Some(Arc::new(Inner { tx, state })) };
        let mut fields = serde_json::Map::new();
        fields.insert("customs_version".into(), env!("CARGO_PKG_VERSION").into());
        fields.insert("policy_version".into(), policy_version.into());
        fields.insert("pid".into(), std::process::id().into());
        fields.insert("keyed".into(), key.is_some().into());
        fields.insert("after_unclean_stop".into(), resume.as_ref().is_some_and(|r| !r.clean).into());
        if let Some(at) = resume.as_ref().and_then(|r| r.damaged.clone()) {
            fields.insert("damaged_tail".into(), at.into());
        }
        audit.admin("start", fields);
        tracing::info!(dir = %dir.display(), "Audit trail open.");
        Ok(audit)
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether the trail is taking records (always true when disabled).
    pub fn healthy(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.state.healthy.load(Ordering::Acquire))
    }

    /// Reserves room for one record. `None` means the request must be refused.
    pub fn reserve(&self) -> Option<Slot> {
        let Some(inner) = &self.inner else { return Some(Slot { inner: None }) };
        let st = &inner.state;
        if st.healthy.load(Ordering::Acquire) {
            if st.pending.fetch_add(1, Ordering::AcqRel) < st.capacity {
                return Some(Slot { inner: Some(inner.clone()) });
            }
            st.pending.fetch_sub(1, Ordering::AcqRel);
        }
        st.metrics.dropped.inc();
        if st.fail_closed { None } else { Some(Slot { inner: None }) }
    }

    /// Records an operator action. Such records are never refused for capacity.
    pub fn admin(&self, kind: &'static str, fields: serde_json::Map<String, serde_json::Value>) {
        if let Some(inner) = &self.inner {
            inner.state.pending.fetch_add(1, Ordering::AcqRel);
            let event = Event::Admin(AdminRecord { time: SystemTime::now(), kind, fields });
            if inner.tx.send(Msg::Event(event)).is_err() {
                inner.state.pending.fetch_sub(1, Ordering::AcqRel);
                inner.state.metrics.dropped.inc();
            }
        }
    }

    /// Writes everything handed over so far and a `stop` record, and waits (up to `patience`)
    /// until it is synced. Records handed over afterwards are counted as dropped.
    pub fn close(&self, patience: Duration) {
        let Some(inner) = &self.inner else { return };
        let (ack, done) = mpsc::channel();
        if inner.tx.send(Msg::Stop(ack)).is_ok() {
            let _ = done.recv_timeout(patience);
        }
    }
}

// === impl Slot ===

impl Slot {
    /// Hands the record to the writer; the slot's reservation passes to it. The record is built
    /// only when the trail is on.
    pub fn send(mut self, record: impl FnOnce() -> DecisionRecord) {
        let Some(inner) = self.inner.take() else { return };
        if inner.tx.send(Msg::Event(Event::Decision(Box::new(record())))).is_err() {
            inner.state.pending.fetch_sub(1, Ordering::AcqRel);
            inner.state.metrics.dropped.inc();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.state.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
