//! Every policy reason code, end to end through the example config: client sends, client gets.

use http::{Method, StatusCode};

use crate::support::{Example, chat, send};

#[tokio::test]
async fn policy_example_config_gives_each_reason_code() {
    let ex = Example::start().await;
    let addr = ex.gw.addr;
    // (key, model, purpose, status, code); code "" means allowed.
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("sk-demo-us", "gpt-4o", None, 200, ""),
        ("sk-demo-us", "gpt-4o-2024-08-06", None, 200, ""),
        ("sk-demo-us", "frontier-x-preview", None, 200, ""),
        ("sk-demo-suspended", "gpt-4o-mini", None, 403, "tenant_suspended"),
        ("sk-demo-suspended", "no-such-model", None, 403, "tenant_suspended"),
        ("sk-demo-listed", "llama-3.1-8b-instruct", None, 403, "denied_party"),
        ("sk-demo-listed", "no-such-model", None, 403, "denied_party"),
        ("sk-demo-nl", "gpt-4o-mini", None, 200, ""),
        ("sk-demo-ir", "llama-3.1-8b-instruct", None, 403, "jurisdiction_embargoed"),
        ("sk-demo-cn", "claude-3-5-sonnet", None, 403, "model_not_allowed"),
        ("sk-demo-cn", "claude-3-5-sonnet-20241022", None, 403, "model_not_allowed"),
        ("sk-demo-embed", "gpt-4o-mini", None, 403, "model_not_allowed"),
        ("sk-demo-embed", "text-embedding-3-small", None, 200, ""),
        ("sk-demo-cn", "gpt-4o", None, 403, "compute_threshold_exceeded"),
        ("sk-demo-de", "frontier-x-preview", None, 403, "compute_threshold_exceeded"),
        ("sk-demo-de", "gpt-4o", None, 403, "end_use_declaration_required"),
        // Below both of rest-of-world's declaration lines (1e25, and 1e24 from 2027-01-01).
        ("sk-demo-de", "text-embedding-3-small", None, 200, ""),
        ("sk-demo-mo", "llama-3.1-8b-instruct", None, 403, "end_use_declaration_expired"),
        ("sk-demo-cn", "llama-3.1-8b-instruct", Some("translation"), 200, ""),
        ("sk-demo-cn", "llama-3.1-8b-instruct", Some("weapons-research"), 403, "purpose_not_declared"),
        ("sk-demo-us", "llama-3.1-8b-instruct", Some("research"), 403, "purpose_not_declared"),
        ("sk-demo-cn", "qwen2.5-72b-instruct", None, 200, ""),
        ("sk-demo-us", "qwen2.5-72b-instruct", None, 503, "no_resident_endpoint"),
        ("sk-demo-us", "no-such-model", None, 404, "model_not_found"),
        ("sk-demo-us", "GPT-4O", None, 404, "model_not_found"),
        ("sk-demo-us", "gpt-4o ", None, 404, "model_not_found"),
        ("sk-demo-us", "gpt\u{2011}4o", None, 404, "model_not_found"),
        ("sk-demo-us", "gpt-4o\u{200b}", None, 404, "model_not_found"),
        ("sk-wrong", "gpt-4o", None, 401, "invalid_api_key"),
    ];
    for &(key, model, purpose, status, code) in cases {
        let r = chat(addr, key, model, purpose).await;
        let what = format!("{key} {model:?} {purpose:?}: {:?}", r.body);
        assert_eq!(r.status.as_u16(), status, "{what}");
        // The example's Claude model is served over Anthropic's Messages API, in its shapes.
        let anthropic = model.starts_with("claude-");
        if code.is_empty() {
            let (key, object) = match model {
                _ if anthropic => ("type", "message"),
                _ if model.starts_with("text-embedding-") => ("object", "list"),
                _ => ("object", "chat.completion"),
            };
            assert_eq!(r.json()[key], object, "{what}");
            assert!(r.headers.get("x-customs-reason").is_none(), "{what}");
        } else {
            assert_eq!(r.code(), code, "{what}");
            let err = &r.json()["error"];
            assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
            assert!(err["type"].is_string(), "{what}");
            assert!(if anthropic { r.json()["type"] == "error" } else { err.get("param").is_some() }, "{what}");
        }
        assert!(r.headers.get("x-request-id").is_some(), "{what}");
    }
    let allowed = cases.iter().filter(|c| c.4.is_empty()).count();
    assert_eq!(ex.mock.requests().await.len(), allowed, "only allowed requests reach the upstream");
    ex.stop().await;
}

