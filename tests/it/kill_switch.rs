//! The kill switch: an authenticated admin call suspends a tenant at once; the suspension is
//! persisted, survives a reload and a restart, is audited, and is lifted by reinstating.

use http::{Method, StatusCode};

use crate::support::{ADMIN_TOKEN, Example, admin_post, chat, example_day, gateway_on, scrape, send, trail, value};

const SUSPEND: &str = r#"{"by": "compliance@example.com", "reason": "suspected diversion, case 2026-114"}"#;

#[tokio::test]
async fn suspend_applies_at_once_survives_reload_and_restart_and_reinstate_lifts_it() {
    let ex = Example::start_unwatched().await;
    let admin = ex.gw.admin_addr;
    assert_eq!(chat(ex.gw.addr, "sk-demo-de", "gpt-4o-mini", None).await.status, StatusCode::OK);

    let r = admin_post(admin, "/admin/tenants/demo-de/suspend", SUSPEND).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["persisted"], true);
    let denied = chat(ex.gw.addr, "sk-demo-de", "gpt-4o-mini", None).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.code(), "tenant_suspended");
    assert_eq!(chat(ex.gw.addr, "sk-demo-us", "gpt-4o-mini", None).await.status, StatusCode::OK);

    let list =
        send(admin, Method::GET, "/admin/suspensions", &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))], "")
            .await;
    assert_eq!(list.json()["suspended"]["demo-de"]["by"], "compliance@example.com");
    let state = std::fs::read_to_string(ex.dir.path().join("state/kill-switch.json")).unwrap();
    assert!(state.contains("suspected diversion"), "{state}");
    assert_eq!(value(&scrape(admin).await, "customs_kill_switch_suspended_tenants", &[]), 1.0);

    // A reload of a changed config keeps the suspension.
    crate::support::edit_file(ex.dir.path(), "tenants.toml", "Beispiel Forschung GmbH", "Beispiel Forschung AG");
    let reloaded = admin_post(admin, "/admin/reload", "").await;
    assert_eq!(reloaded.json()["changed"], true);
    assert_eq!(chat(ex.gw.addr, "sk-demo-de", "gpt-4o-mini", None).await.code(), "tenant_suspended");

    // So does a restart on the same folder.
    ex.gw.shutdown().await;
    let gw = gateway_on(ex.dir.path(), example_day()).await;
    assert_eq!(chat(gw.addr, "sk-demo-de", "gpt-4o-mini", None).await.code(), "tenant_suspended");
    let r = admin_post(
        gw.admin_addr,
        "/admin/tenants/demo-de/reinstate",
        r#"{"by":"compliance@example.com","reason":"cleared"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(chat(gw.addr, "sk-demo-de", "gpt-4o-mini", None).await.status, StatusCode::OK);
    gw.shutdown().await;

    let records = trail(&ex.dir.path().join("audit"));
    let suspend = records.iter().find(|r| r["type"] == "suspend").expect("suspension audited");
    assert_eq!(suspend["tenant"], "demo-de");
    assert_eq!(suspend["by"], "compliance@example.com");
    assert!(records.iter().any(|r| r["type"] == "reinstate" && r["tenant"] == "demo-de"));
    let by_switch = records.iter().find(|r| r["reason"] == "tenant_suspended").unwrap();
    assert!(by_switch["rule"].as_str().unwrap().starts_with("kill switch: suspended by compliance@example.com"));
    ex.mock.stop().await;
}

#[tokio::test]
async fn the_admin_api_wants_the_token_and_a_known_tenant() {
    let ex = Example::start_unwatched().await;
    let admin = ex.gw.admin_addr;
    let path = "/admin/tenants/demo-de/suspend";
    let none = send(admin, Method::POST, path, &[], SUSPEND).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let wrong = send(admin, Method::POST, path, &[("authorization", "Bearer not-the-token")], SUSPEND).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!String::from_utf8_lossy(&wrong.body).contains(ADMIN_TOKEN));
    assert_eq!(admin_post(admin, "/admin/tenants/nobody/suspend", SUSPEND).await.status, StatusCode::NOT_FOUND);
    assert_eq!(admin_post(admin, path, r#"{"by":"x"}"#).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(admin_post(admin, path, r#"{"by":" ","reason":"r"}"#).await.status, StatusCode::BAD_REQUEST);
    let get = send(admin, Method::GET, path, &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))], "").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    // Nothing above suspended anyone.
    assert_eq!(chat(ex.gw.addr, "sk-demo-de", "gpt-4o-mini", None).await.status, StatusCode::OK);
    ex.stop().await;
}
