//! The foreign-access report: reads an audit trail (JSON Lines) once, streaming, and summarises
//! who outside the provider's home jurisdictions used models above a training-compute line, and
//! every denial by reason, as CSV, JSON or one self-contained HTML page.
//!
//! # Semantics
//!
//! - **Input.** Files are read in the order given; a directory stands for every `*.jsonl` file
//!   directly inside it, sorted by name (so rotated files must be named to sort by time). Only records
//!   with `"type":"decision"` count; other types and unknown fields are skipped, so a newer writer
//!   does not break an older report.
//! - **Window.** `since` and `until` are UTC calendar days and **both are inclusive**: `until`
//!   runs through the end of that day (`--until 2026-11-30` includes 23:59:59.999999Z). A missing
//!   `until` means no upper bound. A record's day is the `YYYY-MM-DD` prefix of its `time`.
//! - **Foreign access.** A decision counts when the caller was authenticated, its `jurisdiction`
//!   is not one of `home_jurisdictions`, and the model's `training_flops` is at or above
//!   `flops_line` (an unknown model has no training compute and never counts). Rows are keyed by
//!   (tenant, model, jurisdiction, tenant country) and sorted in that order, so a tenant moved to
//!   another jurisdiction mid-window shows as two rows. `requests`, tokens and `flops` add up
//!   `allow` decisions; `denied` counts `deny` decisions on the same key (attempts an officer wants
//!   to see); `first_seen`/`last_seen` are the first and last *allowed* request, empty when there
//!   was none. `unmetered` counts allowed requests whose `usage` or `flops` was not recorded, so
//!   when it is non-zero the token and FLOPs sums are lower bounds. `training_flops` is the highest
//!   estimate seen on the key (the catalog may be revised mid-window).
//! - **Denials.** Every `deny` decision in the window, foreign or not, counted per (reason,
//!   tenant); unauthenticated callers appear as tenant `(unauthenticated)` (`null` in JSON).
//!   `error` decisions (upstream failures after the policy allowed) are neither access nor
//!   denials; they are counted in the totals only.
//! - **Bad lines.** A line that is not JSON, or a decision record missing what the report needs,
//!   is counted and the first one is named (`path:line`); the report goes on. This is not an
//!   integrity check: `customs audit verify` checks the hash chain.
//!
//! Nothing in the report is chosen by the remote caller: tenant, jurisdiction and model ids come
//! from the config and reason codes from the gateway. The HTML still escapes every string, since
//! a trail is a file anyone with write access could have edited.
//!
//! # Layouts
//!
//! - **CSV**: `#` comment lines with the window, settings and totals; the foreign-access table
//!   with its header row; one blank line; the denials table (`reason,tenant,count`) with its own
//!   header row. Non-numeric fields are always quoted, so no data line can start with `#`.
//! - **JSON**: one object with `generated_at`, `window`, `settings`, `files`, `foreign_access`,
//!   `denials`, `totals` and an `integrity` note.
//! - **HTML**: one page with inline CSS and inline SVG bar charts; no script, no external resource
//!   (its Content-Security-Policy forbids both).

mod read;
#[cfg(test)]
mod tests;
mod to_csv;
mod to_html;
mod to_json;

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::policy::Day;

/// What the report covers and where the lines are drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSettings {
    /// Jurisdiction ids (as in `config/jurisdictions.toml`) that count as the provider's home.
    pub home_jurisdictions: Vec<String>,
    /// Models trained with this many FLOPs or more count; must be finite and not negative.
    pub flops_line: f64,
    /// First day of the window (UTC, inclusive).
    pub since: Day,
    /// Last day of the window (UTC, inclusive); `None` for no upper bound.
    pub until: Option<Day>,
    /// When the report was made, printed as given; [`utc_timestamp`] formats the current time.
    pub generated_at: String,
}

/// The output formats, with the names the CLI accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
    Html,
}

/// The aggregated report, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub settings: ReportSettings,
    /// The trail files read, in reading order.
    pub files: Vec<PathBuf>,
    /// Sorted by tenant, model, jurisdiction, tenant country.
    pub foreign_access: Vec<ForeignAccess>,
    /// Sorted by reason, then tenant (unauthenticated first).
    pub denials: Vec<DenialCount>,
    pub totals: Totals,
    /// With a config folder: tenants whose customer verification is due, in grace or lapsed.
    pub kyc: Option<KycSection>,
}

