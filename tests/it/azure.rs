//! Azure OpenAI-style client paths: `/openai/deployments/{deployment}/...?api-version=...`.

use http::{Method, StatusCode};

use crate::support::{Example, send};

#[tokio::test]
async fn azure_deployment_path_is_decided_like_the_model_it_names() {
    let ex = Example::start().await;
    let post = |path: &'static str, key: &'static str, body: &'static str| {
        let addr = ex.gw.addr;
        async move { send(addr, Method::POST, path, &[("api-key", key)], body).await }
    };
    let msgs = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", "sk-demo-us", msgs).await;
    assert_eq!(r.status, StatusCode::OK);
    let r =
        post("/openai/deployments/gpt-4o-2024-08-06/chat/completions?api-version=2024-10-21", "sk-demo-cn", msgs).await;
    assert_eq!(r.code(), "compute_threshold_exceeded");
    let r = post(
        "/openai/deployments/claude-3-5-sonnet/completions?api-version=2024-10-21",
        "sk-demo-cn",
        r#"{"prompt":"x"}"#,
    )
    .await;
    assert_eq!(r.code(), "model_not_allowed");
    let r = post(
        "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21",
        "sk-demo-embed",
        r#"{"input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["object"], "list");
    let r = post("/openai/deployments/nope/chat/completions?api-version=2024-10-21", "sk-demo-us", msgs).await;
    assert_eq!(r.code(), "model_not_found");
    // Percent-encoding is not decoded, so it cannot smuggle a different name past the policy.
    let r = post("/openai/deployments/gpt%2D4o/chat/completions", "sk-demo-us", msgs).await;
    assert_eq!(r.code(), "model_not_found");
    ex.stop().await;
}

#[tokio::test]
async fn azure_body_model_must_agree_with_the_deployment() {
    let ex = Example::start().await;
    let addr = ex.gw.addr;
    let post = |body: &'static str| async move {
        send(addr, Method::POST, "/openai/deployments/gpt-4o-mini/chat/completions", &[("api-key", "sk-demo-cn")], body)
            .await
    };
    // The deployment is allowed for demo-cn; a body naming a denied model must not ride along.
    let r = post(r#"{"model":"gpt-4o","messages":[]}"#).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    assert_eq!(r.json()["error"]["param"], "model");
    let r = post(r#"{"model":"gpt-4o-mini","messages":[]}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    // The reverse: an allowed body model cannot unlock a denied deployment.
    let r = send(
        addr,
        Method::POST,
        "/openai/deployments/gpt-4o/chat/completions",
        &[("api-key", "sk-demo-cn")],
        r#"{"model":"gpt-4o-mini","messages":[]}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(ex.mock.requests().await.len(), 1);
    ex.stop().await;
}

/// An Azure-path body without `model`, for a model an OpenAI-kind endpoint serves, reaches that
/// upstream naming the deployment's model: it cannot fall back to the upstream's default model.
/// Headers that would pick another model, or pass for forwarding headers, do not reach it.
#[tokio::test]
async fn a_model_less_azure_body_names_its_model_upstream_and_model_headers_stay_behind() {
    let ex = Example::start().await;
    let headers = [
        ("api-key", "sk-demo-us"),
        ("x-model", "frontier-x-preview"),
        ("x-ms-model-mesh-model-name", "frontier-x-preview"),
        ("x_forwarded_for", "10.0.0.1"),
    ];
    for (body, sent) in [
        (
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini"}"#,
        ),
        ("{ }", r#"{ "model":"gpt-4o-mini"}"#),
    ] {
        let path = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21";
        let r = send(ex.gw.addr, Method::POST, path, &headers, body).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let got = ex.mock.requests().await.last().unwrap().clone();
        assert!(got.uri.ends_with("/v1/chat/completions"), "{}", got.uri);
        assert_eq!(String::from_utf8_lossy(&got.body), sent);
        for name in ["x-model", "x-ms-model-mesh-model-name", "x_forwarded_for"] {
            assert!(got.headers.get(name).is_none(), "{name} reached the upstream");
        }
    }
    ex.stop().await;
}
