//! Metering streams cannot escape: a stream whose client did not ask for usage has it asked for
//! upstream, is charged exactly what the upstream reported, and reaches the client byte for byte
//! as a direct call would have; a client that asked gets the upstream's usage as it was sent.

use http::{Method, StatusCode};
use http_body_util::BodyExt;

use crate::support::{Example, UPSTREAM_KEY, as_forwarded, edit_file, scrape, send_raw, stream_body, trail, value};

/// The same streamed request, sent directly to the mock and through the gateway: both bodies,
/// and what the mock received from the gateway.
async fn direct_and_through(ex: &Example, body: &str, id: &str) -> (String, String, String) {
    let upstream = format!("Bearer {UPSTREAM_KEY}");
    let pinned = ("x-mock-created", "1764547200");
    let direct = send_raw(
        ex.mock.addr,
        Method::POST,
        "/v1/chat/completions",
        &[("authorization", &upstream), pinned],
        body.to_owned(),
    )
    .await;
    let direct = direct.into_body().collect().await.unwrap().to_bytes();
    let through = send_raw(
        ex.gw.addr,
        Method::POST,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-demo-us"), ("x-request-id", id), pinned],
        body.to_owned(),
    )
    .await;
    assert_eq!(through.status(), StatusCode::OK);
    let through = through.into_body().collect().await.unwrap().to_bytes();
    let forwarded = ex.mock.requests().await.last().unwrap().body.clone();
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    (text(&direct), text(&through), text(&forwarded))
}

/// Stops the example and returns the outcome record of request `id`.
async fn outcome_after_stop(ex: Example, id: &str) -> serde_json::Value {
    let audit = ex.audit_dir();
    let Example { mock, gw, dir: _kept } = ex;
    gw.shutdown().await;
    mock.stop().await;
    trail(&audit).into_iter().find(|r| r["type"] == "outcome" && r["request_id"] == id).expect("an outcome record")
}

#[tokio::test]
async fn a_stream_without_usage_asked_is_charged_the_upstreams_usage_and_looks_direct() {
    let ex = Example::start().await;
    let body = stream_body("gpt-4o-mini");
    let (direct, through, forwarded) = direct_and_through(&ex, &body, "unasked").await;
    assert_eq!(through, direct, "the client sees what a direct call sees");
    assert!(!through.contains("usage") && through.ends_with("data: [DONE]\n\n"), "{through}");
    // Asked for in place: the client's bytes, then the option.
    assert_eq!(forwarded, as_forwarded(&body));

    let prompt = forwarded.len().div_ceil(4) as u64;
    let m = scrape(ex.gw.admin_addr).await;
    let tokens = |kind| value(&m, "customs_model_tokens_total", &[("model", "gpt-4o-mini"), ("kind", kind)]);
    assert_eq!((tokens("prompt"), tokens("completion")), (prompt as f64, 5.0));
    assert_eq!(
        crate::support::series(&m, "customs_model_tokens_total", &[("model", "gpt-4o-mini"), ("kind", "unmetered")]),
        None
    );

    let audit = ex.audit_dir();
    let Example { mock, gw, dir: _kept } = ex;
    gw.shutdown().await;
    mock.stop().await;
    let outcome = trail(&audit).into_iter().find(|r| r["type"] == "outcome" && r["request_id"] == "unasked").unwrap();
    assert_eq!(outcome["outcome"], "completed");
    assert_eq!(outcome["usage"]["prompt_tokens"], prompt);
    assert_eq!(outcome["usage"]["completion_tokens"], 5);
    assert_eq!((outcome["charged_tokens"].as_u64(), outcome["metered"].as_bool()), (Some(prompt + 5), Some(true)));
}

#[tokio::test]
async fn a_client_that_asked_for_usage_gets_it_as_the_upstream_sent_it() {
    let ex = Example::start().await;
    for (id, body) in [
        ("asked", r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#),
        // Asked for with its own spelling: left as it is, and so is the answer.
        ("spaced", r#"{"stream_options" : { "include_usage" : true },"model":"gpt-4o-mini","stream":true}"#),
    ] {
        let (direct, through, forwarded) = direct_and_through(&ex, body, id).await;
        assert_eq!(forwarded, body, "{id}: forwarded untouched");
        assert_eq!(through, direct, "{id}");
        assert!(through.contains(r#""choices":[],"usage":{""#), "{through}");
        assert!(through.contains(r#""usage":null}"#), "{through}");
    }
    ex.stop().await;
}

#[tokio::test]
async fn an_endpoint_not_asked_for_usage_gets_the_body_as_sent_and_the_stream_the_worst_case() {
    let ex = Example::start_with(|d| {
        let mini = "max_output_tokens = 16384\n[[models.endpoints]]\n";
        edit_file(d, "models.toml", mini, &format!("{mini}ask_stream_usage = false\n"));
    })
    .await;
    let body = r#"{"model":"gpt-4o-mini","stream":true,"max_tokens":50,"messages":[]}"#;
    let (direct, through, forwarded) = direct_and_through(&ex, body, "not-asked").await;
    assert_eq!((forwarded.as_str(), through.as_str()), (body, direct.as_str()));

    let worst = body.len().div_ceil(4) as u64 + 50;
    let m = scrape(ex.gw.admin_addr).await;
    assert_eq!(
        value(&m, "customs_model_tokens_total", &[("model", "gpt-4o-mini"), ("kind", "unmetered")]),
        worst as f64
    );
    let outcome = outcome_after_stop(ex, "not-asked").await;
    assert_eq!((outcome["charged_tokens"].as_u64(), outcome["metered"].as_bool()), (Some(worst), Some(false)));
    assert_eq!(outcome["usage"], serde_json::Value::Null);
}
