//! Every request ends once: whatever way it ends, in-flight comes back down, the trail holds
//! exactly one decision record for it, and a forwarded one exactly one outcome record.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;

use crate::support::{Example, chat_body, scrape, send, send_raw, stream_body, trail, value};

const KEY: &str = "Bearer sk-demo-us";

/// Request id, method, path, an extra header, body, and the status expected.
type Case<'a> = (&'a str, Method, &'a str, Option<(&'a str, &'a str)>, String, StatusCode);

/// The example with one line of its gateway.toml changed.
async fn example_with(from: &str, to: &str) -> Example {
    Example::start_with(|d| crate::support::edit_file(d, "gateway.toml", from, to)).await
}

/// Shuts the gateway down and returns the outcome record of request `id`.
async fn outcome_after_shutdown(ex: Example, id: &str) -> serde_json::Value {
    let audit = ex.audit_dir();
    ex.gw.shutdown().await;
    ex.mock.open_gate();
    ex.mock.stop().await;
    let records = trail(&audit);
    records.into_iter().find(|r| r["type"] == "outcome" && r["request_id"] == id).expect("an outcome record")
}

async fn in_flight(ex: &Example) -> f64 {
    value(&scrape(ex.gw.admin_addr).await, "customs_in_flight_requests", &[])
}

