//! The OpenAI Responses API (`POST /v1/responses`, Azure's `/openai/v1/responses` and
//! `/openai/responses`): decided by the same policy as chat, streamed through event by event,
//! metered from the completed response, and fail-closed where a response would be addressed by id.

use http::{Method, StatusCode};
use http_body_util::BodyExt;

use crate::support::{Example, UPSTREAM_KEY, send, send_raw, trail};

const PLAIN: &str = r#"{"model":"gpt-4o-mini","input":"Say hello.","max_output_tokens":64}"#;
const STREAMED: &str = r#"{"model":"gpt-4o-mini","input":"Say hello.","stream":true}"#;

async fn create(ex: &Example, path: &str, key: &str, body: &str, id: &str) -> crate::support::Reply {
    let auth = format!("Bearer {key}");
    let headers = [("authorization", auth.as_str()), ("x-request-id", id), ("x-mock-created", "1764547200")];
    send(ex.gw.addr, Method::POST, path, &headers, body.to_owned()).await
}

async fn outcomes_after_stop(ex: Example) -> Vec<serde_json::Value> {
    let audit = ex.audit_dir();
    let Example { mock, gw, dir: _kept } = ex;
    gw.shutdown().await;
    mock.stop().await;
    trail(&audit).into_iter().filter(|r| r["type"] == "outcome").collect()
}

#[tokio::test]
async fn a_response_is_created_plain_or_streamed_and_charged_its_usage() {
    let ex = Example::start().await;
    let r = create(&ex, "/v1/responses", "sk-demo-us", PLAIN, "plain").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let body = r.json();
    assert_eq!((body["object"].as_str(), body["status"].as_str()), (Some("response"), Some("completed")));
    let plain_usage = body["usage"].clone();

    // Streamed: the events arrive as the upstream sent them.
    let upstream = format!("Bearer {UPSTREAM_KEY}");
    let pinned = ("x-mock-created", "1764547200");
    let direct =
        send_raw(ex.mock.addr, Method::POST, "/v1/responses", &[("authorization", &upstream), pinned], STREAMED)
            .await
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
    let through = create(&ex, "/v1/responses", "sk-demo-us", STREAMED, "streamed").await;
    assert_eq!(through.status, StatusCode::OK);
    assert_eq!(through.headers["content-type"], "text/event-stream");
    assert_eq!(through.body, direct, "the client sees what a direct call sees");
    let text = String::from_utf8_lossy(&through.body);
    assert!(text.starts_with("event: response.created\n") && text.contains("event: response.completed\n"), "{text}");
    // Nothing was added to the request: a Responses stream reports usage unasked.
    let forwarded = ex.mock.requests().await.last().unwrap().body.clone();
    assert_eq!(forwarded, STREAMED.as_bytes());

    // Azure's paths for the same API.
    for path in ["/openai/v1/responses", "/openai/responses?api-version=2025-04-01-preview"] {
        let r = send(ex.gw.addr, Method::POST, path, &[("api-key", "sk-demo-us")], PLAIN).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }

    let outcomes = outcomes_after_stop(ex).await;
    let of = |id: &str| outcomes.iter().find(|o| o["request_id"] == id).unwrap().clone();
    let plain = of("plain");
    assert_eq!(plain["outcome"], "completed");
    assert_eq!(plain["usage"]["prompt_tokens"], plain_usage["input_tokens"]);
    assert_eq!(plain["usage"]["completion_tokens"], plain_usage["output_tokens"]);
    assert_eq!(plain["metered"], true);
    let streamed = of("streamed");
    assert_eq!(streamed["usage"]["prompt_tokens"], STREAMED.len().div_ceil(4) as u64);
    assert_eq!(streamed["usage"]["completion_tokens"], 5, "the mock's five chunks");
    assert_eq!(streamed["metered"], true);
}

#[tokio::test]
async fn responses_are_decided_like_chat() {
    let ex = Example::start().await;
    for (key, model, purpose, code) in [
        ("sk-demo-cn", "gpt-4o", None, "compute_threshold_exceeded"),
        ("sk-demo-cn", "claude-3-5-sonnet", None, "model_not_allowed"),
        ("sk-demo-ir", "gpt-4o-mini", None, "jurisdiction_embargoed"),
        ("sk-demo-us", "no-such-model", None, "model_not_found"),
        ("sk-demo-us", "llama-3.1-8b-instruct", Some("research"), "purpose_not_declared"),
    ] {
        let body = format!(r#"{{"model":"{model}","input":"hi"}}"#);
        let auth = format!("Bearer {key}");
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(p) = purpose {
            headers.push(("x-customs-purpose", p));
        }
        let on_responses = send(ex.gw.addr, Method::POST, "/v1/responses", &headers, body.clone()).await;
        let chat = format!(r#"{{"model":"{model}","messages":[]}}"#);
        let on_chat = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &headers, chat).await;
        assert_eq!(on_responses.code(), code, "{key} {model}");
        assert_eq!((on_responses.status, on_responses.code()), (on_chat.status, on_chat.code()), "{key} {model}");
    }
    let r = send(ex.gw.addr, Method::POST, "/v1/responses", &[], PLAIN).await;
    assert_eq!(r.code(), "invalid_api_key");
    ex.stop().await;
}

#[tokio::test]
async fn a_response_cannot_be_addressed_by_id_until_ids_are_bound_to_tenants() {
    let ex = Example::start().await;
    for (body, param) in [
        (r#"{"model":"gpt-4o-mini","input":"more","previous_response_id":"resp_mock"}"#, "previous_response_id"),
        (r#"{"model":"gpt-4o-mini","input":"later","background":true}"#, "background"),
    ] {
        let r = create(&ex, "/v1/responses", "sk-demo-us", body, param).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request".to_owned()), "{param}");
        assert_eq!(r.json()["error"]["param"], param);
    }
    for (method, path) in [
        (Method::GET, "/v1/responses/resp_mock"),
        (Method::DELETE, "/v1/responses/resp_mock"),
        (Method::POST, "/v1/responses/resp_mock/cancel"),
        (Method::GET, "/v1/responses/resp_mock/input_items"),
        (Method::POST, "/openai/deployments/gpt-4o-mini/responses"),
    ] {
        let r = send(ex.gw.addr, method.clone(), path, &[("authorization", "Bearer sk-demo-us")], "").await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "route_not_found".to_owned()), "{method} {path}");
    }
    assert!(ex.mock.requests().await.is_empty(), "nothing reached the upstream");
    ex.stop().await;
}

#[tokio::test]
async fn an_azure_endpoint_is_sent_responses_on_its_resource_path() {
    // gpt-4o served only by its Azure endpoint.
    let ex = Example::start_with(|d| {
        let path = d.join("models.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let azure = text.find("/openai\"\nkind = \"azure\"").unwrap();
        let own = text[..azure].rfind("[[models.endpoints]]").unwrap();
        let openai = text[..own].rfind("[[models.endpoints]]").unwrap();
        std::fs::write(&path, format!("{}{}", &text[..openai], &text[own..])).unwrap();
    })
    .await;
    let body = r#"{"model":"gpt-4o","input":"hi"}"#;
    let r = create(&ex, "/v1/responses", "sk-demo-us", body, "azure").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let sent = ex.mock.requests().await.last().unwrap().clone();
    assert!(sent.uri.ends_with("/openai/responses?api-version=2024-10-21"), "{}", sent.uri);
    assert_eq!(sent.body, body.as_bytes());
    ex.stop().await;
}
