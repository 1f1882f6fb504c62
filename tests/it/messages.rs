//! Anthropic's Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`): the tenant key as
//! `x-api-key`, `anthropic-version` and `anthropic-beta` passed through, the upstream's key sent as
//! `x-api-key` to an `anthropic` endpoint, streams passed through event by event and metered from
//! `message_start` and `message_delta`, refusals in Anthropic's error shape; and its requests in
//! the audit trail and the foreign-access report like chat's.

use customs::policy::Day;
use customs::report::{self, ReportSettings};
use http::{Method, StatusCode};

use crate::support::{Example, Reply, UPSTREAM_KEY, direct, send, trail, without_id};

const PLAIN: &str =
    r#"{"model":"claude-3-5-sonnet","max_tokens":64,"messages":[{"role":"user","content":"Say hello."}]}"#;
const STREAMED: &str = r#"{"model":"claude-3-5-sonnet","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Say hello."}]}"#;
const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

async fn messages(ex: &Example, path: &str, key: &str, body: &str, id: &str) -> Reply {
    let headers = [("x-api-key", key), VERSION, ("anthropic-beta", "tools-2024-05-16"), ("x-request-id", id)];
    send(ex.gw.addr, Method::POST, path, &headers, body.to_owned()).await
}

#[tokio::test]
async fn a_message_is_created_plain_or_streamed_and_charged_its_usage() {
    let ex = Example::start().await;
    let r = messages(&ex, "/v1/messages", "sk-demo-us", PLAIN, "plain").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let body = r.json();
    assert_eq!((body["type"].as_str(), body["role"].as_str()), (Some("message"), Some("assistant")));
    let plain_usage = body["usage"].clone();
    // The upstream got Anthropic's headers, and the gateway's key where Anthropic expects it.
    let sent = ex.mock.requests().await.last().unwrap().clone();
    assert!(sent.uri.ends_with("/v1/messages"), "{}", sent.uri);
    assert_eq!(sent.headers["x-api-key"], UPSTREAM_KEY);
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(sent.headers["anthropic-beta"], "tools-2024-05-16");
    assert!(sent.headers.get("authorization").is_none());
    assert_eq!(sent.body, PLAIN.as_bytes());

    // Streamed: the events arrive as the upstream sent them, nothing added to the request.
    let upstream = [("x-api-key", UPSTREAM_KEY), VERSION];
    let direct = direct(ex.mock.addr, "/v1/messages", &upstream, STREAMED).await;
    let through = messages(&ex, "/v1/messages", "sk-demo-us", STREAMED, "streamed").await;
    assert_eq!(through.status, StatusCode::OK);
    assert_eq!(through.headers["content-type"], "text/event-stream");
    // Each message has its own id; apart from that, the client sees what a direct call sees.
    assert_eq!(without_id(&through.body, "msg_"), without_id(&direct, "msg_"));
    let text = String::from_utf8_lossy(&through.body);
    assert!(text.starts_with("event: message_start\n") && text.contains("event: message_stop\n"), "{text}");
    assert_eq!(ex.mock.requests().await.last().unwrap().body, STREAMED.as_bytes());

    // Counting tokens is a request, not the tokens it counts.
    let counted = r#"{"model":"claude-3-5-sonnet-20241022","messages":[{"role":"user","content":"Say hello."}]}"#;
    let r = messages(&ex, "/v1/messages/count_tokens", "sk-demo-us", counted, "count").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.json()["input_tokens"].as_u64().is_some_and(|n| n > 0));

    let audit = ex.audit_dir();
    let Example { mock, gw, dir: _kept } = ex;
    gw.shutdown().await;
    mock.stop().await;
    let records = trail(&audit);
    let record = |kind: &str, id: &str| {
        records
            .iter()
            .find(|r| r["type"] == kind && r["request_id"] == id)
            .unwrap_or_else(|| panic!("{kind} {id}"))
            .clone()
    };
    let decision = record("decision", "plain");
    assert_eq!(
        (decision["operation"].as_str(), decision["model"].as_str()),
        (Some("messages"), Some("claude-3-5-sonnet"))
    );
    let plain = record("outcome", "plain");
    assert_eq!(plain["usage"]["prompt_tokens"], plain_usage["input_tokens"]);
    assert_eq!(plain["usage"]["completion_tokens"], plain_usage["output_tokens"]);
    assert_eq!(plain["metered"], true);
    let streamed = record("outcome", "streamed");
    // Input from `message_start`, output from `message_delta`: neither overwrites the other.
    assert_eq!(streamed["usage"]["prompt_tokens"], STREAMED.len().div_ceil(4) as u64);
    assert_eq!(streamed["usage"]["completion_tokens"], 5, "the mock's five chunks");
    assert_eq!(streamed["metered"], true);
    assert_eq!(record("decision", "count")["operation"], "count_tokens");
    let count = record("outcome", "count");
    assert_eq!((count["outcome"].as_str(), count["usage"].is_null()), (Some("completed"), true), "{count}");
}

