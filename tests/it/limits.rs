//! Limits end to end: each kind triggers with its code and OpenAI's headers, tokens are settled
//! from the upstream's reported usage, and the metrics move by exactly what the traffic sent.

use http::{Method, StatusCode};

use crate::support::{self, Reply, US_JURISDICTION, scrape, send, value, write_config};

fn digest(key: &str) -> String {
    hex::encode(customs::auth::digest(key.as_bytes()))
}

fn tenant(id: &str, limits: &str) -> String {
    format!(
        "[[tenants]]\nid = \"{id}\"\nlegal_name = \"{id} Inc.\"\ncountry = \"US\"\njurisdiction = \"us\"\nstatus = \"active\"\nkey_sha256 = [\"{}\"]\n[tenants.limits]\n{limits}\n",
        digest(&format!("k-{id}"))
    )
}

struct Limited {
    mock: customs::mock::MockUpstream,
    gw: customs::server::Server,
    _dir: tempfile::TempDir,
}

impl Limited {
    async fn start() -> Self {
        let mock = support::mock("m").await;
        let models = format!(
            "[[models]]\nid = \"m\"\ntraining_flops = 1e24\ncompute_basis = \"assumed\"\nparameters = 1e9\nmax_output_tokens = 700\n\
             [[models.endpoints]]\nurl = \"http://{}/v1\"\nresidency = \"us-east\"\napi_key_env = \"CUSTOMS_UPSTREAM_KEY\"\n",
            mock.addr
        );
        let tenants = [
            tenant("rpm", "requests_per_minute = 2"),
            tenant("tpm", "tokens_per_minute = 1000"),
            tenant("conc", "max_concurrent = 1"),
            tenant("flops", "daily_inference_flops = 2e12"),
            tenant("free", ""),
        ]
        .concat();
        let dir = write_config(&[
            ("models.toml", &models),
            ("country-groups.toml", "[[groups]]\nid = \"g\"\ncountries = [\"US\"]\n"),
            ("jurisdictions.toml", US_JURISDICTION),
            ("tenants.toml", &tenants),
        ]);
        let gw = support::gateway(dir.path()).await;
        Self { mock, gw, _dir: dir }
    }

    async fn call(&self, who: &str, body: &str, extra: &[(&str, &str)]) -> Reply {
        let auth = format!("Bearer k-{who}");
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        send(self.gw.addr, Method::POST, "/v1/chat/completions", &headers, body.to_owned()).await
    }

    async fn stop(self) {
        self.gw.shutdown().await;
        self.mock.stop().await;
    }
}

fn chat(max_tokens: u64) -> String {
    format!(r#"{{"model":"m","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"hello there"}}]}}"#)
}

/// What the mock reports as prompt tokens, and what the gateway estimates: a token per 4 bytes.
fn prompt_tokens(body: &str) -> u64 {
    (body.len() as u64).div_ceil(4)
}

fn header(r: &Reply, name: &str) -> Option<u64> {
    r.headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn ratelimit_requests_burst_exhausted_returns_429() {
    let l = Limited::start().await;
    let body = chat(10);
    for remaining in [1, 0] {
        let r = l.call("rpm", &body, &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), Some(2));
        assert_eq!(header(&r, "x-ratelimit-remaining-requests"), Some(remaining));
    }
    let r = l.call("rpm", &body, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded"));
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    let retry = header(&r, "retry-after").unwrap();
    assert!((29..=30).contains(&retry), "one request per 30 s comes back: {retry}");
    assert!(header(&r, "retry-after-ms").unwrap() > 29_000);
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), Some(0));
    assert!(r.headers["x-ratelimit-reset-requests"].to_str().unwrap().ends_with('s'));
    // Other tenants are not affected.
    assert_eq!(l.call("free", &body, &[]).await.status, StatusCode::OK);
    let m = scrape(l.gw.admin_addr).await;
    assert_eq!(value(&m, "customs_ratelimit_rejections_total", &[("tenant", "rpm"), ("limit", "requests")]), 1.0);
    assert_eq!(l.mock.requests().await.len(), 3);
    l.stop().await;
}

