//! The policy's day is the server's to fix: served as of a given day, the gateway answers what the
//! example's expectations say for that day, on both sides of its staged 2027-01-01 change and of
//! demo-cn's declaration expiry, whatever the date the suite runs on.

use std::collections::BTreeMap;

use customs::policy::expect::Expected;
use customs::policy::{Day, DayClock};
use http::{Method, StatusCode};

use crate::support::{DEMO_KEYS, EXAMPLE_DAY, Example, chat, example_dir, load, send};

/// A day decades after every date the example names: expectations that pin no day must hold on
/// it too, since `customs check` evaluates them on the day it runs.
const FAR_FUTURE: &str = "2041-06-15";

fn day(s: &str) -> Day {
    Day::parse(s).unwrap()
}

fn key_of(tenant: &str) -> &'static str {
    DEMO_KEYS.iter().find(|(t, _)| *t == tenant).map(|(_, k)| *k).unwrap()
}

#[tokio::test]
async fn served_as_of_each_expectations_day_the_gateway_answers_what_expectations_toml_says() {
    let config = load(&example_dir());
    let policy = &config.policy;
    // Every expectation, grouped by the day it is decided for; undated ones on the suite's day
    // and on a far later one.
    let mut by_day: BTreeMap<Day, Vec<&customs::policy::expect::Expectation>> = BTreeMap::new();
    for e in &config.expectations {
        let days = match e.at {
            Some(d) => vec![d],
            None => vec![day(EXAMPLE_DAY), day(FAR_FUTURE)],
        };
        for d in days {
            by_day.entry(d).or_default().push(e);
        }
    }
    let days: Vec<String> = by_day.keys().map(ToString::to_string).collect();
    assert!(days.contains(&"2026-12-31".to_owned()) && days.contains(&"2027-01-01".to_owned()), "{days:?}");
    let mut served = 0;
    for (d, expectations) in &by_day {
        let ex = Example::start_on(DayClock::Fixed(*d), |_| {}).await;
        for e in expectations {
            let tenant = &*policy.tenant(e.tenant).unwrap().id;
            let r = chat(ex.gw.addr, key_of(tenant), &e.model, e.purpose.as_deref()).await;
            let what = format!("{tenant} {} {:?} on {d} (expectations.toml:{})", e.model, e.purpose, e.line);
            match e.expected {
                Expected::Allow => assert_eq!(r.status, StatusCode::OK, "{what}: {:?}", r.body),
                Expected::Deny(denial) => assert_eq!(r.code(), denial.code(), "{what}"),
            }
            served += 1;
        }
        ex.stop().await;
    }
    assert!(served > config.expectations.len(), "undated expectations were served on two days: {served}");
}

#[tokio::test]
async fn the_staged_change_binds_from_its_first_day_in_answers_and_model_lists() {
    let models = |ex: &Example| {
        let addr = ex.gw.addr;
        async move {
            let r = send(addr, Method::GET, "/v1/models", &[("authorization", "Bearer sk-demo-de")], "").await;
            assert_eq!(r.status, StatusCode::OK);
            r.json()["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let before = Example::start_on(DayClock::Fixed(day("2026-12-31")), |_| {}).await;
    assert_eq!(chat(before.gw.addr, "sk-demo-de", "gpt-4o-mini", None).await.status, StatusCode::OK);
    assert!(models(&before).await.contains(&"gpt-4o-mini".to_owned()));
    before.stop().await;

    let after = Example::start_on(DayClock::Fixed(day("2027-01-01")), |_| {}).await;
    assert_eq!(chat(after.gw.addr, "sk-demo-de", "gpt-4o-mini", None).await.code(), "end_use_declaration_required");
    let listed = models(&after).await;
    assert!(!listed.contains(&"gpt-4o-mini".to_owned()), "{listed:?}");
    assert!(listed.contains(&"text-embedding-3-small".to_owned()), "below both lines: {listed:?}");
    after.stop().await;
}

#[tokio::test]
async fn the_real_clock_decides_as_of_today() {
    let ex = Example::start_on(DayClock::Utc, |_| {}).await;
    let snapshot = ex.gw.shared.snapshot.load_full();
    let tenant = snapshot.policy.tenant_by_id("demo-de").unwrap();
    // The answer this test expects moves with the calendar; the one the policy gives for today
    // is what the server must give.
    let today = snapshot.policy.decide(tenant, "gpt-4o-mini", None, Day::today());
    let r = chat(ex.gw.addr, "sk-demo-de", "gpt-4o-mini", None).await;
    match today.verdict {
        customs::policy::Verdict::Allow { .. } => assert_eq!(r.status, StatusCode::OK),
        customs::policy::Verdict::Deny(d) => assert_eq!(r.code(), d.code()),
    }
    ex.stop().await;
}
