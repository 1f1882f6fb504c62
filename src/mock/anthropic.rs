//! The mock's Anthropic Messages API: `POST /v1/messages`, plain or streamed as Anthropic's typed
//! SSE events, and `POST /v1/messages/count_tokens`, with errors in Anthropic's shape.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use super::{MockBody, Shape, State, json_response, stream_response};

/// Events a stream sends before its first content chunk: `message_start`, `content_block_start`
/// and `ping`.
const LEAD: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Messages,
    CountTokens,
}

// === impl Op ===

impl Op {
    /// The Messages route a path names, under whatever base the upstream URL has.
    pub(super) fn of(path: &str) -> Option<Self> {
        if path.ends_with("/v1/messages") {
            Some(Self::Messages)
        } else if path.ends_with("/v1/messages/count_tokens") {
            Some(Self::CountTokens)
        } else {
            None
        }
    }
}

/// An error as Anthropic answers one, its type following from the status.
pub(super) fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    let kind = crate::error::anthropic_type(status);
    let mut res = json_response(&json!({"type": "error", "error": {"type": kind, "message": message}}));
    *res.status_mut() = status;
    res
}

/// Answers a Messages route whose key, version header and injected faults have been checked.
pub(super) fn respond(state: &Arc<State>, h: &HeaderMap, body: &Bytes, op: Op, n: u64) -> Response<MockBody> {
    let req: Value = match serde_json::from_slice(body) {
        Ok(req @ Value::Object(_)) => req,
        _ => return error(StatusCode::BAD_REQUEST, "mock upstream: the body is not a JSON object"),
    };
    let shape = Shape::new(state, h, body, &req);
    if op == Op::CountTokens {
        return json_response(&json!({"input_tokens": shape.prompt_tokens}));
    }
    let id = format!("msg_mock_{}_{n}", state.id_name);
    let usage = shape.with_usage.then_some((shape.prompt_tokens, shape.completion_tokens));
    if shape.stream {
        let events = events(&id, &state.opts.name, &shape.model, shape.chunks, usage);
        return stream_response(state, h, events, LEAD, shape.chunks);
    }
    let mut message = message(&id, &shape.model);
    message["content"] = json!([{"type": "text", "text": format!("Hello from {}.", state.opts.name)}]);
    message["stop_reason"] = json!("end_turn");
    if let Some((input, output)) = usage {
        message["usage"] = json!({"input_tokens": input, "output_tokens": output});
    }
    json_response(&message)
}

/// A message as `message_start` opens it: no content, no stop reason, no usage yet.
fn message(id: &str, model: &str) -> Value {
    json!({"id": id, "type": "message", "role": "assistant", "model": model, "content": [],
           "stop_reason": null, "stop_sequence": null})
}

/// A Messages stream: `message_start` (with the input tokens), `content_block_start`, `ping`, one
/// `content_block_delta` per chunk, `content_block_stop`, `message_delta` (with the output tokens)
/// and `message_stop`. Without `usage` (`x-mock-no-usage`), neither carries a `usage` member.
pub(super) fn events(id: &str, name: &str, model: &str, chunks: usize, usage: Option<(u64, u64)>) -> Vec<Bytes> {
    // `type` first, as Anthropic writes it; the other members in serde_json's (sorted) order.
    let event = |kind: &str, data: Value| {
        let data = data.to_string();
        let rest = data.strip_prefix('{').filter(|r| *r != "}").map(|r| format!(",{r}"));
        let rest = rest.as_deref().unwrap_or("}");
        Bytes::from(format!("event: {kind}\ndata: {{\"type\":\"{kind}\"{rest}\n\n"))
    };
    let mut start = message(id, model);
    let mut delta = json!({"delta": {"stop_reason": "end_turn", "stop_sequence": null}});
    if let Some((input, output)) = usage {
        // Anthropic counts the first output token in `message_start` already.
        start["usage"] = json!({"input_tokens": input, "output_tokens": 1});
        delta["usage"] = json!({"output_tokens": output});
    }
    let mut events = Vec::with_capacity(chunks + LEAD + 3);
    events.push(event("message_start", json!({"message": start})));
    events.push(event("content_block_start", json!({"index": 0, "content_block": {"type": "text", "text": ""}})));
    events.push(event("ping", json!({})));
    for i in 0..chunks {
        let text = format!("{name} chunk {i}. ");
        events.push(event("content_block_delta", json!({"index": 0, "delta": {"type": "text_delta", "text": text}})));
    }
    events.push(event("content_block_stop", json!({"index": 0})));
    events.push(event("message_delta", delta));
    events.push(event("message_stop", json!({})));
    events
}
