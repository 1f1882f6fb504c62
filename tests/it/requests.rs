//! Request validation: body shape, size limits, routes, methods and request ids.

use http::{Method, StatusCode};

use crate::support::{Example, chat_body, send};

const US: (&str, &str) = ("authorization", "Bearer sk-demo-us");

#[tokio::test]
async fn body_invalid_json_returns_400_and_never_reaches_upstream() {
    let ex = Example::start().await;
    let cases: &[(&[u8], Option<&str>)] = &[
        (br#"{"model":"gpt-4o","model":"frontier-x-preview"}"#, None),
        (br#"{"model":"gpt-4o-mini","\u006dodel":"frontier-x-preview"}"#, None),
        (br#"{"messages":[]}"#, Some("model")),
        (br#"{"model":["gpt-4o"]}"#, Some("model")),
        (br#"[{"model":"gpt-4o"}]"#, None),
        (br#"{"model":"gpt-4o"} {"model":"x"}"#, None),
        (b"{\"model\":\"gpt-4o\",\"x\":\"\xff\"}", None),
        (br#"{"model":"gpt-4o","stream":"yes"}"#, Some("stream")),
        (b"", None),
    ];
    for (body, param) in cases {
        let r = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[US], body.to_vec()).await;
        let what = String::from_utf8_lossy(body).into_owned();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(r.code(), "invalid_request", "{what}");
        assert_eq!(r.json()["error"]["param"].as_str(), *param, "{what}");
    }
    assert!(ex.mock.requests().await.is_empty());
    ex.stop().await;
}

#[tokio::test]
async fn body_over_limit_returns_413_with_or_without_content_length() {
    let mock = crate::support::mock("m").await;
    let dir = crate::support::example_config_for(mock.addr);
    std::fs::write(dir.path().join("gateway.toml"), "[server]\nmax_body_bytes = 1024\n").unwrap();
    let gw = crate::support::gateway(dir.path()).await;
    let big = format!(r#"{{"model":"gpt-4o","pad":"{}"}}"#, "x".repeat(2000));
    let r = send(gw.addr, Method::POST, "/v1/chat/completions", &[US], big.clone()).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"));

    // Chunked: no Content-Length, so the limit is enforced while reading.
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    for chunk in big.as_bytes().chunks(256) {
        tx.send(Ok(bytes::Bytes::copy_from_slice(chunk))).await.unwrap();
    }
    drop(tx);
    let body = customs::mock::EventBody::Paced(rx);
    let req = http::Request::post(format!("http://{}/v1/chat/completions", gw.addr))
        .header("authorization", "Bearer sk-demo-us")
        .body(body)
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(res.headers().get("content-length").is_some());

    let ok = send(gw.addr, Method::POST, "/v1/chat/completions", &[US], chat_body("gpt-4o")).await;
    assert_eq!(ok.status, StatusCode::OK);
    gw.shutdown().await;
    mock.stop().await;
}

#[tokio::test]
async fn routes_unknown_paths_and_wrong_methods_are_refused() {
    let ex = Example::start().await;
    let body = chat_body("gpt-4o");
    for path in [
        "/v1/chat/completions/",
        "//v1/chat/completions",
        "/v1/chat/../chat/completions",
        "/v1/responses/resp_1/x",
        "/",
    ] {
        let r = send(ex.gw.addr, Method::POST, path, &[US], body.clone()).await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::NOT_FOUND, "route_not_found"), "{path}");
    }
    let r = send(ex.gw.addr, Method::GET, "/v1/chat/completions", &[US], "").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    let r = send(ex.gw.addr, Method::POST, "/v1/models", &[US], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    // Unknown routes are refused before authentication, without revealing anything.
    let r = send(ex.gw.addr, Method::POST, "/admin", &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(ex.mock.requests().await.is_empty());
    ex.stop().await;
}

#[tokio::test]
async fn request_id_is_propagated_minted_and_on_every_response() {
    let ex = Example::start().await;
    let body = chat_body("gpt-4o");
    let r =
        send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[US, ("x-request-id", "client-abc.1")], body.clone())
            .await;
    assert_eq!(r.headers["x-request-id"], "client-abc.1");
    assert_eq!(r.headers["x-upstream-request-id"], "mock-0");
    let seen = ex.mock.requests().await;
    assert_eq!(seen[0].headers["x-request-id"], "client-abc.1");

    let r =
        send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[US, ("x-request-id", "bad id<>")], body.clone()).await;
    let minted = r.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(minted, "bad id<>");
    assert_eq!(minted.len(), 29);
    assert_eq!(ex.mock.requests().await[1].headers["x-request-id"], minted.as_str());

    let denied = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[("x-request-id", "deny-1")], body).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(denied.headers["x-request-id"], "deny-1");
    let nf = send(ex.gw.addr, Method::GET, "/nope", &[], "").await;
    assert!(nf.headers.get("x-request-id").is_some());
    assert!(nf.headers.get("x-customs-policy-version").is_some());
    ex.stop().await;
}

#[tokio::test]
async fn admin_health_and_readiness_answer_on_their_own_port() {
    let ex = Example::start().await;
    let r = send(ex.gw.admin_addr, Method::GET, "/healthz", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(ex.gw.admin_addr, Method::GET, "/readyz", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["policy_version"].as_str(), Some(ex.gw.shared.snapshot.load().policy.version()));
    // The example's chain has no key: readiness says so.
    assert_eq!(v["audit_chain"], "sha256-unkeyed");
    // Not reachable on the inference port.
    let r = send(ex.gw.addr, Method::GET, "/healthz", &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    ex.stop().await;

    let keyed = Example::start_with(|d| {
        crate::support::edit_file(
            d,
            "gateway.toml",
            "# key_env = \"CUSTOMS_AUDIT_KEY\"",
            "key_env = \"CUSTOMS_AUDIT_KEY\"",
        );
    })
    .await;
    let r = send(keyed.gw.admin_addr, Method::GET, "/readyz", &[], "").await;
    assert_eq!(r.json()["audit_chain"], "hmac-sha256");
    keyed.stop().await;
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served() {
    let ex = Example::start().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(format!("http://{}/v1/chat/completions", ex.gw.addr))
        .header("authorization", "Bearer sk-demo-us")
        .body(http_body_util::Full::new(bytes::Bytes::from(chat_body("gpt-4o"))))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), StatusCode::OK);
    ex.stop().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off_by_the_read_deadlines() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let mock = crate::support::mock("m").await;
    let dir = crate::support::example_config_for(mock.addr);
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[server]\nheader_read_timeout = \"300ms\"\nbody_read_timeout = \"300ms\"\n[admin]\nmax_connections = 4\n",
    )
    .unwrap();
    let gw = crate::support::gateway(dir.path()).await;
    let wait = std::time::Duration::from_secs(5);

    // A connection that sends nothing, or a few bytes of an HTTP/2 preface, is closed too: the
    // deadline covers telling HTTP/1 from HTTP/2.
    for (addr, sent) in [(gw.addr, &b""[..]), (gw.addr, b"PRI * HTTP/2.0\r\n"), (gw.admin_addr, b"")] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(sent).await.unwrap();
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "{addr} {sent:?}: a silent connection was not closed");
    }
    // A keep-alive connection that goes quiet after a request is closed by the same deadline.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-demo-us\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "an idle keep-alive connection was not closed");
    assert!(buf.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf));
    // Silent connections filling the admin listener's cap hold it only until that deadline: the
    // probes and the kill switch answer right after.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(gw.admin_addr).await.unwrap());
    }
    let probe = tokio::time::timeout(wait, send(gw.admin_addr, Method::GET, "/healthz", &[], "")).await;
    assert_eq!(probe.expect("the admin listener stayed locked out").status, StatusCode::OK);
    drop(silent);

    // A request head that never ends: the connection is closed.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(wait, s.read_to_end(&mut buf)).await.expect("slow head was not cut off").unwrap();

    // A body that trickles: 408 request_timeout.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-demo-us\r\nContent-Length: 100\r\n\r\n{\"model\"")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, s.read(&mut buf)).await.expect("slow body was not cut off").unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(mock.requests().await.is_empty());
    gw.shutdown().await;
    mock.stop().await;
}

