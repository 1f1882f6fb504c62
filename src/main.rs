//! The `customs` binary: parses the command line, runs the command, maps errors to an exit code.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Parser;
use customs::admin::SharedEnv;
use customs::audit::{Sealer, verify};
use customs::cli::{AuditCommand, Cli, Command, LogFormat};
use customs::config::{self, ConfigErrors};
use customs::policy::{Day, DayClock};
use customs::server::Server;
use customs::{auth, demo, explain, report};
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

fn config_failed(errors: &ConfigErrors) -> anyhow::Error {
    anyhow!("the config has {} error(s):\n{errors}", errors.0.len())
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config: dir, listen, admin_listen, at } => {
            let config = config::load(&dir, &config::process_env).map_err(|e| config_failed(&e))?;
            let listen = listen.unwrap_or(config.settings.server.listen);
            let admin = admin_listen.unwrap_or(config.settings.server.admin_listen);
            let env: SharedEnv = std::sync::Arc::new(config::process_env);
            runtime()?.block_on(async {
                let server = Server::start(config, listen, admin, env, day_clock(at)).await?;
                out(&format!("customs listening on http://{} (admin http://{})\n", server.addr, server.admin_addr))?;
                shutdown_signal().await;
                server.shutdown().await;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Demo { config: dir, at } => {
            let config = demo::load(&dir).map_err(|e| config_failed(&e))?;
            let env = demo::env();
            let listen: SocketAddr = demo::DEMO_LISTEN.parse()?;
            let admin: SocketAddr = demo::DEMO_ADMIN_LISTEN.parse()?;
            runtime()?.block_on(async {
                let mocks = demo::start_mocks(&config).await?;
                let server = Server::start(config, listen, admin, env, day_clock(at)).await?;
                out(&demo::instructions(server.addr, server.admin_addr))?;
                shutdown_signal().await;
                server.shutdown().await;
                for m in mocks {
                    m.stop().await;
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Check { config: dir, require_env, at, verbose } => {
            // Without --require-env, credentials are a deployment concern: only the names are checked.
            let placeholder = |_: &str| Some("set-at-deploy".to_owned());
            let env: config::EnvLookup<'_> = if require_env { &config::process_env } else { &placeholder };
            let today = at.unwrap_or_else(Day::today);
            match config::load(&dir, env) {
                Ok(c) => {
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
                    for o in report.outcomes.iter().filter(|o| verbose || !o.passed()) {
                        text.push_str(&format!("{o}\n"));
                    }
                    text.push_str(&format!("{}\n", report.summary()));
                    out(&text)?;
                    Ok(if report.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
                }
                Err(errors) => {
                    out(&format!("{errors}\n{}: {} error(s)\n", dir.display(), errors.0.len()))?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Explain { config: dir, tenant, model, purpose, at, json } => {
            let placeholder = |_: &str| Some("set-at-deploy".to_owned());
            let config = config::load(&dir, &placeholder).map_err(|e| config_failed(&e))?;
            let day = at.unwrap_or_else(Day::today);
            let e = explain::explain(&config.policy, &tenant, &model, purpose.as_deref(), day)?;
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&e)?))?;
            } else {
                out(&e.render_text())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { paths, key_env, allow_open, allow_partial_head }) => {
            let key = match &key_env {
                Some(name) => Some(std::env::var(name).with_context(|| format!("{name} is not set"))?),
                None => None,
            };
            let sealer = Sealer::new(key.as_deref().map(str::as_bytes));
            let files = verify::expand(&paths)?;
            let opts = verify::Options { allow_partial_head };
            match verify::verify(&files, &sealer, opts)? {
                Err(p) => {
                    out(&format!("FAIL {}:{}: {}\n", p.file.display(), p.line, p.what))?;
                    Ok(ExitCode::FAILURE)
                }
                Ok(s) if !s.closed && !allow_open => {
                    out(&format!(
                        "FAIL the trail ends at seq {} without a stop record: records were cut from the end, or \
                         the gateway crashed or is still running (pass --allow-open for a live trail)\n",
                        s.last_seq
                    ))?;
                    Ok(ExitCode::FAILURE)
                }
                Ok(s) => {
                    out(&format!(
                        "ok: {} records in {} file(s), seq {}..{}, {}{}\nchain head {}\n",
                        s.records,
                        s.files,
                        s.first_seq.unwrap_or(0),
                        s.last_seq,
                        if sealer.is_keyed() { "HMAC-SHA-256" } else { "SHA-256" },
                        if s.closed { ", closed" } else { ", open (no stop record yet)" },
                        s.head
                    ))?;
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Report { audit, since, until, format, config: dir, home, flops_line, output } => {
            let defaults = match &dir {
                Some(dir) => {
                    let placeholder = |_: &str| Some("set-at-deploy".to_owned());
                    config::load(dir, &placeholder).map_err(|e| config_failed(&e))?.settings.report
                }
                None => Default::default(),
            };
            let home = if home.is_empty() { defaults.home_jurisdictions } else { home };
            if home.is_empty() {
                return Err(anyhow!(
                    "name the home jurisdictions: --home ID, or [report] home_jurisdictions in gateway.toml with --config"
                ));
            }
            let flops_line = flops_line.or(defaults.flops_line).ok_or_else(|| {
                anyhow!("give the training-compute line: --flops-line N, or [report] flops_line in gateway.toml with --config")
            })?;
            let settings = report::ReportSettings {
                home_jurisdictions: home,
                flops_line,
                since,
                until,
                generated_at: report::utc_timestamp(std::time::SystemTime::now()),
            };
            let text = report::read(&audit, &settings)?.render(format);
            match output {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?
                }
                None => out(&text)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Screen { config: dir, json } => {
            let placeholder = |_: &str| Some("set-at-deploy".to_owned());
            let config = config::load(&dir, &placeholder).map_err(|e| config_failed(&e))?;
            let policy = &config.policy;
            let s = policy.screening();
            let Some(list) = &s.list else {
                out(&format!("{}: no screening list in the config folder\n", dir.display()))?;
                return Ok(ExitCode::SUCCESS);
            };
            let tenant = |f: &customs::policy::Finding| policy.tenant(f.tenant).map_or("?", |t| &*t.id).to_owned();
            if json {
                let findings: Vec<_> = s
                    .findings
                    .iter()
                    .map(|f| {
                        let mut v = serde_json::json!({
                            "status": f.status.as_str(), "tenant": tenant(f), "name": &*f.query,
                            "matched": &*f.matched, "score": f.score, "entry": &*f.entry_id,
                            "entry_name": &*f.entry_name, "source": &*f.source, "list_line": f.list_line,
                        });
                        if let customs::policy::FindingStatus::Cleared { reviewer, date, note } = &f.status {
                            v["clearance"] = serde_json::json!({ "reviewer": &**reviewer, "date": date.to_string(), "note": &**note });
                        }
                        v
                    })
                    .collect();
                let doc = serde_json::json!({
                    "list": &**list, "entries": s.entries, "threshold": s.threshold,
                    "review_threshold": s.review_threshold, "findings": findings,
                });
                out(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut text = format!(
                "{list}: {} entries screened against {} tenants; blocked at {:.0}, review from {:.0}\n",
                s.entries,
                policy.tenants().len(),
                s.threshold,
                s.review_threshold
            );
            for f in s.findings.iter() {
                text.push_str(&format!(
                    "{:<8} {:<20} {:>3.0}  {:?} ~ {:?}\n         entry {} ({}), {list}:{}\n",
                    f.status.as_str().to_uppercase(),
                    tenant(f),
                    f.score,
                    &*f.query,
                    &*f.matched,
                    f.entry_id,
                    f.source,
                    f.list_line
                ));
                if let customs::policy::FindingStatus::Cleared { reviewer, date, note } = &f.status {
                    text.push_str(&format!("         cleared by {reviewer} on {date}: {note}\n"));
                }
            }
            let count = |st: &str| s.findings.iter().filter(|f| f.status.as_str() == st).count();
            text.push_str(&format!(
                "{} blocked (denied_party), {} cleared, {} for review\n",
                count("blocked"),
                count("cleared"),
                count("review")
            ));
            out(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen => {
            let key = auth::generate_key();
            let digest = hex::encode(auth::digest(key.as_bytes()));
            out(&format!(
                "API key (give it to the tenant; it is not stored anywhere):\n  {key}\n\n\
                 Add its digest to the tenant in tenants.toml:\n  key_sha256 = [\"{digest}\"]\n"
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("Shutting down.");
}
