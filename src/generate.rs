//! `customs generate`: a config folder at a cloud provider's scale, so anyone can reproduce the
//! load, screening and reload figures in BENCHMARKS.md. It is an example folder (the shipped one by
//! default) with generated tenants added, in `tenants.toml` or split over `tenants.d/`, and a
//! synthetic restricted-party list of the Consolidated Screening List's size added to its list.
//!
//! Names are drawn from a made-up vocabulary with a skewed (Zipf-like) word frequency, as real
//! company names are: a few words are common, most are rare, so screening meets both repeated and
//! unseen words. Every 50,000th tenant takes a listed party's name, so screening has hits to find.
//! The output depends only on the options: a rerun writes the same bytes.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::FILES;
use crate::screening::CSL_COLUMNS;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// The example folder copied into the output.
    pub from: PathBuf,
    pub tenants: usize,
    pub list_entries: usize,
    /// 0: tenants appended to `tenants.toml`; otherwise split evenly over this many files in
    /// `tenants.d/`.
    pub files: usize,
}

/// Words tenant names are drawn from, and the list's own (built the same way, so some words are
/// shared, as real names share them).
const TENANT_WORDS: usize = 60_000;
const LIST_WORDS: usize = 20_000;
/// One tenant in this many is named after a listed party.
const PLANTED_EVERY: usize = 50_000;
const SYLLABLES: [&str; 40] = [
    "ka", "lo", "mi", "ten", "vor", "sa", "ri", "del", "un", "bra", "zen", "to", "qua", "lim", "per", "os", "na",
    "ger", "ix", "ho", "cor", "ve", "tri", "dan", "el", "mar", "su", "fin", "ol", "gra", "nor", "pi", "ex", "wa",
    "lun", "sta", "re", "bel", "cy", "ad",
];
const TAILS: [&str; 12] = [
    "Analytics",
    "Trading",
    "Systems",
    "Labs",
    "Logistics",
    "Research",
    "Holdings",
    "Software",
    "Energy",
    "Foods",
    "Media",
    "Robotics",
];
const FORMS: [&str; 8] = ["Ltd.", "Inc.", "GmbH", "LLC", "S.A.", "B.V.", "Co., Ltd.", "K.K."];
/// Countries the example's `us` and `rest-of-world` jurisdictions cover, with the jurisdiction.
const COUNTRIES: [(&str, &str); 10] = [
    ("US", "us"),
    ("US", "us"),
    ("US", "us"),
    ("DE", "rest-of-world"),
    ("GB", "rest-of-world"),
    ("JP", "rest-of-world"),
    ("FR", "rest-of-world"),
    ("BR", "rest-of-world"),
    ("IN", "rest-of-world"),
    ("CA", "rest-of-world"),
];

/// The plaintext API key of generated tenant `i`.
pub fn key(i: usize) -> String {
    format!("sk-gen-{i:07}")
}

/// The id of generated tenant `i`.
pub fn tenant_id(i: usize) -> String {
    format!("gen-{i:07}")
}

/// Where tenant `i` is written: `tenants.toml`, or its file in `tenants.d/`.
pub fn tenant_file(opts: &Options, i: usize) -> PathBuf {
    if opts.files == 0 {
        PathBuf::from(FILES.tenants.name)
    } else {
        let per_file = opts.tenants.div_ceil(opts.files).max(1);
        PathBuf::from("tenants.d").join(format!("part-{:04}.toml", i / per_file))
    }
}

/// Writes the folder at `out`, which must not exist yet or be empty.
pub fn write(out: &Path, opts: &Options) -> io::Result<()> {
    if out.exists() && fs::read_dir(out)?.next().is_some() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} is not empty", out.display())));
    }
    fs::create_dir_all(out)?;
    for entry in fs::read_dir(&opts.from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::copy(entry.path(), out.join(entry.file_name()))?;
        }
    }
    let mut rng = StdRng::seed_from_u64(0x00C0_FFEE);
    let tenant_words = vocabulary(&mut rng, TENANT_WORDS);
    let list_words = vocabulary(&mut rng, LIST_WORDS);
    let list = list_names(&mut rng, &list_words, opts.list_entries);
    append_list(out, &list)?;
    write_tenants(out, opts, &mut rng, &tenant_words, &list)
}

fn vocabulary(rng: &mut StdRng, n: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::with_capacity(n);
    while words.len() < n {
        let syllables = rng.random_range(2..=4);
        let mut w = String::new();
        for _ in 0..syllables {
            w.push_str(SYLLABLES[rng.random_range(0..SYLLABLES.len())]);
        }
        if seen.insert(w.clone()) {
            words.push(capitalized(&w));
        }
    }
    words
}

