//! The writer: a task on the request path's runtime that seals records into the chain, appends
//! them to the current file in batches, rotates files by size, and keeps records it could not
//! write (disk full, I/O error) in order until the disk takes them again. A record counts as pending until it is on disk; the
//! request path refuses new work while too many are pending.
//!
//! Group commit: the task takes every record that arrived while it was busy, writes them in one
//! batch and (with `audit.sync = "always"`) covers them with one `fdatasync`, then tells each
//! waiting request its record's `seq`. Under load more records gather during each sync, so the
//! cost per request falls as the load rises; nothing sleeps to gather them.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

use super::State;
use super::chain::{GENESIS, Sealer};
use super::record::{AdminRecord, Event, track_outcomes};
use crate::config::AuditSync;

/// How long the writer waits before trying the disk again after an error.
const RETRY: Duration = Duration::from_millis(250);
/// How often written data is forced to stable storage.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How long queued outcome records may wait for the writer when nothing else wakes it.
const OUTCOME_EVERY: Duration = Duration::from_millis(100);
/// At shutdown, how long to keep retrying records the disk refuses.
const STOP_PATIENCE: Duration = Duration::from_secs(5);
const MAX_BATCH: usize = 4096;

/// Told the record's `seq` once it is durable, or `Err` when the disk refused it.
pub type Waiter = oneshot::Sender<Result<u64, ()>>;

pub enum Msg {
    /// A record, and the request waiting for it to be durable, if one is.
    Event(Event, Option<Waiter>),
    /// Write everything received so far plus a `stop` record, sync, and exit.
    Stop(Sender<()>),
}

/// The trail's files and the chain's head.
pub struct Sink {
    dir: PathBuf,
    sealer: Sealer,
    max_file_bytes: u64,
    file: Option<Arc<File>>,
    file_index: u64,
    file_len: u64,
    seq: u64,
    /// The last record's hash, as hex: the next record's `prev`.
    prev: [u8; 64],
    unsynced: bool,
}

/// Where an existing trail left off.
pub struct Resume {
    pub seq: u64,
    pub hash: String,
    /// Whether the last record was a clean `stop`.
    pub clean: bool,
    /// `path:line` of damaged lines after the last intact record, if any.
    pub damaged: Option<String>,
    /// Forwarded requests in the newest file whose decision is on record and whose outcome is
    /// not: the `seq` of each decision and its request id. Left by a crash when not `clean`.
    pub open: Vec<(u64, Option<String>)>,
}

pub fn file_name(index: u64) -> String {
    format!("audit-{index:06}.jsonl")
}

fn file_index(name: &str) -> Option<u64> {
    name.strip_prefix("audit-")?.strip_suffix(".jsonl")?.parse().ok()
}

/// The trail's files in `dir`, in chain order.
pub fn trail_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| file_index(&e.file_name().to_string_lossy()).map(|i| (i, e.path())))
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

