//! Replays an audit trail under a proposed policy (`customs replay`): every recorded policy
//! decision is decided again by [`Policy::decide`], the server's own function, as of the UTC day
//! of the record's `time`, and what would change is counted per tenant, model, old and new reason.
//!
//! # What is replayed, and what is not
//!
//! Only `decision` records count; other record types (`outcome`, `start`, `reload`, ...) are
//! counted as read and left alone. A decision is replayed when it is a **policy outcome**: an
//! allow (`allowed`) or a refusal with a reason [`Policy::decide`] can return ([`Denial::ALL`]:
//! `tenant_suspended`, `denied_party`, `kyc_expired`, `jurisdiction_embargoed`, `model_not_found`,
//! `model_not_allowed`, `compute_threshold_exceeded`, `end_use_declaration_required`,
//! `end_use_declaration_expired`, `purpose_not_declared`, `no_resident_endpoint`). The request is
//! decided again on the tenant (by id), the model name the client sent (`requested_model` when it
//! did not resolve, else the catalog id `model`: an alias resolves to that id, and patterns see
//! the model's id and aliases, so the id decides alike while the new config keeps the alias), and
//! the recorded `purpose`. Skipped, each counted under its [`Skip`] and recorded reason:
//!
//! - `unauthenticated`: `invalid_api_key`, `client_certificate_required`, or no tenant on record;
//!   no tenant was known to decide for.
//! - `not_policy`: every other reason, which the gateway gives outside the policy, before it
//!   decides (`invalid_request`, `request_too_large`, `header_too_large`, `request_timeout`,
//!   `route_not_found`, `method_not_allowed`, `response_not_found`, `overloaded`,
//!   `audit_unavailable`, `cluster_unavailable`) or after it allowed (`operation_not_supported`,
//!   the rate, concurrency and compute limits, upstream failures, `internal_error`); and `error`
//!   decisions, and reason codes this build does not know.
//! - `kill_switch`: `tenant_suspended` by the admin kill switch (its `rule` names the kill
//!   switch), which is run-time state, not config: a proposed config cannot say whether it holds.
//! - `no_model`: allowed with no model on record: model listings (`GET /v1/models`,
//!   `/v1/models/{id}`), which the policy filters but never refuses.
//! - `model_not_recorded`: refused before the body was read (suspended, restricted party, KYC,
//!   embargo: no model on record), and the new config no longer refuses the tenant outright, so it
//!   would decide on a model the record does not name. While the new config still refuses the
//!   tenant outright ([`Policy::tenant_refusal`], what the server asks before reading a body), the
//!   record is replayed with that refusal.
//!
//! A tenant on record that the new config does not have is not skipped: its requests would be
//! refused (the key is no longer on file, `invalid_api_key`), so the record is replayed as a
//! denial with the reason `unknown_tenant`. A tenant renamed in the new config looks removed:
//! records carry tenant ids, never keys.
//!
//! # The day
//!
//! A decision record does not say which day it was decided as of; the gateway decides as of the
//! UTC day the request arrived on, which is the day of the record's `time`, and replay uses that
//! day. A trail written by `customs serve --at DAY` was decided as of `DAY` instead, and its
//! replay is as of the days the requests arrived, not as of `DAY`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use crate::policy::{Day, Denial, Policy, Verdict};
use crate::reason::Reason;

/// The start of the `rule` of a decision made by the admin kill switch
/// ([`crate::killswitch::Suspension::describe`]).
pub const KILL_SWITCH_RULE: &str = "kill switch:";

/// The new reason given to a record whose tenant the new config does not have.
pub const UNKNOWN_TENANT: &str = "unknown_tenant";

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}", path = .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The trail's files, found as `customs report` finds them.
    #[error(transparent)]
    Trail(#[from] crate::report::ReportError),
    #[error("the window ends ({until}) before it starts ({since})")]
    EmptyWindow { since: Day, until: Day },
}

/// The output formats, with the names the CLI accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Csv,
    Json,
}

/// Which records are replayed, and what the output names.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaySettings {
    /// The proposed config folder, for the output only.
    pub config: PathBuf,
    /// First UTC day replayed (inclusive); `None` for no lower bound.
    pub since: Option<Day>,
    /// Last UTC day replayed (inclusive); `None` for no upper bound.
    pub until: Option<Day>,
}

/// What the gateway answered as a policy outcome, or what the new config would answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Allowed,
    Denied(Denial),
    /// The new config has no tenant of this id: its key is no longer on file.
    UnknownTenant,
}

/// How an answer changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    DenyToAllow,
    AllowToDeny,
    /// Still refused, for another reason.
    DenyToDeny,
}

