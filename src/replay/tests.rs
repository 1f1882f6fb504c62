//! Replay on hand-made trail lines against the example config and edited copies of it.

use std::fs;

use super::*;

fn example() -> Policy {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    crate::config::load(&dir, &|_| Some("test".into())).unwrap().policy
}

/// The example with each (file, from, to) edit applied once, loaded; without its
/// expectations, which are not policy and would name a tenant an edit removed.
fn edited(edits: &[(&str, &str, &str)]) -> Policy {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let dir = tempfile::TempDir::new().unwrap();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "expectations.toml") {
            fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    for (file, from, to) in edits {
        let path = dir.path().join(file);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
    crate::config::load(dir.path(), &|_| Some("test".into())).unwrap().policy
}

/// A decision line as the gateway writes one, with the given members over an allowed
/// request of demo-us for gpt-4o on 2026-11-28.
fn line(overrides: serde_json::Value) -> String {
    let mut record = json!({
        "seq": 7, "prev": "00", "type": "decision", "time": "2026-11-28T10:00:00.000000Z",
        "request_id": "r", "operation": "chat", "tenant": "demo-us", "tenant_country": "US",
        "jurisdiction": "us", "model": "gpt-4o", "requested_model": null, "training_flops": 3.81e25,
        "purpose": null, "decision": "allow", "reason": "allowed", "status": null,
        "rule": "config/jurisdictions.toml:19: jurisdictions[0] (us).allow_models[0] (\"*\")",
        "policy_version": "x", "latency_ms": 0.1, "hash": "00",
    });
    for (k, v) in overrides.as_object().unwrap() {
        record[k] = v.clone();
    }
    record.to_string()
}

fn replay_line(policy: &Policy, text: &str) -> Result<(Answer, Answer), Skip> {
    replay(policy, &parse(text.as_bytes()).unwrap().unwrap())
}

fn replay_lines(policy: &Policy, lines: &[String]) -> Replay {
    let mut r = Replayer::new(policy, None, None);
    for (i, l) in lines.iter().enumerate() {
        r.line(Path::new("t.jsonl"), i as u64 + 1, format!("{l}\n").as_bytes());
    }
    let settings = ReplaySettings { config: "new".into(), since: None, until: None };
    r.finish(settings, vec!["t.jsonl".into()])
}

#[test]
fn replay_same_config_leaves_every_policy_outcome_unchanged() {
    let p = example();
    let cases = [
        json!({}),
        json!({"tenant": "demo-cn", "decision": "deny", "reason": "compute_threshold_exceeded"}),
        json!({"tenant": "demo-us", "model": null, "requested_model": "no-such", "decision": "deny",
               "reason": "model_not_found"}),
        // Refused on the head: no model on record, replayed by the tenant's refusal.
        json!({"tenant": "demo-suspended", "model": null, "decision": "deny", "reason": "tenant_suspended"}),
        json!({"tenant": "demo-ir", "model": null, "decision": "deny", "reason": "jurisdiction_embargoed"}),
        json!({"tenant": "demo-limited", "model": "llama-3.1-8b-instruct", "purpose": "customer-support",
               "time": "2026-07-01T00:00:00Z", "decision": "deny", "reason": "end_use_declaration_expired"}),
    ];
    for case in cases {
        let (old, new) = replay_line(&p, &line(case.clone())).unwrap();
        assert_eq!(old, new, "{case}");
    }
}

#[test]
fn replay_decides_as_of_the_record_day() {
    // demo-de may use gpt-4o-mini (1e24 <= FLOPs < 1e25) without a declaration until
    // 2026-12-31; the staged change requires one from 2027-01-01.
    let p = example();
    let before = line(json!({"tenant": "demo-de", "model": "gpt-4o-mini", "time": "2026-12-31T23:59:59.999999Z"}));
    assert_eq!(replay_line(&p, &before), Ok((Answer::Allowed, Answer::Allowed)));
    let after = line(json!({"tenant": "demo-de", "model": "gpt-4o-mini", "time": "2027-01-01T00:00:00.000000Z"}));
    let declaration = Answer::Denied(Denial::EndUseDeclarationRequired);
    assert_eq!(replay_line(&p, &after), Ok((Answer::Allowed, declaration)));
}

#[test]
fn replay_uses_the_requested_name_and_the_recorded_purpose() {
    let p = example();
    // The name the client sent, when it did not resolve, is what is decided again.
    let unresolved = line(json!({"model": null, "requested_model": "gpt-4o-2024-08-06", "decision": "deny",
                                 "reason": "model_not_found"}));
    assert_eq!(replay_line(&p, &unresolved), Ok((Answer::Denied(Denial::ModelNotFound), Answer::Allowed)));
    // demo-cn declared translation, not marketing.
    let purpose = line(json!({"tenant": "demo-cn", "model": "gpt-4o-mini", "purpose": "marketing"}));
    assert_eq!(replay_line(&p, &purpose), Ok((Answer::Allowed, Answer::Denied(Denial::PurposeNotDeclared))));
    let declared = line(json!({"tenant": "demo-cn", "model": "gpt-4o-mini", "purpose": "translation"}));
    assert_eq!(replay_line(&p, &declared), Ok((Answer::Allowed, Answer::Allowed)));
}

#[test]
fn replay_skips_what_the_policy_did_not_decide() {
    let p = example();
    let cases = [
        (
            json!({"tenant": null, "model": null, "decision": "deny", "reason": "invalid_api_key"}),
            Skip::Unauthenticated,
        ),
        (json!({"decision": "deny", "reason": "client_certificate_required"}), Skip::Unauthenticated),
        (json!({"tenant": null, "decision": "deny", "reason": "model_not_allowed"}), Skip::Unauthenticated),
        (json!({"decision": "deny", "reason": "invalid_request", "model": null}), Skip::NotPolicy),
        (json!({"decision": "deny", "reason": "rate_limit_exceeded"}), Skip::NotPolicy),
        (json!({"decision": "deny", "reason": "operation_not_supported"}), Skip::NotPolicy),
        (json!({"decision": "deny", "reason": "cluster_unavailable"}), Skip::NotPolicy),
        (json!({"decision": "error", "reason": "upstream_error"}), Skip::NotPolicy),
        (json!({"decision": "deny", "reason": "a_code_from_a_newer_gateway"}), Skip::NotPolicy),
        (json!({"model": null, "operation": "models"}), Skip::NoModel),
        (
            json!({"decision": "deny", "reason": "tenant_suspended", "model": null,
                   "rule": "kill switch: suspended by alice at 2026-11-28T00:00:00Z: fraud"}),
            Skip::KillSwitch,
        ),
        // Refused before its body was read, and demo-us is not refused outright: which model?
        (json!({"decision": "deny", "reason": "tenant_suspended", "model": null}), Skip::ModelNotRecorded),
    ];
    for (case, why) in cases {
        assert_eq!(replay_line(&p, &line(case.clone())), Err(why), "{case}");
    }
}

#[test]
fn replay_every_denial_is_a_policy_outcome_and_nothing_else_is() {
    let p = example();
    for r in Reason::ALL {
        let decision = if r == Reason::Allowed { "allow" } else { r.decision().as_str() };
        let got = replay_line(&p, &line(json!({"decision": decision, "reason": r.as_str()})));
        let policy = r == Reason::Allowed || Denial::ALL.iter().any(|d| d.reason() == r);
        let unauthenticated = matches!(r, Reason::InvalidApiKey | Reason::ClientCertificateRequired);
        match got {
            Ok(_) => assert!(policy, "{r:?} replayed"),
            Err(Skip::Unauthenticated) => assert!(unauthenticated, "{r:?}"),
            Err(Skip::NotPolicy) => assert!(!policy && !unauthenticated, "{r:?} skipped"),
            Err(other) => panic!("{r:?}: {other:?}"),
        }
    }
}

#[test]
fn replay_kill_switch_rule_is_what_the_trail_writes() {
    let s = crate::killswitch::Suspension { reason: "r".into(), by: "b".into(), at: "t".into() };
    assert!(s.describe().starts_with(KILL_SWITCH_RULE), "{}", s.describe());
}

#[test]
fn replay_tenant_removed_from_config_is_refused_unknown_tenant() {
    let p = edited(&[("tenants.toml", "id = \"demo-ir\"", "id = \"demo-ir-renamed\"")]);
    assert_eq!(replay_line(&p, &line(json!({"tenant": "demo-ir"}))), Ok((Answer::Allowed, Answer::UnknownTenant)));
    let refused = line(json!({"tenant": "demo-ir", "model": null, "decision": "deny",
                              "reason": "jurisdiction_embargoed"}));
    let embargoed = Answer::Denied(Denial::JurisdictionEmbargoed);
    assert_eq!(replay_line(&p, &refused), Ok((embargoed, Answer::UnknownTenant)));
    // A model listing is no decision about a model, whoever asked.
    assert_eq!(replay_line(&p, &line(json!({"tenant": "demo-ir", "model": null}))), Err(Skip::NoModel));
}

#[test]
fn replay_groups_flips_both_ways_and_reason_changes_with_counts_and_times() {
    // d5-macau without a compute line; us without gpt-4o; demo-de suspended.
    let p = edited(&[
        ("jurisdictions.toml", "max_training_flops = 1e25", "max_training_flops = inf"),
        (
            "jurisdictions.toml",
            "require_declaration = \"never\"",
            "deny_models = [\"gpt-4o\"]\nrequire_declaration = \"never\"",
        ),
        (
            "tenants.toml",
            "status = \"active\"\nentity = \"beispiel-forschung\"",
            "status = \"suspended\"\nentity = \"beispiel-forschung\"",
        ),
    ]);
    let cn = |time: &str| {
        line(json!({"tenant": "demo-cn", "time": time, "decision": "deny", "reason": "compute_threshold_exceeded"}))
    };
    let lines = [
        json!({"seq": 1, "type": "start", "time": "2026-11-28T09:00:00Z"}).to_string(),
        line(json!({"time": "2026-11-28T12:00:00.000000Z"})),
        line(json!({"time": "2026-11-28T11:00:00.000000Z"})),
        cn("2026-11-28T10:00:00.000000Z"),
        cn("2026-11-29T10:00:00.000000Z"),
        line(json!({"tenant": "demo-de", "decision": "deny", "reason": "end_use_declaration_required"})),
        line(json!({"tenant": "demo-us", "model": "gpt-4o-mini"})),
        line(json!({"tenant": null, "model": null, "decision": "deny", "reason": "invalid_api_key"})),
        line(json!({"decision": "deny", "reason": "rate_limit_exceeded"})),
        json!({"seq": 9, "type": "outcome", "time": "2026-11-28T12:00:01Z", "outcome": "completed"}).to_string(),
        "{not json".to_owned(),
        String::new(),
        line(json!({"decision": "maybe"})),
    ];
    let r = replay_lines(&p, &lines);
    let t = &r.totals;
    assert_eq!((t.lines, t.records, t.bad_lines, t.not_decisions), (12, 10, 2, 2));
    assert_eq!(t.first_bad_line.as_ref().map(|b| b.line), Some(11));
    assert_eq!((t.decisions, t.replayed, t.unchanged, t.skipped), (8, 6, 1, 2));
    assert_eq!((t.deny_to_allow, t.allow_to_deny, t.deny_to_deny), (2, 2, 1));
    let got: Vec<_> = r
        .groups
        .iter()
        .map(|g| {
            let model = g.model.as_deref().unwrap_or("-");
            let seen = format!("{}..{}", &g.first_seen[..13], &g.last_seen[..13]);
            (g.change, format!("{} {model} {} -> {} x{} {seen}", g.tenant, g.old_reason, g.new_reason, g.count))
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                Change::DenyToAllow,
                "demo-cn gpt-4o compute_threshold_exceeded -> allowed x2 2026-11-28T10..2026-11-29T10".into()
            ),
            (Change::AllowToDeny, "demo-us gpt-4o allowed -> model_not_allowed x2 2026-11-28T11..2026-11-28T12".into()),
            (
                Change::DenyToDeny,
                "demo-de gpt-4o end_use_declaration_required -> tenant_suspended x1 2026-11-28T10..2026-11-28T10"
                    .into()
            ),
        ]
    );
    let skipped: Vec<_> = r.skipped.iter().map(|s| (s.why, s.reason.as_str(), s.count)).collect();
    assert_eq!(skipped, [(Skip::Unauthenticated, "invalid_api_key", 1), (Skip::NotPolicy, "rate_limit_exceeded", 1)]);
    assert!(r.has_new_allows());

    let csv = r.render(Format::Csv);
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("change,tenant,model,old_reason,new_reason,count,first_seen,last_seen"));
    assert_eq!(
        rows.next(),
        Some(
            "deny_to_allow,demo-cn,gpt-4o,compute_threshold_exceeded,allowed,2,2026-11-28T10:00:00.000000Z,2026-11-29T10:00:00.000000Z"
        )
    );
    assert_eq!(rows.count(), 2);

    let j = r.to_json();
    assert_eq!(j["totals"]["deny_to_allow"], 2);
    assert_eq!(j["flips"].as_array().unwrap().len(), 2);
    assert_eq!(j["reason_changes"][0]["new_reason"], "tenant_suspended");
    assert_eq!(j["skipped"][0], json!({"why": "unauthenticated", "reason": "invalid_api_key", "count": 1}));
    assert_eq!(j["first_bad_line"]["line"], 11);

    let text = r.render(Format::Text);
    assert!(
        text.contains("deny -> allow (2):\n  demo-cn  gpt-4o  compute_threshold_exceeded -> allowed  x2"),
        "{text}"
    );
    assert!(text.contains("deny -> deny, reason changed (1):"), "{text}");
}