impl Sink {
    /// Opens the trail in `dir` (created if missing), continuing the chain of the newest file.
    /// Each process writes its own files, starting with a new one.
    pub fn open(dir: &Path, sealer: Sealer, max_file_bytes: u64) -> io::Result<(Self, Option<Resume>)> {
        fs::create_dir_all(dir)?;
        let files = trail_files(dir)?;
        let last_index = files.last().and_then(|p| file_index(&p.file_name()?.to_string_lossy())).unwrap_or(0);
        let resume = match files.last() {
            Some(p) => last_record(p)?,
            None => None,
        };
        let mut prev = [b'0'; 64];
        let seq = match &resume {
            Some(r) if r.hash.len() == 64 => {
                prev.copy_from_slice(r.hash.as_bytes());
                r.seq
            }
            Some(r) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the last record's hash {:?} is not 64 hex digits; run `customs audit verify`", r.hash),
                ));
            }
            None => 0,
        };
        let sink = Self {
            dir: dir.to_owned(),
            sealer,
            max_file_bytes: max_file_bytes.max(1),
            file: None,
            file_index: last_index,
            file_len: 0,
            seq,
            prev,
            unsynced: false,
        };
        Ok((sink, resume))
    }

    /// Seals one record onto `batch`.
    pub fn seal(&mut self, event: &Event, batch: &mut Vec<u8>) {
        self.seq += 1;
        let start = batch.len();
        event.write_body(self.seq, self.prev(), batch);
        self.sealer.seal_in_place(batch, start, &mut self.prev);
    }

    fn prev(&self) -> &str {
        std::str::from_utf8(&self.prev).unwrap_or(GENESIS)
    }

    /// Appends a batch of sealed lines. On failure the file is cut back to where it was, so a
    /// retry does not leave half a batch behind.
    pub fn write(&mut self, batch: &[u8]) -> io::Result<()> {
        if self.file.is_none() || self.file_len >= self.max_file_bytes {
            self.rotate()?;
        }
        let Some(mut file) = self.file.as_deref() else { return Err(io::Error::other("no audit file open")) };
        if let Err(e) = file.write_all(batch) {
            if file.set_len(self.file_len).and_then(|()| file.seek(SeekFrom::Start(self.file_len))).is_err() {
                // The file cannot be repaired in place: continue the chain in a new one.
                self.file = None;
            }
            return Err(e);
        }
        self.file_len += batch.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
            tracing::info!(seq = self.seq, hash = self.prev(), "Audit file rotated; chain head.");
        }
        fs::create_dir_all(&self.dir)?;
        let index = self.file_index + 1;
        let file = OpenOptions::new().create_new(true).append(true).open(self.dir.join(file_name(index)))?;
        self.file_index = index;
        self.file = Some(Arc::new(file));
        self.file_len = 0;
        Ok(())
    }

    /// Forces what was written to stable storage, on the blocking pool: the writer is a task on
    /// the request path's runtime, and a sync must not hold up a worker.
    pub async fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            if let Some(f) = self.file.clone() {
                tokio::task::spawn_blocking(move || f.sync_data()).await.map_err(io::Error::other)??;
            }
            self.unsynced = false;
        }
        Ok(())
    }

    pub fn head(&self) -> (u64, &str) {
        (self.seq, self.prev())
    }
}

/// The `seq` and `hash` of the last intact record in `path`, and whether it was a `stop`. Lines
/// after it that do not parse (a write torn by a crash or power loss) are reported, not fatal:
/// the chain continues from the last intact record, the `start` record says where the damage is,
/// and `customs audit verify` still flags it.
fn last_record(path: &Path) -> io::Result<Option<Resume>> {
    let mut last: Option<(u64, String, bool)> = None;
    let mut damaged = None;
    let mut open = BTreeMap::new();
    for (i, line) in BufReader::new(File::open(path)?).split(b'\n').enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let v: Option<serde_json::Value> = serde_json::from_slice(&line).ok();
        let seq = v.as_ref().and_then(|v| v.get("seq")?.as_u64());
        let hash = v.as_ref().and_then(|v| v.get("hash")?.as_str().map(str::to_owned));
        match (seq, hash) {
            (Some(seq), Some(hash)) if damaged.is_none() => {
                let kind = v.as_ref().and_then(|v| v.get("type")?.as_str());
                if let Some(v) = &v {
                    track_outcomes(&mut open, seq, v);
                }
                last = Some((seq, hash, kind == Some("stop")));
            }
            _ => {
                damaged.get_or_insert(i + 1);
            }
        }
    }
    match (last, damaged) {
        (None, None) => Ok(None),
        (None, Some(line)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}:{line}: no intact record to continue the chain from; run `customs audit verify`",
                path.display()
            ),
        )),
        (Some((seq, hash, clean)), damaged) => {
            let damaged = damaged.map(|line| format!("{}:{line}", path.display()));
            if let Some(at) = &damaged {
                tracing::error!(
                    at,
                    seq,
                    "The audit trail ends in a damaged record; continuing the chain after the last intact one."
                );
            }
            Ok(Some(Resume { seq, hash, clean: clean && damaged.is_none(), damaged, open: open.into_iter().collect() }))
        }
    }
}

