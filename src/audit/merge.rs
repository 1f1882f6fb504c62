//! Several replicas' trails read as one: their records interleaved by time, each trail's own
//! order kept (a trail's chain is its order, so it is never re-sorted), each record untouched and
//! named with the trail it came from. Streams; memory holds one line per trail.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::verify::{Trail, VerifyError};

/// What a merge wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    pub records: u64,
    pub trails: usize,
}

/// One trail's lines, file after file.
struct Lines {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, BufReader<File>)>,
}

impl Lines {
    fn new(trail: &Trail) -> Self {
        Self { files: trail.files.clone().into_iter(), current: None }
    }

    /// The next non-empty line, or `None` at the end of the trail's last file.
    fn next(&mut self) -> Result<Option<String>, VerifyError> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.files.next() else { return Ok(None) };
                let file = File::open(&path).map_err(|e| VerifyError::Io(path.clone(), e))?;
                self.current = Some((path, BufReader::new(file)));
            }
            let Some((path, reader)) = &mut self.current else { continue };
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(|e| VerifyError::Io(path.clone(), e))? == 0 {
                self.current = None;
                continue;
            }
            let line = line.trim_end();
            if !line.is_empty() {
                return Ok(Some(line.to_owned()));
            }
        }
    }
}

#[derive(Deserialize)]
struct Stamp<'a> {
    #[serde(borrow)]
    time: Option<&'a str>,
}

/// Writes every record of `trails` to `out` as `{"trail": NAME, "record": RECORD}` lines, in
/// time order across trails. Records are RFC 3339 UTC times of one shape, which sort as text; a
/// record without a readable time keeps its trail's previous one, so it stays where it was.
pub fn merge(trails: &[Trail], out: &mut impl Write) -> Result<Merged, VerifyError> {
    let mut sources: Vec<Lines> = trails.iter().map(Lines::new).collect();
    let names: Vec<String> =
        trails.iter().map(|t| serde_json::to_string(&t.name.to_string_lossy()).unwrap_or_default()).collect();
    let mut last_time = vec![String::new(); trails.len()];
    // (time, trail, order within the trail): ties keep the trails' own order.
    let mut heads: BinaryHeap<Reverse<(String, usize, u64)>> = BinaryHeap::new();
    let mut pending: Vec<Option<String>> = vec![None; trails.len()];
    let mut order = vec![0u64; trails.len()];
    let mut advance = |i: usize,
                       sources: &mut Vec<Lines>,
                       heads: &mut BinaryHeap<Reverse<(String, usize, u64)>>,
                       pending: &mut Vec<Option<String>>|
     -> Result<(), VerifyError> {
        if let Some(line) = sources[i].next()? {
            let time = serde_json::from_str::<Stamp>(&line).ok().and_then(|s| s.time.map(str::to_owned));
            if let Some(t) = time {
                last_time[i] = t;
            }
            order[i] += 1;
            heads.push(Reverse((last_time[i].clone(), i, order[i])));
            pending[i] = Some(line);
        }
        Ok(())
    };
    for i in 0..trails.len() {
        advance(i, &mut sources, &mut heads, &mut pending)?;
    }
    let mut merged = Merged { records: 0, trails: trails.len() };
    let stdout_err = |e: io::Error| VerifyError::Io(PathBuf::from("<output>"), e);
    while let Some(Reverse((_, i, _))) = heads.pop() {
        let Some(line) = pending[i].take() else { continue };
        // A line that is not JSON is kept as a string, so nothing in a trail is dropped unseen.
        let record = match serde_json::from_str::<&RawValue>(&line) {
            Ok(raw) => raw.get().to_owned(),
            Err(_) => serde_json::to_string(&line).unwrap_or_default(),
        };
        writeln!(out, "{{\"trail\":{},\"record\":{record}}}", names[i]).map_err(stdout_err)?;
        merged.records += 1;
        advance(i, &mut sources, &mut heads, &mut pending)?;
    }
    out.flush().map_err(stdout_err)?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trail(dir: &std::path::Path, name: &str, lines: &[&str]) -> Trail {
        let path = dir.join(format!("{name}.jsonl"));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        Trail { name: PathBuf::from(name), files: vec![path] }
    }

    #[test]
    fn merge_interleaves_by_time_and_keeps_each_trails_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = trail(
            dir.path(),
            "a",
            &[
                r#"{"seq":1,"time":"2026-12-06T10:00:00.000Z"}"#,
                r#"{"seq":2,"time":"2026-12-06T10:00:03.000Z"}"#,
                // Written after seq 2 with an earlier time: stays after it.
                r#"{"seq":3,"time":"2026-12-06T10:00:02.500Z"}"#,
            ],
        );
        let b = trail(
            dir.path(),
            "b",
            &[
                r#"{"seq":1,"time":"2026-12-06T10:00:01.000Z"}"#,
                "not json",
                r#"{"seq":2,"time":"2026-12-06T10:00:04.000Z"}"#,
            ],
        );
        let mut out = Vec::new();
        let merged = merge(&[a, b], &mut out).unwrap();
        assert_eq!(merged, Merged { records: 6, trails: 2 });
        let lines: Vec<serde_json::Value> =
            String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let got: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                let seq = l["record"]["seq"].as_u64().map_or_else(|| l["record"].to_string(), |s| s.to_string());
                (l["trail"].as_str().unwrap().to_owned(), seq)
            })
            .collect();
        let want = [("a", "1"), ("b", "1"), ("b", "\"not json\""), ("a", "2"), ("a", "3"), ("b", "2")];
        assert_eq!(got, want.map(|(t, s)| (t.to_owned(), s.to_owned())));
    }
}
