//! One gate for every route: each path customs serves that can name a model is decided by the
//! same policy, so a tenant x model denied on one route is denied, with the same code, on all of
//! them (Anthropic's routes included, in Anthropic's error shape); a stored response's routes are
//! gated the same way and are its owner's only; and a path that is not one of ours stays 404
//! before anything else is looked at.

use customs::route::{Operation, Route, classify};
use http::{Method, StatusCode};

use crate::support::{Example, send};

/// Every inference path customs routes for `model`, with the body that names it there.
fn inference_paths(model: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for op in Operation::ALL {
        let body = match op {
            Operation::ChatCompletions => r#""messages":[{"role":"user","content":"hi"}]"#,
            Operation::Completions => r#""prompt":"hi""#,
            Operation::Embeddings => r#""input":"hi""#,
            Operation::Responses => r#""input":"hi""#,
            Operation::Messages => r#""max_tokens":16,"messages":[{"role":"user","content":"hi"}]"#,
            Operation::CountTokens => r#""messages":[{"role":"user","content":"hi"}]"#,
        };
        let named = format!(r#"{{"model":"{model}",{body}}}"#);
        let unnamed = format!("{{{body}}}");
        // Anthropic's API is served under `/v1/` only, as Anthropic serves it.
        let prefixes: &[&str] = if op.anthropic() { &["/v1/"] } else { &["/v1/", "/openai/v1/"] };
        for prefix in prefixes {
            out.push((format!("{prefix}{}", op.suffix()), named.clone()));
        }
        let deployment = format!("/openai/deployments/{model}/{}?api-version=2024-10-21", op.suffix());
        if classify(deployment.split('?').next().unwrap_or_default()).is_some() {
            out.push((deployment, unnamed));
        }
        if op == Operation::Responses {
            out.push(("/openai/responses?api-version=2025-04-01-preview".into(), named));
        }
    }
    // Each path is one the router takes as naming this operation.
    for (path, _) in &out {
        let path = path.split('?').next().unwrap_or_default();
        assert!(matches!(classify(path), Some(Route::Inference { .. })), "{path}");
    }
    out
}

#[tokio::test]
async fn a_denied_tenant_and_model_is_denied_on_every_route_that_names_the_model() {
    let ex = Example::start().await;
    for (key, model, code) in [
        ("sk-demo-cn", "gpt-4o", "compute_threshold_exceeded"),
        ("sk-demo-cn", "claude-3-5-sonnet", "model_not_allowed"),
        ("sk-demo-ir", "gpt-4o-mini", "jurisdiction_embargoed"),
        ("sk-demo-listed", "gpt-4o-mini", "denied_party"),
        ("sk-demo-suspended", "gpt-4o-mini", "tenant_suspended"),
        ("sk-demo-us", "no-such-model", "model_not_found"),
    ] {
        let paths = inference_paths(model);
        assert_eq!(paths.len(), 4 * 2 + 3 + 1 + 2, "chat, completions, embeddings, responses, messages");
        for (path, body) in paths {
            let auths = [
                ("authorization", format!("Bearer {key}")),
                ("api-key", key.to_owned()),
                ("x-api-key", key.to_owned()),
            ];
            for auth in auths {
                let r = send(ex.gw.addr, Method::POST, &path, &[(auth.0, auth.1.as_str())], body.clone()).await;
                assert_eq!(r.code(), code, "{key} {model} {path}");
                // Each API's own error shape, so its SDKs raise their typed errors.
                let anthropic = path.starts_with("/v1/messages");
                assert_eq!(r.json()["type"] == "error", anthropic, "{path}: {}", r.json());
            }
        }
        // Reading the model is gated the same way.
        let r = send(ex.gw.addr, Method::GET, &format!("/v1/models/{model}"), &[("api-key", key)], "").await;
        assert_eq!(r.code(), code, "{key} GET /v1/models/{model}");
    }
    assert!(ex.mock.requests().await.is_empty(), "no denied request reached the upstream");
    ex.stop().await;
}

#[tokio::test]
async fn a_path_that_is_not_ours_is_404_before_authentication() {
    let ex = Example::start().await;
    for path in [
        "/v1/messages/batches",
        "/openai/v1/messages",
        "/v1/responses/resp_1/other",
        "/v1/responses/resp.1",
        "/v1/audio/speech",
        "/v1/images/generations",
        "/v1/files",
        "/v1/batches",
        "/openai/deployments/gpt-4o/responses",
        "/openai/deployments/gpt-4o/audio/transcriptions",
        "/v1/chat/completions/",
        "/V1/responses",
    ] {
        for auth in [None, Some("Bearer sk-demo-us")] {
            let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
            let r = send(ex.gw.addr, Method::POST, path, &headers, r#"{"model":"gpt-4o-mini"}"#).await;
            assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "route_not_found".to_owned()), "{path}");
        }
    }
    assert!(ex.mock.requests().await.is_empty());
    ex.stop().await;
}
