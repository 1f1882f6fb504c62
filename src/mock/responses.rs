//! The mock's OpenAI Responses API: a response created plain, streamed or in the background, and
//! kept (the newest [`KEEP`]) so it can be retrieved, cancelled, deleted and its input items
//! listed by id, and named as a `previous_response_id`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{MockBody, Shape, State, error, json_response, openai_error, stream_response};

/// How many responses a mock remembers; older ones are forgotten, as if deleted.
pub(super) const KEEP: usize = 10_000;

/// The responses a mock created, by id, as a later `GET` returns them.
#[derive(Default)]
pub(super) struct Store {
    by_id: HashMap<String, Value>,
    /// Ids oldest first, deleted ones included until they come up for eviction, so the store
    /// never holds more than [`KEEP`] ids however it is used.
    order: VecDeque<String>,
}

/// What a response is, whatever its status: the object is built from it as created, queued,
/// completed or cancelled.
struct Meta<'a> {
    id: String,
    model: &'a str,
    created_at: u64,
    previous: Option<&'a str>,
    background: bool,
}

// === impl Store ===

impl Store {
    pub(super) fn insert(&mut self, id: String, response: Value) {
        if self.by_id.insert(id.clone(), response).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > KEEP {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }
}

// === impl Meta ===

impl Meta<'_> {
    /// The response object, with one output message of `text` (none while `text` is empty).
    fn object(&self, status: &str, text: &str, usage: &Value) -> Value {
        let output = if text.is_empty() {
            json!([])
        } else {
            json!([{"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}])
        };
        json!({"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
               "model": self.model, "output": output, "parallel_tool_calls": true, "tool_choice": "auto",
               "tools": [], "previous_response_id": self.previous, "background": self.background, "usage": usage})
    }
}

fn usage(input: u64, output: u64) -> Value {
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": output,
           "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input + output})
}

/// `POST /v1/responses`: the completed response, its stream, or (with `background`) the queued
/// response, which a later `GET` finds completed. It is kept unless the request sets `store: false`.
pub(super) async fn create(
    state: &Arc<State>,
    h: &HeaderMap,
    req: &Value,
    shape: &Shape,
    n: u64,
) -> Response<MockBody> {
    let previous = req.get("previous_response_id").and_then(Value::as_str);
    if let Some(previous) = previous
        && !state.responses.lock().await.contains(previous)
    {
        let message = format!("Previous response with id '{previous}' not found.");
        let code = Some("previous_response_not_found");
        return openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &message,
            Some("previous_response_id"),
            code,
        );
    }
    let meta = Meta {
        id: format!("resp_mock_{}_{n}", state.id_name),
        model: &shape.model,
        created_at: shape.now,
        previous,
        background: req.get("background").and_then(Value::as_bool).unwrap_or(false),
    };
    // The Responses API always reports usage, in the completed response.
    let usage = if shape.with_usage { usage(shape.prompt_tokens, shape.completion_tokens) } else { Value::Null };
    let (answer, done) = if shape.stream {
        let (events, done) = events(&state.opts.name, &meta, shape.chunks, &usage);
        (stream_response(state, h, events, 0, shape.chunks), done)
    } else {
        let done = meta.object("completed", &format!("Hello from {}.", state.opts.name), &usage);
        let answer = if meta.background { meta.object("queued", "", &Value::Null) } else { done.clone() };
        (json_response(&answer), done)
    };
    if req.get("store") != Some(&Value::Bool(false)) {
        state.responses.lock().await.insert(meta.id, done);
    }
    answer
}

/// The routes under `/v1/responses/{id}` (and its Azure twins); `rest` is the path after
/// `responses/`.
pub(super) async fn by_id(state: &State, method: &Method, rest: &str) -> Response<MockBody> {
    let (id, action) = match rest.split_once('/') {
        Some((id, action)) => (id, Some(action)),
        None => (rest, None),
    };
    let mut store = state.responses.lock().await;
    let found = match (method, action) {
        (&Method::GET, None) => store.by_id.get(id).cloned(),
        (&Method::DELETE, None) => {
            store.by_id.remove(id).map(|_| json!({"id": id, "object": "response", "deleted": true}))
        }
        (&Method::POST, Some("cancel")) => store.by_id.get_mut(id).map(|response| {
            response["status"] = json!("cancelled");
            response.clone()
        }),
        (&Method::GET, Some("input_items")) => store
            .contains(id)
            .then(|| json!({"object": "list", "data": [], "first_id": null, "last_id": null, "has_more": false})),
        _ => return error(StatusCode::NOT_FOUND, "not_found", "mock upstream: unknown path"),
    };
    drop(store);
    match found {
        Some(body) => json_response(&body),
        None => {
            let message = format!("No response found with id '{id}'.");
            openai_error(StatusCode::NOT_FOUND, "invalid_request_error", &message, None, None)
        }
    }
}

/// A Responses API stream: `response.created`, one `response.output_text.delta` per chunk, then
/// `response.completed` with the whole response and its usage; and that completed response. No
/// `[DONE]`: the API sends none.
fn events(name: &str, meta: &Meta<'_>, chunks: usize, usage: &Value) -> (Vec<Bytes>, Value) {
    let mut seq = 0;
    let mut event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(seq);
        seq += 1;
        Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
    };
    let mut events = vec![event("response.created", json!({"response": meta.object("in_progress", "", &Value::Null)}))];
    let mut text = String::new();
    for i in 0..chunks {
        let delta = format!("{name} chunk {i}. ");
        text.push_str(&delta);
        events.push(event(
            "response.output_text.delta",
            json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": delta}),
        ));
    }
    let done = meta.object("completed", &text, usage);
    events.push(event("response.completed", json!({"response": done})));
    (events, done)
}
