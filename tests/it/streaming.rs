//! Streaming passthrough: SSE events reach the client as the upstream sends them.

use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;

use crate::support::{Example, gated_stream, read_until, send_raw, stream_body};

#[tokio::test]
async fn stream_first_chunk_arrives_while_upstream_is_still_sending() {
    let ex = Example::start().await;
    // The mock sends its first event, then holds the stream until the gate opens. If the gateway
    // buffered anything, the first event could not arrive before the gate is opened.
    let (mut body, mut seen) = gated_stream(ex.gw.addr, "sk-demo-us").await;
    assert!(!seen.contains("chunk 1. "), "the upstream has not sent chunk 1 yet: {seen}");
    ex.mock.open_gate();
    read_until(&mut body, &mut seen, "data: [DONE]", Duration::from_secs(10)).await;
    let events: Vec<&str> = seen.split("\n\n").filter(|e| !e.is_empty()).collect();
    // 5 content chunks, the finish chunk, [DONE]: the usage the gateway asked for is not the
    // client's.
    assert_eq!(events.len(), 7, "{seen}");
    assert!(!seen.contains("usage"), "{seen}");
    assert!(body.frame().await.is_none());
    ex.stop().await;
}

#[tokio::test]
async fn stream_upstream_abort_ends_the_client_stream_with_an_error() {
    let ex = Example::start().await;
    let res = send_raw(
        ex.gw.addr,
        Method::POST,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-demo-us"), ("x-mock-fail-after-chunks", "2"), ("x-mock-chunk-delay-ms", "50")],
        stream_body("gpt-4o-mini"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let collected = tokio::time::timeout(Duration::from_secs(10), res.into_body().collect()).await.unwrap();
    assert!(collected.is_err(), "a truncated stream must not look complete");
    ex.stop().await;
}

#[tokio::test]
async fn stream_paced_chunks_are_not_held_back() {
    let ex = Example::start().await;
    let started = tokio::time::Instant::now();
    let res = send_raw(
        ex.gw.addr,
        Method::POST,
        "/v1/completions",
        &[("authorization", "Bearer sk-demo-us"), ("x-mock-chunks", "4"), ("x-mock-chunk-delay-ms", "400")],
        stream_body("llama-3.1-8b-instruct"),
    )
    .await;
    let mut body = res.into_body();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "chunk 0. ", Duration::from_secs(10)).await;
    let first = started.elapsed();
    read_until(&mut body, &mut seen, "data: [DONE]", Duration::from_secs(10)).await;
    let total = started.elapsed();
    // The upstream spends 4 x 400 ms between chunks; the first one must not wait for them.
    assert!(total >= Duration::from_millis(1600), "{total:?}");
    assert!(first + Duration::from_millis(1000) < total, "first chunk at {first:?}, all at {total:?}");
    ex.stop().await;
}
