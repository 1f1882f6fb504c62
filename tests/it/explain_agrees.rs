//! `customs explain` and the server never disagree: every tenant x model of the example config,
//! asked both ways.

use std::process::Command;

use http::StatusCode;

use crate::support::{DEMO_KEYS, EXAMPLE_DAY, Example, chat, example_dir};

fn explain(tenant: &str, model: &str, purpose: Option<&str>) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_customs"));
    cmd.args(["explain", "--json", "--at", EXAMPLE_DAY, "--tenant", tenant, "--model", model, "--config"])
        .arg(example_dir());
    if let Some(p) = purpose {
        cmd.args(["--purpose", p]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn explain_says_the_server_refuses_a_malformed_purpose() {
    let ex = Example::start().await;
    for purpose in ["", "Customer-Support", "customer support", "legal\ttranslation"] {
        let r = chat(ex.gw.addr, "sk-demo-us", "gpt-4o-mini", Some(purpose)).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request".to_owned()), "{purpose:?}");
        let e = explain("demo-us", "gpt-4o-mini", Some(purpose));
        assert_eq!(e["status"], 400, "{purpose:?}: {e}");
        assert_eq!(e["reason"], "invalid_request", "{purpose:?}");
        assert_eq!(e["decision"], "deny");
        assert_eq!(e["rule"], serde_json::Value::Null);
        assert_eq!(e["invalid_request"], r.json()["error"]["message"], "{purpose:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_customs"))
        .args(["explain", "--at", EXAMPLE_DAY, "--tenant", "demo-us", "--model", "gpt-4o-mini"])
        .args(["--purpose", "Customer-Support", "--config"])
        .arg(example_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("DENY invalid_request (HTTP 400)\n"), "{text}");
    assert!(text.contains("the server refuses the request before any policy"), "{text}");
    ex.stop().await;
}

#[tokio::test]
async fn explain_and_server_agree_on_every_tenant_and_model() {
    let ex = Example::start().await;
    let snapshot = ex.gw.shared.snapshot.load_full();
    let policy = &snapshot.policy;
    let tenants: Vec<String> = policy.tenants().iter().map(|t| t.id.to_string()).collect();
    let mut keyed: Vec<String> = DEMO_KEYS.iter().map(|(t, _)| (*t).to_owned()).collect();
    keyed.sort();
    let mut sorted = tenants.clone();
    sorted.sort();
    assert_eq!(sorted, keyed, "every example tenant needs a documented demo key");

    let mut names: Vec<String> = policy
        .models()
        .iter()
        .flat_map(|m| std::iter::once(m.id.to_string()).chain(m.aliases.iter().map(|a| a.to_string())))
        .collect();
    names.push("not-a-model".into());
    let mut compared = 0;
    let mut codes = std::collections::BTreeSet::new();
    for (tenant, key) in DEMO_KEYS {
        for model in &names {
            for purpose in [None, Some("translation")] {
                let e = explain(tenant, model, purpose);
                let r = chat(ex.gw.addr, key, model, purpose).await;
                let what = format!("{tenant} {model} {purpose:?}");
                if r.status == StatusCode::TOO_MANY_REQUESTS {
                    // Rate limits are not policy: explain answers what the policy allows.
                    assert_eq!(e["decision"], "allow", "{what}: {e}");
                    assert_eq!(r.code(), "rate_limit_exceeded", "{what}");
                    codes.insert("allowed".to_owned());
                    compared += 1;
                    continue;
                }
                assert_eq!(e["status"].as_u64(), Some(u64::from(r.status.as_u16())), "{what}: {e}");
                if r.status == StatusCode::OK {
                    assert_eq!(e["decision"], "allow", "{what}");
                    assert!(!e["endpoints"].as_array().unwrap().is_empty(), "{what}");
                } else {
                    assert_eq!(e["decision"], "deny", "{what}");
                    assert_eq!(e["reason"].as_str(), Some(r.code().as_str()), "{what}");
                }
                codes.insert(e["reason"].as_str().unwrap_or("allowed").to_owned());
                compared += 1;
            }
        }
    }
    assert_eq!(compared, DEMO_KEYS.len() * names.len() * 2);
    // The example config exercises every policy outcome.
    let all: std::collections::BTreeSet<String> =
        customs::policy::Denial::ALL.iter().map(|d| d.code().to_owned()).chain(["allowed".to_owned()]).collect();
    assert_eq!(codes, all);
    ex.stop().await;
}

/// What `customs explain ARGS` prints on the example config, which README.md must show as is.
fn readme_shows_explain(args: &[&str], must_name: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_customs"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["explain", "--config", "config"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "explain failed: {}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    // An empty or truncated answer is contained in any README: require the whole decision.
    for name in must_name {
        assert!(printed.contains(name), "{printed}");
    }
    assert!(printed.lines().count() >= 4, "{printed}");
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains(&printed), "README.md's explain example is stale; it should read:\n{printed}");
}

#[test]
fn readme_explain_example_is_what_explain_prints() {
    readme_shows_explain(
        &["--tenant", "demo-cn", "--model", "gpt-4o", "--at", "2026-11-28"],
        &["demo-cn", "gpt-4o", "compute_threshold_exceeded"],
    );
}

/// README's step 9: a stated purpose against an expired declaration, where none is required.
#[test]
fn readme_explains_a_purpose_against_an_expired_declaration() {
    readme_shows_explain(
        &[
            "--tenant",
            "demo-limited",
            "--model",
            "llama-3.1-8b-instruct",
            "--purpose",
            "customer-support",
            "--at",
            "2026-07-01",
        ],
        &["demo-limited", "end_use_declaration_expired", "jurisdiction us"],
    );
}