#[tokio::test]
async fn auth_missing_or_malformed_key_returns_401() {
    let ex = Example::start().await;
    let body = crate::support::chat_body("gpt-4o");
    for headers in [
        vec![],
        vec![("authorization", "Basic c2stZGVtby11cw==")],
        vec![("authorization", "Bearer sk-demo-us"), ("api-key", "sk-demo-cn")],
        vec![("api-key", "")],
    ] {
        let r = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &headers, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(r.code(), "invalid_api_key");
        assert_eq!(r.headers["www-authenticate"], "Bearer");
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("sk-demo"), "keys are never echoed: {text}");
    }
    let ok = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[("api-key", "sk-demo-us")], body).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ex.mock.requests().await.len() == 1);
    ex.stop().await;
}

#[tokio::test]
async fn models_list_shows_only_allowed_models() {
    let ex = Example::start().await;
    let addr = ex.gw.addr;
    let list = |key: &'static str| async move {
        let auth = format!("Bearer {key}");
        let r = send(addr, Method::GET, "/v1/models", &[("authorization", &auth)], "").await;
        assert_eq!(r.status, StatusCode::OK);
        let v = r.json();
        assert_eq!(v["object"], "list");
        v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(
        list("sk-demo-cn").await,
        [
            "gpt-4o-mini",
            "llama-3.3-70b-instruct",
            "llama-3.1-8b-instruct",
            "qwen2.5-72b-instruct",
            "deepseek-v3",
            "text-embedding-3-small"
        ]
    );
    assert_eq!(list("sk-demo-embed").await, ["text-embedding-3-small"]);
    assert!(list("sk-demo-ir").await.is_empty());
    assert!(list("sk-demo-mo").await.is_empty());
    let us = list("sk-demo-us").await;
    assert!(us.contains(&"frontier-x-preview".to_owned()) && !us.contains(&"qwen2.5-72b-instruct".to_owned()));

    let get = |path: &'static str| async move {
        send(addr, Method::GET, path, &[("authorization", "Bearer sk-demo-cn")], "").await
    };
    let r = get("/v1/models/gpt-4o-mini").await;
    assert_eq!((r.status, r.json()["id"].as_str()), (StatusCode::OK, Some("gpt-4o-mini")));
    assert_eq!(get("/v1/models/gpt-4o").await.code(), "compute_threshold_exceeded");
    assert_eq!(get("/v1/models/nope").await.code(), "model_not_found");
    let r = send(ex.gw.addr, Method::GET, "/v1/models", &[], "").await;
    assert_eq!(r.code(), "invalid_api_key");
    ex.stop().await;
}

/// A model serves the operations its entry lists: a chat request naming an embeddings model, or
/// an embeddings request naming a chat model, is refused before anything is forwarded.
#[tokio::test]
async fn a_request_for_an_operation_the_model_does_not_serve_is_refused() {
    let ex = Example::start().await;
    let addr = ex.gw.addr;
    for (key, path, body) in [
        ("sk-demo-embed", "/v1/chat/completions", r#"{"model":"text-embedding-3-small","messages":[]}"#),
        ("sk-demo-embed", "/v1/responses", r#"{"model":"text-embedding-3-small","input":"hi"}"#),
        ("sk-demo-us", "/v1/embeddings", r#"{"model":"gpt-4o-mini","input":"hi"}"#),
        ("sk-demo-us", "/openai/deployments/gpt-4o-mini/embeddings", r#"{"input":"hi"}"#),
    ] {
        let r = send(addr, Method::POST, path, &[("api-key", key)], body).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "operation_not_supported".to_owned()),
            "{path} {body}"
        );
        assert_eq!(r.json()["error"]["param"], "model");
    }
    // A policy refusal still comes first: the operation is checked only for an allowed model.
    let r =
        send(addr, Method::POST, "/v1/embeddings", &[("api-key", "sk-demo-cn")], r#"{"model":"gpt-4o","input":"x"}"#)
            .await;
    assert_eq!(r.code(), "compute_threshold_exceeded");
    assert!(ex.mock.requests().await.is_empty(), "nothing was forwarded");
    ex.stop().await;
}
