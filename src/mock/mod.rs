//! A mock model server for the demo, tests and benchmarks. It speaks OpenAI's APIs (chat
//! completions, completions, embeddings, models, and the Responses API, which it remembers so a
//! response can be retrieved, cancelled and deleted by id) on OpenAI and Azure paths, and
//! Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`). It streams as each API
//! does (SSE; usage in the last chunk, in `response.completed`, or in `message_start` and
//! `message_delta`), checks the upstream credential (`Authorization: Bearer`, `api-key` or
//! `x-api-key`), and injects faults as request headers ask, on every route:
//!
//! - `x-mock-delay-ms: N`: wait before sending the response head;
//! - `x-mock-fail: 500|503|529|429|close`: answer with that status, or drop the connection;
//! - `x-mock-chunks: N` / `x-mock-chunk-delay-ms: N`: shape a stream (without a delay, every event
//!   is ready at once and goes out as one burst);
//! - `x-mock-fail-after-chunks: N`: abort a stream after N chunks;
//! - `x-mock-gate: 1`: after the first chunk, wait until the test calls [`MockUpstream::open_gate`];
//! - `x-mock-no-usage: 1`: report no `usage`, as upstreams that do not count tokens do;
//! - `x-mock-created: N`: the `created` time in the body, so two answers can be compared byte for
//!   byte (ids of Responses and Messages still differ: they are unique per mock).
//!
//! Chat and completion streams report usage as OpenAI's do: only when the request sets
//! `stream_options.include_usage`, in a last chunk with empty `choices`, every other chunk then
//! carrying `"usage":null`. Responses and Messages streams always report it. Errors on the
//! Messages routes take Anthropic's shape (`{"type":"error","error":{..}}`), and those routes
//! also require an `anthropic-version` header.

mod anthropic;
mod body;
mod responses;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

pub use body::EventBody;

use crate::server::{self, Limits};

type MockBody = Either<Full<Bytes>, EventBody>;

#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Sent back as `x-mock-upstream`, so tests can see which upstream served a request.
    pub name: String,
    /// Keys the mock accepts (as `Authorization: Bearer`, `api-key` or `x-api-key`); empty accepts
    /// anything.
    pub api_keys: Vec<String>,
    pub chunks: usize,
    pub chunk_delay: Duration,
    /// Keep every request for inspection (tests); off for load runs.
    pub record: bool,
    /// Serve HTTPS with this certificate: an upstream behind a private CA.
    pub tls: Option<crate::tls::TlsSettings>,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            name: "mock".into(),
            api_keys: Vec::new(),
            chunks: 5,
            chunk_delay: Duration::ZERO,
            record: true,
            tls: None,
        }
    }
}

/// A request as the mock received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

struct State {
    opts: MockOptions,
    /// The name as it goes into ids (`resp_mock_<name>_<n>`): characters a path would need escaped
    /// become `_`, so an id can be used in a URL as it is.
    id_name: String,
    recorded: Mutex<Vec<Recorded>>,
    gate: Semaphore,
    counter: AtomicU64,
    responses: Mutex<responses::Store>,
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    /// Ends with the connections still open at the end of the grace period, which are dropped.
    task: JoinHandle<tokio::task::JoinSet<()>>,
}

impl State {
    fn new(opts: MockOptions) -> Arc<Self> {
        let id_name = opts.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        Arc::new(Self {
            opts,
            id_name,
            recorded: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
            counter: AtomicU64::new(0),
            responses: Mutex::new(responses::Store::default()),
        })
    }
}

// === impl MockUpstream ===