/// Why a decision record was not replayed; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    Unauthenticated,
    NotPolicy,
    KillSwitch,
    NoModel,
    ModelNotRecorded,
}

/// What the gateway recorded as a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Allow,
    Deny,
    Error,
}

/// A decision record with the fields replay reads, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionLine<'a> {
    pub time: Cow<'a, str>,
    /// The UTC day of `time`.
    pub day: Day,
    pub tenant: Option<Cow<'a, str>>,
    /// The name to decide on: `requested_model` when the name did not resolve, else `model`.
    pub model: Option<Cow<'a, str>>,
    pub purpose: Option<Cow<'a, str>>,
    pub decision: Recorded,
    pub reason: Cow<'a, str>,
    pub rule: Option<Cow<'a, str>>,
}

/// Flips (or reason changes) of one kind for one tenant, model, old and new reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub change: Change,
    pub tenant: String,
    /// `None` for a record refused before its model was known.
    pub model: Option<String>,
    pub old_reason: String,
    pub new_reason: String,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// Skipped decisions of one kind and recorded reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub why: Skip,
    pub reason: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Non-blank lines read, in all files.
    pub lines: u64,
    /// Lines that parsed as records of any type.
    pub records: u64,
    pub bad_lines: u64,
    pub first_bad_line: Option<BadLine>,
    /// Records of other types than `decision`.
    pub not_decisions: u64,
    /// Decision records outside `since`..`until`.
    pub outside_window: u64,
    /// Decision records inside the window: `replayed + skipped`.
    pub decisions: u64,
    /// `unchanged + deny_to_allow + allow_to_deny + deny_to_deny`.
    pub replayed: u64,
    pub unchanged: u64,
    pub deny_to_allow: u64,
    pub allow_to_deny: u64,
    pub deny_to_deny: u64,
    pub skipped: u64,
}

/// The first line replay could not use.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    pub path: PathBuf,
    /// 1-based.
    pub line: u64,
    pub error: String,
}

/// The replay of a trail, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub settings: ReplaySettings,
    /// The proposed policy's version (content hash).
    pub policy_version: String,
    /// The trail files read, in reading order.
    pub files: Vec<PathBuf>,
    pub totals: Totals,
    /// Sorted by change (deny -> allow first), tenant, model, old and new reason.
    pub groups: Vec<Group>,
    /// Sorted by why, then reason.
    pub skipped: Vec<Skipped>,
}

/// Reads the trail at `paths` (files, or directories of `*.jsonl` files read in name order) and
/// replays it under `policy`.
pub fn read(paths: &[PathBuf], policy: &Policy, settings: &ReplaySettings) -> Result<Replay, ReplayError> {
    if let (Some(since), Some(until)) = (settings.since, settings.until)
        && until < since
    {
        return Err(ReplayError::EmptyWindow { since, until });
    }
    let files = crate::report::trail_files(paths)?;
    let mut fold = Replayer::new(policy, settings.since, settings.until);
    let mut buf = Vec::with_capacity(4096);
    for path in &files {
        let io = |source| ReplayError::Io { path: path.clone(), source };
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
    Ok(fold.finish(settings.clone(), files))
}

/// The fields of a record replay reads; serde skips the others.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tenant: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    requested_model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    purpose: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    rule: Option<Cow<'a, str>>,
}

/// Read only when [`Record`] fails: a record of another type may reuse a field name with another
/// shape, and that must not make it a bad line.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

/// One trail line: `Ok(None)` for a record of another type, `Err` with why for a line replay
/// cannot use.
pub fn parse(bytes: &[u8]) -> Result<Option<DecisionLine<'_>>, String> {
    let r: Record<'_> = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => {
            return match serde_json::from_slice::<Envelope<'_>>(bytes) {
                Ok(envelope) if envelope.kind != "decision" => Ok(None),
                _ => Err(e.to_string()),
            };
        }
    };
    if r.kind != "decision" {
        return Ok(None);
    }
    let Some(time) = r.time else { return Err("decision record without a time".to_owned()) };
    let Some(day) = time.get(..10).and_then(Day::parse) else {
        return Err(format!("time {time:?} does not start with a YYYY-MM-DD date"));
    };
    let (decision, reason) = match (r.decision.as_deref(), r.reason) {
        (Some("allow"), None) => (Recorded::Allow, Cow::Borrowed(Reason::Allowed.as_str())),
        (Some("allow"), Some(reason)) if reason == Reason::Allowed.as_str() => (Recorded::Allow, reason),
        (Some("allow"), Some(reason)) => return Err(format!("allow decision with reason {reason:?}")),
        (Some("deny"), Some(reason)) => (Recorded::Deny, reason),
        (Some("deny"), None) => return Err("deny decision without a reason".to_owned()),
        (Some("error"), reason) => (Recorded::Error, reason.unwrap_or(Cow::Borrowed("error"))),
        (other, _) => return Err(format!("decision {other:?} is not allow, deny or error")),
    };
    Ok(Some(DecisionLine {
        time,
        day,
        tenant: r.tenant,
        model: r.requested_model.or(r.model),
        purpose: r.purpose,
        decision,
        reason,
        rule: r.rule,
    }))
}

