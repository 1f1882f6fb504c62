//! The end-to-end load bench: `cargo bench --bench load`.
//!
//! Starts the mock upstream, then each target in turn behind it: customs (the example policy with
//! `benches/load/scenario/` laid over it: every check, limit and metric on, limits too high to
//! refuse), the same without its audit trail ("no-audit") or, when named, with its trail synced
//! each second instead of per decision ("interval"), the same in cluster mode with its kill
//! switch and limits on a `redis-server` ("cluster", when one is installed), the bare pass-through
//! proxy on the same stack (`bare_proxy.rs`), and nginx when it is installed; plus the mock on its
//! own ("direct") as the latency floor. The target runs pinned to CPU 0; this driver (the load
//! generator), the mock and the store share CPU 1. Rounds are interleaved and repeated, each measurement bounded in time, all on
//! loopback. Besides plain and streamed chat completions, each target streams a Responses create
//! and an Anthropic Messages create where a probe before the rounds shows it serves them (the bare
//! proxy and nginx pass any path to the mock; an older baseline may not serve /v1/messages): every
//! request must answer 200 and a stream must reach its last event, or it counts as an error.
//! Prints a table and writes the JSON it was made from (default `target/load-bench.json`). customs and the mock are the binaries cargo built for this bench
//! (`CARGO_BIN_EXE_*`, the bench profile), so what runs is what was just built.

#![expect(clippy::print_stdout, reason = "a benchmark's report goes to stdout")]

mod bare_proxy;
mod generate;
#[path = "../support/large_config.rs"]
mod large_config;
#[path = "../support/machine.rs"]
mod machine;
#[path = "../support/scenario.rs"]
mod scenario;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use generate::{Shot, quantile_ms};
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    /// Internal: run as the bare proxy.
    #[arg(long, hide = true)]
    role: Option<String>,
    #[arg(long, hide = true)]
    listen: Option<SocketAddr>,
    #[arg(long, hide = true)]
    upstream: Option<SocketAddr>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Interleaved rounds over all targets; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Connections for the throughput runs.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests per second for the latency runs.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/load-bench.json")]
    out: PathBuf,
    /// Only these targets (customs, no-audit, cluster, bare, nginx, direct; and interval, which
    /// runs only when named).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also measure LiteLLM's proxy (from PyPI, installed into target/litellm-venv on first use).
    #[arg(long)]
    litellm: bool,
    /// Serve customs the generated 10,000-tenant, 1,000-model, 250-jurisdiction config instead.
    #[arg(long)]
    large: bool,
    /// Also run this customs binary (an earlier build, say) as the target "baseline", on the same
    /// config, interleaved with the current one: how a change moved the numbers, measured side by
    /// side rather than across runs on a drifting machine.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Serve customs (and the baseline, no-audit, cluster) and nginx over TLS 1.3 with one
    /// certificate generated for the run (ECDSA P-256), and drive them over TLS; the bare proxy
    /// and the mock stay plain.
    #[arg(long)]
    tls: bool,
    /// cargo passes --bench to bench targets.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The bare proxy runs in this binary: it gets customs' allocator, so that the two differ only in
/// what customs does, not in how either allocates. The generator, shared by every target, too.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const PINNED: &str = "CUSTOMS_LOAD_PINNED";
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.role.as_deref() == Some("bare-proxy") {
        let (Some(listen), Some(upstream)) = (args.listen, args.upstream) else {
            return Err("bare-proxy needs --listen and --upstream".into());
        };
        return Ok(bare_proxy::run(listen, upstream)?);
    }
    if std::env::var_os(PINNED).is_none() {
        // Re-run this driver pinned to CPU 1, leaving CPU 0 to the target.
        let status = Command::new("taskset")
            .arg("-c")
            .arg("1")
            .arg(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env(PINNED, "1")
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(drive(args))
}

/// A process under test.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    children: Vec<Child>,
    /// Processes the target needs but whose CPU is not its own (the cluster store).
    helpers: Vec<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    fn pids(&self) -> Vec<u32> {
        self.children.iter().flat_map(|c| with_children(c.id())).collect()
    }

    fn helper_pids(&self) -> Vec<u32> {
        self.helpers.iter().map(Child::id).collect()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        for c in self.children.iter_mut().chain(&mut self.helpers) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `cmd`, reads its first stdout line, and returns the `http://ADDR` (or `https://`) in it.
fn spawn_listening(mut cmd: Command) -> Result<(Child, SocketAddr), Box<dyn std::error::Error>> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let addr = line.split("://").nth(1).and_then(|s| s.split_whitespace().next()).ok_or("no address printed")?;
    Ok((child, addr.parse()?))
}

fn pinned(cpu: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(cpu).arg(program);
    c
}

/// The audit trail a customs target keeps: the scenario's (`sync = "always"`), none, or one
/// synced each second.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trail {
    Always,
    Off,
    Interval,
}