impl MockUpstream {
    pub async fn start(listen: SocketAddr, opts: MockOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let tls = opts.tls.as_ref().map(crate::tls::acceptor).transpose().map_err(std::io::Error::other)?;
        let state = State::new(opts);
        let (stop, mut stopped) = watch::channel(false);
        let svc_state = state.clone();
        let svc = tower::service_fn(move |req: Request<Incoming>| handle(svc_state.clone(), req));
        let limits = Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            max_header_fields: 100,
            // Longer than a gateway keeps an idle pooled connection.
            idle_timeout: Duration::from_secs(300),
            // The gateway speaks HTTP/1.1 to upstreams.
            http2_keep_alive_interval: Duration::ZERO,
            http2_keep_alive_timeout: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(1),
            tls,
        };
        let task = tokio::spawn(server::serve(listener, svc, limits, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Ok(Self { addr, state, stop, task })
    }

    /// A dialer for [`crate::proxy::Upstreams::in_memory`]: each call opens an in-memory
    /// connection to a mock with these options, served on the current runtime.
    pub fn in_memory(opts: MockOptions) -> crate::proxy::client::Dial {
        let state = State::new(opts);
        let rt = tokio::runtime::Handle::current();
        Arc::new(move || {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            let state = state.clone();
            rt.spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(theirs), svc);
                let _ = conn.await;
            });
            ours
        })
    }

    /// Every request received so far, oldest first.
    pub async fn requests(&self) -> Vec<Recorded> {
        self.state.recorded.lock().await.clone()
    }

    /// Lets every stream held by `x-mock-gate` continue.
    pub fn open_gate(&self) {
        self.state.gate.add_permits(1 << 20);
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn header_num(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.parse().ok()
}

/// The mock's own failures (a wrong key, an injected fault, an unknown path) in OpenAI's error shape.
fn error(status: StatusCode, code: &str, message: &str) -> Response<MockBody> {
    openai_error(status, "mock_error", message, None, Some(code))
}

/// An error as OpenAI's APIs answer one.
fn openai_error(
    status: StatusCode,
    kind: &str,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response<MockBody> {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    let mut res = json_response(&body);
    *res.status_mut() = status;
    res
}

/// The credential as OpenAI (`Authorization: Bearer`), Azure (`api-key`) or Anthropic
/// (`x-api-key`) clients send it; an `Authorization` header that is not a bearer token is a wrong
/// key, whatever else the request carries.
fn presented_key(h: &HeaderMap) -> Option<&str> {
    if let Some(v) = h.get("authorization").and_then(|v| v.to_str().ok()) {
        return v.strip_prefix("Bearer ");
    }
    h.get("api-key").or_else(|| h.get("x-api-key")).and_then(|v| v.to_str().ok())
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<MockBody>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    if state.opts.record {
        state.recorded.lock().await.push(Recorded {
            method: parts.method.clone(),
            uri: parts.uri.to_string(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
    }
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    let mut res = respond(&state, &parts, &body, n).await?;
    let h = res.headers_mut();
    h.insert("x-request-id", HeaderValue::from_str(&format!("mock-{n}")).unwrap_or(HeaderValue::from_static("mock")));
    if let Ok(v) = HeaderValue::from_str(&state.opts.name) {
        h.insert("x-mock-upstream", v);
    }
    Ok(res)
}

/// Answers one request: the key is checked, the injected faults applied, then the API its path
/// names answers. `n` numbers the request, and so the ids of what it creates.
async fn respond(
    state: &Arc<State>,
    parts: &http::request::Parts,
    body: &Bytes,
    n: u64,
) -> Result<Response<MockBody>, std::io::Error> {
    let h = &parts.headers;
    let path = parts.uri.path();
    let messages = anthropic::Op::of(path);
    // Each API's clients expect its own error shape, the mock's own failures included.
    let fail = |status: StatusCode, code: &str, message: &str| match messages {
        Some(_) => anthropic::error(status, message),
        None => error(status, code, message),
    };
    if !state.opts.api_keys.is_empty() && !presented_key(h).is_some_and(|k| state.opts.api_keys.iter().any(|a| a == k))
    {
        return Ok(fail(StatusCode::UNAUTHORIZED, "invalid_api_key", "mock upstream: wrong upstream key"));
    }
    if messages.is_some() && !h.contains_key("anthropic-version") {
        return Ok(anthropic::error(StatusCode::BAD_REQUEST, "anthropic-version: header is required"));
    }
    if let Some(ms) = header_num(h, "x-mock-delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match h.get("x-mock-fail").and_then(|v| v.to_str().ok()) {
        Some("close") => return Err(std::io::Error::other("mock: dropping the connection")),
        Some(code) => {
            if let Some(status) = code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()) {
                return Ok(fail(status, "mock_failure", "mock upstream: injected failure"));
            }
        }
        None => {}
    }
    if let Some(op) = messages {
        return Ok(anthropic::respond(state, h, body, op, n));
    }
    let op = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/openai/v1/"))
        .or_else(|| path.strip_prefix("/openai/deployments/").and_then(|r| r.split_once('/').map(|(_, op)| op)))
        .or_else(|| path.strip_prefix("/openai/").filter(|op| *op == "responses" || op.starts_with("responses/")));
    if let Some(rest) = op.and_then(|op| op.strip_prefix("responses/")) {
        return Ok(responses::by_id(state, &parts.method, rest).await);
    }
    if parts.method == Method::GET && op == Some("models") {
        let body =
            json!({"object": "list", "data": [{"id": "mock", "object": "model", "created": 0, "owned_by": "mock"}]});
        return Ok(json_response(&body));
    }
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let shape = Shape::new(state, h, body, &req);
    let name = &state.opts.name;
    let (model, prompt_tokens, chunks) = (&shape.model, shape.prompt_tokens, shape.chunks);
    let usage = |completion: u64| if shape.with_usage { usage(prompt_tokens, completion) } else { Value::Null };
    match op {
        Some(kind @ ("chat/completions" | "completions")) if shape.stream => {
            let asked = req.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
            let usage = (asked && shape.with_usage).then(|| usage(shape.completion_tokens));
            let events = sse_events(kind == "chat/completions", name, model, chunks, usage.as_ref(), shape.now);
            Ok(stream_response(state, h, events, 0, chunks))
        }
        Some("responses") => Ok(responses::create(state, h, &req, &shape, n).await),
        Some("chat/completions") => Ok(json_response(&json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": shape.now, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("Hello from {name}.")},
                         "finish_reason": "stop", "logprobs": null}],
            "usage": usage(shape.completion_tokens),
        }))),
        Some("completions") => Ok(json_response(&json!({
            "id": "cmpl-mock", "object": "text_completion", "created": shape.now, "model": model,
            "choices": [{"index": 0, "text": format!("Hello from {name}."), "finish_reason": "stop", "logprobs": null}],
            "usage": usage(shape.completion_tokens),
        }))),
        Some("embeddings") => {
            let mut body = embeddings(&req, model, prompt_tokens);
            if !shape.with_usage {
                body["usage"] = Value::Null;
            }
            Ok(json_response(&body))
        }
        _ => Ok(error(StatusCode::NOT_FOUND, "not_found", "mock upstream: unknown path")),
    }
}

