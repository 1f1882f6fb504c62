//! Streams the trail line by line and folds decision and outcome records into the report's
//! tables; memory grows with the number of (tenant, model) pairs and reasons, never with the
//! trail. Denials are counted from decisions; what was served (requests, tokens, FLOPs) from
//! outcome records, or, in trails written before outcome records, from the allowed decision
//! that carried its own status and usage.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BadLine, DenialCount, ForeignAccess, Report, ReportError, ReportSettings, Totals};
use crate::audit::Outcome;
use crate::policy::Day;

pub(super) fn read(paths: &[PathBuf], settings: &ReportSettings) -> Result<Report, ReportError> {
    if !(settings.flops_line.is_finite() && settings.flops_line >= 0.0) {
        return Err(ReportError::BadFlopsLine(settings.flops_line));
    }
    if let Some(until) = settings.until
        && until < settings.since
    {
        return Err(ReportError::EmptyWindow { since: settings.since, until });
    }
    let files = expand(paths)?;
    let mut fold = Fold::new(settings);
    let mut buf = Vec::with_capacity(4096);
    for path in &files {
        let io = |source| ReportError::Io { path: path.clone(), source };
        let mut reader = BufReader::with_capacity(1 << 16, File::open(path).map_err(io)?);
        let mut line = 0u64;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
                break;
            }
            line += 1;
            fold.line(path, line, &buf);
        }
    }
    Ok(fold.finish(files))
}

/// A directory stands for its `*.jsonl` files, sorted by name, so a rotated trail reads in order.
pub(super) fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReportError> {
    if paths.is_empty() {
        return Err(ReportError::NoInput);
    }
    let mut files = Vec::new();
    for path in paths {
        let io = |source| ReportError::Io { path: path.clone(), source };
        if !fs::metadata(path).map_err(io)?.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        for entry in fs::read_dir(path).map_err(io)? {
            let entry = entry.map_err(io)?.path();
            if entry.extension().is_some_and(|e| e == "jsonl") && entry.is_file() {
                found.push(entry);
            }
        }
        if found.is_empty() {
            return Err(ReportError::EmptyDirectory { path: path.clone() });
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// The fields of a record the report reads; serde skips the others, whatever they are.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tenant: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tenant_country: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    jurisdiction: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    training_flops: Option<f64>,
    #[serde(default, borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    /// On a decision: the gateway's own answer; null when the request was forwarded.
    #[serde(default)]
    status: Option<u16>,
    #[serde(default, borrow)]
    outcome: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    flops: Option<f64>,
}

/// Read only when [`Record`] fails: a record of another type may reuse a field name with another
/// shape, and that must not make it a bad line.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Decision {
    Allow,
    Deny,
    Error,
}

/// What a forwarded request came to.
#[derive(Clone, Copy, PartialEq)]
enum Served {
    /// Something was served (to its end or not): counted, with its usage.
    Yes,
    /// The upstream failed or it was never sent: an error, nothing served.
    No,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Decision(Decision),
    Outcome(Served),
}

/// A decision or outcome record that has everything the report needs.
struct Checked<'a> {
    day: Day,
    kind: Kind,
    record: Record<'a>,
}

struct Fold<'s> {
    settings: &'s ReportSettings,
    rows: Vec<ForeignAccess>,
    /// Tenant → indexes into `rows`; a tenant has few models, so its rows are searched, not hashed.
    by_tenant: HashMap<String, Vec<usize>>,
    /// Reason → (tenant, count).
    denials: BTreeMap<String, Vec<(Option<String>, u64)>>,
    totals: Totals,
}

// === impl Fold ===

impl<'s> Fold<'s> {
    fn new(settings: &'s ReportSettings) -> Self {
        Self {
            settings,
            rows: Vec::new(),
            by_tenant: HashMap::new(),
            denials: BTreeMap::new(),
            totals: Totals::default(),
        }
    }

    fn line(&mut self, path: &Path, line: u64, bytes: &[u8]) {
        // Without the line break, parser messages point into the line ("line 1 column 27").
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.totals.lines += 1;
        match check(bytes) {
            Ok(None) => self.totals.records += 1,
            Ok(Some(checked)) => {
                self.totals.records += 1;
                self.fold(checked);
            }
            Err(error) => {
                self.totals.bad_lines += 1;
                if self.totals.first_bad_line.is_none() {
                    self.totals.first_bad_line = Some(BadLine { path: path.to_path_buf(), line, error });
                }
            }
        }
    }

