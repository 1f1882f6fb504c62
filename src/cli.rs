//! Command-line interface: the subcommands and, per subcommand, one struct of its flags, so
//! `main` hands each command its own arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::audit::verify::Checkpoint;
use crate::explain::ApiKey;
use crate::policy::Day;

/// customs: an inference gateway that enforces export-control policy on every request.
///
/// Policy lives in a config folder (models, jurisdictions, country groups, tenants, and the
/// expectations compliance keeps beside them). Check it and its expectations with `customs check`,
/// ask it questions with `customs explain`, serve it with `customs serve`.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gateway on a config folder.
    Serve(ServeArgs),
    /// Run the example config with the mock upstream in-process, and print curl commands to try.
    Demo(DemoArgs),
    /// Validate a config folder and evaluate its expectations.toml; lists every problem and every
    /// failed expectation, and exits 1 if there is any.
    Check(CheckArgs),
    /// Show the decision for one tenant (by id or key) and model, and the rule that made it; or,
    /// with --batch, answer a stream of JSON questions, one JSON line each.
    Explain(ExplainArgs),
    /// Print a fresh random API key and the digest line to paste into a tenant.
    Keygen,
    /// List every tenant name that matches the restricted-party screening list: blocked, cleared
    /// by a reviewer, or in the review band, with scores and list sources.
    Screen(ScreenArgs),
    /// Work with the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Summarise foreign access to models above a training-compute line, and denials by reason,
    /// from an audit trail.
    Report(ReportArgs),
    /// Decide every recorded policy decision of an audit trail again under a proposed config, as
    /// of the day it was made, and list what would flip (deny -> allow, allow -> deny) and which
    /// refusals would change reason. Exits 1 when a refused request would be allowed (unless
    /// --accept-new-allows), 2 when the trail or config cannot be read.
    Replay(ReplayArgs),
    /// Write a config folder at a cloud provider's scale: an example folder with generated tenants
    /// and restricted-party list entries added, to reproduce the load and reload figures.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config folder.
    #[arg(long, value_name = "DIR")]
    pub config: PathBuf,
    /// Inference listener; overrides `server.listen` in gateway.toml.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin listener (/healthz, /readyz); overrides `server.admin_listen`.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Decide every request as of this day (YYYY-MM-DD) instead of the day it arrives on,
    /// for demos, tests and replays of a staged change. Never in production.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub at: Option<Day>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The folder to write; must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The example folder to start from.
    #[arg(long, value_name = "DIR", default_value = "config")]
    pub from: PathBuf,
    /// Tenants to add.
    #[arg(long, default_value_t = 100_000)]
    pub tenants: usize,
    /// Synthetic entries to add to the screening list (the Consolidated Screening List has about
    /// 12,000 with aliases).
    #[arg(long, default_value_t = 12_000)]
    pub list_entries: usize,
    /// Split the added tenants evenly over this many files in `tenants.d/`; 0 appends them to
    /// `tenants.toml`.
    #[arg(long, default_value_t = 0)]
    pub files: usize,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The config folder to demo.
    #[arg(long, value_name = "DIR", default_value = "config")]
    pub config: PathBuf,
    /// Decide every request as of this day (YYYY-MM-DD) instead of today.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub at: Option<Day>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, value_name = "DIR")]
    pub config: PathBuf,
    /// Also require every `api_key_env` variable to be set (for deploy pipelines).
    #[arg(long)]
    pub require_env: bool,
    /// Evaluate expectations that name no `at` date as of this day (YYYY-MM-DD) instead of today.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub at: Option<Day>,
    /// Also print a PASS line for every expectation that holds.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("subject").args(["tenant", "key", "batch"]).required(true)))]
pub struct ExplainArgs {
    #[arg(long, value_name = "DIR")]
    pub config: PathBuf,
    /// Tenant id, as in tenants.toml.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The tenant that holds this API key, found as the server finds it; never printed. `-` reads
    /// it from the first line of standard input, keeping it out of shell history and `ps`.
    #[arg(long, value_name = "KEY", value_parser = parse_key)]
    pub key: Option<KeySource>,
    /// Model name as a client would send it (id or alias).
    #[arg(long, required_unless_present = "batch", conflicts_with = "batch")]
    pub model: Option<String>,
    /// Purpose, as a client would send in `x-customs-purpose`.
    #[arg(long, conflicts_with = "batch")]
    pub purpose: Option<String>,
    /// Decide as of this day (YYYY-MM-DD) instead of today; with --batch, for questions without `at`.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub at: Option<Day>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Answer many questions, loading the policy once: one JSON object per line on standard input,
    /// `{"tenant": ID or "key": KEY, "model": NAME, "purpose": P, "at": DATE}` (`purpose` and `at`
    /// optional), one JSON line per question on standard output, in order: the object `--json`
    /// prints, or `{"error": "..."}` for a line that cannot be answered. Empty lines are skipped.
    /// Exits 0 once every line is answered, errors included; non-zero only if the config does not
    /// load or reading or writing fails.
    #[arg(long)]
    pub batch: bool,
}

