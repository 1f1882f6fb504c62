//! What the upstream sees and what the client gets back: credentials, headers, body bytes,
//! failover and upstream failures.

use http::{Method, StatusCode};

use crate::support::{self, Example, UPSTREAM_KEY, US_JURISDICTION as JURISDICTIONS, closed_port, send, write_config};

const GROUPS: &str = r#"[[groups]]
id = "all"
countries = ["US"]
"#;
const TENANTS: &str = r#"[[tenants]]
id = "t"
legal_name = "T Inc."
country = "US"
jurisdiction = "us"
status = "active"
key_sha256 = ["0ee9085462db24cdd03f8476e5be9b13d8719e1023e06a3d4f2c2d6aee172384"]  # sk-demo-us
"#;

fn models(endpoints: &str) -> String {
    format!("[[models]]\nid = \"m\"\ntraining_flops = 1e24\ncompute_basis = \"assumed\"\n{endpoints}")
}

fn endpoint(url: &str, extra: &str) -> String {
    format!(
        "[[models.endpoints]]\nurl = \"{url}\"\nresidency = \"us-east\"\napi_key_env = \"CUSTOMS_UPSTREAM_KEY\"\n{extra}\n"
    )
}

async fn single_model(endpoints: &str, gateway_toml: &str) -> (tempfile::TempDir, customs::server::Server) {
    let m = models(endpoints);
    let dir = write_config(&[
        ("models.toml", &m),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", JURISDICTIONS),
        ("tenants.toml", TENANTS),
        ("gateway.toml", gateway_toml),
    ]);
    let gw = support::gateway(dir.path()).await;
    (dir, gw)
}

#[tokio::test]
async fn forward_swaps_client_credentials_for_upstream_ones() {
    let ex = Example::start().await;
    let body = r#"{ "messages":[{"role":"user","content":"hi"}],  "model" : "gpt-4o-2024-08-06" ,"z":1 }"#;
    let mut headers = vec![
        ("authorization", "Bearer sk-demo-us"),
        ("cookie", "session=abc"),
        ("x-forwarded-for", "203.0.113.9"),
        ("openai-organization", "org-client"),
        ("content-type", "application/json"),
        ("user-agent", "it-test"),
    ];
    let r = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &headers, body).await;
    assert_eq!(r.status, StatusCode::OK);
    // A purpose is checked, never forwarded: demo-us has no declaration, so this one is refused.
    headers.push(("x-customs-purpose", "research"));
    let r = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &headers, body).await;
    assert_eq!(r.code(), "purpose_not_declared");
    let seen = ex.mock.requests().await;
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert_eq!(up.uri, "/v1/chat/completions");
    assert_eq!(
        up.headers.get_all("authorization").iter().collect::<Vec<_>>(),
        [format!("Bearer {UPSTREAM_KEY}").as_str()]
    );
    for gone in ["cookie", "x-forwarded-for", "openai-organization", "api-key", "x-customs-purpose"] {
        assert!(up.headers.get(gone).is_none(), "{gone} must not be forwarded");
    }
    assert_eq!(up.headers["user-agent"], "it-test");
    assert_eq!(&up.body[..], body.as_bytes(), "the body is forwarded byte for byte");

    let r = crate::support::chat(ex.gw.addr, "sk-demo-cn", "llama-3.1-8b-instruct", Some("translation")).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = ex.mock.requests().await;
    assert_eq!(seen.len(), 2);
    assert!(seen[1].headers.get("x-customs-purpose").is_none(), "the purpose stays at the gateway");
    ex.stop().await;
}

#[tokio::test]
async fn forward_fails_over_when_a_connection_cannot_be_made() {
    let mock = support::mock("second").await;
    let eps = format!(
        "{}{}",
        endpoint(&format!("http://{}/v1", closed_port()), ""),
        endpoint(&format!("http://{}/v1", mock.addr), "")
    );
    let (_dir, gw) = single_model(&eps, "").await;
    let r = crate::support::chat(gw.addr, "sk-demo-us", "m", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(mock.requests().await.len(), 1, "the second endpoint served it");
    gw.shutdown().await;
    mock.stop().await;
}

#[tokio::test]
async fn forward_upstream_failures_map_to_502_and_504() {
    let mock = support::mock("m").await;
    let eps = endpoint(&format!("http://{}/v1", mock.addr), "");
    let (_dir, gw) = single_model(&eps, "[upstream]\nfirst_byte_timeout = \"300ms\"\n").await;
    let call = |extra: (&'static str, &'static str)| {
        let addr = gw.addr;
        async move {
            send(
                addr,
                Method::POST,
                "/v1/chat/completions",
                &[("authorization", "Bearer sk-demo-us"), extra],
                crate::support::chat_body("m"),
            )
            .await
        }
    };
    let r = call(("x-mock-delay-ms", "3000")).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"));
    let r = call(("x-mock-fail", "close")).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_GATEWAY, "upstream_unavailable"));
    // Other upstream errors keep their status, but not their body, which the gateway logs
    // (redacted): the client gets upstream_error and the upstream's request id.
    let r = call(("x-mock-fail", "503")).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::SERVICE_UNAVAILABLE, "upstream_error"));
    assert!(!String::from_utf8_lossy(&r.body).contains("mock"), "{:?}", r.body);
    assert!(r.headers["x-upstream-request-id"].to_str().unwrap().starts_with("mock-"));
    gw.shutdown().await;
    mock.stop().await;

    // Nothing listening at all.
    let eps = endpoint(&format!("http://{}/v1", closed_port()), "");
    let (_dir, gw) = single_model(&eps, "").await;
    let r = crate::support::chat(gw.addr, "sk-demo-us", "m", None).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_GATEWAY, "upstream_unavailable"));
    gw.shutdown().await;
}