#[test]
fn replay_window_counts_records_outside_it_apart() {
    let p = example();
    let mut r = Replayer::new(&p, Day::parse("2026-11-29"), Day::parse("2026-11-30"));
    for time in
        ["2026-11-28T23:59:59.999999Z", "2026-11-29T00:00:00.000000Z", "2026-11-30T23:59:59Z", "2026-12-01T00:00:00Z"]
    {
        r.line(Path::new("t"), 1, line(json!({"time": time})).as_bytes());
    }
    let t = r.finish(ReplaySettings { config: "c".into(), since: None, until: None }, Vec::new()).totals;
    assert_eq!((t.decisions, t.outside_window, t.unchanged), (2, 2, 2));
}

#[test]
fn replay_read_refuses_an_empty_window_and_folders_without_trail_files() {
    let p = example();
    let dir = tempfile::TempDir::new().unwrap();
    let settings =
        ReplaySettings { config: "c".into(), since: Day::parse("2026-12-02"), until: Day::parse("2026-12-01") };
    let err = read(&[dir.path().to_path_buf()], &p, &settings).unwrap_err();
    assert_eq!(err.to_string(), "the window ends (2026-12-01) before it starts (2026-12-02)");
    let settings = ReplaySettings { since: None, until: None, ..settings };
    let err = read(&[dir.path().to_path_buf()], &p, &settings).unwrap_err();
    assert!(matches!(err, ReplayError::Trail(crate::report::ReportError::EmptyDirectory { .. })), "{err}");
    fs::write(dir.path().join("audit-000002.jsonl"), format!("{}\n", line(json!({"tenant": "demo-cn"})))).unwrap();
    fs::write(dir.path().join("audit-000001.jsonl"), format!("{}\n", line(json!({})))).unwrap();
    fs::write(dir.path().join("notes.txt"), "not a trail").unwrap();
    let r = read(&[dir.path().to_path_buf()], &p, &settings).unwrap();
    let names: Vec<_> = r.files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["audit-000001.jsonl", "audit-000002.jsonl"]);
    assert_eq!((r.totals.replayed, r.totals.allow_to_deny), (2, 1));
}