/// Where `--key` comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    Stdin,
    Given(ApiKey),
}

#[derive(Debug, Args)]
pub struct ScreenArgs {
    #[arg(long, value_name = "DIR")]
    pub config: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print each tenant's ownership tree (ownership.toml) with what screening made of every
    /// owner, its ultimate parent and its KYC record, instead of the screening matches.
    #[arg(long)]
    pub ownership: bool,
    /// With --ownership: as of this day (YYYY-MM-DD) instead of today.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub at: Option<Day>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Trail files or folders (their audit-*.jsonl files, in name order).
    #[arg(long = "audit", required = true, value_name = "PATH")]
    pub audit: Vec<PathBuf>,
    /// First UTC day included (YYYY-MM-DD).
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub since: Day,
    /// Last UTC day included (YYYY-MM-DD); default: no end.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub until: Option<Day>,
    #[arg(long, value_enum, default_value_t = crate::report::Format::Csv)]
    pub format: crate::report::Format,
    /// Config folder whose gateway.toml `[report]` gives the defaults below.
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// A home jurisdiction id (repeatable); overrides `report.home_jurisdictions`.
    #[arg(long = "home", value_name = "ID")]
    pub home: Vec<String>,
    /// Training FLOPs at or above which a model is reported; overrides `report.flops_line`.
    #[arg(long, value_name = "FLOPS")]
    pub flops_line: Option<f64>,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Trail files or folders (their *.jsonl files, in name order); repeat for several replicas.
    #[arg(long = "audit", required = true, value_name = "PATH")]
    pub audit: Vec<PathBuf>,
    /// The proposed config folder to decide under.
    #[arg(long, value_name = "DIR")]
    pub config: PathBuf,
    /// First UTC day replayed (YYYY-MM-DD), by the records' times; default: no start.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub since: Option<Day>,
    /// Last UTC day replayed (YYYY-MM-DD), inclusive; default: no end.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub until: Option<Day>,
    #[arg(long, value_enum, default_value_t = crate::replay::Format::Text)]
    pub format: crate::replay::Format,
    /// Exit 0 even when requests the trail shows refused would be allowed.
    #[arg(long)]
    pub accept_new_allows: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check a trail's hash chain; reports the first altered, removed, inserted or reordered
    /// record and exits 1.
    Verify(VerifyArgs),
    /// Print several replicas' trails as one, interleaved by time: one JSON line per record,
    /// `{"trail": PATH, "record": {...}}`, each record as written. Check them with `verify`.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Trail folders (one per replica), or files of one trail in order.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Trail files in order, or folders (their audit-*.jsonl files, in name order).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Environment variable holding the HMAC key the trail was written with (audit.key_env).
    #[arg(long, value_name = "NAME")]
    pub key_env: Option<String>,
    /// Accept a trail that does not end with a `stop` record (the gateway is still running).
    #[arg(long)]
    pub allow_open: bool,
    /// Accept a trail that does not start at the first record (retention removed older files).
    #[arg(long)]
    pub allow_partial_head: bool,
    /// A chain head seen earlier, outside the trail (`customs_audit_head_seq` kept by Prometheus,
    /// or the `seq` and `hash` logged at rotation and shutdown): the trail must reach it, and,
    /// with the hash, hold that very record.
    #[arg(long, value_name = "SEQ[:HASH]", value_parser = parse_checkpoint)]
    pub checkpoint: Option<Checkpoint>,
}

fn parse_checkpoint(s: &str) -> Result<Checkpoint, String> {
    let (seq, hash) = match s.split_once(':') {
        Some((seq, hash)) => (seq, Some(hash)),
        None => (s, None),
    };
    let seq = seq.parse().map_err(|_| format!("{s:?}: the checkpoint is SEQ or SEQ:HASH, SEQ a number"))?;
    if hash.is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(format!("{s:?}: the checkpoint's hash is 64 hex digits"));
    }
    Ok(Checkpoint { seq, hash: hash.map(str::to_ascii_lowercase) })
}

fn parse_key(s: &str) -> Result<KeySource, String> {
    Ok(if s == "-" { KeySource::Stdin } else { KeySource::Given(ApiKey::new(s)) })
}

fn parse_day(s: &str) -> Result<Day, String> {
    Day::parse(s).ok_or_else(|| format!("{s:?} is not a date (YYYY-MM-DD)"))
}
