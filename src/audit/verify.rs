//! `customs audit verify`: re-derives the chain over a trail and reports the first record that
//! was altered, removed, inserted or reordered, or where the trail was cut short; and lists the
//! forwarded requests whose decision is on record but whose outcome is not (a crash between the
//! two, or requests still in flight on a live trail).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::chain::{GENESIS, Sealer, unseal};
use super::record::track_outcomes;
use super::writer::trail_files;

/// What a sound trail looks like.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: usize,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: u64,
    pub head: String,
    /// The last record is a `stop`: nothing was cut from the end since the gateway shut down.
    pub closed: bool,
    /// Forwarded requests with a decision record and no outcome record: `seq` of the decision,
    /// and its request id.
    pub missing_outcomes: BTreeMap<u64, Option<String>>,
    /// `time` of the first and the last record (RFC 3339 UTC, so they order as text).
    pub first_time: Option<String>,
    pub last_time: Option<String>,
}

/// The first place the trail is not what the writer wrote.
#[derive(Debug)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub what: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    #[error("no audit files found in {0}")]
    Empty(PathBuf),
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Accept a trail whose first record is not seq 1 (older files removed by retention).
    pub allow_partial_head: bool,
    /// A chain head seen outside the trail, which the trail must still reach.
    pub checkpoint: Option<Checkpoint>,
}

/// A record's `seq`, and optionally its `hash`, witnessed outside the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: Option<String>,
}

/// One chain's files, in order, and what to call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trail {
    pub name: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Groups paths into chains: each folder is a trail of its own (one replica's), and files given
/// one after another form one trail together, in the order given.
pub fn trails(paths: &[PathBuf]) -> Result<Vec<Trail>, VerifyError> {
    let mut out: Vec<Trail> = Vec::new();
    let mut loose = false;
    for p in paths {
        if p.is_dir() {
            let files = expand(std::slice::from_ref(p))?;
            out.push(Trail { name: p.clone(), files });
            loose = false;
        } else {
            match out.last_mut() {
                Some(t) if loose => t.files.push(p.clone()),
                _ => out.push(Trail { name: p.clone(), files: vec![p.clone()] }),
            }
            loose = true;
        }
    }
    Ok(out)
}

/// Expands directories into their trail files, in chain order; files are taken as given.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, VerifyError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let found = trail_files(p).map_err(|e| VerifyError::Io(p.clone(), e))?;
            if found.is_empty() {
                return Err(VerifyError::Empty(p.clone()));
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Checks the whole chain; `Ok(Err(problem))` names the first record that breaks it.
pub fn verify(files: &[PathBuf], sealer: &Sealer, opts: Options) -> Result<Result<Summary, Problem>, VerifyError> {
    let mut s = Summary { head: GENESIS.to_owned(), ..Summary::default() };
    let mut last_type = String::new();
    for path in files {
        s.files += 1;
        if let Err(p) = verify_file(path, sealer, &opts, &mut s, &mut last_type)? {
            return Ok(Err(p));
        }
    }
    s.closed = last_type == "stop";
    if let Some(c) = &opts.checkpoint
        && s.last_seq < c.seq
    {
        let file = files.last().cloned().unwrap_or_default();
        let what = format!(
            "the trail ends at seq {} but a checkpoint saw seq {}: records {} to {} were removed from the end",
            s.last_seq,
            c.seq,
            s.last_seq + 1,
            c.seq
        );
        return Ok(Err(Problem { file, line: 0, what }));
    }
    Ok(Ok(s))
}

fn verify_file(
    path: &Path,
    sealer: &Sealer,
    opts: &Options,
    s: &mut Summary,
    last_type: &mut String,
) -> Result<Result<(), Problem>, VerifyError> {
    let file = File::open(path).map_err(|e| VerifyError::Io(path.to_owned(), e))?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| VerifyError::Io(path.to_owned(), e))?;
        if n == 0 {
            return Ok(Ok(()));
        }
        line_no += 1;
        let problem = |what: String| Ok(Err(Problem { file: path.to_owned(), line: line_no, what }));
        let Some(line) = buf.strip_suffix(b"\n") else {
            return problem("the last line is cut off (the file was truncated)".into());
        };
        let Some(u) = unseal(line) else {
            return problem("not a sealed record (edited, truncated or inserted by hand)".into());
        };
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return problem("not valid JSON (edited or truncated)".into());
        };
        let seq = v.get("seq").and_then(Value::as_u64);
        let prev = v.get("prev").and_then(Value::as_str);
        let (Some(seq), Some(prev)) = (seq, prev) else {
            return problem("the record has no seq or prev".into());
        };
        if hex::encode(sealer.hash(&u.body)) != u.claimed {
            let hint = if sealer.is_keyed() { " (or the key is wrong)" } else { "" };
            return problem(format!("record seq {seq} was altered: its hash does not match its content{hint}"));
        }
        match s.first_seq {
            None if seq != 1 && !opts.allow_partial_head => {
                return problem(format!(
                    "the trail starts at seq {seq}: records 1 to {} are missing (pass the earlier files, or \
                     --allow-partial-head if retention removed them)",
                    seq - 1
                ));
            }
            None => {}
            Some(_) if seq > s.last_seq + 1 => {
                return problem(format!(
                    "{} record(s) missing before seq {seq} (expected seq {}): removed or reordered",
                    seq - s.last_seq - 1,
                    s.last_seq + 1
                ));
            }
            Some(_) if seq <= s.last_seq => {
                return problem(format!("record seq {seq} follows seq {}: inserted or reordered", s.last_seq));
            }
            Some(_) if prev != s.head => {
                return problem(format!(
                    "record seq {seq} does not chain to the record before it: that record was replaced or \
                     the order was changed"
                ));
            }
            Some(_) => {}
        }
        if s.first_seq.is_none() && seq == 1 && prev != GENESIS {
            return problem("the first record does not start the chain".into());
        }
        if let Some(c) = &opts.checkpoint
            && c.seq == seq
            && c.hash.as_deref().is_some_and(|h| h != u.claimed)
        {
            return problem(format!("record seq {seq} is not the record the checkpoint saw: its hash differs"));
        }
        track_outcomes(&mut s.missing_outcomes, seq, &v);
        if let Some(t) = v.get("time").and_then(Value::as_str) {
            if s.first_time.is_none() {
                s.first_time = Some(t.to_owned());
            }
            t.clone_into(s.last_time.get_or_insert_default());
        }
        s.first_seq.get_or_insert(seq);
        s.last_seq = seq;
        s.records += 1;
        u.claimed.clone_into(&mut s.head);
        v.get("type").and_then(Value::as_str).unwrap_or_default().clone_into(last_type);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn each_folder_is_a_chain_and_files_in_a_row_are_one() {
        let dir = tempfile::TempDir::new().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("audit-000001.jsonl"), "").unwrap();
            std::fs::write(d.join("audit-000002.jsonl"), "").unwrap();
        }
        let (f1, f2) = (dir.path().join("x.jsonl"), dir.path().join("y.jsonl"));
        let got = trails(&[a.clone(), f1.clone(), f2.clone(), b.clone()]).unwrap();
        let names: Vec<_> = got.iter().map(|t| (t.name.clone(), t.files.len())).collect();
        assert_eq!(names, vec![(a.clone(), 2), (f1.clone(), 2), (b, 2)]);
        assert_eq!(got[1].files, vec![f1, f2]);
        assert_eq!(got[0].files, vec![a.join("audit-000001.jsonl"), a.join("audit-000002.jsonl")]);
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        assert!(matches!(trails(&[dir.path().join("empty")]), Err(VerifyError::Empty(_))));
    }
}
