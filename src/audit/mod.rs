//! The audit trail: one hash-chained JSON line per decision (allow and deny) and per operator
//! action, written by one task beside the request path, and `customs audit verify`.
//!
//! Every request takes a [`Slot`] before anything is decided. A slot is a promise that its record
//! fits: it counts against `audit.queue` until the record is on disk. When no slot can be had
//! (the queue is full, or the disk refuses writes) the request is refused with
//! `audit_unavailable` unless `audit.on_failure = "allow"`: an unrecorded decision is not made.
//!
//! Decisions are written ahead: a request's decision record is sealed into the chain when it is
//! made, and the request is answered or forwarded only once the record is where `audit.sync`
//! says ([`Durable`]). A forwarded request adds an outcome record when it ends. Shutdown writes
//! every record that was handed over (the outcomes of streams it cut included), then a `stop`
//! record.

pub mod chain;
pub mod merge;
pub mod record;
pub mod verify;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use crossbeam_queue::SegQueue;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

pub use chain::Sealer;
pub use record::{AdminRecord, Charged, DecisionRecord, Event, Outcome, OutcomeRecord, RuleRef};
pub use writer::trail_files;

use crate::config::{AuditSettings, AuditSync, OnAuditFailure};
use crate::telemetry::Metrics;
use writer::{Msg, Sink};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit trail in {dir}: {source}")]
    Open { dir: PathBuf, source: std::io::Error },
    #[error("audit.key_env names {0}, which is not set")]
    MissingKey(String),
    #[error("the audit writer needs a Tokio runtime to run on")]
    NoRuntime,
}

struct AuditMetrics {
    written: IntCounter,
    write_errors: IntCounter,
    dropped: IntCounter,
    pending: IntGauge,
    up: IntGauge,
    head_seq: IntGauge,
}

struct State {
    pending: AtomicUsize,
    capacity: usize,
    healthy: AtomicBool,
    fail_closed: bool,
    sync: AuditSync,
    keyed: bool,
    /// Set when shutdown cuts the streams still open at the end of its grace period.
    cutting: AtomicBool,
    /// Outcome records, taken by the writer whenever it wakes. Nothing waits on them, so handing
    /// one over wakes no thread: a wake-up per record was a context switch per request.
    outcomes: SegQueue<Event>,
    metrics: AuditMetrics,
}

impl State {
    /// The disk refused a write or a sync: requests are refused until a write succeeds.
    fn write_failed(&self, e: &std::io::Error, pending: usize) {
        self.metrics.write_errors.inc();
        self.metrics.pending.set(self.pending.load(Ordering::Relaxed) as i64);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::error!(error = %e, pending, "Audit trail write failed; refusing requests until it recovers.");
            self.metrics.up.set(0);
        }
    }
}

struct Inner {
    tx: UnboundedSender<Msg>,
    state: Arc<State>,
}

/// The request path's handle on the trail. Disabled when `audit.dir` is not set.
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

/// A request's place in the trail: room reserved for its decision record, and the way to its
/// outcome record.
pub struct Slot {
    inner: Option<Arc<Inner>>,
    /// Whether the decision's room is still held here (not yet handed to the writer).
    reserved: bool,
}

/// The wait for a decision record to be where `audit.sync` says.
#[must_use = "a decision is not made until its record is durable"]
pub struct Durable {
    rx: Option<oneshot::Receiver<Result<u64, ()>>>,
    fail_closed: bool,
}

/// The decision record could not be written: the request must not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail could not take the decision record")]
pub struct Unrecorded;