#[tokio::test]
async fn an_in_memory_upstream_serves_the_whole_request_path() {
    // What the in-process benchmark runs: no upstream socket, the example's endpoint URL ignored.
    let nothing_listens: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let dir = crate::support::example_config_for(nothing_listens);
    let config = crate::support::load(dir.path());
    let opts = customs::mock::MockOptions { name: "in-memory".into(), ..Default::default() };
    let dial = customs::mock::MockUpstream::in_memory(opts);
    let upstreams = customs::proxy::Upstreams::in_memory(dial, &config.settings.upstream);
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let day = customs::policy::DayClock::Utc;
    let gw = customs::server::Server::start_with(config, any, any, crate::support::test_env(), day, upstreams)
        .await
        .unwrap();
    for _ in 0..3 {
        let r = send(gw.addr, Method::POST, "/v1/chat/completions", &[US], chat_body("gpt-4o")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.json()["choices"][0]["message"]["content"].as_str().unwrap().contains("in-memory"), "{:?}", r.body);
    }
    gw.shutdown().await;
}

/// A tenant refused whatever it asks for (suspended, a restricted party, an embargoed
/// jurisdiction) is refused on the request head: the gateway answers without waiting for, or
/// holding, the body it announced.
#[tokio::test]
async fn a_tenant_refused_whatever_the_model_is_refused_before_its_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ex = Example::start().await;
    for (key, code) in [
        ("sk-demo-ir", "jurisdiction_embargoed"),
        ("sk-demo-listed", "denied_party"),
        ("sk-demo-suspended", "tenant_suspended"),
    ] {
        for path in ["/v1/chat/completions", "/v1/messages", "/v1/responses/resp_1/cancel"] {
            let mut s = tokio::net::TcpStream::connect(ex.gw.addr).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-length: 4000000\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            // Not one byte of the 4 MB body is sent.
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let read = async {
                while !String::from_utf8_lossy(&got).contains(&format!("\"code\":\"{code}\"")) {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "{key} {path}: closed: {}", String::from_utf8_lossy(&got));
                    got.extend_from_slice(&buf[..n]);
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(5), read)
                .await
                .unwrap_or_else(|_| panic!("{key} {path}: no answer before the body"));
            assert!(got.starts_with(b"HTTP/1.1 403"), "{}", String::from_utf8_lossy(&got));
        }
    }
    assert!(ex.mock.requests().await.is_empty());
    ex.stop().await;
}