/// Tenants whose KYC record needs attention as of a day: due within [`KYC_DUE_DAYS`], in their
/// grace period, or lapsed (refused `kyc_expired`).
#[derive(Debug, Clone, PartialEq)]
pub struct KycSection {
    pub as_of: Day,
    /// Sorted by the day refusals start, then tenant.
    pub tenants: Vec<KycDue>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KycDue {
    pub tenant: String,
    pub verified_by: String,
    pub verified_on: Day,
    pub reverify_by: Day,
    pub refused_from: Day,
    /// `due`, `in_grace` or `lapsed`.
    pub state: &'static str,
}

/// How far ahead a re-verification date counts as due.
pub const KYC_DUE_DAYS: i64 = 30;

/// The KYC section of a report for `policy` as of `day`.
pub fn kyc_due(policy: &crate::policy::Policy, day: Day) -> KycSection {
    let mut tenants: Vec<KycDue> = policy
        .tenants()
        .iter()
        .filter_map(|t| {
            let k = t.kyc.as_ref()?;
            let state = if day >= k.refused_from {
                "lapsed"
            } else if day > k.reverify_by {
                "in_grace"
            } else if day.0.saturating_add(KYC_DUE_DAYS) >= k.reverify_by.0 {
                "due"
            } else {
                return None;
            };
            Some(KycDue {
                tenant: t.id.to_string(),
                verified_by: k.verified_by.to_string(),
                verified_on: k.verified_on,
                reverify_by: k.reverify_by,
                refused_from: k.refused_from,
                state,
            })
        })
        .collect();
    tenants.sort_by(|a, b| (a.refused_from, &a.tenant).cmp(&(b.refused_from, &b.tenant)));
    KycSection { as_of: day, tenants }
}

/// Foreign use of one above-line model by one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignAccess {
    pub tenant: String,
    pub tenant_country: Option<String>,
    pub jurisdiction: String,
    pub model: String,
    pub training_flops: f64,
    pub requests: u64,
    pub denied: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Inference FLOPs charged.
    pub flops: f64,
    pub unmetered: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

impl ForeignAccess {
    /// A row with nothing counted yet.
    pub(crate) fn new(tenant: &str, tenant_country: Option<&str>, jurisdiction: &str, model: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            tenant_country: tenant_country.map(str::to_owned),
            jurisdiction: jurisdiction.to_owned(),
            model: model.to_owned(),
            training_flops: 0.0,
            requests: 0,
            denied: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            flops: 0.0,
            unmetered: 0,
            first_seen: None,
            last_seen: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DenialCount {
    pub reason: String,
    /// `None` when the caller was not authenticated.
    pub tenant: Option<String>,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Non-blank lines read, in all files.
    pub lines: u64,
    /// Lines that parsed as records of any type.
    pub records: u64,
    /// Decision records inside the window: `allowed + denied + errors`.
    pub decisions: u64,
    pub allowed: u64,
    pub denied: u64,
    /// Allowed requests that served nothing: the upstream failed before its response head, or
    /// the request was never sent (from outcome records; older trails record them as decisions).
    pub errors: u64,
    /// Decision records outside the window.
    pub outside_window: u64,
    pub bad_lines: u64,
    pub first_bad_line: Option<BadLine>,
}

/// The first line the report could not use.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    pub path: PathBuf,
    /// 1-based.
    pub line: u64,
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}", path = .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no *.jsonl files in this directory", path = .path.display())]
    EmptyDirectory { path: PathBuf },
    #[error("no audit trail given")]
    NoInput,
    #[error("the window ends ({until}) before it starts ({since})")]
    EmptyWindow { since: Day, until: Day },
    #[error("the FLOPs line must be a finite number, 0 or more (got {0})")]
    BadFlopsLine(f64),
}

/// The files a trail given as `paths` is read from: each file as given, and each directory's
/// `*.jsonl` files sorted by name, so a rotated trail reads in order.
pub fn trail_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReportError> {
    read::expand(paths)
}

