//! The real binary, driven by signals: SIGHUP reloads; SIGTERM under load drains and loses no
//! audit record of a request that was answered, on several CPUs and pinned to one.

use std::collections::HashSet;
use std::process::{Child, Command};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::support::{
    Serving, chat, chat_body, client, edit_file, example_config_for, mock, serve_with, stream_body, trail,
};

/// Starts `customs serve` on the folder.
fn serve(dir: &std::path::Path) -> Serving {
    serve_with(dir, Command::new(env!("CARGO_BIN_EXE_customs")), &[])
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().unwrap().success());
}

#[tokio::test]
async fn sighup_reloads_the_config() {
    let upstream = mock("hup").await;
    let dir = example_config_for(upstream.addr);
    edit_file(dir.path(), "gateway.toml", "watch = true", "watch = false");
    let mut s = serve(dir.path());
    assert_eq!(chat(s.addr, "sk-demo-us", "gpt-4o-mini", None).await.status, StatusCode::OK);
    edit_file(dir.path(), "tenants.toml", "status = \"active\"", "status = \"suspended\"");
    signal(&s.child, "HUP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while chat(s.addr, "sk-demo-us", "gpt-4o-mini", None).await.status != StatusCode::FORBIDDEN {
        assert!(tokio::time::Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&s.child, "TERM");
    assert!(s.child.wait().unwrap().success());
    upstream.stop().await;
}

#[tokio::test]
async fn serve_at_decides_as_of_the_day_given() {
    let upstream = mock("at").await;
    let dir = example_config_for(upstream.addr);
    edit_file(dir.path(), "gateway.toml", "watch = true", "watch = false");
    for (at, code) in [("2026-12-31", None), ("2027-01-01", Some("end_use_declaration_required"))] {
        let mut s = serve_with(dir.path(), Command::new(env!("CARGO_BIN_EXE_customs")), &["--at", at]);
        let r = chat(s.addr, "sk-demo-de", "gpt-4o-mini", None).await;
        match code {
            None => assert_eq!(r.status, StatusCode::OK, "{at}"),
            Some(code) => assert_eq!(r.code(), code, "{at}"),
        }
        signal(&s.child, "TERM");
        assert!(s.child.wait().unwrap().success());
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_customs"))
        .args(["serve", "--at", "2027-02-30", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("\"2027-02-30\" is not a date (YYYY-MM-DD)"), "{stderr}");
    upstream.stop().await;
}

#[tokio::test]
async fn sigterm_under_load_loses_no_audit_record() {
    sigterm_under_load(Command::new(env!("CARGO_BIN_EXE_customs"))).await;
}

#[tokio::test]
async fn sigterm_under_load_loses_no_audit_record_on_one_cpu() {
    // taskset execs the binary: the pid signalled is customs'.
    let mut pinned = Command::new("taskset");
    pinned.args(["-c", "0", env!("CARGO_BIN_EXE_customs")]);
    sigterm_under_load(pinned).await;
}

async fn sigterm_under_load(command: Command) {
    let upstream = mock("term").await;
    let dir = example_config_for(upstream.addr);
    edit_file(dir.path(), "gateway.toml", "watch = true", "watch = false");
    let mut s = serve_with(dir.path(), command, &[]);
    let mut load = Vec::new();
    for i in 0..8 {
        let addr = s.addr;
        load.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            let key = if i % 2 == 0 { "sk-demo-us" } else { "sk-demo-cn" };
            let client = client();
            loop {
                let req = Request::post(format!("http://{addr}/v1/chat/completions"))
                    .header("authorization", format!("Bearer {key}"))
                    .body(Full::new(Bytes::from(chat_body("gpt-4o"))))
                    .unwrap();
                let Ok(res) = client.request(req).await else { return answered };
                let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
                // Only a response read to its end counts as answered.
                if res.into_body().collect().await.is_ok() {
                    answered.push(id);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&s.child, "TERM");
    let status = tokio::task::spawn_blocking(move || s.child.wait().unwrap()).await.unwrap();
    assert!(status.success());
    let mut answered = HashSet::new();
    for t in load {
        answered.extend(t.await.unwrap());
    }

    assert!(answered.len() > 50, "the load ran: {}", answered.len());
    let records = trail(&dir.path().join("audit"));
    let recorded: HashSet<String> =
        records.iter().filter_map(|r| r["request_id"].as_str().map(str::to_owned)).collect();
    let missing: Vec<_> = answered.difference(&recorded).collect();
    assert!(missing.is_empty(), "{} answered requests have no audit record: {missing:?}", missing.len());
    assert_eq!(records.last().unwrap()["type"], "stop");
    let out = Command::new(env!("CARGO_BIN_EXE_customs"))
        .args(["audit", "verify"])
        .arg(dir.path().join("audit"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    upstream.stop().await;
}

#[tokio::test]
async fn kill_9_under_load_leaves_a_decision_for_every_answer_and_names_the_open_ones() {
    let upstream = mock("kill").await;
    let dir = example_config_for(upstream.addr);
    edit_file(dir.path(), "gateway.toml", "watch = true", "watch = false");
    let audit = dir.path().join("audit");
    let mut s = serve_with(dir.path(), Command::new(env!("CARGO_BIN_EXE_customs")), &[]);
    let mut load = Vec::new();
    for i in 0..8 {
        let addr = s.addr;
        load.push(tokio::spawn(async move {
            // Half stream slowly, so some are with the upstream when the process dies.
            let (body, delay) =
                if i % 2 == 0 { (stream_body("gpt-4o-mini"), "20") } else { (chat_body("gpt-4o-mini"), "0") };
            let client = client();
            let mut answered = Vec::new();
            let mut bodies = Vec::new();
            loop {
                let req = Request::post(format!("http://{addr}/v1/chat/completions"))
                    .header("authorization", "Bearer sk-demo-us")
                    .header("x-mock-chunk-delay-ms", delay)
                    .body(Full::new(Bytes::from(body.clone())))
                    .unwrap();
                let Ok(res) = client.request(req).await else { return answered };
                // A response head is an answer: its decision must be on record.
                answered.push(res.headers()["x-request-id"].to_str().unwrap().to_owned());
                if i % 2 == 0 {
                    // Keep the stream open; read it on the side.
                    bodies.push(tokio::spawn(res.into_body().collect()));
                } else if res.into_body().collect().await.is_err() {
                    return answered;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    signal(&s.child, "KILL");
    let _ = tokio::task::spawn_blocking(move || s.child.wait().unwrap()).await.unwrap();
    let mut answered = HashSet::new();
    for t in load {
        answered.extend(t.await.unwrap());
    }
    assert!(answered.len() > 20, "the load ran: {}", answered.len());

    let records = trail(&audit);
    let decided: HashSet<String> = records
        .iter()
        .filter(|r| r["type"] == "decision")
        .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<_> = answered.difference(&decided).collect();
    assert!(missing.is_empty(), "{} answered requests have no decision record: {missing:?}", missing.len());
    let open: HashSet<String> = records
        .iter()
        .filter(|r| r["type"] == "decision" && r["status"].is_null())
        .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
        .filter(|id| !records.iter().any(|o| o["type"] == "outcome" && o["request_id"] == id.as_str()))
        .collect();
    assert!(!open.is_empty(), "streams were in flight when the process died");

    // The next start says where the trail stopped and which outcomes it never recorded.
    let mut again = serve_with(dir.path(), Command::new(env!("CARGO_BIN_EXE_customs")), &[]);
    signal(&again.child, "TERM");
    assert!(again.child.wait().unwrap().success());
    let records = trail(&audit);
    let recovered = records.iter().find(|r| r["type"] == "recovered").expect("a recovered record");
    assert_eq!(recovered["outcome_unknown"].as_u64(), Some(open.len() as u64), "{recovered}");
    let named: HashSet<String> = recovered["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["request_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(named, open);

    // verify finds the chain intact but will not call the trail clean.
    let out = Command::new(env!("CARGO_BIN_EXE_customs")).args(["audit", "verify"]).arg(&audit).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("FAIL decided, outcome unknown: {}", open.len())), "{stdout}");
    for id in &open {
        assert!(stdout.contains(id.as_str()), "{id} is not listed: {stdout}");
    }
    upstream.stop().await;
}
