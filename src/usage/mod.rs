//! Usage: asked for when a streaming client did not ask ([`ask`]), read from the upstream's
//! response as it streams past (the final SSE chunk of a stream, or the `usage` object of a plain
//! JSON body), and hidden again from a client that did not ask for it ([`hide`]). Reading costs a
//! byte scan per chunk and a parse only of what mentions usage; anything unexpected reads as no
//! usage, which the caller charges as the worst case.

mod ask;
mod hide;

use std::sync::LazyLock;

use bytes::Bytes;
use memchr::memmem;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

pub use ask::{Ask, ask};
use hide::Hider;

/// The most of a non-streamed response kept for reading its usage; larger bodies are passed on
/// but charged the estimate.
const MAX_JSON_BYTES: usize = 4 * 1024 * 1024;
/// The longest SSE line kept while looking for usage.
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Tokens in and out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "Reported")]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Usage as an upstream reports it: under Chat Completions' names, or the Responses and
/// Messages APIs' (`input_tokens`, `output_tokens`), each count possibly absent. Anthropic counts
/// cached input apart from `input_tokens`, and its stream reports input in `message_start` and
/// output in `message_delta`, so a stream's reports are merged.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Reported {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl Reported {
    /// A later report's counts replace earlier ones (Anthropic's are cumulative); counts it does
    /// not carry stay.
    fn merge(&mut self, later: Reported) {
        let keep = |old: &mut Option<u64>, new: Option<u64>| {
            if new.is_some() {
                *old = new;
            }
        };
        keep(&mut self.prompt_tokens, later.prompt_tokens);
        keep(&mut self.completion_tokens, later.completion_tokens);
        keep(&mut self.cache_creation_input_tokens, later.cache_creation_input_tokens);
        keep(&mut self.cache_read_input_tokens, later.cache_read_input_tokens);
    }
}

impl From<Reported> for Usage {
    fn from(r: Reported) -> Self {
        let n = |v: Option<u64>| v.unwrap_or(0);
        Self {
            prompt_tokens: n(r.prompt_tokens)
                .saturating_add(n(r.cache_creation_input_tokens))
                .saturating_add(n(r.cache_read_input_tokens)),
            completion_tokens: n(r.completion_tokens),
        }
    }
}

/// An SSE event that may carry usage: at the top (a chat chunk, Anthropic's `message_delta`), in
/// the response it completes (the Responses API's `response.completed`) or in the message it
/// starts (Anthropic's `message_start`).
#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Reported>,
    #[serde(default)]
    response: Option<Nested>,
    #[serde(default)]
    message: Option<Nested>,
}

#[derive(Deserialize)]
struct Nested {
    #[serde(default)]
    usage: Option<Reported>,
}

/// Reads usage out of a response as it streams past.
pub enum UsageScanner {
    /// A plain response usually arrives in one frame: that frame is kept as it is (a reference,
    /// not a copy), and only a body of several frames is joined in `joined`.
    Json {
        first: Bytes,
        joined: Vec<u8>,
        overflow: bool,
    },
    Sse {
        line: Vec<u8>,
        usage: Option<Reported>,
    },
    /// A stream whose usage the gateway asked for: read, and kept from the client.
    Hidden {
        hider: Hider,
        usage: Option<Usage>,
    },
}

impl UsageScanner {
    /// `hide`: the gateway asked for the usage of a stream whose client did not.
    pub fn for_content_type(content_type: Option<&[u8]>, hide: bool) -> Self {
        match content_type {
            Some(ct) if ct.starts_with(b"text/event-stream") && hide => {
                Self::Hidden { hider: Hider::default(), usage: None }
            }
            Some(ct) if ct.starts_with(b"text/event-stream") => Self::Sse { line: Vec::new(), usage: None },
            _ => Self::Json { first: Bytes::new(), joined: Vec::new(), overflow: false },
        }
    }

    /// Whether the response is a stream (server-sent events).
    pub fn is_stream(&self) -> bool {
        matches!(self, Self::Sse { .. } | Self::Hidden { .. })
    }

    /// Whether what the client gets differs from what the upstream sent.
    pub fn rewrites(&self) -> bool {
        matches!(self, Self::Hidden { .. })
    }

    /// Reads a frame on its way to the client and returns what the client gets of it: the frame
    /// itself, or for a hidden stream its whole events without the usage (possibly nothing).
    pub fn pass(&mut self, data: Bytes) -> Bytes {
        match self {
            Self::Hidden { hider, usage } => hider.pass(&data, usage),
            _ => {
                self.feed(&data);
                data
            }
        }
    }

    /// At the end of a hidden stream: the unfinished event held back, as it came.
    pub fn rest(&mut self) -> Option<Bytes> {
        match self {
            Self::Hidden { hider, .. } => hider.rest(),
            _ => None,
        }
    }

