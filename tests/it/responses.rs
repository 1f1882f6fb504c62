//! The OpenAI Responses API (`POST /v1/responses`, Azure's `/openai/v1/responses` and
//! `/openai/responses`): decided by the same policy as chat, streamed through event by event,
//! metered from the completed response; and a stored response's id bound to the tenant that
//! created it, so that only that tenant can read, delete, cancel or continue it.

use http::{Method, StatusCode};

use crate::support::{Example, UPSTREAM_KEY, direct, scrape, send, trail, without_id};

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
    let direct = direct(ex.mock.addr, "/v1/responses", &[("authorization", &upstream), pinned], STREAMED).await;
    let through = create(&ex, "/v1/responses", "sk-demo-us", STREAMED, "streamed").await;
    assert_eq!(through.status, StatusCode::OK);
    assert_eq!(through.headers["content-type"], "text/event-stream");
    // Each response has its own id; apart from that, the client sees what a direct call sees.
    assert_eq!(without_id(&through.body, "resp_"), without_id(&direct, "resp_"));
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

/// The first response id in a body or stream.
fn response_id(text: &str) -> &str {
    let at = text.find("\"resp_").unwrap_or_else(|| panic!("no response id in {text}")) + 1;
    let end = text[at..].find('"').unwrap() + at;
    &text[at..end]
}

#[tokio::test]
async fn a_stored_response_is_its_creators_only() {
    let ex = Example::start().await;
    let us = [("authorization", "Bearer sk-demo-us")];
    let de = [("authorization", "Bearer sk-demo-de")];
    let plain = create(&ex, "/v1/responses", "sk-demo-us", PLAIN, "create").await;
    assert_eq!(plain.status, StatusCode::OK);
    let id = plain.json()["id"].as_str().unwrap().to_owned();
    let streamed = create(&ex, "/v1/responses", "sk-demo-us", STREAMED, "create-streamed").await;
    let streamed_id = response_id(&String::from_utf8_lossy(&streamed.body)).to_owned();
    let background = r#"{"model":"gpt-4o-mini","input":"later","background":true}"#;
    let queued = create(&ex, "/v1/responses", "sk-demo-us", background, "create-background").await;
    assert_eq!(queued.json()["status"], "queued");
    let queued_id = queued.json()["id"].as_str().unwrap().to_owned();

    // Its creator reaches it on every path that addresses it, and through the OpenAI and Azure
    // prefixes alike.
    let paths = |id: &str| {
        [
            (Method::GET, format!("/v1/responses/{id}")),
            (Method::GET, format!("/openai/v1/responses/{id}/input_items")),
            (Method::POST, format!("/openai/responses/{id}/cancel?api-version=2025-04-01-preview")),
            (Method::GET, format!("/v1/responses/{id}")),
        ]
    };
    for (method, path) in paths(&id) {
        let r = send(ex.gw.addr, method.clone(), &path, &us, "").await;
        assert_eq!(r.status, StatusCode::OK, "{method} {path}: {:?}", r.body);
    }
    // The client's query goes along (paging input items, resuming a stream), its api-version not.
    let paged = format!("/openai/responses/{id}/input_items?limit=2&api-version=2025-04-01-preview");
    assert_eq!(send(ex.gw.addr, Method::GET, &paged, &us, "").await.status, StatusCode::OK);
    let sent = ex.mock.requests().await.last().unwrap().uri.clone();
    assert!(sent.ends_with(&format!("/v1/responses/{id}/input_items?limit=2")), "{sent}");
    for bound in [&streamed_id, &queued_id] {
        let r = send(ex.gw.addr, Method::GET, &format!("/v1/responses/{bound}"), &us, "").await;
        assert_eq!((r.status, r.json()["id"].as_str()), (StatusCode::OK, Some(bound.as_str())));
    }
    let more = format!(r#"{{"model":"gpt-4o-mini","input":"more","previous_response_id":"{id}"}}"#);
    let r = create(&ex, "/v1/responses", "sk-demo-us", &more, "continue").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["previous_response_id"], id.as_str());

    // Any other tenant, or an id the gateway never bound, finds nothing; nothing goes upstream.
    let sent = ex.mock.requests().await.len();
    for (who, target) in [(&de, id.as_str()), (&de, queued_id.as_str()), (&us, "resp_never_issued")] {
        for (method, path) in paths(target) {
            let r = send(ex.gw.addr, method.clone(), &path, who, "").await;
            assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "response_not_found".to_owned()), "{path}");
        }
        let r = send(ex.gw.addr, Method::DELETE, &format!("/v1/responses/{target}"), who, "").await;
        assert_eq!(r.code(), "response_not_found");
        let more = format!(r#"{{"model":"gpt-4o-mini","input":"more","previous_response_id":"{target}"}}"#);
        let r = send(ex.gw.addr, Method::POST, "/v1/responses", who, more).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "response_not_found".to_owned()));
        assert_eq!(r.json()["error"]["param"], "previous_response_id");
    }
    assert_eq!(ex.mock.requests().await.len(), sent, "no refused request reached the upstream");

    // Its creator can delete it.
    let r = send(ex.gw.addr, Method::DELETE, &format!("/v1/responses/{id}"), &us, "").await;
    assert_eq!((r.status, r.json()["deleted"].as_bool()), (StatusCode::OK, Some(true)));
    // Deleted, it is gone for its creator too.
    let r = send(ex.gw.addr, Method::GET, &format!("/v1/responses/{id}"), &us, "").await;
    assert_eq!(r.code(), "response_not_found");

    let metrics = scrape(ex.gw.admin_addr).await;
    let count = |op: &str, reason: &str| {
        metrics
            .iter()
            .filter(|s| s.name == "customs_operation_requests_total")
            .filter(|s| {
                s.labels.contains(&("operation".into(), op.into()))
                    && s.labels.contains(&("reason".into(), reason.into()))
            })
            .map(|s| s.value)
            .sum::<f64>()
    };
    assert_eq!(count("responses_retrieve", "allowed"), 4.0);
    assert_eq!(count("responses_retrieve", "response_not_found"), 7.0);
    assert_eq!(count("responses_input_items", "allowed"), 2.0);
    assert_eq!(count("responses_delete", "allowed"), 1.0);
    assert_eq!(count("responses", "allowed"), 4.0);

    // Reading a response back is a request, not the tokens the response used.
    let outcomes = outcomes_after_stop(ex).await;
    let retrieved: Vec<_> = outcomes.iter().filter(|o| o["outcome"] == "completed" && o["usage"].is_null()).collect();
    assert!(retrieved.len() >= 7, "{retrieved:?}");
    let created = outcomes.iter().find(|o| o["request_id"] == "create").unwrap();
    assert_eq!(created["metered"], true);
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