/// A panic while handling a request is answered, in the API's error shape, and counted: the
/// connection neither hangs nor drops. (The panicking handler stands in for a bug anywhere on
/// the request path; the boundary is the one the gateway puts around it, on a real listener.)
#[tokio::test]
async fn a_panic_on_the_request_path_is_answered_500() {
    use std::convert::Infallible;
    use std::time::Duration;

    use customs::gateway::guard_panics;
    use customs::server::{Limits, serve};

    let panics = prometheus::IntCounter::new("panics", "test").unwrap();
    let counted = panics.clone();
    let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let counted = counted.clone();
        async move {
            let anthropic = req.uri().path().starts_with("/v1/messages");
            let bug = async {
                if req.uri().path() != "/fine" {
                    std::panic::panic_any(format!("bug on {}", req.uri().path()));
                }
                Ok(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            };
            let res = match guard_panics(bug, &counted).await {
                Ok(body) => http::Response::new(body),
                Err(e) => e.into_response(anthropic),
            };
            Ok::<_, Infallible>(res)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        header_read_timeout: Duration::from_secs(5),
        max_connections: 8,
        max_header_bytes: 32 * 1024,
        max_header_fields: 100,
        idle_timeout: Duration::from_secs(60),
        http2_keep_alive_interval: Duration::from_secs(30),
        http2_keep_alive_timeout: Duration::from_secs(20),
        shutdown_grace: Duration::from_secs(1),
        tls: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, service, limits, async {
        let _ = stopped.await;
    }));
    let r = send(addr, Method::POST, "/v1/chat/completions", &[], "{}").await;
    assert_eq!((r.status, r.code()), (StatusCode::INTERNAL_SERVER_ERROR, "internal_error".to_owned()));
    assert_eq!(r.json()["error"]["type"], "server_error");
    let r = send(addr, Method::POST, "/v1/messages", &[], "{}").await;
    assert_eq!((r.json()["type"].as_str(), r.json()["error"]["type"].as_str()), (Some("error"), Some("api_error")));
    assert_eq!(r.code(), "internal_error");
    assert_eq!(send(addr, Method::GET, "/fine", &[], "").await.status, StatusCode::OK);
    assert_eq!(panics.get(), 2);
    let _ = stop.send(());
    let _ = server.await;
}