    fn feed(&mut self, data: &Bytes) {
        match self {
            Self::Hidden { .. } => {}
            Self::Json { first, joined, overflow } => {
                if *overflow {
                    return;
                }
                if first.len() + joined.len() + data.len() > MAX_JSON_BYTES {
                    *overflow = true;
                    *first = Bytes::new();
                    *joined = Vec::new();
                } else if first.is_empty() && joined.is_empty() {
                    *first = data.clone();
                } else {
                    if !first.is_empty() {
                        joined.extend_from_slice(first);
                        *first = Bytes::new();
                    }
                    joined.extend_from_slice(data);
                }
            }
            Self::Sse { line, usage } => {
                let mut rest: &[u8] = data;
                // Most chunks are whole lines that do not mention usage: only their unfinished
                // last line (if any) is kept.
                if line.is_empty()
                    && let Some(last) = memchr::memrchr(b'\n', data)
                    && USAGE.find(&data[..last]).is_none()
                {
                    rest = &data[last + 1..];
                }
                while let Some(pos) = memchr::memchr(b'\n', rest) {
                    let (head, tail) = rest.split_at(pos);
                    if line.is_empty() {
                        sse_line(head, usage);
                    } else {
                        line.extend_from_slice(head);
                        sse_line(line, usage);
                        line.clear();
                    }
                    rest = &tail[1..];
                }
                if line.len() + rest.len() <= MAX_LINE_BYTES {
                    line.extend_from_slice(rest);
                } else {
                    line.clear();
                }
            }
        }
    }

    /// The usage read, once the body is over. What was kept of the body is let go, so the
    /// upstream connection's read buffer can be reused for its next response.
    pub fn finish(&mut self) -> Option<Usage> {
        match self {
            Self::Json { first, joined, overflow } => {
                let usage = match (*overflow, joined.is_empty()) {
                    (true, _) => None,
                    (false, true) => usage_from_json(first),
                    (false, false) => usage_from_json(joined),
                };
                *first = Bytes::new();
                *joined = Vec::new();
                usage
            }
            Self::Sse { usage, .. } => usage.map(Usage::from),
            Self::Hidden { usage, .. } => *usage,
        }
    }
}