impl Audit {
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Opens the trail and starts the writer on the current runtime, which first records a
    /// `start`. A task, not a thread of its own: handing a decision to a thread and back was two
    /// context switches per request.
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
            sync: settings.sync,
            keyed: key.is_some(),
            cutting: AtomicBool::new(false),
            outcomes: SegQueue::new(),
            metrics: AuditMetrics {
                written: m.written.clone(),
                write_errors: m.write_errors.clone(),
                dropped: m.dropped.clone(),
                pending: m.pending.clone(),
                up: m.up.clone(),
                head_seq: m.head_seq.clone(),
            },
        });
        state.metrics.up.set(1);
        state.metrics.head_seq.set(resume.as_ref().map_or(0, |r| i64::try_from(r.seq).unwrap_or(i64::MAX)));
        if key.is_none() {
            tracing::warn!(
                "The audit chain is unkeyed (SHA-256): anyone who can write the trail can recompute it after an edit. \
                 Set audit.key_env to make it HMAC-SHA-256."
            );
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AuditError::NoRuntime)?;
        // Detached: `close` waits for the writer's acknowledgement, sent after its last sync.
        runtime.spawn(writer::run(rx, state.clone(), sink));
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
        if let Some(r) = resume.as_ref().filter(|r| !r.clean) {
            audit.admin("recovered", recovered(r));
        }
        tracing::info!(dir = %dir.display(), "Audit trail open.");
        Ok(audit)
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether the chain is HMAC-keyed.
    pub fn keyed(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.state.keyed)
    }

    /// Whether the trail is taking records (always true when disabled).
    pub fn healthy(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.state.healthy.load(Ordering::Acquire))
    }

    /// Reserves room for one record. `None` means the request must be refused.
    pub fn reserve(&self) -> Option<Slot> {
        let unrecorded = Slot { inner: None, reserved: false };
        let Some(inner) = &self.inner else { return Some(unrecorded) };
        let st = &inner.state;
        if st.healthy.load(Ordering::Acquire) {
            if st.pending.fetch_add(1, Ordering::AcqRel) < st.capacity {
                return Some(Slot { inner: Some(inner.clone()), reserved: true });
            }
            st.pending.fetch_sub(1, Ordering::AcqRel);
        }
        st.metrics.dropped.inc();
        if st.fail_closed { None } else { Some(unrecorded) }
    }

    /// From now on, a forwarded request that ends without its client having gone was cut by
    /// shutdown: its outcome says so.
    pub fn cut(&self) {
        if let Some(inner) = &self.inner {
            inner.state.cutting.store(true, Ordering::Release);
        }
    }

    /// Records an operator action. Such records are never refused for capacity.
    pub fn admin(&self, kind: &'static str, fields: serde_json::Map<String, serde_json::Value>) {
        if let Some(inner) = &self.inner {
            inner.state.pending.fetch_add(1, Ordering::AcqRel);
            let event = Event::Admin(AdminRecord { time: SystemTime::now(), kind, fields });
            if inner.tx.send(Msg::Event(event, None)).is_err() {
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

/// What a start after a crash found: where the trail stopped, and the forwarded requests whose
/// outcome it never recorded (served or not, nobody can now say).
fn recovered(r: &writer::Resume) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = serde_json::Map::new();
    fields.insert("last_seq".into(), r.seq.into());
    fields.insert("outcome_unknown".into(), r.open.len().into());
    let open: Vec<serde_json::Value> =
        r.open.iter().map(|(seq, id)| serde_json::json!({ "decision_seq": seq, "request_id": id })).collect();
    fields.insert("decisions".into(), open.into());
    if !r.open.is_empty() {
        tracing::warn!(
            outcome_unknown = r.open.len(),
            last_seq = r.seq,
            "The gateway stopped without a stop record; the outcome of some forwarded requests is unknown."
        );
    }
    fields
}

// === impl Slot ===

impl Slot {
    /// Hands the decision record to the writer (the slot's room passes to it) and returns the
    /// wait for it to be where `audit.sync` says. The record is built only when the trail is on.
    /// A `forwarding` request keeps room for its outcome record while it is in flight, so
    /// `audit.queue` still bounds requests in flight plus records not yet on disk.
    pub fn decide(&mut self, forwarding: bool, record: impl FnOnce() -> DecisionRecord) -> Durable {
        let Some(inner) = &self.inner else { return Durable::none() };
        if !std::mem::take(&mut self.reserved) {
            inner.state.pending.fetch_add(1, Ordering::AcqRel);
        }
        if forwarding {
            // Already admitted: over capacity or not, its outcome will be written.
            inner.state.pending.fetch_add(1, Ordering::AcqRel);
            self.reserved = true;
        }
        let (tx, rx) = oneshot::channel();
        if inner.tx.send(Msg::Event(Event::Decision(Box::new(record())), Some(tx))).is_err() {
            // The writer is gone: the dropped sender fails the wait.
            inner.state.pending.fetch_sub(1, Ordering::AcqRel);
            inner.state.metrics.dropped.inc();
        }
        Durable { rx: Some(rx), fail_closed: inner.state.fail_closed }
    }

    /// Hands a forwarded request's outcome record to the writer. Like an operator's record, it
    /// is never refused for capacity: the request it ends was already served.
    pub fn outcome(mut self, record: impl FnOnce() -> OutcomeRecord) {
        let Some(inner) = self.inner.take() else { return };
        if !std::mem::take(&mut self.reserved) {
            inner.state.pending.fetch_add(1, Ordering::AcqRel);
        }
        inner.state.outcomes.push(Event::Outcome(Box::new(record())));
    }

    /// Whether shutdown is cutting the streams still open.
    pub fn cutting(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.state.cutting.load(Ordering::Acquire))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && self.reserved
        {
            inner.state.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

// === impl Durable ===

impl Durable {
    /// Nothing to wait for: the trail is off, or this request goes unrecorded.
    pub fn none() -> Self {
        Self { rx: None, fail_closed: false }
    }

    /// `Ok(Some(seq))` once the record is durable; `Ok(None)` when the trail is off, or when
    /// `audit.on_failure = "allow"` lets the request go on unrecorded.
    pub async fn wait(self) -> Result<Option<u64>, Unrecorded> {
        let Some(rx) = self.rx else { return Ok(None) };
        match rx.await {
            Ok(Ok(seq)) => Ok(Some(seq)),
            _ if self.fail_closed => Err(Unrecorded),
            _ => Ok(None),
        }
    }
}
