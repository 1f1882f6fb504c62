//! Micro-benchmarks of the request path's pieces on the example config: authentication (key
#![expect(clippy::panic, reason = "a benchmark without its config has nothing to measure")]
//! digest and lookup), the body peek, and the policy decision.

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use customs::policy::{Day, Policy};
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

    c.bench_function("auth/bearer", |b| b.iter(|| auth::authenticate(policy.keys(), black_box(&headers))));

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
    let today = Day::today();
    c.bench_function("policy/decide_allow", |b| {
        b.iter(|| policy.decide(black_box(tenant), black_box("llama-3.1-8b-instruct"), Some("translation"), today))
    });
    c.bench_function("policy/decide_deny", |b| {
        b.iter(|| policy.decide(black_box(tenant), black_box("gpt-4o"), None, today))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
