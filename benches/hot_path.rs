//! Micro-benchmarks of the request path's pieces on the example config: authentication (key
//! digest and lookup), the body peek, and the policy decision. A run ends by writing the medians
//! of what it measured, with the commit and machine, to `target/criterion-summary.json`: the file
//! BENCHMARKS.md's figures are copied from and committed beside the load bench's results.
#![expect(clippy::panic, reason = "a benchmark without its config has nothing to measure")]

use std::hint::black_box;
use std::path::Path;

#[path = "support/large_config.rs"]
mod large_config;
#[path = "support/machine.rs"]
mod machine;
#[path = "support/scenario.rs"]
mod scenario;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;

use bytes::Bytes;

use customs::config::LimitSettings;
use customs::limits::{Demand, LimitSpec, Limiter};
use customs::policy::{Day, DayClock, Policy, Verdict};
use customs::reason::Reason;
use customs::snapshot::Snapshot;
use customs::telemetry::{Metrics, TokenKind};
use customs::usage::{self, UsageScanner};
use customs::{auth, config, peek};
use http::{HeaderMap, HeaderValue};

fn example_policy() -> Policy {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    match config::load(&dir, &|_| Some("bench".to_owned())) {
        Ok(c) => c.policy,
        Err(e) => panic!("example config: {e}"),
    }
}

fn chat_body(size: usize) -> Vec<u8> {
    let head = r#"{"model":"gpt-4o","stream":true,"max_tokens":256,"messages":[{"role":"user","content":""#;
    let tail = r#""}]}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "a".repeat(pad)).into_bytes()
}

fn bench(c: &mut Criterion) {
    let policy = example_policy();
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer sk-demo-cn"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));

    c.bench_function("auth/bearer", |b| b.iter(|| auth::authenticate(policy.keys(), black_box(&headers), None)));

    let mut g = c.benchmark_group("peek");
    for size in [1024, 100 * 1024, 1024 * 1024] {
        let body = chat_body(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(format!("{}KiB", size / 1024)), &body, |b, body| {
            b.iter(|| peek::peek(black_box(body)).map(|p| p.stream))
        });
    }
    g.finish();

    let tenant = policy.tenant_by_id("demo-cn").unwrap_or(0);
    // demo-cn's declaration expires: a fixed day inside it keeps "allow" an allow on any date.
    let today = Day::from_ymd(2026, 11, 28).unwrap_or(Day(0));
    assert!(
        matches!(
            policy.decide(tenant, "llama-3.1-8b-instruct", Some("translation"), today).verdict,
            Verdict::Allow { .. }
        ),
        "decide_allow must measure an allowed decision"
    );
    c.bench_function("policy/decide_allow", |b| {
        b.iter(|| policy.decide(black_box(tenant), black_box("llama-3.1-8b-instruct"), Some("translation"), today))
    });
    c.bench_function("policy/decide_deny", |b| {
        b.iter(|| policy.decide(black_box(tenant), black_box("gpt-4o"), None, today))
    });
}