/// Waits for the gauge to come back to 0 (the end of a request the client left is seen by the
/// server a moment after the client let go).
async fn settles_to_zero(ex: &Example, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = in_flight(ex).await;
        if now == 0.0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "in-flight stayed at {now} after {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn every_route_ends_with_in_flight_at_zero_one_decision_and_one_outcome_if_forwarded() {
    let ex = Example::start().await;
    let addr = ex.gw.addr;
    let json = ("content-type", "application/json");
    let cases: Vec<Case> = vec![
        (
            "upstream-error",
            Method::POST,
            "/v1/chat/completions",
            Some(("x-mock-fail", "500")),
            chat_body("gpt-4o-mini"),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        ("models-list", Method::GET, "/v1/models", None, String::new(), StatusCode::OK),
        ("model-get", Method::GET, "/v1/models/gpt-4o-mini", None, String::new(), StatusCode::OK),
        ("model-unknown", Method::GET, "/v1/models/no-such-model", None, String::new(), StatusCode::NOT_FOUND),
        ("chat", Method::POST, "/v1/chat/completions", Some(json), chat_body("gpt-4o-mini"), StatusCode::OK),
        ("stream", Method::POST, "/v1/chat/completions", Some(json), stream_body("gpt-4o-mini"), StatusCode::OK),
        ("refused-model", Method::POST, "/v1/chat/completions", None, chat_body("no-such"), StatusCode::NOT_FOUND),
        ("bad-body", Method::POST, "/v1/chat/completions", None, "{".into(), StatusCode::BAD_REQUEST),
        ("no-route", Method::GET, "/v1/nothing", None, String::new(), StatusCode::NOT_FOUND),
        ("wrong-method", Method::GET, "/v1/chat/completions", None, String::new(), StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (id, method, path, extra, body, status) in &cases {
        let mut headers = vec![("authorization", KEY), ("x-request-id", *id)];
        headers.extend(extra.iter().copied());
        let r = send(addr, method.clone(), path, &headers, body.clone()).await;
        assert_eq!(r.status, *status, "{id}: {:?}", r.body);
        assert_eq!(in_flight(&ex).await, 0.0, "in-flight after {id}");
    }
    let unauthenticated = send(
        addr,
        Method::GET,
        "/v1/models",
        &[("authorization", "Bearer sk-nobody"), ("x-request-id", "bad-key")],
        "",
    )
    .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    assert_eq!(in_flight(&ex).await, 0.0, "in-flight after bad-key");

    // A stream the client walks away from halfway: the mock holds it open after one event.
    let headers = [("authorization", KEY), ("x-mock-gate", "1"), ("x-request-id", "client-gone")];
    let res = send_raw(addr, Method::POST, "/v1/chat/completions", &headers, stream_body("gpt-4o-mini")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(in_flight(&ex).await, 1.0, "the open stream is in flight");
    drop(body);
    settles_to_zero(&ex, "the client left mid-stream").await;

    // A stream the upstream cuts short.
    let headers = [
        ("authorization", KEY),
        ("x-mock-fail-after-chunks", "2"),
        ("x-mock-chunk-delay-ms", "50"),
        ("x-request-id", "upstream-cut"),
    ];
    let res = send_raw(addr, Method::POST, "/v1/chat/completions", &headers, stream_body("gpt-4o-mini")).await;
    assert!(res.into_body().collect().await.is_err(), "the cut stream must end in an error");
    settles_to_zero(&ex, "the upstream cut the stream").await;

    // A request the client gives up on while the upstream has not yet answered.
    let headers = [("authorization", KEY), ("x-mock-delay-ms", "3000"), ("x-request-id", "gave-up")];
    let early = tokio::time::timeout(
        Duration::from_millis(300),
        send_raw(addr, Method::POST, "/v1/chat/completions", &headers, chat_body("gpt-4o-mini")),
    )
    .await;
    assert!(early.is_err(), "the upstream was told to wait before answering");
    settles_to_zero(&ex, "the client gave up before the response head").await;

    let audit = ex.audit_dir();
    ex.gw.shutdown().await;
    let mut decisions: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for r in trail(&audit) {
        let by = match r["type"].as_str() {
            Some("decision") => &mut decisions,
            Some("outcome") => &mut outcomes,
            _ => continue,
        };
        by.entry(r["request_id"].as_str().unwrap_or_default().to_owned()).or_default().push(r);
    }
    // (request id, the outcome of a forwarded request, and the status its client got)
    let forwarded: [(&str, &str, Option<u16>); 6] = [
        ("chat", "completed", Some(200)),
        ("stream", "completed", Some(200)),
        ("upstream-error", "upstream_error", Some(500)),
        ("client-gone", "client_disconnected", Some(200)),
        ("upstream-cut", "upstream_error", Some(200)),
        ("gave-up", "client_disconnected", None),
    ];
    let ids = cases.iter().map(|c| c.0).chain(["bad-key", "client-gone", "upstream-cut", "gave-up"]);
    for id in ids {
        let found = decisions.get(id).map_or(0, Vec::len);
        assert_eq!(found, 1, "{id} has {found} decision records: {:?}", decisions.get(id));
        let expected = forwarded.iter().find(|f| f.0 == id);
        let got = outcomes.get(id).map_or(&[][..], Vec::as_slice);
        assert_eq!(got.len(), usize::from(expected.is_some()), "{id}: outcomes {got:?}");
        if let (Some((_, outcome, status)), [o]) = (expected, got) {
            assert_eq!(o["outcome"], *outcome, "{id}");
            assert_eq!(o["status"].as_u64(), status.map(u64::from), "{id}");
            assert_eq!(o["decision_seq"], decisions[id][0]["seq"], "{id}");
            assert!(decisions[id][0]["status"].is_null(), "{id}: a forwarded decision has no status of its own");
        }
    }
    let reason = |id: &str| decisions[id][0]["reason"].as_str().unwrap().to_owned();
    assert_eq!(reason("models-list"), "allowed");
    assert_eq!(decisions["models-list"][0]["status"], 200);
    assert_eq!(reason("refused-model"), "model_not_found");
    assert_eq!(reason("wrong-method"), "method_not_allowed");
    assert_eq!(outcomes["chat"][0]["usage"]["total_tokens"].as_u64().map(|n| n > 0), Some(true));
    ex.mock.stop().await;
}

#[tokio::test]
async fn a_stream_cut_at_the_grace_period_has_its_outcome_before_the_stop_record() {
    let ex = example_with("shutdown_grace = \"30s\"", "shutdown_grace = \"300ms\"").await;
    let headers = [("authorization", KEY), ("x-mock-gate", "1"), ("x-request-id", "held-open")];
    let res = send_raw(ex.gw.addr, Method::POST, "/v1/chat/completions", &headers, stream_body("gpt-4o-mini")).await;
    let mut body = res.into_body();
    body.frame().await.unwrap().unwrap();
    let audit = ex.audit_dir();
    // The mock holds the stream open past the grace period: shutdown cuts it.
    tokio::time::timeout(Duration::from_secs(10), ex.gw.shutdown())
        .await
        .expect("shutdown waits out the grace period only");
    let records = trail(&audit);
    let cut = records.iter().position(|r| r["type"] == "outcome" && r["request_id"] == "held-open");
    let stop = records.iter().position(|r| r["type"] == "stop");
    let (Some(cut), Some(stop)) = (cut, stop) else { panic!("no outcome or no stop: {records:#?}") };
    assert!(cut < stop, "the cut stream's outcome comes before the stop record");
    assert_eq!(records[cut]["outcome"], "shutdown_cut");
    assert_eq!(records[cut]["status"], 200);
    drop(body);
    ex.mock.open_gate();
    ex.mock.stop().await;
}

#[tokio::test]
async fn a_stalled_stream_ends_at_the_idle_timeout_with_an_error_event_and_its_outcome() {
    // The endpoint's own idle timeout, in place of the gateway's 60 s.
    let ex = Example::start_with(|d| {
        let mini = "max_output_tokens = 16384\n[[models.endpoints]]\n";
        crate::support::edit_file(d, "models.toml", mini, &format!("{mini}stream_idle_timeout = \"300ms\"\n"));
    })
    .await;
    // The mock sends one event, then holds the stream: the upstream has stalled.
    let headers = [("authorization", KEY), ("x-mock-gate", "1"), ("x-request-id", "stalled")];
    let res = send_raw(ex.gw.addr, Method::POST, "/v1/chat/completions", &headers, stream_body("gpt-4o-mini")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let started = tokio::time::Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(10), res.into_body().collect())
        .await
        .expect("the stalled stream was ended by the gateway")
        .expect("ended cleanly, with an event saying why");
    assert!(started.elapsed() >= Duration::from_millis(250), "not before the idle timeout");
    let text = String::from_utf8(body.to_bytes().to_vec()).unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let event: serde_json::Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(event["error"]["code"], "stream_idle_timeout", "{text}");
    assert!(text.contains("chunk 0. "), "what the upstream sent came first: {text}");
    let m = scrape(ex.gw.admin_addr).await;
    let kind = [("endpoint", "gpt-4o-mini#0"), ("kind", "stream_idle_timeout")];
    assert_eq!(value(&m, "customs_upstream_errors_total", &kind), 1.0);
    assert_eq!(value(&m, "customs_in_flight_requests", &[]), 0.0);
    assert_eq!(outcome_after_shutdown(ex, "stalled").await["outcome"], "stream_idle_timeout");
}

#[tokio::test]
async fn a_stream_past_its_maximum_duration_is_ended_though_it_keeps_sending() {
    let ex = example_with("stream_max_duration = \"15m\"", "stream_max_duration = \"400ms\"").await;
    // Twenty events 100 ms apart: never idle, but longer than the maximum.
    let headers = [("authorization", KEY), ("x-mock-chunk-delay-ms", "100"), ("x-request-id", "long")];
    let res = send_raw(ex.gw.addr, Method::POST, "/v1/chat/completions", &headers, stream_body("gpt-4o-mini")).await;
    let body = tokio::time::timeout(Duration::from_secs(10), res.into_body().collect()).await.unwrap().unwrap();
    let text = String::from_utf8(body.to_bytes().to_vec()).unwrap();
    assert!(text.contains("\"code\":\"stream_max_duration\""), "{text}");
    assert!(!text.contains("[DONE]"), "cut before the upstream finished: {text}");
    assert_eq!(outcome_after_shutdown(ex, "long").await["outcome"], "stream_max_duration");
}