/// Reads the trail at `paths` (files, or directories of `*.jsonl` files) and aggregates it.
pub fn read(paths: &[PathBuf], settings: &ReportSettings) -> Result<Report, ReportError> {
    read::read(paths, settings)
}

/// `time` as RFC 3339 UTC to the second, e.g. `2026-11-28T09:00:00Z`, for
/// [`ReportSettings::generated_at`].
pub fn utc_timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

// === impl Report ===

impl Report {
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Csv => self.to_csv(),
            Format::Json => format!("{:#}\n", self.to_json()),
            Format::Html => self.to_html(),
        }
    }

    pub fn to_csv(&self) -> String {
        to_csv::render(self)
    }

    pub fn to_json(&self) -> serde_json::Value {
        to_json::render(self)
    }

    pub fn to_html(&self) -> String {
        to_html::render(self)
    }

    /// Denials summed per reason, in reason order.
    pub fn denials_by_reason(&self) -> Vec<(&str, u64)> {
        let mut out: Vec<(&str, u64)> = Vec::new();
        for d in &self.denials {
            match out.last_mut() {
                Some((reason, n)) if *reason == d.reason => *n += d.count,
                _ => out.push((&d.reason, d.count)),
            }
        }
        out
    }
}

// === impl ReportSettings ===

impl ReportSettings {
    /// The window in words, as the CSV and HTML headers print it.
    pub fn window_text(&self) -> String {
        match self.until {
            Some(until) => format!("{} through {until} (UTC days, both inclusive)", self.since),
            None => format!("{} onwards (UTC, inclusive; no end date)", self.since),
        }
    }

    /// The home jurisdictions and the FLOPs line in words.
    pub fn settings_text(&self) -> String {
        let home =
            if self.home_jurisdictions.is_empty() { "(none)".to_owned() } else { self.home_jurisdictions.join(", ") };
        format!(
            "home jurisdictions: {home}; FLOPs line: {} (models trained with this many FLOPs or more)",
            sci(self.flops_line)
        )
    }

    pub(crate) fn is_home(&self, jurisdiction: &str) -> bool {
        self.home_jurisdictions.iter().any(|h| h == jurisdiction)
    }
}

// === impl Format ===

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Html => "html",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Totals ===

impl Totals {
    /// The totals in one line, as the CSV header prints them.
    pub fn text(&self, files: usize) -> String {
        let mut s = format!(
            "files: {files}; lines: {}; records: {}; decisions in window: {} (allowed {}, denied {}, errors {}); \
             decisions outside window: {}; bad lines: {}",
            self.lines,
            self.records,
            self.decisions,
            self.allowed,
            self.denied,
            self.errors,
            self.outside_window,
            self.bad_lines
        );
        if let Some(bad) = &self.first_bad_line {
            s.push_str(&format!(", the first at {bad}"));
        }
        s
    }
}

// === impl BadLine ===

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.error)
    }
}

/// What the foreign-access table means, for the CSV and HTML headers.
pub(crate) const ABOUT_FOREIGN: &str = "Foreign access: decisions for authenticated tenants whose jurisdiction is not a home \
     jurisdiction, on models trained with at least the FLOPs line. requests, tokens, flops, first_seen and last_seen \
     count allowed requests; denied counts refused attempts; unmetered counts allowed requests with no usage or \
     FLOPs recorded (when it is not 0, the sums are lower bounds).";

/// What the denials table means, for the CSV and HTML headers.
pub(crate) const ABOUT_DENIALS: &str = "Denials: every deny decision in the window, foreign or not, per reason and \
     tenant; (unauthenticated) is a caller without a valid key. Upstream errors are counted in the totals only.";

pub(crate) const ABOUT_INTEGRITY: &str =
    "This report does not check the trail's integrity: run `customs audit verify` on the same files.";

/// Training and inference FLOPs as the shortest text that reads back to the same f64: scientific
/// from a million up (`3.81e25`), plain below (`0`, `1`, `1234.5`), so small numbers stay readable.
pub(crate) fn sci(x: f64) -> String {
    if x.abs() < 1e6 { format!("{x}") } else { format!("{x:e}") }
}
