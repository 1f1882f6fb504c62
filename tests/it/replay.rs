//! `customs replay` on the trail of real requests: the gateway on the example config records
//! them, the real binary replays the trail under an edited copy of the config, and the flips,
//! counts, layouts and exit codes are exactly what the edits make.

use std::path::Path;
use std::process::{Command, Output};

use customs::policy::DayClock;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Example, chat, edit_file, example_copy, example_dir, send, trail};

fn replay(audit: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_customs"))
        .arg("replay")
        .arg("--audit")
        .arg(audit)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", String::from_utf8_lossy(&out.stdout), stderr(out)))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Removes one `[[tenants]]` block from a config folder's tenants.toml.
fn remove_tenant(dir: &Path, id: &str) {
    let path = dir.join("tenants.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(&format!("[[tenants]]\nid = \"{id}\"\n")).unwrap();
    let end = text[start + 1..].find("[[tenants]]").map_or(text.len(), |i| start + 1 + i);
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
}

/// The times of the trail's decisions for `tenant` and `model`, in order.
fn decision_times(records: &[Value], tenant: &str, model: &str) -> Vec<String> {
    let mut times: Vec<String> = records
        .iter()
        .filter(|r| r["type"] == "decision" && r["tenant"] == tenant && r["model"] == model)
        .map(|r| r["time"].as_str().unwrap().to_owned())
        .collect();
    times.sort();
    times
}

