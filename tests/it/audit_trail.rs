//! The audit trail: one record per decision with what an auditor needs and nothing secret; a hash
//! chain that `customs audit verify` checks across files; fail-closed when records cannot be
//! taken.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::{
    Example, UPSTREAM_KEY, chat, edit_file, gated_stream, read_until, scrape, send, stream_body, trail, value,
};

/// Runs `customs audit verify` on `args`; returns (exit success, stdout).
fn verify(args: &[&Path]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_customs")).arg("audit").arg("verify").args(args).output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

#[tokio::test]
async fn every_decision_is_one_record_and_every_forward_one_outcome_with_no_secret_or_content() {
    let ex = Example::start_unwatched().await;
    let addr = ex.gw.addr;
    let secret_prompt = "the launch codes are 0000";
    let body = format!(r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{secret_prompt}"}}]}}"#);
    let ok = send(addr, Method::POST, "/v1/chat/completions", &[("authorization", "Bearer sk-demo-us")], body).await;
    assert_eq!(ok.status, StatusCode::OK);
    let streamed = send(
        addr,
        Method::POST,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-demo-us")],
        stream_body("gpt-4o-mini"),
    )
    .await;
    assert_eq!(streamed.status, StatusCode::OK);
    assert_eq!(chat(addr, "sk-demo-cn", "gpt-4o", None).await.code(), "compute_threshold_exceeded");
    assert_eq!(chat(addr, "sk-demo-cn", "gpt-4o-mini", Some("translation")).await.status, StatusCode::OK);
    // A model with a declared parameter count is charged inference FLOPs.
    assert_eq!(chat(addr, "sk-demo-de", "llama-3.1-8b-instruct", None).await.status, StatusCode::OK);
    assert_eq!(chat(addr, "sk-not-a-key", "gpt-4o-mini", None).await.code(), "invalid_api_key");
    assert_eq!(chat(addr, "sk-demo-us", "no-such-model", None).await.code(), "model_not_found");
    ex.gw.shutdown().await;

    let dir = ex.dir.path().join("audit");
    let (ok_verify, out) = verify(&[&dir]);
    assert!(ok_verify, "{out}");
    assert!(out.contains("closed"), "{out}");
    let raw: String =
        customs::audit::trail_files(&dir).unwrap().iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    for secret in ["sk-demo-us", "sk-demo-cn", "sk-not-a-key", UPSTREAM_KEY, secret_prompt, "chunk 0"] {
        assert!(!raw.contains(secret), "the trail holds {secret:?}");
    }

    let records = trail(&dir);
    assert_eq!(records.first().unwrap()["type"], "start");
    assert_eq!(records.last().unwrap()["type"], "stop");
    let decisions: Vec<_> = records.iter().filter(|r| r["type"] == "decision").collect();
    assert_eq!(decisions.len(), 7, "{decisions:#?}");
    let outcomes: Vec<_> = records.iter().filter(|r| r["type"] == "outcome").collect();
    assert_eq!(outcomes.len(), 4, "one per forwarded request: {outcomes:#?}");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1);
    }

    // The decision, written before the request went upstream: no status, endpoint or usage yet.
    let allowed = decisions.iter().find(|r| r["reason"] == "allowed" && r["tenant"] == "demo-us").unwrap();
    assert_eq!(allowed["decision"], "allow");
    assert!(allowed["status"].is_null(), "forwarded: its outcome has the status");
    assert_eq!(allowed["tenant_country"], "US");
    assert_eq!(allowed["jurisdiction"], "us");
    assert_eq!(allowed["model"], "gpt-4o-mini");
    assert!(allowed["training_flops"].as_f64().unwrap() > 1e23);
    assert!(allowed["rule"].as_str().unwrap().contains("jurisdictions.toml:"));
    assert!(allowed.get("endpoint").is_none() && allowed.get("usage").is_none());
    assert!(allowed["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(allowed["request_id"].as_str().unwrap(), ok.headers["x-request-id"].to_str().unwrap());
    assert_eq!(allowed["policy_version"].as_str().unwrap(), ok.headers["x-customs-policy-version"].to_str().unwrap());

    // Its outcome, after it in the chain and pointing back at it.
    let outcome = outcomes.iter().find(|r| r["request_id"] == allowed["request_id"]).unwrap();
    assert_eq!(outcome["decision_seq"], allowed["seq"]);
    assert!(outcome["seq"].as_u64() > allowed["seq"].as_u64());
    assert_eq!(outcome["outcome"], "completed");
    assert_eq!(outcome["status"], 200);
    assert_eq!((&outcome["tenant"], &outcome["model"]), (&allowed["tenant"], &allowed["model"]));
    assert!(outcome["endpoint"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    assert!(outcome["residency"].as_str().unwrap().starts_with("us-"));
    assert!(outcome["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(outcome["flops"].is_null(), "gpt-4o-mini has no public parameter count");
    assert!(outcome["latency_ms"].as_f64() >= allowed["latency_ms"].as_f64());

    let llama = outcomes.iter().find(|r| r["model"] == "llama-3.1-8b-instruct").unwrap();
    let tokens = llama["usage"]["total_tokens"].as_f64().unwrap();
    assert_eq!(llama["flops"].as_f64().unwrap(), 2.0 * 8.03e9 * tokens);
    let threshold = decisions.iter().find(|r| r["reason"] == "compute_threshold_exceeded").unwrap();
    assert_eq!(threshold["decision"], "deny");
    assert_eq!(threshold["status"], 403);
    assert_eq!(threshold["model"], "gpt-4o");
    assert!(threshold["rule"].as_str().unwrap().contains("max_training_flops"));
    assert!(!outcomes.iter().any(|o| o["request_id"] == threshold["request_id"]), "a refusal has no outcome");
    let purpose = decisions.iter().find(|r| r["purpose"] == "translation").unwrap();
    assert_eq!(purpose["tenant"], "demo-cn");
    let anonymous = decisions.iter().find(|r| r["reason"] == "invalid_api_key").unwrap();
    assert!(anonymous["tenant"].is_null());
    let unknown = decisions.iter().find(|r| r["reason"] == "model_not_found").unwrap();
    assert_eq!(unknown["requested_model"], "no-such-model");
    ex.mock.stop().await;
}

/// Runs traffic through a gateway whose trail rotates every few records, and returns the folder.
async fn rotated_trail() -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let ex = Example::start_with(|d| {
        edit_file(d, "gateway.toml", "watch = true", "watch = false");
        edit_file(d, "gateway.toml", "max_file_bytes = 67108864", "max_file_bytes = 2000");
    })
    .await;
    for i in 0..24 {
        let key = if i % 3 == 0 { "sk-demo-cn" } else { "sk-demo-us" };
        chat(ex.gw.addr, key, "gpt-4o", None).await;
    }
    ex.gw.shutdown().await;
    ex.mock.stop().await;
    let files = customs::audit::trail_files(&ex.dir.path().join("audit")).unwrap();
    assert!(files.len() >= 3, "the trail rotated: {files:?}");
    let (ok, out) = verify(&[&ex.dir.path().join("audit")]);
    assert!(ok, "{out}");
    (ex.dir, files)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| format!("{l}\n")).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.concat()).unwrap();
}

#[tokio::test]
async fn verify_catches_every_kind_of_tampering() {
    let (dir, files) = rotated_trail().await;
    let audit = dir.path().join("audit");
    let second = files[1].clone();
    let original = lines(&second);
    assert!(original.len() >= 3);
    let restore = || write_lines(&second, &original);
    let fails = |what: &str, expect: &str| {
        let (ok, out) = verify(&[&audit]);
        assert!(!ok, "{what} went unnoticed: {out}");
        assert!(out.contains(expect), "{what}: expected {expect:?} in {out}");
        let file = second.file_name().unwrap().to_str().unwrap();
        if !expect.contains("stop") {
            assert!(out.contains(file), "{what}: the report names the file: {out}");
        }
    };

    // Edit one field of one record.
    let mut edited = original.clone();
    edited[1] = edited[1].replacen("\"latency_ms\":", "\"latency_ms\":9", 1);
    assert_ne!(edited[1], original[1]);
    write_lines(&second, &edited);
    fails("an edit", "was altered");
    restore();

    // Delete a record.
    let mut deleted = original.clone();
    deleted.remove(1);
    write_lines(&second, &deleted);
    fails("a deletion", "removed");
    restore();

    // Insert a copy of a record.
    let mut inserted = original.clone();
    inserted.insert(2, original[0].clone());
    write_lines(&second, &inserted);
    fails("an insertion", "inserted or reordered");
    restore();

    // Swap two records.
    let mut swapped = original.clone();
    swapped.swap(0, 1);
    write_lines(&second, &swapped);
    fails("a reordering", "reordered");
    restore();

    // Cut a record in half.
    let mut cut = original.concat();
    cut.truncate(cut.len() - 30);
    std::fs::write(&second, cut).unwrap();
    fails("a truncation mid-record", "cut off");
    restore();

    // Remove a whole file from the middle.
    let moved = dir.path().join("moved.jsonl");
    std::fs::rename(&second, &moved).unwrap();
    fails_without_file(&audit, "removed");
    std::fs::rename(&moved, &second).unwrap();

    // Cut whole records off the end of the last file.
    let last = files.last().unwrap();
    let tail = lines(last);
    write_lines(last, &tail[..tail.len() - 1]);
    let (ok, out) = verify(&[&audit]);
    assert!(!ok && out.contains("without a stop record"), "{out}");
    write_lines(last, &tail);

    let (ok, out) = verify(&[&audit]);
    assert!(ok, "restored trail verifies: {out}");
}

#[tokio::test]
async fn a_trail_cut_short_is_caught_against_a_checkpoint() {
    let ex = Example::start_unwatched().await;
    for _ in 0..3 {
        assert_eq!(chat(ex.gw.addr, "sk-demo-us", "gpt-4o-mini", None).await.status, StatusCode::OK);
    }
    // The witness: what Prometheus would have scraped, once the records are written.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let head = loop {
        let m = scrape(ex.gw.admin_addr).await;
        let head = value(&m, "customs_audit_head_seq", &[]);
        if head >= value(&m, "customs_audit_records_total", &[]) && head >= 7.0 {
            break head as u64;
        }
        assert!(tokio::time::Instant::now() < deadline, "the head never reached the records written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let audit = ex.audit_dir();
    ex.gw.shutdown().await;
    let last = customs::audit::trail_files(&audit).unwrap().pop().unwrap();
    let all = lines(&last);
    let at_head = all.iter().find(|l| l.contains(&format!("\"seq\":{head},"))).unwrap();
    let hash = serde_json::from_str::<serde_json::Value>(at_head).unwrap()["hash"].as_str().unwrap().to_owned();
    assert_eq!(trail(&audit).last().unwrap()["seq"].as_u64(), Some(head + 1), "only the stop record is after it");

    // Cut the last three records: the stop and two before the checkpoint's.
    write_lines(&last, &all[..all.len() - 3]);
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_customs"))
            .args(["audit", "verify", "--allow-open"])
            .args(extra)
            .arg(&audit)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap())
    };
    let (ok, out) = run(&[]);
    assert!(ok, "without a witness, a cut at a record boundary looks like a live trail: {out}");
    let (ok, out) = run(&["--checkpoint", &head.to_string()]);
    assert!(!ok && out.contains(&format!("a checkpoint saw seq {head}")), "{out}");

    // Restored, the trail reaches the checkpoint and holds that very record.
    write_lines(&last, &all);
    let (ok, out) = run(&["--checkpoint", &format!("{head}:{hash}")]);
    assert!(ok, "{out}");
    let other = "0".repeat(64);
    let (ok, out) = run(&["--checkpoint", &format!("{head}:{other}")]);
    assert!(!ok && out.contains("is not the record the checkpoint saw"), "{out}");
    ex.mock.stop().await;
}

async fn upstream_calls(ex: &Example) -> usize {
    ex.mock.requests().await.len()
}

fn fails_without_file(audit: &Path, expect: &str) {
    let (ok, out) = verify(&[audit]);
    assert!(!ok && out.contains(expect), "a removed file went unnoticed: {out}");
}

#[tokio::test]
async fn a_full_queue_refuses_requests_with_audit_unavailable() {
    // Room for one record: a stream held open by the mock occupies it.
    let ex = Example::start_with(|d| {
        edit_file(d, "gateway.toml", "watch = true", "watch = false");
        edit_file(d, "gateway.toml", "queue = 65536", "queue = 1");
    })
    .await;
    // The `start` record takes the one place until it is written.
    while value(&scrape(ex.gw.admin_addr).await, "customs_audit_records_total", &[]) < 1.0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut body, mut seen) = gated_stream(ex.gw.addr, "sk-demo-us").await;

    let refused = chat(ex.gw.addr, "sk-demo-us", "gpt-4o-mini", None).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.code(), "audit_unavailable");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(value(&scrape(ex.gw.admin_addr).await, "customs_audit_dropped_total", &[]), 1.0);

    ex.mock.open_gate();
    read_until(&mut body, &mut seen, "data: [DONE]", Duration::from_secs(10)).await;
    drop(body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while chat(ex.gw.addr, "sk-demo-us", "gpt-4o-mini", None).await.status != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never recovered after the stream ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ex.stop().await;
}

#[tokio::test]
async fn an_unwritable_trail_fails_closed_and_recovers_without_losing_records() {
    let ex = Example::start_with(|d| {
        edit_file(d, "gateway.toml", "watch = true", "watch = false");
        // Every write starts a new file, so a folder that disappears is noticed at once.
        edit_file(d, "gateway.toml", "max_file_bytes = 67108864", "max_file_bytes = 1");
    })
    .await;
    let (addr, admin) = (ex.gw.addr, ex.gw.admin_addr);
    assert_eq!(chat(addr, "sk-demo-us", "gpt-4o-mini", None).await.status, StatusCode::OK);
    // The writer is healthy and idle (the start record and that request's are on disk), so the
    // first request after the folder goes is decided before the writer has noticed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while value(&scrape(admin).await, "customs_audit_records_total", &[]) < 2.0 {
        assert!(tokio::time::Instant::now() < deadline, "the first records were never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let audit = ex.audit_dir();
    let aside = ex.dir.path().join("audit-aside");
    std::fs::rename(&audit, &aside).unwrap();
    std::fs::write(&audit, b"not a folder").unwrap();

    // The first request after the folder goes is decided, but its decision cannot be written:
    // it is refused, not forwarded unrecorded. Its decision (held back) and its `not_forwarded`
    // outcome are written once the disk takes them again. Later ones are refused up front.
    let refused = chat(addr, "sk-demo-de", "gpt-4o-mini", None).await;
    assert_eq!(refused.code(), "audit_unavailable");
    let held_back = refused.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(chat(addr, "sk-demo-de", "gpt-4o-mini", None).await.code(), "audit_unavailable");
    assert_eq!(upstream_calls(&ex).await, 1, "nothing unrecorded reached the upstream");
    let ready = send(admin, Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["audit"], "failing");
    let m = scrape(admin).await;
    assert_eq!(value(&m, "customs_audit_up", &[]), 0.0);
    assert!(value(&m, "customs_audit_write_errors_total", &[]) >= 1.0);

    std::fs::remove_file(&audit).unwrap();
    std::fs::rename(&aside, &audit).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while chat(addr, "sk-demo-us", "gpt-4o-mini", None).await.status != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(value(&scrape(admin).await, "customs_audit_up", &[]), 1.0);
    ex.gw.shutdown().await;
    let (ok, out) = verify(&[&audit]);
    assert!(ok, "{out}");
    let records = trail(&audit);
    let of = |kind: &str| records.iter().find(|r| r["type"] == kind && r["request_id"] == held_back.as_str());
    let decision = of("decision").expect("the held-back decision was written after the disk recovered");
    assert_eq!(decision["decision"], "allow");
    let outcome = of("outcome").expect("with its outcome");
    assert_eq!(outcome["outcome"], "not_forwarded");
    assert!(outcome["decision_seq"].is_null(), "the request never learnt its decision's seq");
    assert!(records.iter().any(|r| r["reason"] == "allowed"));
    ex.mock.stop().await;
}

#[tokio::test]
async fn a_restart_after_a_torn_write_continues_the_chain_and_says_where_the_damage_is() {
    let ex = Example::start_unwatched().await;
    assert_eq!(chat(ex.gw.addr, "sk-demo-us", "gpt-4o-mini", None).await.status, StatusCode::OK);
    ex.gw.shutdown().await;
    let audit = ex.dir.path().join("audit");
    // A crash mid-write: the last line is cut short.
    let file = customs::audit::trail_files(&audit).unwrap().pop().unwrap();
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.truncate(text.len() - 40);
    std::fs::write(&file, &text).unwrap();
    let lines = text.lines().count();

    let gw = crate::support::gateway(ex.dir.path()).await;
    assert_eq!(chat(gw.addr, "sk-demo-us", "gpt-4o-mini", None).await.status, StatusCode::OK);
    gw.shutdown().await;
    let records: Vec<serde_json::Value> = customs::audit::trail_files(&audit)
        .unwrap()
        .last()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect())
        .unwrap();
    let start = &records[0];
    assert_eq!(start["type"], "start");
    assert_eq!(start["after_unclean_stop"], true);
    assert!(start["damaged_tail"].as_str().unwrap().ends_with(&format!(":{lines}")), "{start}");
    let (ok, out) = verify(&[&audit]);
    assert!(!ok && out.contains(&format!(":{lines}: ")), "verify still reports the torn line: {out}");
    ex.mock.stop().await;
}