#[tokio::test]
async fn ratelimit_tokens_are_settled_from_usage_then_exhausted() {
    let l = Limited::start().await;
    let body = chat(900);
    let estimate = prompt_tokens(&body) + 900;
    // A request the upstream never served gives its reservation back.
    let r = l.call("tpm", &body, &[("x-mock-fail", "close")]).await;
    assert_eq!(r.code(), "upstream_unavailable");
    // Reserved 900+ of 1,000 tokens, but the upstream reports only prompt + 5: the rest is given
    // back, so the same request fits again.
    for _ in 0..2 {
        let r = l.call("tpm", &body, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(header(&r, "x-ratelimit-limit-tokens"), Some(1000));
        let remaining = header(&r, "x-ratelimit-remaining-tokens").unwrap();
        assert!(remaining < 1000 - estimate + 60, "{remaining}");
    }
    // Without reported usage the worst case is charged (here the reservation: `max_tokens` is
    // set), and the next reservation does not fit.
    let r = l.call("tpm", &body, &[("x-mock-no-usage", "1")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = l.call("tpm", &body, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "token_rate_limit_exceeded"));
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), Some(1000));
    assert!(header(&r, "x-ratelimit-remaining-tokens").unwrap() < estimate);
    assert!(r.headers.contains_key("x-ratelimit-reset-tokens"));
    assert!(header(&r, "retry-after").unwrap() >= 1);

    let m = scrape(l.gw.admin_addr).await;
    let tokens = |kind| value(&m, "customs_tokens_total", &[("tenant", "tpm"), ("kind", kind)]);
    assert_eq!(tokens("prompt"), (2 * prompt_tokens(&body)) as f64);
    assert_eq!(tokens("completion"), 10.0);
    assert_eq!(tokens("unmetered"), estimate as f64);
    assert_eq!(value(&m, "customs_ratelimit_rejections_total", &[("tenant", "tpm"), ("limit", "tokens")]), 1.0);
    l.stop().await;
}