#[tokio::test]
async fn forward_upstream_refusing_our_credentials_is_not_the_clients_401() {
    // This mock expects a different key than the gateway sends.
    let opts = customs::mock::MockOptions { api_keys: vec!["other".into()], ..Default::default() };
    let mock = customs::mock::MockUpstream::start("127.0.0.1:0".parse().unwrap(), opts).await.unwrap();
    let eps = endpoint(&format!("http://{}/v1", mock.addr), "");
    let (_dir, gw) = single_model(&eps, "").await;
    let r = crate::support::chat(gw.addr, "sk-demo-us", "m", None).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_GATEWAY, "upstream_unavailable"));
    assert!(!String::from_utf8_lossy(&r.body).contains(UPSTREAM_KEY));
    gw.shutdown().await;
    mock.stop().await;
}

#[tokio::test]
async fn forward_to_azure_upstream_uses_deployment_path_and_api_key() {
    let mock = support::mock("azure").await;
    let eps = endpoint(
        &format!("http://{}/openai", mock.addr),
        "kind = \"azure\"\ndeployment = \"m-prod\"\napi_version = \"2024-10-21\"",
    );
    let (_dir, gw) = single_model(&eps, "").await;
    let r = send(
        gw.addr,
        Method::POST,
        "/v1/embeddings",
        &[("authorization", "Bearer sk-demo-us")],
        r#"{"model":"m","input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let up = &mock.requests().await[0];
    assert_eq!(up.uri, "/openai/deployments/m-prod/embeddings?api-version=2024-10-21");
    assert_eq!(up.headers["api-key"], UPSTREAM_KEY);
    assert!(up.headers.get("authorization").is_none());
    gw.shutdown().await;
    mock.stop().await;
}

/// A chat request to model `m` with extra headers (the mock reads `x-mock-*`).
async fn chat_with(addr: std::net::SocketAddr, extra: &[(&str, &str)]) -> support::Reply {
    let mut headers = vec![("authorization", "Bearer sk-demo-us")];
    headers.extend_from_slice(extra);
    send(addr, Method::POST, "/v1/chat/completions", &headers, crate::support::chat_body("m")).await
}

#[tokio::test]
async fn requests_go_to_the_endpoint_with_fewest_in_flight() {
    let (a, b) = (support::mock("a").await, support::mock("b").await);
    let eps =
        format!("{}{}", endpoint(&format!("http://{}/v1", a.addr), ""), endpoint(&format!("http://{}/v1", b.addr), ""));
    let (_dir, gw) = single_model(&eps, "").await;
    // One at a time: each finds both idle, and ties go to the first configured.
    for _ in 0..3 {
        assert_eq!(chat_with(gw.addr, &[]).await.status, StatusCode::OK);
    }
    assert_eq!((a.requests().await.len(), b.requests().await.len()), (3, 0));
    // Four at once, each held upstream: they spread two and two.
    let slow = (0..4).map(|_| chat_with(gw.addr, &[("x-mock-delay-ms", "400")]));
    for r in futures_util::future::join_all(slow).await {
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!((a.requests().await.len(), b.requests().await.len()), (5, 2));
    gw.shutdown().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_endpoint_failing_in_a_row_is_ejected_then_probed_back_in() {
    let (a, b) = (support::mock("a").await, support::mock("b").await);
    let eps =
        format!("{}{}", endpoint(&format!("http://{}/v1", a.addr), ""), endpoint(&format!("http://{}/v1", b.addr), ""));
    let gateway = "[upstream.outlier]\nconsecutive_failures = 2\nejection = \"700ms\"\nmax_ejection = \"10s\"\n";
    let (_dir, gw) = single_model(&eps, gateway).await;
    let failing = [("x-mock-fail", "503")];
    // Which mock served the request just sent: the one whose count grew.
    let mut counts = (0, 0);
    let mut served = async |r: support::Reply| {
        let now = (a.requests().await.len(), b.requests().await.len());
        let by = if now.0 > counts.0 {
            "a"
        } else if now.1 > counts.1 {
            "b"
        } else {
            "none"
        };
        counts = now;
        (by, r.status)
    };

    // Two 5xx in a row from a (the first, so the one chosen): a is out.
    for _ in 0..2 {
        assert_eq!(served(chat_with(gw.addr, &failing).await).await, ("a", StatusCode::SERVICE_UNAVAILABLE));
    }
    let m = support::scrape(gw.admin_addr).await;
    assert_eq!(support::value(&m, "customs_upstream_ejected", &[("endpoint", "m#0")]), 1.0);
    assert_eq!(support::value(&m, "customs_upstream_ejections_total", &[("endpoint", "m#0")]), 1.0);
    for _ in 0..3 {
        assert_eq!(served(chat_with(gw.addr, &[]).await).await, ("b", StatusCode::OK), "a is ejected");
    }

    // Past the ejection one request probes a; it fails, so a is out twice as long.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(served(chat_with(gw.addr, &failing).await).await, ("a", StatusCode::SERVICE_UNAVAILABLE), "the probe");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(served(chat_with(gw.addr, &[]).await).await, ("b", StatusCode::OK), "out for 1.4 s this time");
    let m = support::scrape(gw.admin_addr).await;
    assert_eq!(support::value(&m, "customs_upstream_ejections_total", &[("endpoint", "m#0")]), 2.0);

    // A probe that succeeds puts a back, and it takes requests again.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(served(chat_with(gw.addr, &[]).await).await, ("a", StatusCode::OK), "the probe");
    assert_eq!(served(chat_with(gw.addr, &[]).await).await, ("a", StatusCode::OK), "back in rotation");
    let m = support::scrape(gw.admin_addr).await;
    assert_eq!(support::value(&m, "customs_upstream_ejected", &[("endpoint", "m#0")]), 0.0);
    gw.shutdown().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn with_every_endpoint_ejected_or_full_the_client_gets_503_with_retry_after() {
    let mock = support::mock("m").await;
    let eps = endpoint(&format!("http://{}/v1", mock.addr), "");
    let gateway = "[upstream]\nmax_in_flight = 1\n\n[upstream.outlier]\nconsecutive_failures = 1\nejection = \"3s\"\n";
    let (_dir, gw) = single_model(&eps, gateway).await;

    // Full: one request held upstream, the next is shed at once.
    let held = tokio::spawn(chat_with(gw.addr, &[("x-mock-delay-ms", "600")]));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = chat_with(gw.addr, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::SERVICE_UNAVAILABLE, "upstream_overloaded"));
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(held.await.unwrap().status, StatusCode::OK);
    assert_eq!(mock.requests().await.len(), 1, "the shed request never went upstream");

    // Ejected: one failure is enough here; the client is told when the probe is due.
    assert_eq!(chat_with(gw.addr, &[("x-mock-fail", "500")]).await.code(), "upstream_error");
    let r = chat_with(gw.addr, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::SERVICE_UNAVAILABLE, "upstream_overloaded"));
    assert_eq!(r.headers["retry-after"], "3");
    assert_eq!(mock.requests().await.len(), 2);
    let m = support::scrape(gw.admin_addr).await;
    let shed = [("tenant", "t"), ("jurisdiction", "us"), ("decision", "error"), ("reason", "upstream_overloaded")];
    assert_eq!(support::value(&m, "customs_requests_total", &shed), 2.0);
    gw.shutdown().await;
    mock.stop().await;
}

#[tokio::test]
async fn a_request_no_endpoint_would_connect_to_is_retried_once_only() {
    let eps = format!(
        "{}{}{}",
        endpoint(&format!("http://{}/v1", closed_port()), ""),
        endpoint(&format!("http://{}/v1", closed_port()), ""),
        endpoint(&format!("http://{}/v1", closed_port()), "")
    );
    let (_dir, gw) = single_model(&eps, "").await;
    let r = crate::support::chat(gw.addr, "sk-demo-us", "m", None).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_GATEWAY, "upstream_unavailable"));
    let m = support::scrape(gw.admin_addr).await;
    let connects: f64 = (0..3)
        .map(|n| {
            let endpoint = format!("m#{n}");
            support::series(&m, "customs_upstream_errors_total", &[("endpoint", &endpoint), ("kind", "connect")])
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(connects, 2.0, "the first endpoint and one retry");
    gw.shutdown().await;
}