/// Bodies held at once are bounded gateway-wide: past `server.max_buffered_body_bytes` a new
/// request is shed at once with 503 `overloaded` and `Retry-After`, and the room comes back when
/// a held body is let go of.
#[tokio::test]
async fn bodies_held_at_once_are_bounded_and_the_excess_is_shed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let ex = Example::start_with(|d| {
        crate::support::edit_file(d, "gateway.toml", "max_body_bytes = 4194304", "max_body_bytes = 1000000");
        let budget = "max_buffered_body_bytes = 268435456";
        crate::support::edit_file(d, "gateway.toml", budget, "max_buffered_body_bytes = 1500000");
    })
    .await;
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-demo-us\r\ncontent-length: 1000000\r\n\r\n{\"model\":";
    // One announced megabyte, trickling: it holds its room.
    let mut slow = TcpStream::connect(ex.gw.addr).await.unwrap();
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // A second does not fit beside it.
    let mut second = TcpStream::connect(ex.gw.addr).await.unwrap();
    second.write_all(head.as_bytes()).await.unwrap();
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), second.read(&mut got)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&got[..n]);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"code\":\"overloaded\"") && text.contains("retry-after: 1"), "{text}");
    // Small bodies still fit beside the held one.
    let r = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[US], chat_body("gpt-4o-mini")).await;
    assert_eq!(r.status, StatusCode::OK);
    // Once the held body is let go of (its client left), a megabyte fits again.
    drop(slow);
    let big = format!(r#"{{"model":"gpt-4o-mini","messages":[],"pad":"{}"}}"#, "x".repeat(900_000));
    let mut fits = false;
    for _ in 0..50 {
        let r = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[US], big.clone()).await;
        if r.status == StatusCode::OK {
            fits = true;
            break;
        }
        assert_eq!(r.code(), "overloaded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(fits, "the room of the body let go of never came back");
    ex.stop().await;
}

#[tokio::test]
async fn heads_over_the_limits_get_the_json_431_a_record_and_a_metric() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ex = Example::start_with(|dir| {
        let edit = |from, to| crate::support::edit_file(dir, "gateway.toml", from, to);
        edit("max_header_bytes = 32768", "max_header_bytes = 4096");
        edit("max_header_fields = 100", "max_header_fields = 20");
    })
    .await;
    let big = "x".repeat(5000);
    let many: Vec<(String, String)> = (0..25).map(|i| (format!("x-extra-{i}"), "1".to_owned())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain([US]).collect();

    let r = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[US, ("x-big", &big)], chat_body("gpt-4o")).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "header_too_large"));
    let r = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &many, chat_body("gpt-4o")).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "header_too_large"));
    // The same over HTTP/2, which has no field count of its own.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut req = http::Request::post(format!("http://{}/v1/chat/completions", ex.gw.addr));
    for (k, v) in &many {
        req = req.header(*k, *v);
    }
    let res = h2
        .request(req.body(http_body_util::Full::new(bytes::Bytes::from(chat_body("gpt-4o")))).unwrap())
        .await
        .unwrap();
    assert_eq!((res.version(), res.status()), (http::Version::HTTP_2, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    assert_eq!(res.headers()["x-customs-reason"], "header_too_large");
    // Within the limits: served.
    assert_eq!(
        send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[US], chat_body("gpt-4o")).await.status,
        StatusCode::OK
    );

    // Past twice the limit the HTTP layer refuses it before the gateway sees it: a bare 431.
    let mut s = tokio::net::TcpStream::connect(ex.gw.addr).await.unwrap();
    let huge = format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n", "x".repeat(70_000));
    let _ = s.write_all(huge.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(buf.starts_with(b"HTTP/1.1 431"), "{}", String::from_utf8_lossy(&buf));

    let m = crate::support::scrape(ex.gw.admin_addr).await;
    let refused: f64 = m
        .iter()
        .filter(|s| {
            s.name == "customs_requests_total" && s.labels.iter().any(|(k, v)| k == "reason" && v == "header_too_large")
        })
        .map(|s| s.value)
        .sum();
    assert_eq!(refused, 3.0);
    let audit = ex.audit_dir();
    let Example { mock, gw, dir: _kept } = ex;
    gw.shutdown().await;
    mock.stop().await;
    let records = crate::support::trail(&audit);
    let recorded = records.iter().filter(|r| r["reason"] == "header_too_large").count();
    assert_eq!(recorded, 3, "each refusal is on record");
}

/// One HTTP/2 connection (prior knowledge): its request handle and the connection to drive.
async fn h2_connection(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    impl std::future::Future<Output = hyper::Result<()>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_connection_that_starts_no_request_for_the_idle_timeout_is_closed() {
    let ex = Example::start_with(|dir| {
        crate::support::edit_file(dir, "gateway.toml", "idle_timeout = \"60s\"", "idle_timeout = \"300ms\"")
    })
    .await;
    // HTTP/2 has no idle timer of its own: without this one the connection stays open for ever.
    let (mut tx, conn) = h2_connection(ex.gw.addr).await;
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/v1/models", ex.gw.addr))
        .header(US.0, US.1)
        .body(http_body_util::Full::default())
        .unwrap();
    assert_eq!(tx.send_request(req).await.unwrap().status(), StatusCode::OK);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
    assert!(closed.is_ok(), "an idle HTTP/2 connection was not closed");

    // A stream longer than the idle timeout is not cut by it: it ends whole.
    let (mut tx, conn) = h2_connection(ex.gw.addr).await;
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{}/v1/chat/completions", ex.gw.addr))
        .header(US.0, US.1)
        .header("x-mock-delay-ms", "900")
        .body(http_body_util::Full::new(bytes::Bytes::from(chat_body("gpt-4o"))))
        .unwrap();
    let res = tx.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("chat.completion"));
    ex.stop().await;
}

/// HTTP/2 keep-alive PINGs every `every`, each to be answered within the same; no idle timeout
/// to get in their way.
fn quick_keep_alive(dir: &std::path::Path, every: &str) {
    crate::support::edit_file(dir, "gateway.toml", "idle_timeout = \"60s\"", "idle_timeout = \"1h\"");
    let interval = format!("keep_alive_interval = \"{every}\"");
    crate::support::edit_file(dir, "gateway.toml", "keep_alive_interval = \"30s\"", &interval);
    let timeout = format!("keep_alive_timeout = \"{every}\"");
    crate::support::edit_file(dir, "gateway.toml", "keep_alive_timeout = \"20s\"", &timeout);
}

/// A client that vanished without closing (a dropped NAT mapping, a killed laptop) answers no
/// PING: its HTTP/2 connection is closed at the keep-alive timeout, not at the idle timeout.
#[tokio::test]
async fn an_http2_client_that_answers_no_ping_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ex = Example::start_with(|dir| quick_keep_alive(dir, "300ms")).await;
    let mut s = tokio::net::TcpStream::connect(ex.gw.addr).await.unwrap();
    // The preface, empty SETTINGS and an ack of the server's SETTINGS; then silence.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&[0, 0, 0, 4, 1, 0, 0, 0, 0]);
    s.write_all(&hello).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a connection that acknowledged no PING stayed open");
    // Walk the frames the server sent: a PING (type 6) without the ACK flag, then GOAWAY (7).
    let mut kinds = Vec::new();
    let mut at = 0;
    while at + 9 <= buf.len() {
        let len = usize::from(buf[at]) << 16 | usize::from(buf[at + 1]) << 8 | usize::from(buf[at + 2]);
        kinds.push((buf[at + 3], buf[at + 4]));
        at += 9 + len;
    }
    assert!(kinds.contains(&(6, 0)), "no PING was sent: {kinds:?}");
    assert!(kinds.iter().any(|k| k.0 == 7), "no GOAWAY was sent: {kinds:?}");
    ex.stop().await;
}