/// The per-request cost of limits and metrics, as the gateway pays it for an allowed request:
/// admit against every limit kind, settle against the reported usage, count the request, its
/// tokens and FLOPs, observe the durations.
fn bench_limits_and_metrics(c: &mut Criterion) {
    let metrics = match Metrics::new() {
        Ok(m) => Arc::new(m),
        Err(e) => panic!("{e}"),
    };
    let snapshot = Snapshot::new(example_policy(), &LimitSettings::default(), &metrics, Default::default());
    let tenant = snapshot.policy.tenant_by_id("demo-cn").unwrap_or(0);
    let model = 4;
    let limiter = Arc::new(Limiter::new(LimitSpec {
        requests_per_minute: NonZeroU32::new(u32::MAX),
        request_burst: None,
        tokens_per_minute: NonZeroU64::new(u64::MAX / 1_000_000_000),
        max_concurrent: NonZeroU32::new(1_000_000),
        daily_inference_flops: Some(1e30),
    }));
    let demand = Demand { tokens: 1_200, flops_per_token: Some(1.6e10), day: Day::today().0 };

    c.bench_function("limits/admit_and_settle", |b| {
        b.iter(|| {
            let (ticket, status) = limiter.admit(black_box(demand)).ok()?;
            black_box(status);
            ticket.settle(black_box(180), std::time::Instant::now())
        })
    });
    let m = &snapshot.metrics;
    c.bench_function("metrics/allowed_request", |b| {
        b.iter(|| {
            m.in_flight.inc();
            m.request(Some(tenant), Some(model), Reason::Allowed);
            m.tokens(Some(tenant), Some(model), TokenKind::Prompt, 150);
            m.tokens(Some(tenant), Some(model), TokenKind::Completion, 30);
            m.flops(Some(tenant), 2.88e12);
            m.overhead.observe(black_box(0.000_03));
            m.duration(Reason::Allowed).observe(black_box(0.2));
            m.in_flight.dec();
        })
    });
    c.bench_function("limits_and_metrics/allowed_request", |b| {
        b.iter(|| {
            m.in_flight.inc();
            let (ticket, _) = limiter.admit(black_box(demand)).ok()?;
            m.request(Some(tenant), Some(model), Reason::Allowed);
            let flops = ticket.settle(black_box(180), std::time::Instant::now());
            m.tokens(Some(tenant), Some(model), TokenKind::Prompt, 150);
            m.tokens(Some(tenant), Some(model), TokenKind::Completion, 30);
            m.flops(Some(tenant), flops.unwrap_or_default());
            m.overhead.observe(black_box(0.000_03));
            m.duration(Reason::Allowed).observe(black_box(0.2));
            m.in_flight.dec();
            Some(())
        })
    });
}

/// What the audit writer thread does per forwarded request: render its decision line and its
/// outcome line (names, rule, endpoint read from the snapshot) and seal each into the hash chain.
fn bench_audit(c: &mut Criterion) {
    use customs::audit::{Charged, DecisionRecord, Event, Outcome, OutcomeRecord, RuleRef, Sealer};
    use customs::request_id::RequestIdBuf;
    use customs::usage::Usage;

    let metrics = match Metrics::new() {
        Ok(m) => Arc::new(m),
        Err(e) => panic!("{e}"),
    };
    let snapshot = Arc::new(Snapshot::new(example_policy(), &LimitSettings::default(), &metrics, Default::default()));
    let policy = &snapshot.policy;
    let tenant = policy.tenant_by_id("demo-us");
    let decision = policy.decide(tenant.unwrap_or(0), "gpt-4o", None, Day::today());
    let event = Event::Decision(Box::new(DecisionRecord {
        time: std::time::SystemTime::now(),
        request_id: RequestIdBuf::new(b"c6a857d2744a-0000000000000000"),
        snapshot: snapshot.clone(),
        tenant,
        model: decision.model,
        requested_model: None,
        purpose: None,
        operation: Some("chat"),
        reason: Reason::Allowed,
        status: None,
        rule: decision.rule.map(RuleRef::Policy),
        latency: std::time::Duration::from_micros(3017),
    }));
    let outcome = Event::Outcome(Box::new(OutcomeRecord {
        time: std::time::SystemTime::now(),
        request_id: RequestIdBuf::new(b"c6a857d2744a-0000000000000000"),
        decision_seq: Some(7),
        snapshot: snapshot.clone(),
        tenant,
        model: decision.model,
        outcome: Outcome::Completed,
        status: Some(200),
        endpoint: Some(0),
        usage: Some(Usage { prompt_tokens: 17, completion_tokens: 5 }),
        charged: Some(Charged { tokens: 22, metered: true }),
        flops: None,
        latency: std::time::Duration::from_micros(3017),
    }));
    let sealer = Sealer::new(None);
    let mut prev = [b'0'; 64];
    let mut batch = Vec::with_capacity(4096);
    for (name, event) in [("audit/seal_decision", &event), ("audit/seal_outcome", &outcome)] {
        c.bench_function(name, |b| {
            b.iter(|| {
                batch.clear();
                event.write_body(black_box(7), std::str::from_utf8(&prev).unwrap_or_default(), &mut batch);
                sealer.seal_in_place(&mut batch, 0, &mut prev);
                batch.len()
            })
        });
    }
}

