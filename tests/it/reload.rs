//! Hot reload: a valid change applies to the next request; an invalid one changes nothing, even
//! under load; a stream that started before a reload finishes under the policy it started with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::{Example, admin_post, chat, edit_file, gated_stream, read_until, scrape, send, trail, value};

const SUSPEND_DEMO_US: (&str, &str) = ("status = \"active\"", "status = \"suspended\"");

#[tokio::test]
async fn a_reload_that_suspends_a_tenant_applies_to_the_next_request() {
    let ex = Example::start_unwatched().await;
    let before = chat(ex.gw.addr, "sk-demo-us", "gpt-4o-mini", None).await;
    assert_eq!(before.status, StatusCode::OK);
    let old_version = before.headers["x-customs-policy-version"].to_str().unwrap().to_owned();

    // demo-us is the first tenant in tenants.toml.
    edit_file(ex.dir.path(), "tenants.toml", SUSPEND_DEMO_US.0, SUSPEND_DEMO_US.1);
    let r = admin_post(ex.gw.admin_addr, "/admin/reload", "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let new_version = r.json()["policy_version"].as_str().unwrap().to_owned();
    assert_ne!(new_version, old_version);
    assert_eq!(r.json()["changed"], true);

    let after = chat(ex.gw.addr, "sk-demo-us", "gpt-4o-mini", None).await;
    assert_eq!(after.status, StatusCode::FORBIDDEN);
    assert_eq!(after.code(), "tenant_suspended");
    assert_eq!(after.headers["x-customs-policy-version"], new_version.as_str());
    // Other tenants are unaffected.
    assert_eq!(chat(ex.gw.addr, "sk-demo-de", "gpt-4o-mini", None).await.status, StatusCode::OK);

    let ready = send(ex.gw.admin_addr, Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.json()["policy_version"], new_version.as_str());
    let m = scrape(ex.gw.admin_addr).await;
    assert_eq!(value(&m, "customs_config_reloads_total", &[("result", "success")]), 1.0);
    assert_eq!(value(&m, "customs_policy_info", &[("version", &new_version)]), 1.0);
    assert!(!m.iter().any(|s| s.name == "customs_policy_info" && s.labels[0].1 == old_version), "old version kept");

    assert_eq!(r.json()["restart_required"], false);
    // The same config again is not a change.
    let again = admin_post(ex.gw.admin_addr, "/admin/reload", "").await;
    assert_eq!(again.json()["changed"], false);
    // A listener setting changes only at a restart, and the reload says so.
    edit_file(ex.dir.path(), "gateway.toml", "max_body_bytes = 4194304", "max_body_bytes = 1048576");
    let r = admin_post(ex.gw.admin_addr, "/admin/reload", "").await;
    assert_eq!((r.json()["changed"].clone(), r.json()["restart_required"].clone()), (true.into(), true.into()));
    ex.gw.shutdown().await;

    let records = trail(&ex.dir.path().join("audit"));
    let reload = records.iter().find(|r| r["type"] == "reload").expect("a reload record");
    assert_eq!(reload["result"], "success");
    assert_eq!(reload["policy_version"], new_version.as_str());
    let denied = records.iter().find(|r| r["reason"] == "tenant_suspended").unwrap();
    assert_eq!(denied["policy_version"], new_version.as_str());
    ex.mock.stop().await;
}

#[tokio::test]
async fn a_broken_config_keeps_the_old_policy_with_no_failed_request_under_load() {
    let ex = Example::start_unwatched().await;
    let addr = ex.gw.addr;
    let version = chat(addr, "sk-demo-us", "gpt-4o-mini", None).await.headers["x-customs-policy-version"]
        .to_str()
        .unwrap()
        .to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    // Set from just before the first rejected reload is asked for until the last one has been
    // answered: a request that starts and ends inside that span overlapped the reloads.
    let reloading = Arc::new(AtomicBool::new(false));
    let (ok, bad, during) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (stop, reloading, ok, bad, during, version) =
            (stop.clone(), reloading.clone(), ok.clone(), bad.clone(), during.clone(), version.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let started_during = reloading.load(Ordering::SeqCst);
                let r = chat(addr, "sk-demo-us", "gpt-4o-mini", None).await;
                let same = r.headers.get("x-customs-policy-version").is_some_and(|v| v == version.as_str());
                let good = r.status == StatusCode::OK && same;
                if good { &ok } else { &bad }.fetch_add(1, Ordering::SeqCst);
                if good && started_during && reloading.load(Ordering::SeqCst) {
                    during.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    // The load is running before the reloads start.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ok.load(Ordering::SeqCst) < 20 {
        assert!(tokio::time::Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let tenants = ex.dir.path().join("tenants.toml");
    let good = std::fs::read_to_string(&tenants).unwrap();
    // A syntax error, then a semantic one (unknown jurisdiction), each rejected whole.
    let broken = [
        good.replacen("[[tenants]]", "[[tenants]", 1),
        good.replacen("jurisdiction = \"us\"", "jurisdiction = \"atlantis\"", 1),
    ];
    reloading.store(true, Ordering::SeqCst);
    for text in &broken {
        std::fs::write(&tenants, text).unwrap();
        let r = admin_post(ex.gw.admin_addr, "/admin/reload", "").await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
        let errors = r.json()["errors"].to_string();
        assert!(errors.contains("tenants.toml:"), "the error names the file and line: {errors}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let broken_unknown = r#"tenants[0] (demo-us).jurisdiction: unknown jurisdiction"#;
    let last = admin_post(ex.gw.admin_addr, "/admin/reload", "").await;
    assert!(last.json()["errors"].to_string().contains(broken_unknown), "{:?}", last.body);
    reloading.store(false, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(bad.load(Ordering::SeqCst), 0, "requests failed or changed policy during a rejected reload");
    let during = during.load(Ordering::SeqCst);
    assert!(during > 0, "no request was served between the first and the last rejected reload");

    let m = scrape(ex.gw.admin_addr).await;
    assert_eq!(value(&m, "customs_config_reloads_total", &[("result", "failure")]), 3.0);
    assert_eq!(value(&m, "customs_policy_info", &[("version", &version)]), 1.0);
    ex.stop().await;
}

#[tokio::test]
async fn a_stream_started_before_a_reload_completes() {
    let ex = Example::start_unwatched().await;
    let (mut body, mut seen) = gated_stream(ex.gw.addr, "sk-demo-us").await;

    edit_file(ex.dir.path(), "tenants.toml", SUSPEND_DEMO_US.0, SUSPEND_DEMO_US.1);
    assert_eq!(admin_post(ex.gw.admin_addr, "/admin/reload", "").await.status, StatusCode::OK);
    assert_eq!(chat(ex.gw.addr, "sk-demo-us", "gpt-4o-mini", None).await.code(), "tenant_suspended");

    ex.mock.open_gate();
    read_until(&mut body, &mut seen, "data: [DONE]", Duration::from_secs(10)).await;
    assert!(seen.contains("chunk 4. "), "the stream ran to its end: {seen}");
    ex.stop().await;
}

/// A tenant kept in `tenants.d/` is served, and a change to its file is picked up like one to
/// `tenants.toml`.
#[tokio::test]
async fn a_change_in_tenants_d_is_picked_up_by_the_watcher() {
    let digest = hex::encode(customs::auth::digest(b"sk-extra"));
    let extra = format!(
        "[[tenants]]\nid = \"extra\"\nlegal_name = \"Extra Inc.\"\ncountry = \"US\"\njurisdiction = \"us\"\nstatus = \"active\"\nkey_sha256 = [\"{digest}\"]\n"
    );
    let ex = Example::start_with(|dir| {
        std::fs::create_dir(dir.join("tenants.d")).unwrap();
        std::fs::write(dir.join("tenants.d/extra.toml"), &extra).unwrap();
    })
    .await;
    assert_eq!(chat(ex.gw.addr, "sk-extra", "gpt-4o-mini", None).await.status, StatusCode::OK);
    edit_file(&ex.dir.path().join("tenants.d"), "extra.toml", SUSPEND_DEMO_US.0, SUSPEND_DEMO_US.1);
    suspended_within_15s(ex.gw.addr, "sk-extra").await;
    ex.stop().await;
}

/// Waits until the tenant with `key` is refused as suspended: the watcher has reloaded.
async fn suspended_within_15s(addr: std::net::SocketAddr, key: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = chat(addr, key, "gpt-4o-mini", None).await;
        if r.status == StatusCode::FORBIDDEN {
            assert_eq!(r.code(), "tenant_suspended");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the watcher never reloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_change_in_the_folder_is_picked_up_by_the_watcher() {
    let ex = Example::start().await;
    assert_eq!(chat(ex.gw.addr, "sk-demo-us", "gpt-4o-mini", None).await.status, StatusCode::OK);
    edit_file(ex.dir.path(), "tenants.toml", SUSPEND_DEMO_US.0, SUSPEND_DEMO_US.1);
    suspended_within_15s(ex.gw.addr, "sk-demo-us").await;
    let m = scrape(ex.gw.admin_addr).await;
    assert!(value(&m, "customs_config_reloads_total", &[("result", "success")]) >= 1.0);
    ex.stop().await;
}