#[expect(clippy::too_many_arguments, reason = "one call per target kind, each naming what it varies")]
fn start_customs(
    name: &'static str,
    bin: &Path,
    mock: SocketAddr,
    large: bool,
    audit: Trail,
    store: Option<Child>,
    store_port: u16,
    tls: Option<&Path>,
) -> Result<Target, Box<dyn std::error::Error>> {
    let dir = tempfile::TempDir::new()?;
    if large {
        large_config::write(dir.path(), &mock.to_string())?;
    }
    // The generated large config has no gateway.toml: it gets the scenario's, like the example.
    scenario::write(dir.path(), &mock.to_string(), large)?;
    if audit != Trail::Always {
        let path = dir.path().join("gateway.toml");
        let mut gateway: toml::Table = std::fs::read_to_string(&path)?.parse()?;
        match gateway.get_mut("audit").and_then(toml::Value::as_table_mut) {
            Some(a) if audit == Trail::Interval => {
                a.insert("sync".into(), "interval".into());
            }
            _ => {
                gateway.remove("audit");
            }
        }
        std::fs::write(&path, toml::to_string(&gateway)?)?;
    }
    if store.is_some() {
        let path = dir.path().join("gateway.toml");
        let cluster = format!("\n[cluster]\nurl = \"redis://127.0.0.1:{store_port}/\"\nreplica_id = \"bench\"\n");
        std::fs::write(&path, std::fs::read_to_string(&path)? + &cluster)?;
    }
    if let Some(certs) = tls {
        let path = dir.path().join("gateway.toml");
        let d = certs.display();
        let tls = format!("\n[server.tls]\ncert_file = \"{d}/tls.crt\"\nkey_file = \"{d}/tls.key\"\n");
        std::fs::write(&path, std::fs::read_to_string(&path)? + &tls)?;
    }
    let mut cmd = pinned("0", bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--config"])
        .arg(dir.path())
        .env("CUSTOMS_UPSTREAM_KEY", "bench-upstream-key");
    let (child, addr) = spawn_listening(cmd)?;
    Ok(Target { name, addr, children: vec![child], helpers: store.into_iter().collect(), _dir: Some(dir) })
}

/// A `redis-server` without persistence on the driver's CPU, or `None` when none is installed.
fn start_redis() -> Result<Option<(Child, u16)>, Box<dyn std::error::Error>> {
    let Some(redis) =
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].into_iter().find(|p| Path::new(p).exists())
    else {
        return Ok(None);
    };
    let port = free_port()?;
    let mut cmd = pinned("1", redis);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Some((child, port)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err("redis-server did not start".into())
}

fn start_bare(mock: SocketAddr) -> Result<Target, Box<dyn std::error::Error>> {
    let mut cmd = pinned("0", std::env::current_exe()?);
    cmd.args(["--role", "bare-proxy", "--listen", "127.0.0.1:0", "--upstream", &mock.to_string()]);
    let (child, addr) = spawn_listening(cmd)?;
    Ok(Target { name: "bare", addr, children: vec![child], helpers: Vec::new(), _dir: None })
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A CA and a certificate for `localhost` signed by it, written into a new folder as `tls.crt`
/// (chain) and `tls.key`; with the client configuration that trusts the CA, TLS 1.3 only.
fn certificates() -> Result<(tempfile::TempDir, tokio_rustls::TlsConnector), Box<dyn std::error::Error>> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &issuer)?;
    let dir = tempfile::TempDir::new()?;
    std::fs::write(dir.path().join("tls.crt"), cert.pem() + &ca_cert.pem())?;
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone())?;
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok((dir, tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))))
}

