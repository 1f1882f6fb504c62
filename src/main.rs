//! The `customs` binary: parses the command line, runs the command, maps errors to an exit code.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Parser;
use customs::admin::SharedEnv;
use customs::audit::{Sealer, verify};
use customs::cli::{
    AuditCommand, CheckArgs, Cli, Command, DemoArgs, ExplainArgs, GenerateArgs, KeySource, LogFormat, MergeArgs,
    ReplayArgs, ReportArgs, ScreenArgs, ServeArgs, VerifyArgs,
};
use customs::config::{self, Config, ConfigErrors};
use customs::explain::Subject;
use customs::policy::{Day, DayClock};
use customs::server::Server;
use customs::{auth, demo, explain, report, screen};
use tracing_subscriber::EnvFilter;

/// Why jemalloc: see its entry in Cargo.toml.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Flushes buffered log lines when main returns.
    let _logs = init_logging(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through a background writer, so a request never waits on a log write.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
}

fn day_clock(at: Option<Day>) -> DayClock {
    at.map_or(DayClock::Utc, DayClock::Fixed)
}

fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn out_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

fn config_failed(errors: &ConfigErrors) -> anyhow::Error {
    anyhow!("the config has {} error(s):\n{errors}", errors.0.len())
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve(args),
        Command::Demo(args) => demo(args),
        Command::Check(args) => check(args),
        Command::Explain(args) => explain(args),
        Command::Audit(AuditCommand::Verify(args)) => verify(args),
        Command::Audit(AuditCommand::Merge(args)) => merge(args),
        Command::Report(args) => report(args),
        Command::Replay(args) => replay(args),
        Command::Screen(args) => screen(args),
        Command::Keygen => keygen(),
        Command::Generate(args) => generate(args),
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let opts = customs::generate::Options {
        from: args.from,
        tenants: args.tenants,
        list_entries: args.list_entries,
        files: args.files,
    };
    customs::generate::write(&args.out, &opts).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Credentials are a deployment concern for the commands that only read the policy: their
/// variables must be named, not set.
fn placeholder_env(_: &str) -> Option<String> {
    Some("set-at-deploy".to_owned())
}

/// Loads a config to read its policy or settings, never to serve it.
fn load_to_read(dir: &Path) -> anyhow::Result<Config> {
    config::load(dir, &placeholder_env).map_err(|e| config_failed(&e))
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.config, &config::process_env).map_err(|e| config_failed(&e))?;
    let listen = args.listen.unwrap_or(config.settings.server.listen);
    let admin = args.admin_listen.unwrap_or(config.settings.server.admin_listen);
    let env: SharedEnv = std::sync::Arc::new(config::process_env);
    let scheme = |tls: &Option<_>| if tls.is_some() { "https" } else { "http" };
    let (gateway, admin_scheme) = (scheme(&config.settings.server.tls), scheme(&config.settings.admin.tls));
    runtime()?.block_on(async {
        let stop = shutdown_signal()?;
        let server = Server::start(config, listen, admin, env, day_clock(args.at)).await?;
        let (addr, admin) = (server.addr, server.admin_addr);
        out(&format!("customs listening on {gateway}://{addr} (admin {admin_scheme}://{admin})\n"))?;
        stop.await;
        server.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let config = demo::load(&args.config).map_err(|e| config_failed(&e))?;
    let env = demo::env();
    let listen: SocketAddr = demo::DEMO_LISTEN.parse()?;
    let admin: SocketAddr = demo::DEMO_ADMIN_LISTEN.parse()?;
    runtime()?.block_on(async {
        let stop = shutdown_signal()?;
        let mocks = demo::start_mocks(&config).await?;
        let server = Server::start(config, listen, admin, env, day_clock(args.at)).await?;
        out(&demo::instructions(server.addr, server.admin_addr))?;
        stop.await;
        server.shutdown().await;
        for m in mocks {
            m.stop().await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.config;
    // Without --require-env, only the variables' names are checked.
    let env: config::EnvLookup<'_> = if args.require_env { &config::process_env } else { &placeholder_env };
    let today = args.at.unwrap_or_else(Day::today);
    let c = match config::load(dir, env) {
        Ok(c) => c,
        Err(errors) => {
            out(&format!("{errors}\n{}: {} error(s)\n", dir.display(), errors.0.len()))?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let p = &c.policy;
    out(&format!(
        "{}: ok (policy {}: {} tenants, {} models, {} jurisdictions, {} endpoints)\n",
        dir.display(),
        p.version(),
        p.tenants().len(),
        p.models().len(),
        p.jurisdictions().len(),
        p.endpoints().len()
    ))?;
    // Not an error (a jurisdiction may start later or end), but rarely meant.
    for j in p.jurisdictions() {
        for gap in j.periods().iter().filter(|g| !g.has_version()) {
            if let Some(r) = p.rule(gap.rule()) {
                out(&format!("note: {}:{}: {}: {}\n", r.file, r.line, r.key, r.detail))?;
            }
        }
    }
    if c.expectations.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let report = customs::policy::expect::evaluate(p, &c.expectations, today);
    let mut text = String::new();
    for o in report.outcomes.iter().filter(|o| args.verbose || !o.passed()) {
        text.push_str(&format!("{o}\n"));
    }
    text.push_str(&format!("{}\n", report.summary()));
    out(&text)?;
    Ok(if report.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let config = load_to_read(&args.config)?;
    let day = args.at.unwrap_or_else(Day::today);
    if args.batch {
        let s = explain::batch(&config.policy, std::io::stdin().lock(), std::io::stdout().lock(), day)
            .context("explain --batch")?;
        eprintln!("{} question(s) answered, {} of them with an error", s.answered, s.errors);
        return Ok(ExitCode::SUCCESS);
    }
    let from_stdin;
    let subject = match (&args.tenant, &args.key) {
        (Some(id), None) => Subject::Tenant(id),
        (None, Some(KeySource::Given(key))) => Subject::Key(key),
        (None, Some(KeySource::Stdin)) => {
            from_stdin = explain::read_key(std::io::stdin().lock())?;
            Subject::Key(&from_stdin)
        }
        // clap requires exactly one of the two.
        _ => return Err(anyhow!("name the tenant with --tenant ID or --key KEY")),
    };
    let model = args.model.as_deref().ok_or_else(|| anyhow!("--model is required"))?;
    let e = explain::explain_subject(&config.policy, subject, model, args.purpose.as_deref(), day)?;
    if args.json {
        out_json(&e)?
    } else {
        out(&e.render_text())?
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let key = match &args.key_env {
        Some(name) => Some(std::env::var(name).with_context(|| format!("{name} is not set"))?),
        None => None,
    };
    let sealer = Sealer::new(key.as_deref().map(str::as_bytes));
    let trails = verify::trails(&args.paths)?;
    if trails.len() > 1 && args.checkpoint.is_some() {
        return Err(anyhow!("--checkpoint names one chain's record: verify that replica's trail on its own"));
    }
    let opts = verify::Options { allow_partial_head: args.allow_partial_head, checkpoint: args.checkpoint };
    if let [trail] = trails.as_slice() {
        let (text, ok, _) = verify_trail(&trail.files, &sealer, &opts, args.allow_open)?;
        out(&text)?;
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    // Several replicas' trails: each chain is checked on its own, then what they hold together.
    let mut all_ok = true;
    let (mut records, mut first, mut last) = (0, None::<String>, None::<String>);
    for trail in &trails {
        let (text, ok, summary) = verify_trail(&trail.files, &sealer, &opts, args.allow_open)?;
        out(&format!("trail {}:\n{}", trail.name.display(), indent(&text)))?;
        all_ok &= ok;
        if let Some(s) = summary {
            records += s.records;
            first = first.into_iter().chain(s.first_time).min();
            last = last.into_iter().chain(s.last_time).max();
        }
    }
    out(&format!(
        "{}: {} trails, {records} records, {} to {}\n",
        if all_ok { "ok" } else { "FAIL" },
        trails.len(),
        first.as_deref().unwrap_or("-"),
        last.as_deref().unwrap_or("-"),
    ))?;
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let trails = verify::trails(&args.paths)?;
    let merged = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
            customs::audit::merge::merge(&trails, &mut std::io::BufWriter::new(file))?
        }
        None => customs::audit::merge::merge(&trails, &mut std::io::BufWriter::new(std::io::stdout().lock()))?,
    };
    eprintln!("{} records from {} trails", merged.records, merged.trails);
    Ok(ExitCode::SUCCESS)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// One chain's verdict as text, whether it passed, and its summary when the chain is sound.
fn verify_trail(
    files: &[PathBuf],
    sealer: &Sealer,
    opts: &verify::Options,
    allow_open: bool,
) -> anyhow::Result<(String, bool, Option<verify::Summary>)> {
    let s = match verify::verify(files, sealer, opts.clone())? {
        Err(p) => {
            let text = match p.line {
                // Not one line's fault: the trail as a whole falls short.
                0 => format!("FAIL {}: {}\n", p.file.display(), p.what),
                line => format!("FAIL {}:{line}: {}\n", p.file.display(), p.what),
            };
            return Ok((text, false, None));
        }
        Ok(s) => s,
    };
    if !s.closed && !allow_open {
        let text = format!(
            "FAIL the trail ends at seq {} without a stop record: records were cut from the end, or \
             the gateway crashed or is still running (pass --allow-open for a live trail)\n",
            s.last_seq
        );
        return Ok((text, false, Some(s)));
    }
    let mut text = format!(
        "ok: {} records in {} file(s), seq {}..{}, {}{}\nchain head {}\n",
        s.records,
        s.files,
        s.first_seq.unwrap_or(0),
        s.last_seq,
        if sealer.is_keyed() { "HMAC-SHA-256" } else { "SHA-256" },
        if s.closed { ", closed" } else { ", open (no stop record yet)" },
        s.head
    );
    if s.missing_outcomes.is_empty() {
        return Ok((text, true, Some(s)));
    }
    // A live trail has requests in flight; anywhere else a missing outcome is lost evidence.
    let (label, ok) = if allow_open && !s.closed {
        ("decided, outcome not yet recorded", true)
    } else {
        ("FAIL decided, outcome unknown", false)
    };
    text.push_str(&format!("{label}: {}\n", s.missing_outcomes.len()));
    for (seq, id) in &s.missing_outcomes {
        text.push_str(&format!("  decision seq {seq} request {}\n", id.as_deref().unwrap_or("-")));
    }
    Ok((text, ok, Some(s)))
}

fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.as_deref().map(load_to_read).transpose()?;
    let defaults = config.as_ref().map(|c| c.settings.report.clone()).unwrap_or_default();
    let home = if args.home.is_empty() { defaults.home_jurisdictions } else { args.home };
    if home.is_empty() {
        return Err(anyhow!(
            "name the home jurisdictions: --home ID, or [report] home_jurisdictions in gateway.toml with --config"
        ));
    }
    let flops_line = args.flops_line.or(defaults.flops_line).ok_or_else(|| {
        anyhow!("give the training-compute line: --flops-line N, or [report] flops_line in gateway.toml with --config")
    })?;
    let settings = report::ReportSettings {
        home_jurisdictions: home,
        flops_line,
        since: args.since,
        until: args.until,
        generated_at: report::utc_timestamp(std::time::SystemTime::now()),
    };
    let mut report = report::read(&args.audit, &settings)?;
    // The KYC section needs the tenants, so it comes only with a config folder; it is as of the
    // window's last day, or today for an open window.
    report.kyc = config.map(|c| report::kyc_due(&c.policy, args.until.unwrap_or_else(customs::policy::Day::today)));
    let text = report.render(args.format);
    match args.output {
        Some(path) => std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?,
        None => out(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn screen(args: ScreenArgs) -> anyhow::Result<ExitCode> {
    let config = load_to_read(&args.config)?;
    if args.ownership {
        let day = args.at.unwrap_or_else(customs::policy::Day::today);
        match args.json {
            true => out_json(&screen::ownership_json(&config.policy, day))?,
            false => out(&screen::ownership_text(&config.policy, day))?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    match screen::screen(&config.policy) {
        None => out(&format!("{}: no screening list in the config folder\n", args.config.display()))?,
        Some(s) if args.json => out_json(&s)?,
        Some(s) => out(&s.render_text())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn keygen() -> anyhow::Result<ExitCode> {
    let key = auth::generate_key();
    let digest = hex::encode(auth::digest(key.as_bytes()));
    out(&format!(
        "API key (give it to the tenant; it is not stored anywhere):\n  {key}\n\n\
         Add its digest to the tenant in tenants.toml:\n  key_sha256 = [\"{digest}\"]\n"
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Exit 0 when nothing refused would be allowed (or --accept-new-allows), 1 when something
/// would, 2 when the trail or config cannot be read: like `diff`, so a pipeline can tell
/// "review this" from "this did not run".
fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    const TROUBLE: u8 = 2;
    let run = || -> anyhow::Result<customs::replay::Replay> {
        let config = load_to_read(&args.config)?;
        let settings =
            customs::replay::ReplaySettings { config: args.config.clone(), since: args.since, until: args.until };
        Ok(customs::replay::read(&args.audit, &config.policy, &settings)?)
    };
    let replay = match run() {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            return Ok(ExitCode::from(TROUBLE));
        }
    };
    if let Err(e) = out(&replay.render(args.format)) {
        let _ = writeln!(std::io::stderr(), "error: {e:#}");
        return Ok(ExitCode::from(TROUBLE));
    }
    if replay.has_new_allows() && !args.accept_new_allows {
        eprintln!(
            "{} refused decision(s) would be allowed under {}; review them, then pass --accept-new-allows",
            replay.totals.deny_to_allow,
            args.config.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Registers for SIGINT and SIGTERM at once and returns the wait for either. Registering when
/// the wait is first polled would leave a moment after the "listening" line in which a signal
/// still has its default action and kills the process without a drain.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("Shutting down.");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Shutting down.");
    })
}
