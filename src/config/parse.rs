//! TOML parsing with errors placed in the file. A config file is parsed whole, except the tenant
//! files (`tenants.toml` and `tenants.d/*.toml`), which are read as a stream of slices of whole
//! `[[tenants]]` tables, parsed on every core and handed to the compiler in file order: a million
//! tenants parse in linear time, and neither the files' text nor the parser's trees are ever held
//! whole.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::error::{ConfigError, Source};
use super::raw::{RawTenant, TenantsFile};

/// Tables per slice: small enough that a slice's parse tree is a few megabytes, large enough that
/// handing slices between threads costs nothing next to parsing them.
const TENANTS_PER_SLICE: usize = 500;

/// Slices waiting at each worker, before and after parsing: enough that no thread waits on
/// another's momentary stall, few enough that memory stays a few megabytes.
const QUEUED: usize = 8;

pub(super) fn parse<T: DeserializeOwned>(src: &Source, errors: &mut Vec<ConfigError>) -> Option<T> {
    match toml::from_str::<T>(&src.text) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(src.error(e.span().as_ref(), "", e.message().trim_end()));
            None
        }
    }
}

/// A tenant file: the name messages give it, where it is, and its name inside the config folder
/// (what the policy version covers, so a folder's version does not depend on where it is).
#[derive(Clone)]
pub(super) struct TenantFile {
    pub name: String,
    pub path: PathBuf,
    pub relative: String,
}

/// Consecutive tenants of one file, with their text as a [`Source`] that knows its first line, so
/// the compiler places their errors in the file without the file's whole text.
pub(crate) struct Batch {
    pub src: Source,
    /// Index of the file in the list given to [`stream_tenants`].
    pub file: usize,
    /// Index, in its file, of the batch's first tenant.
    pub first: usize,
    pub tenants: Vec<RawTenant>,
}

/// What reading the tenant files found besides the batches.
pub(super) struct Streamed {
    /// Each file's SHA-256, of the bytes parsed; `None` for a file that could not be read.
    pub digests: Vec<Option<[u8; 32]>>,
    /// Read and parse errors; any of them makes the config fail, whatever the compiler made of the
    /// batches it was given.
    pub errors: Vec<ConfigError>,
}

/// One slice as read: its file, first line, first tenant and bytes.
struct Slice {
    file: usize,
    first_line: usize,
    first: usize,
    bytes: Vec<u8>,
}

type Parsed = Result<Batch, (Source, usize, usize, String, Option<std::ops::Range<usize>>)>;

/// The batches, in file order, and how many tenants they hold at most (lines that start with
/// `[[tenants]]`), so the compiler can size its table once.
pub(crate) struct Batches<'a> {
    pub at_most: usize,
    iter: &'a mut Ordered,
}

impl Batches<'_> {
    /// Whether a slice failed to read or parse so far: the config fails whatever else is found,
    /// so the compiler can stop at the tenants.
    pub fn failed(&self) -> bool {
        !self.iter.errors.is_empty() || self.iter.pending.is_some()
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        self.iter.next()
    }
}

/// Reads and parses `files` on every core and gives the batches, in file order, to `consume`;
/// returns what it returned, and the digests and errors. `at_most` is how many tenants the files
/// hold at most ([`survey`]).
pub(super) fn stream_tenants<R>(
    files: &[TenantFile],
    at_most: usize,
    consume: impl FnOnce(Batches<'_>) -> R,
) -> (R, Streamed) {
    let workers = std::thread::available_parallelism().map_or(1, usize::from).max(1);
    std::thread::scope(|scope| {
        let mut inputs = Vec::with_capacity(workers);
        let mut outputs = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (in_tx, in_rx) = sync_channel::<Slice>(QUEUED);
            let (out_tx, out_rx) = sync_channel::<Parsed>(QUEUED);
            let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            scope.spawn(move || parse_slices(&names, &in_rx, &out_tx));
            inputs.push(in_tx);
            outputs.push(out_rx);
        }
        let reader = scope.spawn(move || read_slices(files, &inputs));
        let mut ordered = Ordered { outputs, next: 0, errors: Vec::new(), pending: None, glued: 0 };
        let result = consume(Batches { at_most, iter: &mut ordered });
        // Whatever the consumer left unread is drained, so the reader and workers finish.
        for _ in ordered.by_ref() {}
        let Ordered { mut errors, .. } = ordered;
        let digests = match reader.join() {
            Ok((digests, mut read_errors)) => {
                read_errors.append(&mut errors);
                errors = read_errors;
                digests
            }
            Err(_) => {
                let name = files.first().map_or_else(String::new, |f| f.name.clone());
                errors.push(ConfigError {
                    file: name,
                    position: None,
                    key: String::new(),
                    message: "reading the tenant files failed".into(),
                });
                vec![None; files.len()]
            }
        };
        (result, Streamed { digests, errors })
    })
}