fn start_nginx(mock: SocketAddr, tls: Option<&Path>) -> Result<Option<Target>, Box<dyn std::error::Error>> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).exists());
    let Some(nginx) = nginx else { return Ok(None) };
    let dir = tempfile::TempDir::new()?;
    let port = free_port()?;
    let d = dir.path().display();
    let ssl = tls.map_or_else(String::new, |c| {
        let c = c.display();
        format!(" ssl; ssl_certificate {c}/tls.crt; ssl_certificate_key {c}/tls.key; ssl_protocols TLSv1.3")
    });
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; error_log /dev/null crit; pid {d}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; keepalive_requests 100000000; client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
           upstream mock {{ server {mock}; keepalive 128; keepalive_requests 100000000; }}\n\
           server {{ listen 127.0.0.1:{port}{ssl}; location / {{ proxy_pass http://mock; proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\"; proxy_buffering off; proxy_request_buffering off; }} }} }}\n"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf)?;
    let mut cmd = pinned("0", nginx);
    cmd.arg("-p").arg(dir.path()).arg("-c").arg(&path).stdout(Stdio::null()).stderr(Stdio::null());
    let child = cmd.spawn()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(Some(Target {
                name: "nginx",
                addr,
                children: vec![child],
                helpers: Vec::new(),
                _dir: Some(dir),
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err("nginx did not start".into())
}

/// The LiteLLM version measured; pinned so runs compare.
const LITELLM: &str = "litellm[proxy]==1.108.7";

/// LiteLLM's proxy with API-key auth (its master key) and one model, on one worker.
fn start_litellm(mock: SocketAddr) -> Result<Target, Box<dyn std::error::Error>> {
    let venv = Path::new(ROOT).join("target/litellm-venv");
    let bin = venv.join("bin/litellm");
    if !bin.exists() {
        let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status()?.success()
            && Command::new(venv.join("bin/pip")).args(["install", "--quiet", LITELLM]).status()?.success();
        if !ok {
            return Err("installing LiteLLM failed".into());
        }
    }
    let dir = tempfile::TempDir::new()?;
    let config = format!(
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: http://{mock}/v1\n      api_key: bench-upstream-key\ngeneral_settings:\n  master_key: sk-bench-load\n"
    );
    let path = dir.path().join("litellm.yaml");
    std::fs::write(&path, config)?;
    let port = free_port()?;
    let mut cmd = pinned("0", &bin);
    cmd.arg("--config").arg(&path).args(["--host", "127.0.0.1", "--port", &port.to_string(), "--num_workers", "1"]);
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    for _ in 0..600 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(Target { name: "litellm", addr, children: vec![child], helpers: Vec::new(), _dir: Some(dir) });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("LiteLLM did not start within a minute".into())
}

/// The process and its descendants, for CPU accounting of servers that fork workers.
fn with_children(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        // Children are listed per thread of the parent.
        for task in std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().flatten() {
            if let Ok(kids) = std::fs::read_to_string(task.path().join("children")) {
                all.extend(kids.split_whitespace().filter_map(|k| k.parse::<u32>().ok()));
            }
        }
        i += 1;
    }
    all
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name, starting with the state; utime and stime are
    // the 12th and 13th after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// What the bench sends: a plain chat completion, and three streamed creates (a chat completion,
/// a Responses create and an Anthropic Messages create), each of 20 content chunks.
struct Shots {
    plain: Shot,
    stream: Shot,
    responses: Shot,
    messages: Shot,
}

/// The streamed measurements a target may not serve (an older build, a proxy that cannot route
/// them): each is probed first and measured only where the probe succeeded. The JSON's fields for
/// each start with its name.
const OPTIONAL_STREAMS: [&str; 2] = ["responses_stream", "messages_stream"];

fn shots(large: bool) -> Shots {
    // On the generated config, tenant 0 may use model 50 (see large_config.rs); that config has no
    // Anthropic model, so its Messages probe fails and that measurement is left out.
    let (key, model) = if large {
        (large_config::key(0), large_config::model_id(50))
    } else {
        ("sk-bench-load".into(), "gpt-4o-mini".into())
    };
    let value = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("x"));
    let mut json_headers = HeaderMap::new();
    json_headers.insert("content-type", HeaderValue::from_static("application/json"));
    let mut headers = json_headers.clone();
    headers.insert("authorization", value(&format!("Bearer {key}")));
    let body = format!(
        r#"{{"model":"{model}","max_tokens":64,"messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"Summarise the export-control rules that apply to this request in one sentence."}}]}}"#
    );
    let plain =
        Shot { path: "/v1/chat/completions", headers: headers.clone(), body: Bytes::from(body.clone()), end: None };
    let chunks = HeaderValue::from_static("20");
    let mut sh = headers;
    sh.insert("x-mock-chunks", chunks.clone());
    let stream_body = body.replacen("\"max_tokens\":64", "\"max_tokens\":64,\"stream\":true", 1);
    let stream = Shot {
        path: "/v1/chat/completions",
        headers: sh.clone(),
        body: Bytes::from(stream_body),
        end: Some(b"data: [DONE]"),
    };
    let responses_body = format!(
        r#"{{"model":"{model}","input":"Summarise the export-control rules that apply to this request in one sentence.","max_output_tokens":64,"stream":true}}"#
    );
    let responses = Shot {
        path: "/v1/responses",
        headers: sh,
        body: Bytes::from(responses_body),
        end: Some(b"event: response.completed"),
    };
    // As Anthropic's SDKs send it: the key as x-api-key, and the version header.
    let mut mh = json_headers;
    mh.insert("x-api-key", value(&key));
    mh.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    mh.insert("x-mock-chunks", chunks);
    let messages_body = r#"{"model":"claude-3-5-sonnet","max_tokens":64,"system":"You are a helpful assistant.","messages":[{"role":"user","content":"Summarise the export-control rules that apply to this request in one sentence."}],"stream":true}"#;
    let messages = Shot {
        path: "/v1/messages",
        headers: mh,
        body: Bytes::from_static(messages_body.as_bytes()),
        end: Some(b"event: message_stop"),
    };
    Shots { plain, stream, responses, messages }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

async fn drive(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut mock_cmd = pinned("1", env!("CARGO_BIN_EXE_customs-mock-upstream"));
    mock_cmd.args(["--listen", "127.0.0.1:0"]);
    let (mut mock_child, mock) = spawn_listening(mock_cmd)?;
    let wanted = |n: &str| args.only.is_empty() || args.only.iter().any(|o| o == n);
    let (certs, connector) = match args.tls {
        true => certificates().map(|(d, c)| (Some(d), Some(c)))?,
        false => (None, None),
    };
    let tls = certs.as_ref().map(|d| d.path());
    let mut targets = Vec::new();
    let customs = Path::new(env!("CARGO_BIN_EXE_customs"));
    if wanted("customs") {
        targets.push(start_customs("customs", customs, mock, args.large, Trail::Always, None, 0, tls)?);
    }
    // The same build and policy without the audit trail: what the trail costs, side by side.
    if wanted("no-audit") {
        targets.push(start_customs("no-audit", customs, mock, args.large, Trail::Off, None, 0, tls)?);
    }
    // Decisions written ahead but not waited on to reach the disk: what each `fdatasync` costs.
    if args.only.iter().any(|o| o == "interval") {
        targets.push(start_customs("interval", customs, mock, args.large, Trail::Interval, None, 0, tls)?);
    }
    // And in cluster mode, one replica on a store: what sharing the kill switch and limits costs.
    if wanted("cluster") {
        match start_redis()? {
            Some((redis, port)) => {
                let t = start_customs("cluster", customs, mock, args.large, Trail::Always, Some(redis), port, tls)?;
                targets.push(t);
            }
            None => println!("redis-server is not installed; skipping cluster (apt-get install redis-server)"),
        }
    }
    if let Some(bin) = &args.baseline {
        targets.push(start_customs("baseline", bin, mock, args.large, Trail::Always, None, 0, tls)?);
    }
    if wanted("bare") {
        targets.push(start_bare(mock)?);
    }
    if wanted("nginx") {
        match start_nginx(mock, tls)? {
            Some(t) => targets.push(t),
            None => println!("nginx is not installed; skipping it (apt-get install nginx to include it)"),
        }
    }
    if args.litellm {
        targets.push(start_litellm(mock)?);
    }
    let direct = wanted("direct").then(|| Target {
        name: "direct",
        addr: mock,
        children: Vec::new(),
        helpers: Vec::new(),
        _dir: None,
    });
    if let Some(connector) = connector {
        let over_tls = targets.iter().filter(|t| !matches!(t.name, "bare" | "litellm")).map(|t| t.addr).collect();
        let _ = generate::TLS.set((connector, over_tls));
    }
    let Shots { plain, stream, responses, messages } = shots(args.large);
    let optional = [&responses, &messages];
    let d = Duration::from_secs(args.seconds);
    let mut results: Vec<(String, Value)> = Vec::new();
    let mut rows: std::collections::BTreeMap<&str, Vec<Value>> = Default::default();
    let all: Vec<&Target> = targets.iter().chain(direct.iter()).collect();
    // One request of each kind per target before measuring. A failed probe of an optional stream
    // (an older build without /v1/messages, say) leaves that stream out for the target, null in
    // the JSON, rather than measuring a run of errors; the others are measured anyway.
    let mut probes: std::collections::BTreeMap<&str, serde_json::Map<String, Value>> = Default::default();
    let mut serves: std::collections::BTreeMap<&str, [bool; 2]> = Default::default();
    for t in &all {
        let kinds =
            [("plain", &plain), ("stream", &stream)].into_iter().chain(OPTIONAL_STREAMS.into_iter().zip(optional));
        let mut found = serde_json::Map::new();
        for (kind, shot) in kinds {
            let result = generate::probe(t.addr, shot).await;
            match &result {
                Ok((bytes, events)) => println!("probe {:>8} {kind}: ok, {bytes} bytes, {events} events", t.name),
                Err(e) => println!("probe {:>8} {kind}: FAILED ({e})", t.name),
            }
            let value = result
                .map_or_else(|e| json!({"error": e}), |(bytes, events)| json!({"bytes": bytes, "events": events}));
            found.insert(kind.into(), value);
        }
        serves.insert(t.name, OPTIONAL_STREAMS.map(|k| found.get(k).is_some_and(|v| v.get("error").is_none())));
        probes.insert(t.name, found);
    }
    for round in 0..args.rounds {
        // Each round starts with the next target, so that none always runs first (right after
        // the previous round's last streaming run) or last.
        for i in 0..all.len() {
            let t = all[(i + round) % all.len()];
            let pids = t.pids();
            let helpers = t.helper_pids();
            let helper_before: f64 = helpers.iter().map(|&p| cpu_seconds(p)).sum();
            let cpu_before: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
            let thr = generate::closed_loop(t.addr, &plain, args.connections, d).await;
            let cpu = pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu_before;
            let helper_cpu = helpers.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - helper_before;
            let cpu_before: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
            let streamed = generate::closed_loop(t.addr, &stream, args.connections, d).await;
            let stream_cpu = pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu_before;
            let mut lat = generate::open_loop(t.addr, &plain, args.rate, 16, d).await;
            let mut sttfb = generate::open_loop(t.addr, &stream, args.rate, 16, d).await;
            // The optional streams last, so that the runs above run as they did before them.
            let mut optional_rows = serde_json::Map::new();
            let mut optional_errors = 0;
            let serves = serves.get(t.name).copied().unwrap_or_default();
            for ((key, shot), serves) in OPTIONAL_STREAMS.into_iter().zip(optional).zip(serves) {
                let (rps, cpu_us, errors) = if serves {
                    let cpu_before: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
                    let run = generate::closed_loop(t.addr, shot, args.connections, d).await;
                    let cpu = pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu_before;
                    optional_errors += run.errors;
                    let cpu_us = if pids.is_empty() { Value::Null } else { json!(cpu * 1e6 / run.ok.max(1) as f64) };
                    (json!(run.ok as f64 / d.as_secs_f64()), cpu_us, json!(run.errors))
                } else {
                    (Value::Null, Value::Null, Value::Null)
                };
                optional_rows.insert(format!("{key}_rps"), rps);
                optional_rows.insert(format!("{key}_cpu_us_per_response"), cpu_us);
                optional_rows.insert(format!("{key}_errors"), errors);
            }
            let mut row = json!({
                "round": round,
                "rps": thr.ok as f64 / d.as_secs_f64(),
                "errors": thr.errors + streamed.errors + lat.errors + sttfb.errors + optional_errors,
                "cpu_us_per_request": if pids.is_empty() { Value::Null } else { json!(cpu * 1e6 / thr.ok.max(1) as f64) },
                "store_cpu_us_per_request": if helpers.is_empty() { Value::Null } else { json!(helper_cpu * 1e6 / thr.ok.max(1) as f64) },
                "p50_ms": quantile_ms(&mut lat.latency, 0.5),
                "p99_ms": quantile_ms(&mut lat.latency, 0.99),
                "p999_ms": quantile_ms(&mut lat.latency, 0.999),
                "stream_rps": streamed.ok as f64 / d.as_secs_f64(),
                "stream_cpu_us_per_response": if pids.is_empty() { Value::Null } else { json!(stream_cpu * 1e6 / streamed.ok.max(1) as f64) },
                "stream_ttfb_p50_ms": quantile_ms(&mut sttfb.first_byte, 0.5),
                "stream_ttfb_p99_ms": quantile_ms(&mut sttfb.first_byte, 0.99),
            });
            if let Some(row) = row.as_object_mut() {
                row.extend(optional_rows);
            }
            println!("round {round} {:>8}: {row}", t.name);
            rows.entry(t.name).or_default().push(row);
        }
    }
    let field = |rows: &[Value], k: &str| median(&mut rows.iter().filter_map(|r| r[k].as_f64()).collect::<Vec<_>>());
    let keys = [
        "rps",
        "cpu_us_per_request",
        "store_cpu_us_per_request",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "stream_rps",
        "stream_cpu_us_per_response",
        "stream_ttfb_p50_ms",
        "stream_ttfb_p99_ms",
        "responses_stream_rps",
        "responses_stream_cpu_us_per_response",
        "messages_stream_rps",
        "messages_stream_cpu_us_per_response",
    ];
    let direct_p50 = rows.get("direct").map(|r| field(r, "p50_ms"));
    let direct_p99 = rows.get("direct").map(|r| field(r, "p99_ms"));
    for t in &all {
        let r = rows.get(t.name).cloned().unwrap_or_default();
        let mut summary = serde_json::Map::new();
        for k in keys {
            summary.insert(k.into(), json!(field(&r, k)));
        }
        if let (Some(p50), Some(p99)) = (direct_p50, direct_p99) {
            summary.insert("added_p50_ms".into(), json!(field(&r, "p50_ms") - p50));
            summary.insert("added_p99_ms".into(), json!(field(&r, "p99_ms") - p99));
        }
        let rss = t.children.first().map_or(f64::NAN, |c| peak_rss_mib(c.id()));
        summary.insert("peak_rss_mib".into(), json!(rss));
        summary.insert("probes".into(), probes.remove(t.name).map_or(Value::Null, Value::Object));
        summary.insert("rounds".into(), Value::Array(r));
        results.push((t.name.to_owned(), Value::Object(summary)));
    }
    let get = |name: &str, k: &str| results.iter().find(|(n, _)| n == name).and_then(|(_, v)| v[k].as_f64());
    let ratios = |of: &str, over: &str| {
        let ratio = |k: &str| match (get(of, k), get(over, k)) {
            (Some(a), Some(b)) if b != 0.0 => json!(a / b),
            _ => Value::Null,
        };
        json!({
            "rps": ratio("rps"), "cpu_us_per_request": ratio("cpu_us_per_request"), "added_p99_ms": ratio("added_p99_ms"),
            "stream_rps": ratio("stream_rps"), "stream_cpu_us_per_response": ratio("stream_cpu_us_per_response"),
            "stream_ttfb_p50_ms": ratio("stream_ttfb_p50_ms"),
            "responses_stream_rps": ratio("responses_stream_rps"),
            "responses_stream_cpu_us_per_response": ratio("responses_stream_cpu_us_per_response"),
            "messages_stream_rps": ratio("messages_stream_rps"),
            "messages_stream_cpu_us_per_response": ratio("messages_stream_cpu_us_per_response"),
        })
    };
    let mut report = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": machine::machine(),
        "fdatasync_ms": machine::fdatasync_ms(),
        "commit": machine::commit(),
        "nginx": nginx_version(results.iter().any(|(n, _)| n == "nginx")),
    "settings": {"large_config": args.large, "tls": args.tls, "seconds": args.seconds, "rounds": args.rounds, "connections": args.connections, "rate": args.rate,
                     "stream_chunks": 20, "target_cpu": 0,
                     "streams": {"stream": "chat completion", "responses_stream": "Responses create", "messages_stream": "Anthropic Messages create"}, "driver_and_mock_cpu": 1},
        "targets": results.iter().map(|(n, v)| (n.clone(), v.clone())).collect::<serde_json::Map<_, _>>(),
        "ratios_customs_over_bare": ratios("customs", "bare"),
        "ratios_no_audit_over_bare": ratios("no-audit", "bare"),
    });
    if let (true, Some(obj)) = (get("cluster", "rps").is_some(), report.as_object_mut()) {
        obj.insert("ratios_cluster_over_customs".into(), ratios("cluster", "customs"));
    }
    if let (Some(bin), Some(obj)) = (&args.baseline, report.as_object_mut()) {
        obj.insert("baseline_bin".into(), json!(bin.display().to_string()));
        obj.insert("ratios_customs_over_baseline".into(), ratios("customs", "baseline"));
    }
    let out = Path::new(ROOT).join(&args.out);
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!(
        "\n| target | req/s | CPU µs/req | p50 ms | p99 ms | p99.9 ms | added p50 | added p99 | stream resp/s | stream CPU µs/resp | stream TTFB p50 ms | Responses stream resp/s | Responses stream CPU µs/resp | Messages stream resp/s | Messages stream CPU µs/resp | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, v) in &results {
        let f = |k: &str| v[k].as_f64().map_or("-".to_owned(), |x| format!("{x:.3}"));
        let rate = |k: &str| v[k].as_f64().map_or("-".to_owned(), |x| format!("{x:.0}"));
        println!(
            "| {name} | {:.0} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            v["rps"].as_f64().unwrap_or(f64::NAN),
            f("cpu_us_per_request"),
            f("p50_ms"),
            f("p99_ms"),
            f("p999_ms"),
            f("added_p50_ms"),
            f("added_p99_ms"),
            v["stream_rps"].as_f64().unwrap_or(f64::NAN),
            f("stream_cpu_us_per_response"),
            f("stream_ttfb_p50_ms"),
            rate("responses_stream_rps"),
            f("responses_stream_cpu_us_per_response"),
            rate("messages_stream_rps"),
            f("messages_stream_cpu_us_per_response"),
            f("peak_rss_mib"),
        );
    }
    println!("\nratios customs / bare: {}", report["ratios_customs_over_bare"]);
    println!("ratios no-audit / bare: {}", report["ratios_no_audit_over_bare"]);
    if report.get("ratios_cluster_over_customs").is_some() {
        println!("ratios cluster / customs: {}", report["ratios_cluster_over_customs"]);
    }
    if args.baseline.is_some() {
        println!("ratios customs / baseline: {}", report["ratios_customs_over_baseline"]);
    }
    println!("written to {}", out.display());
    drop(targets);
    let _ = mock_child.kill();
    let _ = mock_child.wait();
    Ok(())
}

/// The nginx that ran, as `nginx -v` names it (on stderr); null when it did not run.
fn nginx_version(ran: bool) -> Value {
    let out = Command::new("nginx").arg("-v").output().ok().filter(|_| ran);
    out.and_then(|o| String::from_utf8(o.stderr).ok()).map_or(Value::Null, |s| json!(s.trim()))
}
