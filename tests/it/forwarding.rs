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