/// Cuts the files into slices of [`TENANTS_PER_SLICE`] tables at lines that start with
/// `[[tenants]]`, hands them to the workers in turn, and hashes each file's bytes.
fn read_slices(files: &[TenantFile], workers: &[SyncSender<Slice>]) -> (Vec<Option<[u8; 32]>>, Vec<ConfigError>) {
    let mut digests = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    let mut seq = 0usize;
    let mut send = |slice: Slice| {
        // A worker gone means the consumer stopped; nothing more is needed.
        let _ = workers[seq % workers.len()].send(slice);
        seq += 1;
    };
    for (file, f) in files.iter().enumerate() {
        let mut hash = Sha256::new();
        let mut reader = match fs::File::open(&f.path) {
            Ok(h) => BufReader::with_capacity(1 << 20, h),
            Err(e) => {
                errors.push(file_error(&f.name, format!("cannot be read: {e}")));
                digests.push(None);
                continue;
            }
        };
        let (mut line_no, mut tables) = (0usize, 0usize);
        let mut failed = false;
        let mut slice = Slice { file, first_line: 0, first: 0, bytes: Vec::new() };
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    errors.push(file_error(&f.name, format!("cannot be read: {e}")));
                    failed = true;
                    break;
                }
            }
            hash.update(&line);
            if line.starts_with(b"[[tenants]]") {
                if tables > 0 && tables % TENANTS_PER_SLICE == 0 {
                    let next = Slice { file, first_line: line_no, first: tables, bytes: Vec::new() };
                    send(std::mem::replace(&mut slice, next));
                }
                tables += 1;
            }
            slice.bytes.extend_from_slice(&line);
            line_no += 1;
        }
        digests.push((!failed).then(|| hash.finalize().into()));
        send(slice);
    }
    (digests, errors)
}

fn parse_slices(names: &[&str], input: &Receiver<Slice>, output: &SyncSender<Parsed>) {
    for slice in input {
        let name = names.get(slice.file).copied().unwrap_or_default().to_owned();
        let (file, first) = (slice.file, slice.first);
        let parsed = match String::from_utf8(slice.bytes) {
            Err(_) => Err((Source::new(name, String::new()), file, first, "is not valid UTF-8".into(), None)),
            Ok(text) => {
                let src = Source::at_line(name, text, slice.first_line);
                match toml::from_str::<TenantsFile>(&src.text) {
                    Ok(f) => Ok(Batch { src, file, first, tenants: f.tenants }),
                    Err(e) => {
                        let message = e.message().trim_end().to_owned();
                        Err((src, file, first, message, e.span()))
                    }
                }
            }
        };
        if output.send(parsed).is_err() {
            return;
        }
    }
}

/// The workers' results in the order the slices were read. A slice that fails to parse and holds
/// a multi-line string delimiter may have been cut inside a string (at a line inside it that
/// starts with `[[tenants]]`): it is parsed again glued to the slices after it, until the glued
/// text parses or the file ends, so such a file reads exactly as if parsed whole. Gluing stops
/// after [`MAX_GLUED`] slices: a slice that still fails then has an error of its own, which is
/// reported, and a failing tenant file costs no more than a few slices' parses.
struct Ordered {
    outputs: Vec<Receiver<Parsed>>,
    next: usize,
    errors: Vec<ConfigError>,
    /// A failed slice being glued to the ones after it: its file, first tenant and text so far.
    pending: Option<(Source, usize, usize)>,
    glued: usize,
}