/// The writer task's body. Returns when told to stop or when every sender is gone.
pub async fn run(mut rx: UnboundedReceiver<Msg>, state: Arc<State>, mut sink: Sink) {
    let mut batch = Batch { bytes: Vec::with_capacity(256 * 1024), records: 0, waiters: Vec::new() };
    let mut last_sync = Instant::now();
    let mut stop: Option<Sender<()>> = None;
    while stop.is_none() {
        // Records the disk refused are waiting: try again at the retry pace.
        let wait = if batch.records > 0 { RETRY } else { OUTCOME_EVERY };
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(msg)) => accept(msg, &mut sink, &mut batch, &mut stop),
            Ok(None) => break,
            Err(_) => {}
        }
        while stop.is_none() && batch.records < MAX_BATCH {
            match rx.try_recv() {
                Ok(msg) => accept(msg, &mut sink, &mut batch, &mut stop),
                Err(_) => break,
            }
        }
        // Outcomes handed over before the stop request are all here: shutdown cuts its streams
        // before it asks the writer to stop.
        while let Some(e) = state.outcomes.pop() {
            accept(Msg::Event(e, None), &mut sink, &mut batch, &mut stop);
        }
        if batch.records == 0 {
            continue;
        }
        if flush(&mut sink, &state, &mut batch).is_err() {
            // Its waiters are refused; the records stay for the retry.
            continue;
        }
        let must_sync = state.sync == AuditSync::Always && !batch.waiters.is_empty();
        let mut durable = true;
        if must_sync || last_sync.elapsed() >= SYNC_EVERY {
            if let Err(e) = sink.sync().await {
                tracing::error!(error = %e, "Audit trail sync failed.");
                state.write_failed(&e, 0);
                durable = false;
            }
            last_sync = Instant::now();
        }
        batch.answer(durable);
    }
    // Stopping: everything that was sent before the stop is in the batch; seal the stop record
    // after it and keep trying the disk for a while.
    let (records, _) = sink.head();
    let mut fields = serde_json::Map::new();
    fields.insert("records".into(), serde_json::Value::from(records + 1));
    sink.seal(&Event::Admin(AdminRecord { time: SystemTime::now(), kind: "stop", fields }), &mut batch.bytes);
    state.pending.fetch_add(1, Ordering::AcqRel);
    batch.records += 1;
    let deadline = Instant::now() + STOP_PATIENCE;
    while flush(&mut sink, &state, &mut batch).is_err() && Instant::now() < deadline {
        tokio::time::sleep(RETRY).await;
    }
    if batch.records > 0 {
        tracing::error!(records = batch.records, "Audit records could not be written before shutdown; they are lost.");
        state.metrics.dropped.inc_by(batch.records as u64);
    }
    let synced = sink.sync().await;
    if let Err(e) = &synced {
        tracing::error!(error = %e, "Audit trail sync failed at shutdown.");
    }
    // Waiters of a batch the disk never took were refused by `flush`.
    batch.answer(synced.is_ok());
    let (seq, hash) = sink.head();
    tracing::info!(seq, hash, "Audit trail closed; chain head.");
    if let Some(ack) = stop {
        let _ = ack.send(());
    }
}

/// Sealed records not yet on disk, and the requests waiting for theirs.
struct Batch {
    bytes: Vec<u8>,
    records: usize,
    /// Each waiting request with its record's `seq`, in the order sealed.
    waiters: Vec<(Waiter, u64)>,
}

impl Batch {
    /// Tells every waiting request whether it may go on.
    fn answer(&mut self, ok: bool) {
        for (w, seq) in self.waiters.drain(..) {
            // A request that stopped waiting (its client left) has dropped its receiver.
            let _ = w.send(if ok { Ok(seq) } else { Err(()) });
        }
    }
}

/// Seals an event onto the batch, or takes note of the stop request.
fn accept(msg: Msg, sink: &mut Sink, batch: &mut Batch, stop: &mut Option<Sender<()>>) {
    match msg {
        Msg::Event(e, waiter) => {
            sink.seal(&e, &mut batch.bytes);
            batch.records += 1;
            if let Some(w) = waiter {
                batch.waiters.push((w, sink.seq));
            }
        }
        Msg::Stop(ack) => *stop = Some(ack),
    }
}

fn flush(sink: &mut Sink, state: &State, batch: &mut Batch) -> io::Result<()> {
    match sink.write(&batch.bytes) {
        Ok(()) => {
            state.pending.fetch_sub(batch.records, Ordering::AcqRel);
            state.metrics.written.inc_by(batch.records as u64);
            state.metrics.head_seq.set(i64::try_from(sink.seq).unwrap_or(i64::MAX));
            state.metrics.pending.set(state.pending.load(Ordering::Relaxed) as i64);
            batch.records = 0;
            batch.bytes.clear();
            if !state.healthy.swap(true, Ordering::AcqRel) {
                tracing::warn!("Audit trail writable again; accepting requests.");
                state.metrics.up.set(1);
            }
            Ok(())
        }
        Err(e) => {
            state.write_failed(&e, batch.records);
            // The records stay in the batch until the disk takes them; their requests do not
            // wait for that (each refused one records its outcome).
            batch.answer(false);
            Err(e)
        }
    }
}