#[tokio::test]
async fn replay_real_trail_lists_flips_both_ways_counts_and_exits_by_them() {
    // The gateway decides as of the UTC day each request arrives on, which is the day of its
    // record's time, the day replay decides it again as of. (EXAMPLE_DAY's fixed clock would
    // leave the trail's times on the real date, which the record cannot tell apart.) Every
    // answer below is the same whatever the date: the staged change and the dated declarations
    // do not decide these pairs, and the edited copy dates demo-cn's declaration wide open.
    let ex = Example::start_on(DayClock::Utc, |_| {}).await;
    let addr = ex.gw.addr;
    let traffic = [
        ("sk-demo-us", "gpt-4o", 200),
        ("sk-demo-us", "gpt-4o", 200),
        ("sk-demo-embed", "text-embedding-3-small", 200),
        ("sk-demo-cn", "gpt-4o", 403),
        ("sk-demo-de", "gpt-4o", 403),
        ("sk-demo-suspended", "gpt-4o", 403),
        ("sk-demo-ir", "gpt-4o", 403),
        ("sk-demo-us", "no-such-model", 404),
        ("sk-nobody", "gpt-4o", 401),
        ("sk-demo-limited", "llama-3.1-8b-instruct", 200),
        ("sk-demo-limited", "llama-3.1-8b-instruct", 200),
        ("sk-demo-limited", "llama-3.1-8b-instruct", 200),
        ("sk-demo-limited", "llama-3.1-8b-instruct", 429),
    ];
    for (key, model, status) in traffic {
        let r = chat(addr, key, model, None).await;
        assert_eq!(r.status.as_u16(), status, "{key} {model}: {:?}", r.body);
    }
    let auth = [("authorization", "Bearer sk-demo-us")];
    let r = send(addr, Method::POST, "/v1/chat/completions", &auth, "not json").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    let r = send(addr, Method::GET, "/v1/models", &auth, "").await;
    assert_eq!(r.status, StatusCode::OK);
    let audit = ex.audit_dir();
    ex.gw.shutdown().await;
    let records = trail(&audit);
    let decisions = records.iter().filter(|r| r["type"] == "decision").count();
    assert_eq!(decisions, traffic.len() + 2);

    // The proposal: d5-macau loses its compute line (demo-cn's gpt-4o: deny -> allow), us denies
    // gpt-4o (demo-us: allow -> deny), demo-us-embeddings is gone (allow -> deny, unknown_tenant),
    // demo-de is suspended (still refused, for another reason).
    let proposed = example_copy();
    let dir = proposed.path();
    // Expectations are not policy, and they name the removed tenant.
    std::fs::remove_file(dir.join("expectations.toml")).unwrap();
    edit_file(dir, "jurisdictions.toml", "max_training_flops = 1e25", "max_training_flops = inf");
    edit_file(
        dir,
        "jurisdictions.toml",
        "require_declaration = \"never\"",
        "deny_models = [\"gpt-4o\"]\nrequire_declaration = \"never\"",
    );
    edit_file(dir, "tenants.toml", "effective_from = 2026-01-17", "effective_from = 2000-01-01");
    edit_file(dir, "tenants.toml", "expires = 2027-06-30", "expires = 2999-12-31");
    edit_file(
        dir,
        "tenants.toml",
        "status = \"active\"\nentity = \"beispiel-forschung\"",
        "status = \"suspended\"\nentity = \"beispiel-forschung\"",
    );
    remove_tenant(dir, "demo-us-embeddings");

    let out = replay(&audit, dir, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "a deny -> allow flip fails the run: {}", stderr(&out));
    assert!(stderr(&out).contains("1 refused decision(s) would be allowed"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--accept-new-allows"), "{}", stderr(&out));
    let j = json_of(&out);
    let not_decisions = records.len() - decisions;
    assert_eq!(
        j["totals"],
        json!({
            "lines": records.len(), "records": records.len(), "bad_lines": 0, "not_decisions": not_decisions,
            "outside_window": 0, "decisions": decisions, "replayed": 11, "unchanged": 6,
            "deny_to_allow": 1, "allow_to_deny": 3, "deny_to_deny": 1, "skipped": 4,
        })
    );
    assert_eq!(
        j["skipped"],
        json!([
            {"why": "unauthenticated", "reason": "invalid_api_key", "count": 1},
            {"why": "not_policy", "reason": "invalid_request", "count": 1},
            {"why": "not_policy", "reason": "rate_limit_exceeded", "count": 1},
            {"why": "no_model", "reason": "allowed", "count": 1},
        ])
    );
    let group = |change: &str, tenant: &str, model: &str, old: &str, new: &str| {
        let times = decision_times(&records, tenant, model);
        json!({
            "change": change, "tenant": tenant, "model": model, "old_reason": old, "new_reason": new,
            "count": times.len(), "first_seen": times.first().unwrap(), "last_seen": times.last().unwrap(),
        })
    };
    assert_eq!(
        j["flips"],
        json!([
            group("deny_to_allow", "demo-cn", "gpt-4o", "compute_threshold_exceeded", "allowed"),
            group("allow_to_deny", "demo-us", "gpt-4o", "allowed", "model_not_allowed"),
            group("allow_to_deny", "demo-us-embeddings", "text-embedding-3-small", "allowed", "unknown_tenant"),
        ])
    );
    assert_eq!(j["flips"][1]["count"], 2);
    assert_eq!(
        j["reason_changes"],
        json!([group("deny_to_deny", "demo-de", "gpt-4o", "end_use_declaration_required", "tenant_suspended")])
    );
    assert_eq!(j["window"], json!({"since": null, "until": null}));
    assert_eq!(j["files"].as_array().unwrap().len(), customs::audit::trail_files(&audit).unwrap().len());

    let out = replay(&audit, dir, &["--format", "csv", "--accept-new-allows"]);
    assert_eq!(out.status.code(), Some(0), "accepted: {}", stderr(&out));
    let csv = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["change", "tenant", "model", "old_reason", "new_reason", "count", "first_seen", "last_seen"]);
    let summary: Vec<String> = rows[1..].iter().map(|r| r[..6].join(" ")).collect();
    assert_eq!(
        summary,
        [
            "deny_to_allow demo-cn gpt-4o compute_threshold_exceeded allowed 1",
            "allow_to_deny demo-us gpt-4o allowed model_not_allowed 2",
            "allow_to_deny demo-us-embeddings text-embedding-3-small allowed unknown_tenant 1",
            "deny_to_deny demo-de gpt-4o end_use_declaration_required tenant_suspended 1",
        ]
    );

    let out = replay(&audit, dir, &["--accept-new-allows"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "replayed: 11: 6 unchanged, 1 deny -> allow, 3 allow -> deny, 1 deny -> deny with another reason",
        "\ndeny -> allow (1):\n  demo-cn  gpt-4o  compute_threshold_exceeded -> allowed  x1  ",
        "\nallow -> deny (3):\n",
        "\ndeny -> deny, reason changed (1):\n  demo-de  gpt-4o  end_use_declaration_required -> tenant_suspended  x1",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }

    // The config the trail was decided under: every decision stands.
    let out = replay(&audit, &example_dir(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = json_of(&out);
    assert_eq!(
        [&j["totals"]["replayed"], &j["totals"]["unchanged"], &j["totals"]["skipped"]],
        [&json!(11), &json!(11), &json!(4)]
    );
    assert_eq!((j["flips"].clone(), j["reason_changes"].clone()), (json!([]), json!([])));

    // A window past the trail replays nothing.
    let out = replay(&audit, dir, &["--format", "json", "--since", "2999-01-01"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = json_of(&out);
    assert_eq!((&j["totals"]["decisions"], &j["totals"]["outside_window"]), (&json!(0), &json!(decisions)));
    ex.mock.stop().await;
}

#[test]
fn replay_unreadable_trail_config_or_flags_exit_2() {
    let trail_dir = tempfile::TempDir::new().unwrap();
    std::fs::write(trail_dir.path().join("audit-000001.jsonl"), "").unwrap();
    let missing = trail_dir.path().join("missing");

    let out = replay(&missing, &example_dir(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));

    let out = replay(trail_dir.path(), &missing, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("error: "), "{}", stderr(&out));

    let out = replay(trail_dir.path(), &example_dir(), &["--since", "2026-12-02", "--until", "2026-12-01"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("the window ends (2026-12-01) before it starts (2026-12-02)"), "{}", stderr(&out));

    let out = replay(trail_dir.path(), &example_dir(), &["--format", "html"]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", stderr(&out));

    // An empty trail replays nothing and flips nothing.
    let out = replay(trail_dir.path(), &example_dir(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