/// Decides one recorded decision again under `policy`, as of the day it was made: what the
/// gateway answered and what it would answer now, or why the record cannot be replayed.
pub fn replay(policy: &Policy, d: &DecisionLine<'_>) -> Result<(Answer, Answer), Skip> {
    let old = match d.decision {
        Recorded::Allow => Answer::Allowed,
        Recorded::Error => return Err(Skip::NotPolicy),
        Recorded::Deny => match Reason::ALL.into_iter().find(|r| r.as_str() == d.reason) {
            Some(Reason::InvalidApiKey | Reason::ClientCertificateRequired) => return Err(Skip::Unauthenticated),
            Some(r) => match Denial::ALL.into_iter().find(|x| x.reason() == r) {
                Some(denial) => Answer::Denied(denial),
                None => return Err(Skip::NotPolicy),
            },
            None => return Err(Skip::NotPolicy),
        },
    };
    let Some(tenant) = d.tenant.as_deref() else { return Err(Skip::Unauthenticated) };
    if old == Answer::Allowed && d.model.is_none() {
        return Err(Skip::NoModel);
    }
    let Some(t) = policy.tenant_by_id(tenant) else { return Ok((old, Answer::UnknownTenant)) };
    if old == Answer::Denied(Denial::TenantSuspended)
        && d.rule.as_deref().is_some_and(|r| r.starts_with(KILL_SWITCH_RULE))
    {
        return Err(Skip::KillSwitch);
    }
    let Some(model) = d.model.as_deref() else {
        // Refused on the request head: the server asks the same before it reads a body.
        return match policy.tenant_refusal(t, d.day) {
            Some((denial, _)) => Ok((old, Answer::Denied(denial))),
            None => Err(Skip::ModelNotRecorded),
        };
    };
    let new = match policy.decide(t, model, d.purpose.as_deref(), d.day).verdict {
        Verdict::Allow { .. } => Answer::Allowed,
        Verdict::Deny(denial) => Answer::Denied(denial),
    };
    Ok((old, new))
}

/// What a [`Group`] is keyed by: change, tenant, model, old and new reason.
type GroupKey = (Change, String, Option<String>, String, String);

/// A group's count, and the first and last time seen.
type Seen = (u64, String, String);

/// Follows a trail line by line: counts, replays and groups; memory grows with the number of
/// groups, never with the trail.
pub struct Replayer<'p> {
    policy: &'p Policy,
    since: Option<Day>,
    until: Option<Day>,
    totals: Totals,
    groups: BTreeMap<GroupKey, Seen>,
    skipped: BTreeMap<(Skip, String), u64>,
}

// === impl Replayer ===

impl<'p> Replayer<'p> {
    pub fn new(policy: &'p Policy, since: Option<Day>, until: Option<Day>) -> Self {
        Self { policy, since, until, totals: Totals::default(), groups: BTreeMap::new(), skipped: BTreeMap::new() }
    }

    /// One line of `path` (1-based `line`), with or without its line break.
    pub fn line(&mut self, path: &Path, line: u64, bytes: &[u8]) {
        // Without the line break, parser messages point into the line ("line 1 column 27").
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.totals.lines += 1;
        match parse(bytes) {
            Ok(None) => {
                self.totals.records += 1;
                self.totals.not_decisions += 1;
            }
            Ok(Some(d)) => {
                self.totals.records += 1;
                self.decision(&d);
            }
            Err(error) => {
                self.totals.bad_lines += 1;
                if self.totals.first_bad_line.is_none() {
                    self.totals.first_bad_line = Some(BadLine { path: path.to_path_buf(), line, error });
                }
            }
        }
    }

