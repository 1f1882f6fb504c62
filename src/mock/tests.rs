//! The mock's own tests: the event sequences it streams, and each API's routes answered
//! in-process, without a socket.

use http::Request;

use super::*;

/// Sends one request through the mock's router, as a connection would.
async fn call(
    state: &Arc<State>,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let (parts, ()) = req.body(()).unwrap().into_parts();
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    let (head, body) = respond(state, &parts, &Bytes::from(body.to_owned()), n).await.unwrap().into_parts();
    (head.status, head.headers, body.collect().await.unwrap().to_bytes())
}

/// A stream's events as (name, data) pairs; the data of a nameless event under "".
fn sse(body: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.ends_with("\n\n"), "{text}");
    text.split_terminator("\n\n")
        .map(|event| {
            let (name, data) = match event.strip_prefix("event: ") {
                Some(rest) => rest.split_once("\ndata: ").unwrap(),
                None => ("", event.strip_prefix("data: ").unwrap()),
            };
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[test]
fn sse_events_are_json_chunks_then_done() {
    let usage = usage(7, 2);
    let events = sse_events(true, "a \"quoted\" name", "gpt-4o", 2, Some(&usage), 42);
    assert_eq!(events.len(), 5);
    let parsed: Vec<Value> = events[..4]
        .iter()
        .map(|e| {
            let text = std::str::from_utf8(e).unwrap();
            let json = text.strip_prefix("data: ").and_then(|t| t.strip_suffix("\n\n")).unwrap();
            serde_json::from_str(json).unwrap()
        })
        .collect();
    for p in &parsed {
        assert_eq!((p["id"].as_str(), p["object"].as_str()), (Some("chatcmpl-mock"), Some("chat.completion.chunk")));
        assert_eq!((p["model"].as_str(), p["created"].as_u64()), (Some("gpt-4o"), Some(42)));
    }
    assert!(parsed[..3].iter().all(|p| p.get("usage") == Some(&Value::Null)));
    assert_eq!(parsed[1]["choices"][0]["delta"]["content"], "a \"quoted\" name chunk 1. ");
    assert_eq!(parsed[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(parsed[3]["usage"], usage);
    assert_eq!(parsed[3]["choices"], json!([]));
    assert_eq!(&events[4][..], b"data: [DONE]\n\n");

    // Without usage asked for: no usage chunk, and no usage member in any chunk.
    let text = sse_events(false, "m", "x", 1, None, 0);
    assert_eq!(text.len(), 3);
    let first: Value = serde_json::from_slice(&text[0][6..]).unwrap();
    assert_eq!(
        (first["object"].as_str(), first["choices"][0]["text"].as_str()),
        (Some("text_completion"), Some("m chunk 0. "))
    );
    assert!(text.iter().all(|e| !std::str::from_utf8(e).unwrap().contains("usage")));
}

#[test]
fn message_events_are_anthropics_sequence_with_usage_at_both_ends() {
    let events = anthropic::events("msg_1", "a \"quoted\" name", "claude-x", 2, Some((7, 2)));
    let text: Vec<&str> = events.iter().map(|e| std::str::from_utf8(e).unwrap()).collect();
    let parsed = sse(text.concat().as_bytes());
    let kinds: Vec<&str> = parsed.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for ((kind, data), raw) in parsed.iter().zip(&text) {
        assert_eq!(data["type"], kind.as_str());
        assert!(raw.starts_with(&format!("event: {kind}\ndata: {{\"type\":\"{kind}\"")), "{raw}");
    }
    let start = &parsed[0].1["message"];
    assert_eq!(
        *start,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
               "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 7, "output_tokens": 1}})
    );
    assert_eq!(
        parsed[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(parsed[2].1, json!({"type": "ping"}));
    assert_eq!(
        parsed[4].1,
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a \"quoted\" name chunk 1. "}})
    );
    assert_eq!(parsed[5].1, json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(
        parsed[6].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 2}})
    );
    assert_eq!(parsed[7].1, json!({"type": "message_stop"}));

    // Without usage: no usage member anywhere.
    let bare = anthropic::events("msg_2", "m", "x", 0, None);
    assert_eq!(bare.len(), 6);
    assert!(bare.iter().all(|e| !std::str::from_utf8(e).unwrap().contains("usage")));
}

#[tokio::test]
async fn messages_routes_check_key_and_version_and_answer_in_anthropics_shape() {
    let opts = MockOptions { name: "anth one".into(), api_keys: vec!["up".into()], ..Default::default() };
    let state = State::new(opts);
    let key = ("x-api-key", "up");
    let version = ("anthropic-version", "2023-06-01");
    let body = r#"{"model":"claude-x","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    for (headers, sent, status, kind) in [
        (vec![version], body, 401, "authentication_error"),
        (vec![("x-api-key", "wrong"), version], body, 401, "authentication_error"),
        (vec![key], body, 400, "invalid_request_error"),
        (vec![key, version], "{not json", 400, "invalid_request_error"),
        (vec![key, version, ("x-mock-fail", "500")], body, 500, "api_error"),
        (vec![key, version, ("x-mock-fail", "529")], body, 529, "overloaded_error"),
        (vec![key, version, ("x-mock-fail", "429")], body, 429, "rate_limit_error"),
    ] {
        let (got, head, answer) = call(&state, Method::POST, "/v1/messages", &headers, sent).await;
        assert_eq!(got.as_u16(), status, "{headers:?}");
        assert_eq!(head[CONTENT_TYPE], "application/json");
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            (answer["type"].as_str(), answer["error"]["type"].as_str()),
            (Some("error"), Some(kind)),
            "{headers:?}"
        );
        assert!(answer["error"]["message"].is_string());
    }

    // Plain: the message with usage counted as for chat; the key may also come as a bearer token.
    let prompt = (body.len() as u64).div_ceil(4);
    let (status, _, answer) =
        call(&state, Method::POST, "/v1/messages", &[("authorization", "Bearer up"), version], body).await;
    assert_eq!(status, StatusCode::OK);
    let n = state.counter.load(Ordering::Relaxed) - 1;
    assert_eq!(
        serde_json::from_slice::<Value>(&answer).unwrap(),
        json!({"id": format!("msg_mock_anth_one_{n}"), "type": "message", "role": "assistant", "model": "claude-x",
               "content": [{"type": "text", "text": "Hello from anth one."}], "stop_reason": "end_turn",
               "stop_sequence": null, "usage": {"input_tokens": prompt, "output_tokens": 5}})
    );
    let (_, _, answer) =
        call(&state, Method::POST, "/v1/messages", &[key, version, ("x-mock-no-usage", "1")], body).await;
    assert!(serde_json::from_slice::<Value>(&answer).unwrap().get("usage").is_none());

    let (status, _, answer) = call(&state, Method::POST, "/v1/messages/count_tokens", &[key, version], body).await;
    assert_eq!(
        (status, serde_json::from_slice::<Value>(&answer).unwrap()),
        (StatusCode::OK, json!({"input_tokens": prompt}))
    );

    // Streamed, with the chunks the headers ask for.
    let streamed = r#"{"model":"claude-x","max_tokens":16,"stream":true,"messages":[]}"#;
    let (status, head, answer) =
        call(&state, Method::POST, "/v1/messages", &[key, version, ("x-mock-chunks", "3")], streamed).await;
    assert_eq!((status, &head[CONTENT_TYPE]), (StatusCode::OK, &HeaderValue::from_static("text/event-stream")));
    let events = sse(&answer);
    assert_eq!(events.len(), 3 + 3 + 3);
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], streamed.len().div_ceil(4) as u64);
    assert_eq!(events[7].1["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn messages_stream_aborts_after_the_asked_content_chunks() {
    let state = State::new(MockOptions::default());
    let headers =
        [("anthropic-version", "2023-06-01"), ("x-mock-fail-after-chunks", "1"), ("x-mock-chunk-delay-ms", "1")];
    let mut req = Request::builder().method(Method::POST).uri("/v1/messages");
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let (parts, ()) = req.body(()).unwrap().into_parts();
    let mut body = respond(&state, &parts, &Bytes::from_static(br#"{"stream":true}"#), 0).await.unwrap().into_body();
    let mut kinds = Vec::new();
    let err = loop {
        match body.frame().await {
            Some(Ok(frame)) => kinds.push(sse(&frame.into_data().unwrap())[0].0.clone()),
            Some(Err(err)) => break err,
            None => panic!("the stream ended whole: {kinds:?}"),
        }
    };
    assert_eq!(kinds, ["message_start", "content_block_start", "ping", "content_block_delta"]);
    assert!(err.to_string().contains("aborted"), "{err}");
}

#[tokio::test]
async fn responses_are_kept_and_served_by_id_on_every_prefix() {
    let state = State::new(MockOptions { name: "r".into(), ..Default::default() });
    let create = |body: &'static str| {
        let state = state.clone();
        async move {
            let (status, _, answer) = call(&state, Method::POST, "/v1/responses", &[], body).await;
            (status, serde_json::from_slice::<Value>(&answer).unwrap())
        }
    };
    let get = |method: Method, path: String| {
        let state = state.clone();
        async move {
            let (status, _, answer) = call(&state, method, &path, &[], "").await;
            (status, serde_json::from_slice::<Value>(&answer).unwrap())
        }
    };
    let (status, plain) = create(r#"{"model":"gpt-x","input":"hi"}"#).await;
    assert_eq!((status, plain["status"].as_str()), (StatusCode::OK, Some("completed")));
    let id = plain["id"].as_str().unwrap().to_owned();
    assert_eq!(id, "resp_mock_r_0");
    for prefix in ["/v1/responses", "/openai/v1/responses", "/openai/responses"] {
        let (status, got) = get(Method::GET, format!("{prefix}/{id}?api-version=2025-04-01-preview")).await;
        assert_eq!((status, &got), (StatusCode::OK, &plain), "{prefix}");
        let (status, items) = get(Method::GET, format!("{prefix}/{id}/input_items")).await;
        assert_eq!(status, StatusCode::OK, "{prefix}");
        assert_eq!(items, json!({"object": "list", "data": [], "first_id": null, "last_id": null, "has_more": false}));
    }

    // In the background: queued now, completed with usage when asked later.
    let (status, queued) = create(r#"{"model":"gpt-x","input":"later","background":true}"#).await;
    assert_eq!((status, queued["status"].as_str(), &queued["usage"]), (StatusCode::OK, Some("queued"), &Value::Null));
    let later = queued["id"].as_str().unwrap().to_owned();
    assert_ne!(later, id);
    let (_, done) = get(Method::GET, format!("/v1/responses/{later}")).await;
    assert_eq!((done["status"].as_str(), done["background"].as_bool()), (Some("completed"), Some(true)));
    assert!(done["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let (status, cancelled) = get(Method::POST, format!("/openai/v1/responses/{later}/cancel")).await;
    assert_eq!((status, cancelled["status"].as_str()), (StatusCode::OK, Some("cancelled")));

    // A follow-up names what it follows; an unknown predecessor is refused.
    let follow = format!(r#"{{"model":"gpt-x","input":"more","previous_response_id":"{id}"}}"#).leak();
    let (status, next) = create(follow).await;
    assert_eq!((status, next["previous_response_id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    let (status, refused) = create(r#"{"model":"gpt-x","input":"more","previous_response_id":"resp_nope"}"#).await;
    assert_eq!((status, refused["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("previous_response_id")));
    assert_eq!(refused["error"]["type"], "invalid_request_error");

    // A streamed response is kept as it completed.
    let (status, _, stream) =
        call(&state, Method::POST, "/v1/responses", &[], r#"{"model":"gpt-x","stream":true}"#).await;
    assert_eq!(status, StatusCode::OK);
    let completed = sse(&stream).pop().unwrap().1;
    let streamed = completed["response"]["id"].as_str().unwrap();
    assert_eq!(get(Method::GET, format!("/v1/responses/{streamed}")).await.1, completed["response"]);

    // Deleted, it is gone.
    let (status, deleted) = get(Method::DELETE, format!("/openai/responses/{id}?api-version=2025-04-01-preview")).await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({"id": id, "object": "response", "deleted": true})));
    for (method, path) in
        [(Method::GET, format!("/v1/responses/{id}")), (Method::DELETE, format!("/v1/responses/{id}"))]
    {
        let (status, gone) = get(method, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            gone,
            json!({"error": {"message": format!("No response found with id '{id}'."), "type": "invalid_request_error",
                             "param": null, "code": null}})
        );
    }
}

#[test]
fn response_store_keeps_only_the_newest() {
    let mut store = responses::Store::default();
    for i in 0..responses::KEEP + 3 {
        store.insert(format!("resp_{i}"), Value::Null);
    }
    assert_eq!(store.len(), responses::KEEP);
    let mut fresh = responses::Store::default();
    fresh.insert("a".into(), json!(1));
    fresh.insert("a".into(), json!(2));
    assert_eq!(fresh.len(), 1);
}