/// A JSON object's members in order, each value kept as its text: a slice of `json`, so its place
/// is known ([`crate::peek::Span::of`]). `None` when `json` is not one object, or a key has
/// escapes (which neither OpenAI's keys nor the ones looked for here have).
fn members(json: &[u8]) -> Option<Vec<(&str, &RawValue)>> {
    struct Members<'a>(Vec<(&'a str, &'a RawValue)>);
    impl<'de> Deserialize<'de> for Members<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::with_capacity(8);
                    while let Some(key) = map.next_key::<&'de str>()? {
                        out.push((key, map.next_value::<&'de RawValue>()?));
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<Members<'_>>(json).ok().map(|m| m.0)
}

const USAGE_KEY: &[u8] = b"\"usage\"";

/// Built once: `memmem::find` would set up a searcher on every call, once per chunk and line.
static USAGE: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(USAGE_KEY));
/// The same from the end; `memmem::rfind` would build this once per response.
static USAGE_REV: LazyLock<memmem::FinderRev<'static>> = LazyLock::new(|| memmem::FinderRev::new(USAGE_KEY));

/// The `usage` object of a JSON response, read without parsing the rest of the body: OpenAI
/// puts it after `choices`, so the last `"usage"` key is found from the end and only the object
/// after it is parsed. Content cannot forge the key: inside JSON strings its quotes are escaped.
/// Anything unexpected reads as no usage, which charges the (higher) estimate.
fn usage_from_json(body: &[u8]) -> Option<Usage> {
    let at = USAGE_REV.rfind(body)?;
    let rest = body.get(at + USAGE_KEY.len()..)?;
    let rest = rest.get(rest.iter().position(|b| !b.is_ascii_whitespace())?..)?;
    let rest = rest.strip_prefix(b":")?;
    serde_json::Deserializer::from_slice(rest).into_iter::<Option<Usage>>().next()?.ok()?
}

/// One SSE line: usage is read only from `data:` lines that mention it, so ordinary chunks cost a
/// byte scan and no parse.
fn sse_line(line: &[u8], usage: &mut Option<Reported>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(payload) = line.strip_prefix(b"data:") else { return };
    if USAGE.find(payload).is_some()
        && let Ok(event) = serde_json::from_slice::<WithUsage>(payload)
    {
        let nested = |n: Option<Nested>| n.and_then(|n| n.usage);
        if let Some(u) = event.usage.or_else(|| nested(event.response)).or_else(|| nested(event.message)) {
            usage.get_or_insert_default().merge(u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut UsageScanner, data: &[u8]) {
        s.feed(&Bytes::copy_from_slice(data));
    }

    #[test]
    fn usage_from_sse_split_across_frames() {
        let mut s = UsageScanner::for_content_type(Some(b"text/event-stream; charset=utf-8"), false);
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"usage\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":5,\"total_tokens\":16}}\r\n\r\ndata: [DONE]\n\n";
        for chunk in stream.chunks(7) {
            feed(&mut s, chunk);
        }
        assert_eq!(s.finish(), Some(Usage { prompt_tokens: 11, completion_tokens: 5 }));
    }

    #[test]
    fn usage_from_sse_in_whole_events_or_split_inside_the_key() {
        let events = [
            &b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"[..],
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
            b"data: [DONE]\n\n",
        ];
        let mut whole = UsageScanner::for_content_type(Some(b"text/event-stream"), false);
        for e in events {
            feed(&mut whole, e);
        }
        assert_eq!(whole.finish(), Some(Usage { prompt_tokens: 3, completion_tokens: 4 }));

        let all = events.concat();
        let cut = memmem::find(&all, b"sage").unwrap();
        let mut split = UsageScanner::for_content_type(Some(b"text/event-stream"), false);
        feed(&mut split, &all[..cut]);
        feed(&mut split, &all[cut..]);
        assert_eq!(split.finish(), Some(Usage { prompt_tokens: 3, completion_tokens: 4 }));
    }

    #[test]
    fn usage_of_a_responses_api_stream_and_body() {
        let mut s = UsageScanner::for_content_type(Some(b"text/event-stream"), false);
        feed(&mut s, b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"usage\":null}}\n\n");
        feed(&mut s, b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"the \\\"usage\\\": 1\"}\n\n");
        feed(&mut s, b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"usage\":{\"input_tokens\":12,\"output_tokens\":30,\"total_tokens\":42}}}\n\n");
        assert_eq!(s.finish(), Some(Usage { prompt_tokens: 12, completion_tokens: 30 }));
        let body = br#"{"id":"resp_1","object":"response","output":[],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":0},"output_tokens":4,"total_tokens":13},"user":null}"#;
        assert_eq!(usage_from_json(body), Some(Usage { prompt_tokens: 9, completion_tokens: 4 }));
    }

    #[test]
    fn usage_of_a_messages_api_stream_and_body_counts_cached_input() {
        let mut s = UsageScanner::for_content_type(Some(b"text/event-stream"), false);
        feed(&mut s, b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":[],\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n");
        feed(&mut s, b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\\"usage\\\":{}\"}}\n\n");
        feed(&mut s, b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        assert_eq!(s.finish(), Some(Usage { prompt_tokens: 125, completion_tokens: 15 }));
        let body = br#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":9,"cache_creation_input_tokens":3,"output_tokens":4}}"#;
        assert_eq!(usage_from_json(body), Some(Usage { prompt_tokens: 12, completion_tokens: 4 }));
    }

    #[test]
    fn usage_absent_or_null_in_a_stream_is_none() {
        let mut s = UsageScanner::for_content_type(Some(b"text/event-stream"), false);
        feed(&mut s, b"data: {\"choices\":[],\"usage\":null}\n\ndata: [DONE]\n\n");
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn usage_from_json_ignores_usage_text_inside_strings() {
        let body = br#"{"choices":[{"message":{"content":"the \"usage\": {\"prompt_tokens\": 1} trick"}}],"usage" : {"prompt_tokens":40,"completion_tokens":2}}"#;
        assert_eq!(usage_from_json(body), Some(Usage { prompt_tokens: 40, completion_tokens: 2 }));
        assert_eq!(usage_from_json(br#"{"usage":null}"#), None);
        assert_eq!(usage_from_json(br#"{"choices":[]}"#), None);
        assert_eq!(usage_from_json(br#"{"usage":{"prompt_tokens":"x"}}"#), None);
    }

    #[test]
    fn usage_from_json_body_and_embeddings() {
        let mut s = UsageScanner::for_content_type(Some(b"application/json"), false);
        feed(&mut s, b"{\"object\":\"list\",\"usage\":{\"prompt_tokens\":");
        feed(&mut s, b"8,\"total_tokens\":8}}");
        assert_eq!(s.finish(), Some(Usage { prompt_tokens: 8, completion_tokens: 0 }));
        let mut s = UsageScanner::for_content_type(None, false);
        feed(&mut s, b"{\"error\":{}}");
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn usage_from_json_in_one_frame_or_many_and_not_past_the_limit() {
        let body = br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":6}}"#;
        let want = Some(Usage { prompt_tokens: 5, completion_tokens: 6 });
        let mut one = UsageScanner::for_content_type(Some(b"application/json"), false);
        feed(&mut one, body);
        assert_eq!(one.finish(), want);
        // Read once: what was kept is let go.
        assert_eq!(one.finish(), None);

        let mut many = UsageScanner::for_content_type(Some(b"application/json"), false);
        for part in body.chunks(9) {
            feed(&mut many, part);
        }
        assert_eq!(many.finish(), want);

        let mut over = UsageScanner::for_content_type(Some(b"application/json"), false);
        feed(&mut over, &vec![b' '; MAX_JSON_BYTES - body.len() + 1]);
        feed(&mut over, body);
        assert_eq!(over.finish(), None);
        let mut at = UsageScanner::for_content_type(Some(b"application/json"), false);
        feed(&mut at, &vec![b' '; MAX_JSON_BYTES - body.len()]);
        feed(&mut at, body);
        assert_eq!(at.finish(), want);
    }
}