/// Authentication, decision and endpoint choice on the generated 10,000-tenant, 1,000-model,
/// 250-jurisdiction config.
fn bench_large_policy(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("customs-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    if let Err(e) = large_config::write(&dir, "127.0.0.1:1") {
        panic!("writing the generated config: {e}");
    }
    let policy = match config::load(&dir, &|_| None) {
        Ok(c) => c.policy,
        Err(e) => panic!("{e}"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let today = Day::today();
    // The first allowed and the first denied (tenant, model) pairs, found by asking the policy.
    let pick = |want_allow: bool| {
        (0..large_config::TENANTS)
            .flat_map(|t| (0..large_config::MODELS).step_by(7).map(move |m| (t, m)))
            .find(|&(t, m)| {
                let d = policy.decide(t as u32, &large_config::model_id(m), None, today);
                matches!(d.verdict, customs::policy::Verdict::Allow { .. }) == want_allow
            })
            .unwrap_or((0, 0))
    };
    let mut g = c.benchmark_group("policy_10k");
    for (name, (t, m)) in [("allow", pick(true)), ("deny", pick(false))] {
        let mut headers = HeaderMap::new();
        let bearer = format!("Bearer {}", large_config::key(t));
        headers.insert("authorization", HeaderValue::from_str(&bearer).unwrap_or(HeaderValue::from_static("x")));
        let model = large_config::model_id(m);
        g.bench_function(BenchmarkId::new("auth_decide_route", name), |b| {
            b.iter(|| {
                let tenant = auth::authenticate(policy.keys(), black_box(&headers), None).ok()?;
                match policy.decide(tenant, black_box(&model), None, today).verdict {
                    customs::policy::Verdict::Allow { endpoints } => {
                        policy.endpoint(*endpoints.first()?).map(|e| e.model)
                    }
                    customs::policy::Verdict::Deny(_) => None,
                }
            })
        });
        g.bench_function(BenchmarkId::new("decide", name), |b| {
            b.iter(|| policy.decide(black_box(t as u32), black_box(&model), None, today))
        });
    }
    g.finish();
}

/// Authentication, decision and endpoint choice on a generated provider-scale config (the example
/// folder plus `CUSTOMS_BENCH_TENANTS` tenants from `customs generate`, screening on). Skipped
/// unless that variable is set: generating and loading a million tenants takes a while.
fn bench_provider_policy(c: &mut Criterion) {
    let Some(tenants) = std::env::var("CUSTOMS_BENCH_TENANTS").ok().and_then(|n| n.parse::<usize>().ok()) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("customs-bench-provider-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = customs::generate::Options {
        from: Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
        tenants,
        list_entries: 12_000,
        files: 0,
    };
    if let Err(e) = customs::generate::write(&dir, &opts) {
        panic!("writing the generated config: {e}");
    }
    let policy = match config::load(&dir, &|_| Some("bench".into())) {
        Ok(c) => c.policy,
        Err(e) => panic!("{e}"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let today = Day::today();
    let models = ["gpt-4o", "gpt-4o-mini", "frontier-x-preview", "llama-3.1-405b-instruct"];
    // Tenants far into the file, the first allowed and first denied pair found by asking.
    let pick = |want_allow: bool| {
        (tenants * 9 / 10..tenants)
            .flat_map(|i| models.iter().map(move |m| (i, *m)))
            .find(|&(i, m)| {
                let t = policy.tenant_by_id(&customs::generate::tenant_id(i)).unwrap_or(0);
                matches!(policy.decide(t, m, None, today).verdict, customs::policy::Verdict::Allow { .. }) == want_allow
            })
            .unwrap_or((0, "gpt-4o"))
    };
    let mut g = c.benchmark_group(format!("policy_{}k", tenants / 1000));
    for (name, (i, model)) in [("allow", pick(true)), ("deny", pick(false))] {
        let mut headers = HeaderMap::new();
        let bearer = format!("Bearer {}", customs::generate::key(i));
        headers.insert("authorization", HeaderValue::from_str(&bearer).unwrap_or(HeaderValue::from_static("x")));
        g.bench_function(BenchmarkId::new("auth_decide_route", name), |b| {
            b.iter(|| {
                let tenant = auth::authenticate(policy.keys(), black_box(&headers), None).ok()?;
                match policy.decide(tenant, black_box(model), None, today).verdict {
                    customs::policy::Verdict::Allow { endpoints } => {
                        policy.endpoint(*endpoints.first()?).map(|e| e.model)
                    }
                    customs::policy::Verdict::Deny(_) => None,
                }
            })
        });
    }
    g.finish();
}

/// The whole request path in-process: a request built in memory goes through the service stack
/// (request id, route, auth, peek, policy, limits, metrics, forwarding, metering, the audit
/// record) to the mock upstream, over loopback or in memory, and the response body is read to
/// the end. No client socket; everything on one current-thread runtime.
fn bench_request_path(c: &mut Criterion) {
    use customs::mock::{MockOptions, MockUpstream};
    use customs::proxy::Upstreams;
    use customs::server::Server;
    use http_body_util::{BodyExt, Full};
    use tower::ServiceExt;

    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("{e}"),
    };
    for (name, in_memory) in
        [("request_path/in_process_allowed", false), ("request_path/in_memory_upstream_allowed", true)]
    {
        let (server, mock, _dir) = rt.block_on(async {
            let opts = MockOptions { record: false, ..MockOptions::default() };
            let (mock, upstream_addr) = if in_memory {
                (None, "127.0.0.1:8081".to_owned())
            } else {
                let mock = MockUpstream::start(([127, 0, 0, 1], 0).into(), opts.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let addr = mock.addr.to_string();
                (Some(mock), addr)
            };
            let dir = tempfile::TempDir::new().unwrap_or_else(|e| panic!("{e}"));
            scenario::write(dir.path(), &upstream_addr, false).unwrap_or_else(|e| panic!("{e}"));
            let config = config::load(dir.path(), &|_| Some("bench".into())).unwrap_or_else(|e| panic!("{e}"));
            let upstreams = if in_memory {
                Upstreams::in_memory(MockUpstream::in_memory(opts), &config.settings.upstream)
            } else {
                Upstreams::new(&config.settings.upstream).unwrap_or_else(|e| panic!("{e}"))
            };
            let any = ([127, 0, 0, 1], 0).into();
            let env = Arc::new(|_: &str| Some("bench".to_owned()));
            let server = Server::start_with(config, any, any, env, DayClock::Utc, upstreams)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (server, mock, dir)
        });
        let stack = customs::stack::build(server.shared.clone(), Arc::new(customs::request_id::Generator::new()));
        let body = Bytes::from_static(
            br#"{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"user","content":"hello"}]}"#,
        );
        c.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let stack = stack.clone();
                let req = http::Request::post("/v1/chat/completions")
                    .header("authorization", "Bearer sk-bench-load")
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .unwrap_or_default();
                async move {
                    let res = stack.oneshot(req).await.ok()?;
                    assert_eq!(res.status(), http::StatusCode::OK);
                    res.into_body().collect().await.ok().map(|b| b.to_bytes().len())
                }
            })
        });
        rt.block_on(async {
            server.shutdown().await;
            if let Some(mock) = mock {
                mock.stop().await;
            }
        });
    }
}