#[tokio::test]
async fn ratelimit_n_and_best_of_multiply_the_reservation() {
    let l = Limited::start().await;
    let with = |extra: &str| {
        format!(r#"{{"model":"m","max_tokens":100,{extra}"messages":[{{"role":"user","content":"hello there"}}]}}"#)
    };
    // n: 4 reserves four completions of 100 tokens against the 1,000-token bucket.
    let four = with(r#""n":4,"#);
    let r = l.call("tpm", &four, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let reserved = 1000 - header(&r, "x-ratelimit-remaining-tokens").unwrap();
    let want = prompt_tokens(&four) + 400;
    assert!((want..want + 10).contains(&reserved), "reserved {reserved}, want {want}");
    // Twelve completions of 100 cannot fit a 1,000-token bucket however empty it is; one can.
    for extra in [r#""n":12,"#, r#""best_of":12,"n":1,"#] {
        let r = l.call("tpm", &with(extra), &[]).await;
        assert_eq!(r.code(), "token_rate_limit_exceeded", "{extra}");
    }
    assert_eq!(l.call("tpm", &with(r#""n":1,"#), &[]).await.status, StatusCode::OK);
    l.stop().await;
}

#[tokio::test]
async fn ratelimit_a_response_without_usage_is_charged_the_worst_case() {
    let l = Limited::start().await;
    let unmetered = || async {
        let m = scrape(l.gw.admin_addr).await;
        support::series(&m, "customs_tokens_total", &[("tenant", "free"), ("kind", "unmetered")]).unwrap_or(0.0)
    };
    // No `max_tokens`: the model's output limit (700 per completion) is the worst case, not the
    // gateway's default reservation (1,024).
    let stream = r#"{"model":"m","stream":true,"n":2,"messages":[]}"#;
    let r = l.call("free", stream, &[("x-mock-no-usage", "1")]).await;
    assert_eq!(r.status, StatusCode::OK);
    // The prompt is the gateway's estimate from the client's body: no usage came to say better.
    let worst = prompt_tokens(stream) + 2 * 700;
    assert_eq!(unmetered().await, worst as f64);
    // A client gone mid-stream, before the upstream's usage, is charged the worst case too.
    let auth = "Bearer k-free";
    let headers = [("authorization", auth), ("x-mock-gate", "1")];
    let res = support::send_raw(l.gw.addr, Method::POST, "/v1/chat/completions", &headers, stream.to_owned()).await;
    let mut body = res.into_body();
    let mut seen = String::new();
    support::read_until(&mut body, &mut seen, "chunk 0. ", std::time::Duration::from_secs(10)).await;
    drop(body);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while unmetered().await < (2 * worst) as f64 {
        assert!(tokio::time::Instant::now() < deadline, "the abandoned stream was not charged");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(unmetered().await, (2 * worst) as f64);
    l.mock.open_gate();
    l.stop().await;
}

#[tokio::test]
async fn ratelimit_concurrency_slot_is_held_for_the_whole_stream() {
    let l = Limited::start().await;
    let stream = r#"{"model":"m","stream":true,"messages":[]}"#;
    let res = support::send_raw(
        l.gw.addr,
        Method::POST,
        "/v1/chat/completions",
        &[("authorization", "Bearer k-conc"), ("x-mock-gate", "1")],
        stream,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let r = l.call("conc", &chat(5), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "concurrency_limit_exceeded"));
    assert!(header(&r, "retry-after").is_some());
    let m = scrape(l.gw.admin_addr).await;
    assert_eq!(value(&m, "customs_in_flight_requests", &[]), 1.0);
    l.mock.open_gate();
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).ends_with("data: [DONE]\n\n"));
    assert_eq!(l.call("conc", &chat(5), &[]).await.status, StatusCode::OK);
    let m = scrape(l.gw.admin_addr).await;
    assert_eq!(value(&m, "customs_in_flight_requests", &[]), 0.0);
    // The stream's usage came from its final chunk.
    assert_eq!(
        value(&m, "customs_tokens_total", &[("tenant", "conc"), ("kind", "prompt")]),
        (prompt_tokens(&support::as_forwarded(stream)) + prompt_tokens(&chat(5))) as f64
    );
    assert_eq!(value(&m, "customs_tokens_total", &[("tenant", "conc"), ("kind", "completion")]), 10.0);
    l.stop().await;
}

#[tokio::test]
async fn ratelimit_compute_quota_charges_two_n_per_token() {
    let l = Limited::start().await;
    // parameters = 1e9, so a token costs 2e9 FLOPs; the quota is 2e12 FLOPs, 1,000 tokens a day.
    let (a, b, c) = (chat(600), chat(900), chat(1000));
    assert_eq!(l.call("flops", &a, &[]).await.status, StatusCode::OK);
    assert_eq!(l.call("flops", &b, &[]).await.status, StatusCode::OK);
    let r = l.call("flops", &c, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "compute_quota_exceeded"));
    let retry = header(&r, "retry-after").unwrap();
    assert!((1..=86_400).contains(&retry), "retry at the next UTC day: {retry}");
    let m = scrape(l.gw.admin_addr).await;
    let used = prompt_tokens(&a) + 5 + prompt_tokens(&b) + 5;
    assert_eq!(value(&m, "customs_inference_flops_total", &[("tenant", "flops")]), 2e9 * used as f64);
    assert_eq!(value(&m, "customs_ratelimit_rejections_total", &[("tenant", "flops"), ("limit", "compute")]), 1.0);
    l.stop().await;
}

#[tokio::test]
async fn metrics_move_by_exactly_what_the_traffic_sent() {
    let ex = support::Example::start().await;
    let before = scrape(ex.gw.admin_addr).await;
    for _ in 0..3 {
        assert_eq!(support::chat(ex.gw.addr, "sk-demo-us", "gpt-4o", None).await.status, StatusCode::OK);
    }
    for _ in 0..2 {
        assert_eq!(
            support::chat(ex.gw.addr, "sk-demo-cn", "claude-3-5-sonnet", None).await.code(),
            "model_not_allowed"
        );
    }
    assert_eq!(support::chat(ex.gw.addr, "sk-nope", "gpt-4o", None).await.code(), "invalid_api_key");
    let streamed = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = send(ex.gw.addr, Method::POST, "/v1/chat/completions", &[("authorization", "Bearer sk-demo-us")], streamed)
        .await;
    assert!(String::from_utf8_lossy(&r.body).contains("[DONE]"));
    let after = scrape(ex.gw.admin_addr).await;
    // A series first exported by this traffic was 0 before it; after it, it must be there.
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - support::series(&before, name, labels).unwrap_or(0.0)
    };

    let req = "customs_requests_total";
    assert_eq!(
        delta(req, &[("tenant", "demo-us"), ("jurisdiction", "us"), ("decision", "allow"), ("reason", "allowed")]),
        4.0
    );
    assert_eq!(
        delta(
            req,
            &[
                ("tenant", "demo-cn"),
                ("jurisdiction", "d5-macau"),
                ("decision", "deny"),
                ("reason", "model_not_allowed")
            ]
        ),
        2.0
    );
    assert_eq!(
        delta(
            req,
            &[("tenant", "unknown"), ("jurisdiction", "unknown"), ("decision", "deny"), ("reason", "invalid_api_key")]
        ),
        1.0
    );
    let total: f64 = after.iter().filter(|s| s.name == req).map(|s| s.value).sum();
    assert_eq!(total, 7.0, "nothing else was counted");
    let mreq = "customs_model_requests_total";
    assert_eq!(delta(mreq, &[("model", "gpt-4o"), ("decision", "allow"), ("reason", "allowed")]), 3.0);
    assert_eq!(
        delta(mreq, &[("model", "claude-3-5-sonnet"), ("decision", "deny"), ("reason", "model_not_allowed")]),
        2.0
    );
    assert_eq!(delta(mreq, &[("model", "unknown"), ("decision", "deny"), ("reason", "invalid_api_key")]), 1.0);
    assert_eq!(delta("customs_request_duration_seconds_count", &[("decision", "allow")]), 4.0);
    assert_eq!(delta("customs_request_duration_seconds_count", &[("decision", "deny")]), 3.0);
    assert_eq!(delta("customs_gateway_overhead_seconds_count", &[]), 7.0);
    let ep = [("endpoint", "gpt-4o#0"), ("residency", "us-east")];
    assert_eq!(delta("customs_upstream_first_byte_seconds_count", &ep), 3.0);
    assert_eq!(delta("customs_upstream_duration_seconds_count", &ep), 3.0);
    assert_eq!(value(&after, "customs_in_flight_requests", &[]), 0.0);
    // Tokens as the mock reported them: a token per 4 bytes of prompt, 5 completion tokens.
    let prompt = 3 * support::chat_body("gpt-4o").len().div_ceil(4) + support::as_forwarded(streamed).len().div_ceil(4);
    assert_eq!(delta("customs_tokens_total", &[("tenant", "demo-us"), ("kind", "prompt")]), prompt as f64);
    assert_eq!(delta("customs_tokens_total", &[("tenant", "demo-us"), ("kind", "completion")]), 20.0);
    assert_eq!(delta("customs_model_tokens_total", &[("model", "gpt-4o-mini"), ("kind", "completion")]), 5.0);
    let version = ex.gw.shared.snapshot.load().policy.version().to_owned();
    assert_eq!(value(&after, "customs_policy_info", &[("version", &version)]), 1.0);
    ex.stop().await;
}

#[tokio::test]
async fn metrics_upstream_errors_are_counted_by_kind() {
    let ex = support::Example::start().await;
    // One served request first, so the tenant's token series exist and a charge would show.
    assert_eq!(support::chat(ex.gw.addr, "sk-demo-us", "gpt-4o-mini", None).await.status, StatusCode::OK);
    let charged = |m: &[support::Sample]| -> f64 {
        m.iter()
            .filter(|s| s.name == "customs_tokens_total" && s.labels.contains(&("tenant".into(), "demo-us".into())))
            .map(|s| s.value)
            .sum()
    };
    let before = charged(&scrape(ex.gw.admin_addr).await);
    assert!(before > 0.0, "the served request was charged");
    let r = send(
        ex.gw.addr,
        Method::POST,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-demo-us"), ("x-mock-fail", "500")],
        support::chat_body("gpt-4o-mini"),
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let m = scrape(ex.gw.admin_addr).await;
    assert_eq!(value(&m, "customs_upstream_errors_total", &[("endpoint", "gpt-4o-mini#0"), ("kind", "http_5xx")]), 1.0);
    // The upstream did no inference, so the tenant is not charged the estimate.
    assert_eq!(charged(&m), before, "the failed request charged tokens");
    assert_eq!(value(&m, "customs_in_flight_requests", &[]), 0.0);
    ex.stop().await;
}

#[tokio::test]
async fn ratelimit_concurrency_is_checked_before_the_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = Limited::start().await;
    // One request whose body never comes holds the tenant's one place...
    let mut first = tokio::net::TcpStream::connect(l.gw.addr).await.unwrap();
    first
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-conc\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // ...so the next is refused at once, without the gateway waiting for (or holding) its body.
    let mut second = tokio::net::TcpStream::connect(l.gw.addr).await.unwrap();
    second
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-conc\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(3), second.read(&mut buf))
        .await
        .expect("the second request waited for its body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(text.contains("concurrency_limit_exceeded"), "{text}");
    // The place comes back when the first request ends (its connection closed here).
    drop(first);
    let mut served = None;
    for _ in 0..40 {
        let r = l.call("conc", &chat(10), &[]).await;
        if r.status == StatusCode::OK {
            served = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(served.is_some(), "the place was never given back");
    assert!(l.mock.requests().await.len() == 1);
    l.stop().await;
}