/// A client that answers PINGs keeps a stream that outlasts many keep-alive intervals: the
/// keep-alive closes dead connections, never a live stream.
#[tokio::test]
async fn an_http2_stream_outlasting_the_keep_alive_ends_whole() {
    let ex = Example::start_with(|dir| quick_keep_alive(dir, "200ms")).await;
    let (mut tx, conn) = h2_connection(ex.gw.addr).await;
    tokio::spawn(conn);
    // Eight chunks 250 ms apart: about ten keep-alive intervals.
    let req = http::Request::post(format!("http://{}/v1/chat/completions", ex.gw.addr))
        .header(US.0, US.1)
        .header("x-mock-chunks", "8")
        .header("x-mock-chunk-delay-ms", "250")
        .body(http_body_util::Full::new(bytes::Bytes::from(crate::support::stream_body("gpt-4o"))))
        .unwrap();
    let started = std::time::Instant::now();
    let res = tx.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500), "the stream was not paced");
    assert!(text.trim_end().ends_with("data: [DONE]"), "the stream was cut:\n{text}");
    assert!(text.matches("chat.completion.chunk").count() >= 8, "{text}");
    ex.stop().await;
}

/// Both `Content-Length` and `Transfer-Encoding`: the HTTP layer reads the body as chunked,
/// drops the length and closes the connection after answering (RFC 9112, section 6.1), so bytes
/// a proxy in front framed differently are never read as a second request.
#[tokio::test]
async fn a_body_framed_by_both_length_and_chunks_cannot_smuggle_a_second_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ex = Example::start().await;
    let body = chat_body("gpt-4o");
    let hidden = "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-demo-us\r\n\r\n";
    let smuggle = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-demo-us\r\n\
         Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n{hidden}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(ex.gw.addr).await.unwrap();
    s.write_all(smuggle.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the connection stayed open");
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "one answer only: {text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let seen = ex.mock.requests().await;
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], body.as_bytes(), "the chunked body, not 4 bytes of it");
    ex.stop().await;
}

