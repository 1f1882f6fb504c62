//! Test harness: a mock upstream and the gateway on 127.0.0.1:0, configured from the example
//! config (pointed at the mock) or from files a test writes, plus a small HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use customs::config::{self, Config};
use customs::mock::{MockOptions, MockUpstream};
use customs::policy::{Day, DayClock};
use customs::server::Server;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tempfile::TempDir;

pub const UPSTREAM_KEY: &str = "test-upstream-key";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const EXAMPLE_MOCK_ADDR: &str = "127.0.0.1:8081";

/// The day tests on the example config decide as of: one the example's expectations.toml pins
/// (before the staged 2027-01-01 change, inside demo-cn's declaration), so the suite asserts the
/// same answers whatever the date it runs on. Tests of other days pin their own.
pub const EXAMPLE_DAY: &str = "2026-11-28";

pub fn example_day() -> DayClock {
    DayClock::Fixed(Day::parse(EXAMPLE_DAY).unwrap())
}

/// The demo tenants' documented keys.
pub const DEMO_KEYS: &[(&str, &str)] = &[
    ("demo-us", "sk-demo-us"),
    ("demo-us-embeddings", "sk-demo-embed"),
    ("demo-limited", "sk-demo-limited"),
    ("demo-cn", "sk-demo-cn"),
    ("demo-mo", "sk-demo-mo"),
    ("demo-de", "sk-demo-de"),
    ("demo-ir", "sk-demo-ir"),
    ("demo-suspended", "sk-demo-suspended"),
    ("demo-listed", "sk-demo-listed"),
    ("demo-nl", "sk-demo-nl"),
    ("demo-sg", "sk-demo-sg"),
    ("demo-lapsed", "sk-demo-lapsed"),
    ("demo-parented", "sk-demo-parented"),
];

/// A minimal jurisdiction for hand-written configs: the US, everything allowed from us-* endpoints.
pub const US_JURISDICTION: &str = r#"[[jurisdictions]]
id = "us"
countries = ["US"]
max_training_flops = inf
allow_models = ["*"]
require_declaration = "never"
allowed_residencies = ["us-*"]
"#;

pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The example config folder, copied as it is.
pub fn example_copy() -> TempDir {
    let dir = TempDir::new().unwrap();
    for entry in std::fs::read_dir(example_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// The example config, copied with its endpoints pointed at `mock`, and its audit trail and
/// kill-switch state inside the copy (`audit/`, `state/`).
pub fn example_config_for(mock: SocketAddr) -> TempDir {
    let dir = TempDir::new().unwrap();
    for entry in std::fs::read_dir(example_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .replace(EXAMPLE_MOCK_ADDR, &mock.to_string())
            .replace("dir = \"audit\"", &format!("dir = {:?}", dir.path().join("audit")))
            .replace("\"state/", &format!("\"{}/state/", dir.path().display()));
        std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
    }
    dir
}

/// How tests resolve environment variables: the upstream key and the admin token.
pub fn test_env() -> customs::admin::SharedEnv {
    std::sync::Arc::new(|name: &str| match name {
        "CUSTOMS_UPSTREAM_KEY" => Some(UPSTREAM_KEY.to_owned()),
        "CUSTOMS_ADMIN_TOKEN" => Some(ADMIN_TOKEN.to_owned()),
        "CUSTOMS_AUDIT_KEY" => Some("test-audit-key".to_owned()),
        _ => None,
    })
}

/// Writes a config folder from (file name, contents) pairs.
pub fn write_config(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

pub fn load(dir: &Path) -> Config {
    match config::load(dir, &*test_env()) {
        Ok(c) => c,
        Err(e) => panic!("config failed to load:\n{e}"),
    }
}

pub fn load_err(dir: &Path) -> String {
    let env = |name: &str| (name == "CUSTOMS_UPSTREAM_KEY").then(|| UPSTREAM_KEY.to_owned());
    match config::load(dir, &env) {
        Ok(_) => panic!("config loaded but should not have"),
        Err(e) => e.to_string(),
    }
}

pub async fn mock(name: &str) -> MockUpstream {
    let opts = MockOptions { name: name.into(), api_keys: vec![UPSTREAM_KEY.into()], ..MockOptions::default() };
    MockUpstream::start("127.0.0.1:0".parse().unwrap(), opts).await.unwrap()
}

/// The gateway on a config folder, deciding as of the real date.
pub async fn gateway(dir: &Path) -> Server {
    gateway_on(dir, DayClock::Utc).await
}

pub async fn gateway_on(dir: &Path, day: DayClock) -> Server {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Server::start(load(dir), any, any, test_env(), day).await.unwrap()
}

/// The example config served against one mock upstream, deciding as of [`EXAMPLE_DAY`].
pub struct Example {
    pub mock: MockUpstream,
    pub gw: Server,
    pub dir: TempDir,
}

impl Example {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts after `edit` has changed the copied config folder.
    pub async fn start_with(edit: impl FnOnce(&Path)) -> Self {
        Self::start_on(example_day(), edit).await
    }

    /// Starts deciding as of the days `day` gives, after `edit`.
    pub async fn start_on(day: DayClock, edit: impl FnOnce(&Path)) -> Self {
        let mock = mock("example").await;
        let dir = example_config_for(mock.addr);
        edit(dir.path());
        let gw = gateway_on(dir.path(), day).await;
        Self { mock, gw, dir }
    }

    /// The example without the config-folder watcher, for tests that reload explicitly.
    pub async fn start_unwatched() -> Self {
        Self::start_with(|d| edit_file(d, "gateway.toml", "watch = true", "watch = false")).await
    }

    pub fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    pub async fn stop(self) {
        self.gw.shutdown().await;
        self.mock.stop().await;
    }
}

/// Replaces the first occurrence of `from` in a config file; fails if it is not there.
pub fn edit_file(dir: &Path, name: &str, from: &str, to: &str) {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{name} has no {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// POST to the admin API with the test token.
pub async fn admin_post(admin: SocketAddr, path: &str, body: &str) -> Reply {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    send(admin, Method::POST, path, &[("authorization", auth.as_str())], body.to_owned()).await
}

/// Every record of a trail folder, in order.
pub fn trail(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for file in customs::audit::trail_files(dir).unwrap() {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap());
        }
    }
    out
}

/// A streamed body as the gateway forwards it when the client did not ask for usage: with
/// `stream_options.include_usage` added at its end.
pub fn as_forwarded(streamed: &str) -> String {
    let end = streamed.rfind('}').expect("a JSON object");
    format!(r#"{},"stream_options":{{"include_usage":true}}}}"#, &streamed[..end])
}

pub fn stream_body(model: &str) -> String {
    format!(r#"{{"model":"{model}","stream":true,"messages":[{{"role":"user","content":"hi"}}]}}"#)
}

/// Reads frames until `needle` has arrived; fails if it takes longer than `within`.
pub async fn read_until(body: &mut Incoming, seen: &mut String, needle: &str, within: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while !seen.contains(needle) {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {needle:?}; got {seen:?}"))
            .expect("stream ended early")
            .expect("stream error");
        if let Ok(data) = frame.into_data() {
            seen.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
}

/// Starts a stream the mock holds open after its first chunk (until `open_gate`), and returns
/// the body with what has arrived so far.
pub async fn gated_stream(addr: SocketAddr, key: &str) -> (Incoming, String) {
    let auth = format!("Bearer {key}");
    let headers = [("authorization", auth.as_str()), ("x-mock-gate", "1")];
    let res = send_raw(addr, Method::POST, "/v1/chat/completions", &headers, stream_body("gpt-4o-mini")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "chunk 0. ", std::time::Duration::from_secs(10)).await;
    (body, seen)
}

/// A port nothing listens on.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The reason code from the error body, checked against the header.
    pub fn code(&self) -> String {
        let code = self.json()["error"]["code"].as_str().unwrap_or_default().to_owned();
        assert_eq!(self.headers.get("x-customs-reason").and_then(|v| v.to_str().ok()), Some(code.as_str()));
        code
    }
}

/// The upstream's own answer to `body` at `path`, asked directly (the baseline a response through
/// the gateway is compared with).
pub async fn direct(upstream: SocketAddr, path: &str, headers: &[(&str, &str)], body: &'static str) -> Bytes {
    send_raw(upstream, Method::POST, path, headers, body).await.into_body().collect().await.unwrap().to_bytes()
}

/// `body` with the first id starting with `prefix` (`resp_`, `msg_`) replaced wherever it occurs,
/// so two answers that differ only in the ids the upstream issued compare equal.
pub fn without_id(body: &[u8], prefix: &str) -> String {
    let text = String::from_utf8_lossy(body).into_owned();
    let Some(at) = text.find(&format!("\"{prefix}")) else { return text };
    let id = &text[at + 1..];
    let id = &id[..id.find('"').unwrap_or(id.len())];
    text.replace(id, "ID")
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send_raw(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Incoming> {
    let mut req = Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    client().request(req.body(Full::new(body.into())).unwrap()).await.unwrap()
}

pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let res = send_raw(addr, method, path, headers, body).await;
    let (parts, body) = res.into_parts();
    Reply { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

pub fn chat_body(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hello"}}]}}"#)
}

/// The inference call a client of `model` makes, with a bearer key and an optional purpose:
/// POST /v1/chat/completions, or /v1/embeddings for the example's embeddings models and
/// /v1/messages for its Claude model (which serve nothing else).
pub async fn chat(addr: SocketAddr, key: &str, model: &str, purpose: Option<&str>) -> Reply {
    let auth = format!("Bearer {key}");
    let mut headers = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
    if let Some(p) = purpose {
        headers.push(("x-customs-purpose", p));
    }
    if model.starts_with("text-embedding-") {
        let body = format!(r#"{{"model":"{model}","input":"hello"}}"#);
        return send(addr, Method::POST, "/v1/embeddings", &headers, body).await;
    }
    if model.starts_with("claude-") {
        let body = format!(r#"{{"model":"{model}","max_tokens":64,"messages":[{{"role":"user","content":"hello"}}]}}"#);
        headers.push(("anthropic-version", "2023-06-01"));
        return send(addr, Method::POST, "/v1/messages", &headers, body).await;
    }
    send(addr, Method::POST, "/v1/chat/completions", &headers, chat_body(model)).await
}

/// One sample from a Prometheus text page.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

pub async fn scrape(admin: SocketAddr) -> Vec<Sample> {
    let r = send(admin, Method::GET, "/metrics", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(parse_sample).collect()
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => {
            let body = rest.strip_suffix('}').unwrap();
            let mut labels: Vec<(String, String)> = body
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").unwrap();
                    (k.to_owned(), v.trim_end_matches('"').to_owned())
                })
                .collect();
            labels.sort();
            (n.to_owned(), labels)
        }
        None => (series.to_owned(), Vec::new()),
    };
    Sample { name, labels, value: value.parse().unwrap() }
}

/// The value of the series `name` with exactly these labels. A series that is not on the page
/// fails the test: a metric that disappeared must not pass for one that reads 0.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    series(samples, name, labels).unwrap_or_else(|| {
        let names: std::collections::BTreeSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
        panic!("no series {name}{labels:?} on the metrics page; its series names: {names:?}")
    })
}

/// The value of the series `name` with exactly these labels, if it is on the page.
pub fn series(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(String, String)> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    want.sort();
    samples.iter().find(|s| s.name == name && s.labels == want).map(|s| s.value)
}

/// `customs serve` as a child process, with the addresses it printed.
pub struct Serving {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

/// `customs serve` on `dir` through `command` (the binary, or a launcher in front of it, with any
/// environment of the caller's), with `extra` arguments after the subcommand's own; reads the
/// addresses from its first line.
pub fn serve_with(dir: &Path, mut command: std::process::Command, extra: &[&str]) -> Serving {
    use std::io::BufRead;
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--config"])
        .arg(dir)
        .args(extra)
        .env("CUSTOMS_UPSTREAM_KEY", UPSTREAM_KEY)
        .env("CUSTOMS_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    // "customs listening on http://A (admin http://B)"
    let mut addrs = line
        .split("http://")
        .skip(1)
        .map(|s| s.split(|c: char| c == ')' || c.is_whitespace()).next().unwrap().parse::<SocketAddr>().unwrap());
    let (addr, admin) = (addrs.next().unwrap(), addrs.next().unwrap());
    Serving { child, addr, admin }
}