/// What a generating route takes from a request, whatever its API: the model, the tokens it is
/// charged, and the answer's shape as the headers ask for it.
struct Shape {
    model: String,
    /// A token per four bytes of request body.
    prompt_tokens: u64,
    /// A token per content chunk, streamed or not.
    completion_tokens: u64,
    chunks: usize,
    stream: bool,
    with_usage: bool,
    now: u64,
}

impl Shape {
    fn new(state: &State, h: &HeaderMap, body: &[u8], req: &Value) -> Self {
        let chunks = header_num(h, "x-mock-chunks").map_or(state.opts.chunks, |c| c as usize);
        Self {
            model: req.get("model").and_then(Value::as_str).unwrap_or("mock").to_owned(),
            prompt_tokens: (body.len() as u64).div_ceil(4),
            completion_tokens: chunks as u64,
            chunks,
            stream: req.get("stream").and_then(Value::as_bool).unwrap_or(false),
            with_usage: !h.contains_key("x-mock-no-usage"),
            now: header_num(h, "x-mock-created")
                .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())),
        }
    }
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn json_response(v: &Value) -> Response<MockBody> {
    let mut res = Response::new(Either::Left(Full::new(Bytes::from(v.to_string()))));
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn embeddings(req: &Value, model: &str, prompt_tokens: u64) -> Value {
    let inputs = match req.get("input") {
        Some(Value::Array(a)) => a.len().max(1),
        _ => 1,
    };
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let vector: Vec<f32> = (0..8).map(|i| i as f32 / 8.0).collect();
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let embedding = if base64 {
                let raw: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(raw))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
}

/// Sends `events` as a stream, paced and broken as the request's headers ask. The content chunks
/// are the `chunks` events from index `lead` on: each is followed by the chunk delay, the gate
/// holds the stream after the first, and `x-mock-fail-after-chunks` counts them from `lead`.
fn stream_response(
    state: &Arc<State>,
    h: &HeaderMap,
    events: Vec<Bytes>,
    lead: usize,
    chunks: usize,
) -> Response<MockBody> {
    let delay = header_num(h, "x-mock-chunk-delay-ms").map_or(state.opts.chunk_delay, Duration::from_millis);
    let fail_after = header_num(h, "x-mock-fail-after-chunks").map(|n| lead + n as usize);
    let gated = h.contains_key("x-mock-gate");
    let body = if delay.is_zero() && fail_after.is_none() && !gated {
        EventBody::Ready(events.into_iter())
    } else {
        let (tx, rx) = mpsc::channel(16);
        let gate = gated.then(|| state.clone());
        tokio::spawn(async move {
            for (i, event) in events.into_iter().enumerate() {
                if fail_after == Some(i) {
                    let _ = tx.send(Err(std::io::Error::other("mock: stream aborted"))).await;
                    return;
                }
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                if i == lead
                    && let Some(g) = &gate
                {
                    let _ = g.gate.acquire().await;
                }
                if (lead..lead + chunks).contains(&i) && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
        });
        EventBody::Paced(rx)
    };
    let mut res = Response::new(Either::Right(body));
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    res.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
    res
}

/// A stream's SSE events: `chunks` content chunks, the finishing chunk, the usage chunk when
/// usage is asked for, and `[DONE]`. Written into one buffer and sliced, so a long load run spends
/// little of the generator's CPU here.
fn sse_events(chat: bool, name: &str, model: &str, chunks: usize, usage: Option<&Value>, now: u64) -> Vec<Bytes> {
    use std::fmt::Write;
    let (object, id) = if chat { ("chat.completion.chunk", "chatcmpl-mock") } else { ("text_completion", "cmpl-mock") };
    let model = Value::from(model);
    // The name JSON-escaped, without its quotes, to go inside the content string.
    let name = Value::from(name).to_string();
    let name = &name[1..name.len() - 1];
    let head = format!(r#"data: {{"id":"{id}","object":"{object}","created":{now},"model":{model},"choices":["#);
    let mut all = String::with_capacity((chunks + 3) * (head.len() + 96));
    let mut ends = Vec::with_capacity(chunks + 3);
    let close = if usage.is_some() { r#","usage":null}"# } else { "}" };
    let mut event = |all: &mut String, rest: std::fmt::Arguments<'_>| {
        let _ = write!(all, "{head}{rest}\n\n");
        ends.push(all.len());
    };
    for i in 0..chunks {
        if chat {
            let delta = format_args!(r#"{{"role":"assistant","content":"{name} chunk {i}. "}}"#);
            event(&mut all, format_args!(r#"{{"index":0,"delta":{delta},"finish_reason":null}}]{close}"#));
        } else {
            event(&mut all, format_args!(r#"{{"index":0,"text":"{name} chunk {i}. ","finish_reason":null}}]{close}"#));
        }
    }
    let stop = if chat { r#"{"index":0,"delta":{}"# } else { r#"{"index":0,"text":"""# };
    event(&mut all, format_args!(r#"{stop},"finish_reason":"stop"}}]{close}"#));
    if let Some(usage) = usage {
        event(&mut all, format_args!(r#"],"usage":{usage}}}"#));
    }
    all.push_str("data: [DONE]\n\n");
    ends.push(all.len());
    let all = Bytes::from(all);
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let event = all.slice(start..end);
            start = end;
            event
        })
        .collect()
}