fn capitalized(w: &str) -> String {
    let mut c = w.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// A word index skewed towards the start: the first words are drawn far more often than the last.
fn zipf(rng: &mut StdRng, n: usize) -> usize {
    let u: f64 = rng.random();
    ((u * u * u) * n as f64) as usize % n
}

/// Each listed party's name and alt names.
fn list_names(rng: &mut StdRng, words: &[String], n: usize) -> Vec<(String, Vec<String>)> {
    (0..n)
        .map(|_| {
            let a = &words[zipf(rng, words.len())];
            let b = &words[rng.random_range(0..words.len())];
            let tail = TAILS[rng.random_range(0..TAILS.len())];
            let form = FORMS[rng.random_range(0..FORMS.len())];
            let name = format!("{a} {b} {tail} {form}").to_uppercase();
            let aliases = match rng.random_range(0..3) {
                0 => vec![],
                1 => vec![format!("{a} {b}")],
                _ => vec![format!("{a} {b}"), format!("{b} {a} {tail}")],
            };
            (name, aliases)
        })
        .collect()
}

/// Appends the synthetic entries to the folder's list (the one `screening.toml` names).
fn append_list(out: &Path, list: &[(String, Vec<String>)]) -> io::Result<()> {
    let path = out.join(list_path(out)?);
    let mut text = if path.exists() { fs::read_to_string(&path)? } else { String::new() };
    if text.is_empty() {
        let header: Vec<String> = CSL_COLUMNS.iter().map(|c| format!("\"{c}\"")).collect();
        text = header.join(",") + "\n";
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let mut w = BufWriter::new(fs::File::create(&path)?);
    w.write_all(text.as_bytes())?;
    for (i, (name, aliases)) in list.iter().enumerate() {
        let mut row = vec![String::new(); CSL_COLUMNS.len()];
        row[0] = format!("gen-{i:05}");
        row[1] = "Entity List (EL) - Bureau of Industry and Security".into();
        row[5] = name.clone();
        row[7] = "1 Synthetic Road, Nowhere".into();
        row[20] = "SYNTHETIC TEST RECORD - NOT A REAL LISTING".into();
        row[22] = aliases.join("; ");
        let quoted: Vec<String> = row.iter().map(|f| format!("\"{}\"", f.replace('"', "\"\""))).collect();
        writeln!(w, "{}", quoted.join(","))?;
    }
    w.flush()
}

/// The list's file name, as `screening.toml` gives it (or its default).
fn list_path(out: &Path) -> io::Result<String> {
    let default = crate::config::raw::ScreeningSettings::default().list.into_inner();
    let Ok(text) = fs::read_to_string(out.join(FILES.screening.name)) else { return Ok(default) };
    let file: crate::config::raw::ScreeningFile =
        toml::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(file.screening.list.into_inner())
}

fn write_tenants(
    out: &Path,
    opts: &Options,
    rng: &mut StdRng,
    words: &[String],
    list: &[(String, Vec<String>)],
) -> io::Result<()> {
    let mut current: Option<(PathBuf, BufWriter<fs::File>)> = None;
    let mut record = String::new();
    for i in 0..opts.tenants {
        let file = tenant_file(opts, i);
        if current.as_ref().is_none_or(|(f, _)| *f != file) {
            if let Some((_, mut w)) = current.take() {
                w.flush()?;
            }
            let path = out.join(&file);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            let ends_open = fs::read(&path).is_ok_and(|b| b.last().is_some_and(|&c| c != b'\n'));
            let w = fs::OpenOptions::new().create(true).append(true).open(&path)?;
            let mut w = BufWriter::with_capacity(1 << 20, w);
            if ends_open {
                w.write_all(b"\n")?;
            }
            current = Some((file, w));
        }
        record.clear();
        tenant(&mut record, rng, i, words, list);
        if let Some((_, w)) = current.as_mut() {
            w.write_all(record.as_bytes())?;
        }
    }
    if let Some((_, mut w)) = current {
        w.flush()?;
    }
    Ok(())
}

fn tenant(out: &mut String, rng: &mut StdRng, i: usize, words: &[String], list: &[(String, Vec<String>)]) {
    let (country, jurisdiction) = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
    let (legal_name, alias) = match list.get(i / PLANTED_EVERY).filter(|_| i % PLANTED_EVERY == PLANTED_EVERY - 1) {
        Some((listed, _)) => (listed.clone(), None),
        None => {
            let a = &words[zipf(rng, words.len())];
            let b = &words[rng.random_range(0..words.len())];
            let tail = TAILS[rng.random_range(0..TAILS.len())];
            let form = FORMS[rng.random_range(0..FORMS.len())];
            let alias = (i % 4 == 0).then(|| format!("{a} {b}"));
            (format!("{a} {b} {tail} {form}"), alias)
        }
    };
    let digest = hex::encode(crate::auth::digest(key(i).as_bytes()));
    let _ = write!(
        out,
        "[[tenants]]\nid = \"{}\"\nlegal_name = \"{legal_name}\"\ncountry = \"{country}\"\njurisdiction = \"{jurisdiction}\"\nstatus = \"active\"\nkey_sha256 = [\"{digest}\"]\n",
        tenant_id(i)
    );
    if let Some(alias) = alias {
        let _ = writeln!(out, "aliases = [\"{alias}\"]");
    }
    let _ = write!(out, "[tenants.limits]\nrequests_per_minute = {}\n\n", 600 + (i % 10) * 60);
}