/// A stream as OpenAI-compatible upstreams send it: five content chunks and a finishing one, each
/// with `"usage":null` when usage was asked for, then the usage chunk and `[DONE]`.
fn sse_stream(asked: bool) -> Vec<Bytes> {
    let head = r#"data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1764547200,"model":"gpt-4o","choices":["#;
    let close = if asked { r#","usage":null}"# } else { "}" };
    let mut events: Vec<Bytes> = (0..6)
        .map(|i| {
            let choice = format!(r#"{{"index":0,"delta":{{"content":"token {i} "}},"finish_reason":null}}"#);
            Bytes::from(format!("{head}{choice}]{close}\n\n"))
        })
        .collect();
    if asked {
        let usage = r#"],"usage":{"prompt_tokens":17,"completion_tokens":6,"total_tokens":23}}"#;
        events.push(Bytes::from(format!("{head}{usage}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// What metering a stream costs: reading usage as the client's own chunks pass, against asking for
/// it (the body edited in place) and hiding it again from a client that did not ask.
fn bench_usage(c: &mut Criterion) {
    let body = Bytes::from(chat_body(1024));
    c.bench_function("usage/ask_1KiB", |b| {
        b.iter(|| {
            let peeked = peek::peek(black_box(&body)).ok();
            peeked.map(|p| usage::ask(&body, &p))
        })
    });
    for (name, asked, hide) in [("usage/stream_read", true, false), ("usage/stream_hide", true, true)] {
        let events = sse_stream(asked);
        c.bench_function(name, |b| {
            b.iter(|| {
                let mut scanner = UsageScanner::for_content_type(Some(b"text/event-stream"), hide);
                let mut out = 0;
                for e in &events {
                    out += scanner.pass(e.clone()).len();
                }
                (out, scanner.finish())
            })
        });
    }
}

criterion_group!(
    benches,
    bench,
    bench_limits_and_metrics,
    bench_audit,
    bench_large_policy,
    bench_provider_policy,
    bench_request_path,
    bench_usage
);

/// What `criterion_main!` does, then the summary of this run.
fn main() {
    let started = std::time::SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    if let Err(e) = write_summary(started) {
        eprintln!("the criterion summary was not written: {e}");
    }
}

/// Every benchmark this run measured (criterion's `new/estimates.json` written since `started`):
/// median and mean in nanoseconds, with the median's 95% confidence interval.
fn write_summary(started: std::time::SystemTime) -> std::io::Result<()> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), std::path::PathBuf::from);
    let mut found = Vec::new();
    estimates(&target.join("criterion"), &mut found)?;
    let mut benchmarks = serde_json::Map::new();
    for dir in found {
        let modified = std::fs::metadata(dir.join("estimates.json"))?.modified()?;
        if modified < started {
            continue;
        }
        let read = |name: &str| -> std::io::Result<serde_json::Value> {
            serde_json::from_slice(&std::fs::read(dir.join(name))?).map_err(std::io::Error::other)
        };
        let (id, est) = (read("benchmark.json")?, read("estimates.json")?);
        let Some(id) = id["full_id"].as_str() else { continue };
        let median = &est["median"];
        benchmarks.insert(
            id.to_owned(),
            serde_json::json!({
                "median_ns": median["point_estimate"],
                "median_ci95_ns": [median["confidence_interval"]["lower_bound"], median["confidence_interval"]["upper_bound"]],
                "mean_ns": est["mean"]["point_estimate"],
            }),
        );
    }
    let summary = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "commit": machine::commit(),
        "machine": machine::machine(),
        "fdatasync_ms": machine::fdatasync_ms(),
        "benchmarks": benchmarks,
    });
    let out = target.join("criterion-summary.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&summary).map_err(std::io::Error::other)?)?;
    eprintln!("wrote {} ({} benchmarks)", out.display(), summary["benchmarks"].as_object().map_or(0, |b| b.len()));
    Ok(())
}

/// The `new/` folders under criterion's output, where each benchmark's latest estimates are.
fn estimates(dir: &Path, found: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") && path.join("estimates.json").exists() {
            found.push(path);
        } else {
            estimates(&path, found)?;
        }
    }
    Ok(())
}