/// Slices glued to one that failed before its error is taken as the file's: a string would have
/// to hold thousands of lines that start with `[[tenants]]` to need more.
const MAX_GLUED: usize = 8;

impl Ordered {
    fn receive(&mut self) -> Option<Parsed> {
        let n = self.outputs.len();
        let r = self.outputs.get(self.next % n)?.recv().ok();
        self.next += 1;
        r
    }

    /// Gives up on the glued slice: its parse error is the file's.
    fn fail_pending(&mut self) {
        if let Some((src, _, _)) = self.pending.take() {
            if let Err(e) = toml::from_str::<TenantsFile>(&src.text) {
                self.errors.push(src.error(e.span().as_ref(), "", e.message().trim_end()));
            }
        }
    }
}

fn cut_string(text: &str) -> bool {
    text.contains("\"\"\"") || text.contains("'''")
}

impl Iterator for Ordered {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        loop {
            let Some(parsed) = self.receive() else {
                self.fail_pending();
                return None;
            };
            let (src, file) = match &parsed {
                Ok(b) => (&b.src, b.file),
                Err((src, file, ..)) => (src, *file),
            };
            if let Some((glued, pfile, pfirst)) = self.pending.take() {
                if pfile != file || self.glued >= MAX_GLUED {
                    self.pending = Some((glued, pfile, pfirst));
                    self.fail_pending();
                } else {
                    self.glued += 1;
                    let text = glued.text + &src.text;
                    let glued = Source::at_line(glued.name, text, glued.first_line);
                    match toml::from_str::<TenantsFile>(&glued.text) {
                        Ok(f) => return Some(Batch { src: glued, file, first: pfirst, tenants: f.tenants }),
                        Err(_) => {
                            self.pending = Some((glued, pfile, pfirst));
                            continue;
                        }
                    }
                }
            }
            match parsed {
                Ok(batch) => return Some(batch),
                Err((src, file, first, _, _)) if cut_string(&src.text) => {
                    self.pending = Some((src, file, first));
                    self.glued = 0;
                }
                Err((src, _, _, message, span)) => self.errors.push(src.error(span.as_ref(), "", message)),
            }
        }
    }
}

/// What a quick pass over a tenant file finds, before it is parsed (from the page cache).
#[derive(Clone, Copy)]
pub(super) struct Survey {
    /// Lines that start with `[[tenants]]`: the most tenants it can hold, to size the tenant
    /// table once instead of growing it.
    pub tables: usize,
    /// SHA-256 of its bytes, by which a reload knows it unchanged; `None` if it cannot be read
    /// (the reader reports it).
    pub digest: Option<[u8; 32]>,
}

/// Surveys every file, on every core.
pub(super) fn survey(files: &[TenantFile]) -> Vec<Survey> {
    let workers = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, files.len().max(1));
    let per_worker = files.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = files
            .chunks(per_worker)
            .map(|chunk| scope.spawn(move || chunk.iter().map(|f| survey_file(&f.path)).collect::<Vec<_>>()))
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

fn survey_file(path: &std::path::Path) -> Survey {
    use std::io::Read;
    const TABLE: &[u8] = b"\n[[tenants]]";
    let unread = Survey { tables: 0, digest: None };
    let Ok(mut file) = fs::File::open(path) else { return unread };
    let finder = memchr::memmem::Finder::new(TABLE);
    let mut hash = Sha256::new();
    // A leading newline stands for the start of the file; a table cut by a read is found in the
    // bytes carried over.
    let mut buf = vec![b'\n'];
    let mut tables = 0;
    loop {
        let kept = buf.len();
        buf.resize(kept + (1 << 20), 0);
        let n = match file.read(&mut buf[kept..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return unread,
        };
        buf.truncate(kept + n);
        hash.update(&buf[kept..]);
        tables += finder.find_iter(&buf).count();
        let carry = buf.len().saturating_sub(TABLE.len() - 1);
        buf.drain(..carry);
    }
    Survey { tables, digest: Some(hash.finalize().into()) }
}

fn file_error(name: &str, message: String) -> ConfigError {
    ConfigError { file: name.to_owned(), position: None, key: String::new(), message }
}
