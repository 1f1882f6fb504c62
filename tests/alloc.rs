//! The decision path allocates nothing: authentication, the policy decision and the choice of
//! endpoints on the 10,000-tenant, 1,000-model generated config, and on a provider-scale one from
//! `customs generate` (20,000 tenants; `CUSTOMS_ALLOC_TENANTS=1000000` for a million, in release),
//! counted by a tracking allocator. Its own test binary, because the allocator is process-wide.
#![expect(clippy::unwrap_used, reason = "tests fail loudly and at once")]

#[path = "../benches/support/large_config.rs"]
mod large_config;

use std::hint::black_box;

use customs::auth;
use customs::policy::{Day, Policy, Verdict};
use http::{HeaderMap, HeaderValue};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Decides every request ten times under the tracking profiler: heap blocks allocated, and how
/// many requests were allowed and denied.
fn allocations(policy: &Policy, requests: &[(HeaderMap, String, Option<&str>)]) -> (u64, usize, usize) {
    let today = Day::today();
    let profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get();
    let (mut allowed, mut denied) = (0, 0);
    for _ in 0..10 {
        for (headers, model, purpose) in requests {
            let tenant = auth::authenticate(policy.keys(), headers, None).unwrap();
            match black_box(policy.decide(tenant, model, *purpose, today)).verdict {
                Verdict::Allow { endpoints } => {
                    allowed += 1;
                    black_box(policy.endpoint(endpoints[0]));
                }
                Verdict::Deny(_) => denied += 1,
            }
        }
    }
    let after = dhat::HeapStats::get();
    drop(profiler);
    (after.total_blocks - before.total_blocks, allowed, denied)
}

fn bearer(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_str(&format!("Bearer {key}")).unwrap());
    h
}

/// One test, so the profiler (which counts every thread) never sees one config's loading while
/// it counts another's decisions.
#[test]
fn decision_path_allocates_nothing() {
    on_large_config();
    on_a_provider_scale_config();
}

fn on_a_provider_scale_config() {
    let tenants: usize = std::env::var("CUSTOMS_ALLOC_TENANTS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::TempDir::new().unwrap();
    let out = dir.path().join("config");
    let opts = customs::generate::Options {
        from: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
        tenants,
        list_entries: 500,
        files: 0,
    };
    customs::generate::write(&out, &opts).unwrap();
    let policy = customs::config::load(&out, &|_| Some("test".into())).unwrap().policy;
    assert!(policy.tenants().len() > tenants);
    let models = ["gpt-4o", "gpt-4o-mini", "frontier-x-preview", "claude-3-5-sonnet", "no-such-model"];
    // Tenants from all over the table, the last ones included.
    let requests: Vec<(HeaderMap, String, Option<&str>)> = (0..200)
        .map(|i| {
            let t = (tenants - 1 - i * 4999 % tenants).min(tenants - 1);
            (
                bearer(&customs::generate::key(t)),
                models[i % models.len()].to_owned(),
                (i % 3 == 0).then_some("research"),
            )
        })
        .collect();
    let (blocks, allowed, denied) = allocations(&policy, &requests);
    assert!(allowed > 0 && denied > 0, "both paths are exercised: {allowed} allowed, {denied} denied");
    assert_eq!(blocks, 0, "heap allocations on the decision path");
}

fn on_large_config() {
    let dir = tempfile::TempDir::new().unwrap();
    large_config::write(dir.path(), "127.0.0.1:1").unwrap();
    let config = customs::config::load(dir.path(), &|_| None).unwrap();
    let policy = config.policy;
    assert_eq!(policy.tenants().len(), large_config::TENANTS);

    let requests: Vec<(HeaderMap, String, Option<&str>)> = (0..200)
        .map(|i| {
            let mut h = HeaderMap::new();
            let key = format!("Bearer {}", large_config::key(i * 37 % large_config::TENANTS));
            h.insert("authorization", HeaderValue::from_str(&key).unwrap());
            let model = if i % 3 == 0 {
                format!("model-{:04}-latest", i * 7 % 1000)
            } else {
                large_config::model_id(i * 13 % 1000)
            };
            (h, model, (i % 4 == 0).then_some("research"))
        })
        .collect();
    let (blocks, allowed, denied) = allocations(&policy, &requests);
    assert!(allowed > 0 && denied > 0, "both paths are exercised: {allowed} allowed, {denied} denied");
    assert_eq!(blocks, 0, "heap allocations on the decision path");
}