#[tokio::test]
async fn messages_are_refused_in_anthropics_error_shape() {
    let ex = Example::start().await;
    let cases = [
        ("sk-demo-cn", PLAIN, StatusCode::FORBIDDEN, "permission_error", "model_not_allowed"),
        ("sk-demo-ir", PLAIN, StatusCode::FORBIDDEN, "permission_error", "jurisdiction_embargoed"),
        ("sk-not-a-key", PLAIN, StatusCode::UNAUTHORIZED, "authentication_error", "invalid_api_key"),
        (
            "sk-demo-us",
            r#"{"model":"gpt-4o","max_tokens":8,"messages":[]}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "operation_not_supported",
        ),
        (
            "sk-demo-us",
            r#"{"model":"nope","max_tokens":8,"messages":[]}"#,
            StatusCode::NOT_FOUND,
            "not_found_error",
            "model_not_found",
        ),
        ("sk-demo-us", "[1]", StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request"),
    ];
    for (key, body, status, kind, code) in cases {
        let r = messages(&ex, "/v1/messages", key, body, "refused").await;
        assert_eq!(r.status, status, "{key} {body}");
        let json = r.json();
        assert_eq!((json["type"].as_str(), json["error"]["type"].as_str()), (Some("error"), Some(kind)), "{json}");
        assert_eq!(r.code(), code, "{json}");
        assert!(r.headers.get("www-authenticate").is_none());
    }
    // The chat model's own routes still answer in OpenAI's shape.
    let r = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[("x-api-key", "sk-demo-cn")], PLAIN).await;
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (StatusCode::FORBIDDEN, Some("policy_violation")));
    assert!(ex.mock.requests().await.is_empty(), "nothing refused reached the upstream");
    ex.stop().await;
}

#[tokio::test]
async fn foreign_use_of_a_model_over_messages_is_in_the_report() {
    // demo-de (rest of world) with the end-use declaration its jurisdiction asks for above 1e25.
    let ex = Example::start_with(|d| {
        let key = "# sk-demo-de\n";
        let declared =
            "# sk-demo-de\n[tenants.end_use]\nid = \"EUD-TEST\"\nexpires = 2099-12-31\npurposes = [\"research\"]\n";
        crate::support::edit_file(d, "tenants.toml", key, declared);
    })
    .await;
    for id in ["de-1", "de-2"] {
        let r = messages(&ex, "/v1/messages", "sk-demo-de", PLAIN, id).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let audit = ex.audit_dir();
    let Example { mock, gw, dir: _kept } = ex;
    gw.shutdown().await;
    mock.stop().await;
    let settings = ReportSettings {
        home_jurisdictions: vec!["us".to_owned()],
        flops_line: 1e25,
        since: Day::parse("2000-01-01").unwrap(),
        until: None,
        generated_at: "now".to_owned(),
    };
    let files = customs::audit::trail_files(&audit).unwrap();
    let report = report::read(&files, &settings).unwrap();
    let row = report
        .foreign_access
        .iter()
        .find(|r| r.tenant == "demo-de" && r.model == "claude-3-5-sonnet")
        .unwrap_or_else(|| panic!("{:?}", report.foreign_access));
    assert_eq!((row.requests, row.denied), (2, 0));
    assert!(row.prompt_tokens > 0 && row.completion_tokens > 0, "{row:?}");
}

#[tokio::test]
async fn messages_count_against_the_tenants_limits_like_chat() {
    let ex = Example::start().await;
    // demo-limited may make 3 requests a minute, whatever the API.
    let chat = crate::support::chat(ex.gw.addr, "sk-demo-limited", "gpt-4o-mini", None).await;
    assert_eq!(chat.status, StatusCode::OK);
    for id in ["m-1", "m-2"] {
        assert_eq!(messages(&ex, "/v1/messages", "sk-demo-limited", PLAIN, id).await.status, StatusCode::OK);
    }
    let r = messages(&ex, "/v1/messages", "sk-demo-limited", PLAIN, "m-3").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        (r.json()["error"]["type"].as_str(), r.code()),
        (Some("rate_limit_error"), "rate_limit_exceeded".to_owned())
    );
    // Anthropic's SDKs wait out `retry-after` before retrying.
    assert!(r.headers.get("retry-after").is_some_and(|v| v.to_str().unwrap().parse::<u64>().unwrap() >= 1));
    ex.stop().await;
}