    /// One decision record.
    pub fn decision(&mut self, d: &DecisionLine<'_>) {
        if self.since.is_some_and(|s| d.day < s) || self.until.is_some_and(|u| d.day > u) {
            self.totals.outside_window += 1;
            return;
        }
        self.totals.decisions += 1;
        let (old, new) = match replay(self.policy, d) {
            Ok(answers) => answers,
            Err(why) => {
                self.totals.skipped += 1;
                *self.skipped.entry((why, d.reason.to_string())).or_default() += 1;
                return;
            }
        };
        self.totals.replayed += 1;
        let change = match (old, new) {
            (Answer::Allowed, Answer::Allowed) => None,
            (Answer::Allowed, _) => Some(Change::AllowToDeny),
            (_, Answer::Allowed) => Some(Change::DenyToAllow),
            (old, new) if old == new => None,
            _ => Some(Change::DenyToDeny),
        };
        let Some(change) = change else {
            self.totals.unchanged += 1;
            return;
        };
        *match change {
            Change::DenyToAllow => &mut self.totals.deny_to_allow,
            Change::AllowToDeny => &mut self.totals.allow_to_deny,
            Change::DenyToDeny => &mut self.totals.deny_to_deny,
        } += 1;
        let key = (
            change,
            d.tenant.as_deref().unwrap_or_default().to_owned(),
            d.model.as_deref().map(str::to_owned),
            old.code().to_owned(),
            new.code().to_owned(),
        );
        let time = &*d.time;
        let (count, first, last) = self.groups.entry(key).or_insert_with(|| (0, time.to_owned(), time.to_owned()));
        *count += 1;
        // RFC 3339 UTC strings of one shape sort as their times do, so files need not be in order.
        if time < first.as_str() {
            time.clone_into(first);
        }
        if time > last.as_str() {
            time.clone_into(last);
        }
    }

    pub fn finish(self, settings: ReplaySettings, files: Vec<PathBuf>) -> Replay {
        let groups = self
            .groups
            .into_iter()
            .map(|((change, tenant, model, old_reason, new_reason), (count, first_seen, last_seen))| Group {
                change,
                tenant,
                model,
                old_reason,
                new_reason,
                count,
                first_seen,
                last_seen,
            })
            .collect();
        let skipped = self.skipped.into_iter().map(|((why, reason), count)| Skipped { why, reason, count }).collect();
        Replay {
            settings,
            policy_version: self.policy.version().to_owned(),
            files,
            totals: self.totals,
            groups,
            skipped,
        }
    }
}

// === impl Answer ===

impl Answer {
    /// The reason code: `allowed`, a denial's code, or [`UNKNOWN_TENANT`].
    pub fn code(self) -> &'static str {
        match self {
            Self::Allowed => Reason::Allowed.as_str(),
            Self::Denied(d) => d.code(),
            Self::UnknownTenant => UNKNOWN_TENANT,
        }
    }
}

// === impl Change ===

impl Change {
    pub const ALL: [Change; 3] = [Change::DenyToAllow, Change::AllowToDeny, Change::DenyToDeny];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DenyToAllow => "deny_to_allow",
            Self::AllowToDeny => "allow_to_deny",
            Self::DenyToDeny => "deny_to_deny",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::DenyToAllow => "deny -> allow",
            Self::AllowToDeny => "allow -> deny",
            Self::DenyToDeny => "deny -> deny, reason changed",
        }
    }
}

// === impl Skip ===

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::NotPolicy => "not_policy",
            Self::KillSwitch => "kill_switch",
            Self::NoModel => "no_model",
            Self::ModelNotRecorded => "model_not_recorded",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Unauthenticated => "no tenant to decide for",
            Self::NotPolicy => "refused or failed outside the policy",
            Self::KillSwitch => "suspended by the admin kill switch, run-time state",
            Self::NoModel => "allowed with no model: model listings",
            Self::ModelNotRecorded => "refused before the body was read; the new config would decide on its model",
        }
    }
}

// === impl Replay ===

pub const CSV_HEADER: [&str; 8] =
    ["change", "tenant", "model", "old_reason", "new_reason", "count", "first_seen", "last_seen"];

