//! The decision path allocates nothing: authentication, the policy decision and the choice of
//! endpoints on the 10,000-tenant generated config, counted by a tracking allocator. Its own test
//! binary, because the allocator is process-wide.

#[path = "../benches/support/large_config.rs"]
mod large_config;

use std::hint::black_box;

use customs::auth;
use customs::policy::{Day, Verdict};
use http::{HeaderMap, HeaderValue};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[test]
fn decision_on_large_config_allocates_nothing() {
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
    let today = Day::today();

    let profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get();
    let (mut allowed, mut denied) = (0, 0);
    for _ in 0..10 {
        for (headers, model, purpose) in &requests {
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
    assert!(allowed > 0 && denied > 0, "both paths are exercised: {allowed} allowed, {denied} denied");
    assert_eq!(after.total_blocks - before.total_blocks, 0, "heap allocations on the decision path");
}