    fn fold(&mut self, Checked { day, kind, record: r }: Checked<'_>) {
        if day < self.settings.since || self.settings.until.is_some_and(|until| day > until) {
            self.totals.outside_window += 1;
            return;
        }
        // A decision that is its own answer: a denial, or an allowed request from a trail written
        // before outcome records, which carries its status and usage.
        let served = match kind {
            Kind::Decision(Decision::Allow) => {
                self.totals.decisions += 1;
                self.totals.allowed += 1;
                // Forwarded (no status of its own): its outcome record says what was served.
                r.status.is_some()
            }
            Kind::Decision(Decision::Deny) => {
                self.totals.decisions += 1;
                self.totals.denied += 1;
                // `check` refuses a deny without a reason.
                let reason = r.reason.as_deref().unwrap_or_default();
                self.count_denial(reason, r.tenant.as_deref());
                false
            }
            Kind::Decision(Decision::Error) => {
                self.totals.decisions += 1;
                self.totals.errors += 1;
                return;
            }
            Kind::Outcome(Served::No) => {
                // Its decision counted it as allowed; it was an error instead.
                self.totals.allowed = self.totals.allowed.saturating_sub(1);
                self.totals.errors += 1;
                return;
            }
            Kind::Outcome(Served::Yes) => true,
        };
        let (Some(tenant), Some(jurisdiction), Some(model), Some(training_flops)) =
            (r.tenant.as_deref(), r.jurisdiction.as_deref(), r.model.as_deref(), r.training_flops)
        else {
            return;
        };
        if self.settings.is_home(jurisdiction) || training_flops < self.settings.flops_line {
            return;
        }
        let country = r.tenant_country.as_deref();
        let row = self.row(tenant, country, jurisdiction, model);
        row.training_flops = row.training_flops.max(training_flops);
        if kind == Kind::Decision(Decision::Deny) {
            row.denied += 1;
            return;
        }
        if !served {
            return;
        }
        row.requests += 1;
        if let Some(u) = &r.usage {
            row.prompt_tokens += u.prompt_tokens;
            row.completion_tokens += u.completion_tokens;
            row.total_tokens += u.total_tokens;
        }
        if let Some(flops) = r.flops {
            row.flops += flops;
        }
        if r.usage.is_none() || r.flops.is_none() {
            row.unmetered += 1;
        }
        // `check` refuses a record without a time. RFC 3339 UTC strings of one shape sort
        // lexicographically, so files need not be in time order.
        let time = r.time.as_deref().unwrap_or_default();
        if row.first_seen.as_deref().is_none_or(|t| time < t) {
            row.first_seen = Some(time.to_owned());
        }
        if row.last_seen.as_deref().is_none_or(|t| time > t) {
            row.last_seen = Some(time.to_owned());
        }
    }

    fn row(&mut self, tenant: &str, country: Option<&str>, jurisdiction: &str, model: &str) -> &mut ForeignAccess {
        let rows = &self.rows;
        let found = self.by_tenant.get(tenant).and_then(|ids| {
            ids.iter().copied().find(|&i| {
                let r = &rows[i];
                r.model == model && r.jurisdiction == jurisdiction && r.tenant_country.as_deref() == country
            })
        });
        let i = match found {
            Some(i) => i,
            None => {
                let i = self.rows.len();
                self.rows.push(ForeignAccess::new(tenant, country, jurisdiction, model));
                match self.by_tenant.get_mut(tenant) {
                    Some(ids) => ids.push(i),
                    None => {
                        self.by_tenant.insert(tenant.to_owned(), vec![i]);
                    }
                }
                i
            }
        };
        &mut self.rows[i]
    }

    fn count_denial(&mut self, reason: &str, tenant: Option<&str>) {
        let tenants = match self.denials.get_mut(reason) {
            Some(tenants) => tenants,
            None => self.denials.entry(reason.to_owned()).or_default(),
        };
        match tenants.iter_mut().find(|(t, _)| t.as_deref() == tenant) {
            Some((_, n)) => *n += 1,
            None => tenants.push((tenant.map(str::to_owned), 1)),
        }
    }

    fn finish(self, files: Vec<PathBuf>) -> Report {
        let mut foreign_access = self.rows;
        foreign_access.sort_by(|a, b| {
            (&a.tenant, &a.model, &a.jurisdiction, &a.tenant_country).cmp(&(
                &b.tenant,
                &b.model,
                &b.jurisdiction,
                &b.tenant_country,
            ))
        });
        let mut denials = Vec::new();
        for (reason, mut tenants) in self.denials {
            tenants.sort();
            denials.extend(tenants.into_iter().map(|(tenant, count)| DenialCount {
                reason: reason.clone(),
                tenant,
                count,
            }));
        }
        Report { settings: self.settings.clone(), files, foreign_access, denials, totals: self.totals, kyc: None }
    }
}

/// `Ok(None)` for a record of another type, `Err` with the reason for a line the report cannot use.
fn check(bytes: &[u8]) -> Result<Option<Checked<'_>>, String> {
    let read = |kind: &str| kind == "decision" || kind == "outcome";
    let record: Record<'_> = match serde_json::from_slice(bytes) {
        Ok(record) => record,
        Err(e) => {
            return match serde_json::from_slice::<Envelope<'_>>(bytes) {
                Ok(envelope) if !read(&envelope.kind) => Ok(None),
                _ => Err(e.to_string()),
            };
        }
    };
    if !read(&record.kind) {
        return Ok(None);
    }
    let Some(time) = record.time.as_deref() else {
        return Err(format!("{} record without a time", record.kind));
    };
    let Some(day) = time.get(..10).and_then(Day::parse) else {
        return Err(format!("time {time:?} does not start with a YYYY-MM-DD date"));
    };
    let kind = if record.kind == "outcome" {
        match record.outcome.as_deref().and_then(Outcome::parse) {
            Some(o) if o.served(record.status.is_some()) => Kind::Outcome(Served::Yes),
            Some(_) => Kind::Outcome(Served::No),
            None => return Err(format!("outcome {:?} is not one this report knows", record.outcome)),
        }
    } else {
        Kind::Decision(match record.decision.as_deref() {
            Some("allow") => Decision::Allow,
            Some("deny") => Decision::Deny,
            Some("error") => Decision::Error,
            other => return Err(format!("decision {other:?} is not allow, deny or error")),
        })
    };
    if kind == Kind::Decision(Decision::Deny) && record.reason.is_none() {
        return Err("deny decision without a reason".to_owned());
    }
    Ok(Some(Checked { day, kind, record }))
}