impl Replay {
    /// Whether a request the trail shows refused would be allowed under the new config.
    pub fn has_new_allows(&self) -> bool {
        self.totals.deny_to_allow > 0
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.to_text(),
            Format::Csv => self.to_csv(),
            Format::Json => format!("{:#}\n", self.to_json()),
        }
    }

    fn window_text(&self) -> String {
        match (self.settings.since, self.settings.until) {
            (None, None) => "on every day".to_owned(),
            (Some(s), None) => format!("from {s}"),
            (None, Some(u)) => format!("through {u}"),
            (Some(s), Some(u)) => format!("from {s} through {u}"),
        }
    }

    fn to_text(&self) -> String {
        let t = &self.totals;
        let mut out = format!(
            "replay under {} (policy {}) of {} trail file(s): decisions made {}, each decided again as of \
             the UTC day of its record\n",
            self.settings.config.display(),
            self.policy_version,
            self.files.len(),
            self.window_text(),
        );
        out.push_str(&format!(
            "records: {} read, {} decisions, {} other records, {} outside the window, {} bad lines\n",
            t.records, t.decisions, t.not_decisions, t.outside_window, t.bad_lines
        ));
        if let Some(b) = &t.first_bad_line {
            out.push_str(&format!("first bad line: {}:{}: {}\n", b.path.display(), b.line, b.error));
        }
        out.push_str(&format!(
            "replayed: {}: {} unchanged, {} deny -> allow, {} allow -> deny, {} deny -> deny with another reason\n",
            t.replayed, t.unchanged, t.deny_to_allow, t.allow_to_deny, t.deny_to_deny
        ));
        out.push_str(&format!("skipped: {}\n", t.skipped));
        let rows: Vec<[String; 3]> = self
            .skipped
            .iter()
            .map(|s| [s.count.to_string(), format!("{} ({})", s.why.as_str(), s.why.describe()), s.reason.clone()])
            .collect();
        out.push_str(&columns(&rows));
        for change in Change::ALL {
            let groups: Vec<&Group> = self.groups.iter().filter(|g| g.change == change).collect();
            let count: u64 = groups.iter().map(|g| g.count).sum();
            out.push_str(&format!("\n{} ({count}):\n", change.title()));
            if groups.is_empty() {
                out.push_str("  none\n");
                continue;
            }
            let rows: Vec<[String; 5]> = groups
                .iter()
                .map(|g| {
                    [
                        g.tenant.clone(),
                        g.model.clone().unwrap_or_else(|| "-".to_owned()),
                        format!("{} -> {}", g.old_reason, g.new_reason),
                        format!("x{}", g.count),
                        format!("{} .. {}", g.first_seen, g.last_seen),
                    ]
                })
                .collect();
            out.push_str(&columns(&rows));
        }
        out
    }

    fn to_csv(&self) -> String {
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        let _ = w.write_record(CSV_HEADER);
        for g in &self.groups {
            let count = g.count.to_string();
            let model = g.model.as_deref().unwrap_or_default();
            let row = [
                g.change.as_str(),
                &g.tenant,
                model,
                &g.old_reason,
                &g.new_reason,
                &count,
                &g.first_seen,
                &g.last_seen,
            ];
            let _ = w.write_record(row);
        }
        // Writing to a Vec cannot fail.
        String::from_utf8_lossy(&w.into_inner().unwrap_or_default()).into_owned()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let t = &self.totals;
        let group = |g: &Group| {
            json!({
                "change": g.change.as_str(),
                "tenant": g.tenant,
                "model": g.model,
                "old_reason": g.old_reason,
                "new_reason": g.new_reason,
                "count": g.count,
                "first_seen": g.first_seen,
                "last_seen": g.last_seen,
            })
        };
        let flips: Vec<_> = self.groups.iter().filter(|g| g.change != Change::DenyToDeny).map(group).collect();
        let reason_changes: Vec<_> = self.groups.iter().filter(|g| g.change == Change::DenyToDeny).map(group).collect();
        json!({
            "config": self.settings.config.display().to_string(),
            "policy_version": self.policy_version,
            "window": {
                "since": self.settings.since.map(|d| d.to_string()),
                "until": self.settings.until.map(|d| d.to_string()),
            },
            "files": self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "totals": {
                "lines": t.lines,
                "records": t.records,
                "bad_lines": t.bad_lines,
                "not_decisions": t.not_decisions,
                "outside_window": t.outside_window,
                "decisions": t.decisions,
                "replayed": t.replayed,
                "unchanged": t.unchanged,
                "deny_to_allow": t.deny_to_allow,
                "allow_to_deny": t.allow_to_deny,
                "deny_to_deny": t.deny_to_deny,
                "skipped": t.skipped,
            },
            "first_bad_line": t.first_bad_line.as_ref().map(|b| json!({
                "path": b.path.display().to_string(),
                "line": b.line,
                "error": b.error,
            })),
            "skipped": self.skipped.iter().map(|s| json!({
                "why": s.why.as_str(),
                "reason": s.reason,
                "count": s.count,
            })).collect::<Vec<_>>(),
            "flips": flips,
            "reason_changes": reason_changes,
        })
    }
}

/// Rows as left-aligned columns, two spaces in, two apart.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(" ");
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!(" {cell:<w$} "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