#[tokio::test]
async fn a_body_below_the_minimum_rate_gets_408_long_before_the_body_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ex = Example::start_with(|dir| {
        let edit = |from, to| crate::support::edit_file(dir, "gateway.toml", from, to);
        edit("min_body_rate = 1024", "min_body_rate = 1000");
        edit("body_rate_grace = \"5s\"", "body_rate_grace = \"300ms\"");
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(ex.gw.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-demo-us\r\nContent-Length: 4000\r\n\r\n{\"model\"")
        .await
        .unwrap();
    // A byte every 100 ms: well under 1000 bytes a second, and never silent for long.
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let read = async {
        loop {
            tokio::select! {
                n = s.read(&mut buf) => return n.unwrap(),
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    let _ = s.write_all(b" ").await;
                }
            }
        }
    };
    // body_read_timeout is 30 s in the example: only the rate can end it within 5.
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), read).await.expect("the trickle was not cut off");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "not before the grace period");
    assert!(ex.mock.requests().await.is_empty());
    ex.stop().await;
}

#[tokio::test]
async fn above_its_memory_limit_the_gateway_sheds_requests_with_bodies() {
    let ex = Example::start_with(|dir| {
        // Below what any process holds: the gateway is over it from its first sample.
        crate::support::edit_file(dir, "gateway.toml", "# max_memory_bytes", "max_memory_bytes = 1048576 #")
    })
    .await;
    let mut shed = None;
    for _ in 0..40 {
        let r = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[US], chat_body("gpt-4o")).await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            shed = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = shed.expect("never shed");
    assert_eq!(r.code(), "overloaded");
    assert_eq!(r.headers["retry-after"], "1");
    // Bodiless requests cost next to nothing and are still served.
    assert_eq!(send(ex.gw.addr, Method::GET, "/v1/models", &[US], "").await.status, StatusCode::OK);
    let m = crate::support::scrape(ex.gw.admin_addr).await;
    assert_eq!(crate::support::value(&m, "customs_memory_shedding", &[]), 1.0);
    ex.stop().await;
}
