//! Keeping the usage the gateway asked for from a client that did not ask for it. Once usage is
//! asked for, OpenAI-compatible upstreams add a last chunk with empty `choices` and the usage,
//! and a `"usage":null` member to every other chunk; both go, so the client gets the bytes it
//! would have got without the gateway. Events are passed on whole (an unfinished one waits for
//! the frame that ends it), which costs one copy of the stream: only streams whose client did not
//! ask for usage pay it.

use bytes::Bytes;

use super::{USAGE, Usage, members};
use crate::peek::Span;

/// `"usage":null` as the last member of a chunk.
const NULL_LAST: &[u8] = b",\"usage\":null}";

#[derive(Default)]
pub struct Hider {
    /// The start of an event not yet ended.
    pending: Vec<u8>,
    /// How far into `pending` lines were already looked at: the start of a line.
    scanned: usize,
}

impl Hider {
    /// Every event that `data` ends, without what the client did not ask for.
    pub fn pass(&mut self, data: &[u8], usage: &mut Option<Usage>) -> Bytes {
        let mut out = Vec::with_capacity(self.pending.len() + data.len());
        if self.pending.is_empty() {
            let (ended, scanned) = events(data, 0, &mut out, usage);
            self.pending.extend_from_slice(&data[ended..]);
            self.scanned = scanned - ended;
        } else {
            self.pending.extend_from_slice(data);
            let (ended, scanned) = events(&self.pending, self.scanned, &mut out, usage);
            self.pending.drain(..ended);
            self.scanned = scanned - ended;
        }
        Bytes::from(out)
    }

    /// What is left of an event the stream never ended, as it came.
    pub fn rest(&mut self) -> Option<Bytes> {
        self.scanned = 0;
        (!self.pending.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.pending)))
    }
}

/// Passes on each event of `buf` ended by a blank line, looking for line ends from `from`.
/// Returns where the last ended event stops and where the last whole line does.
fn events(buf: &[u8], from: usize, out: &mut Vec<u8>, usage: &mut Option<Usage>) -> (usize, usize) {
    let mut event = 0;
    let mut line = from;
    while let Some(nl) = memchr::memchr(b'\n', &buf[line..]) {
        let nl = line + nl;
        if matches!(&buf[line..nl], b"" | b"\r") {
            event_out(&buf[event..=nl], out, usage);
            event = nl + 1;
        }
        line = nl + 1;
    }
    (event, line)
}

/// One whole event: dropped if it is the usage chunk, else passed on with any `"usage":null`
/// member taken out of its data.
fn event_out(event: &[u8], out: &mut Vec<u8>, usage: &mut Option<Usage>) {
    let start = out.len();
    for line in event.split_inclusive(|&b| b == b'\n') {
        let Some(data) = line.strip_prefix(b"data:") else {
            out.extend_from_slice(line);
            continue;
        };
        let body = data.strip_prefix(b" ").unwrap_or(data);
        let json = body.trim_ascii_end();
        let prefix = line.len() - body.len();
        // Where upstreams put it, last: the `}` that ends the data closes the top-level object, so
        // the member before it is that object's, and no parse is needed to take it out.
        if let Some(kept) = json.strip_suffix(NULL_LAST) {
            out.extend_from_slice(&line[..prefix + kept.len()]);
            out.extend_from_slice(&line[prefix + json.len() - 1..]);
            continue;
        }
        let found = USAGE.find(json).and_then(|_| members(json));
        let Some(ms) = found else {
            out.extend_from_slice(line);
            continue;
        };
        let Some(at) = ms.iter().position(|(k, _)| *k == "usage") else {
            out.extend_from_slice(line);
            continue;
        };
        let value = ms[at].1.get();
        if value != "null" {
            if let Ok(u) = serde_json::from_str::<Usage>(value) {
                *usage = Some(u);
            }
            let empty =
                ms.iter().any(|(k, v)| *k == "choices" && v.get().starts_with('[') && v.get()[1..].trim_start() == "]");
            if empty {
                // The chunk only the gateway asked for: the whole event goes.
                out.truncate(start);
                return;
            }
            out.extend_from_slice(line);
            continue;
        }
        let cut = member_span(json, &ms, at);
        out.extend_from_slice(&line[..prefix + cut.start]);
        out.extend_from_slice(&line[prefix + cut.end..]);
    }
}

/// The bytes to take out of `json` to remove member `at` and one comma beside it.
fn member_span(json: &[u8], ms: &[(&str, &serde_json::value::RawValue)], at: usize) -> Span {
    let value = Span::of(json, ms[at].1.get().as_bytes());
    if at > 0 {
        let before = Span::of(json, ms[at - 1].1.get().as_bytes());
        return Span { start: before.end, end: value.end };
    }
    let open = json.iter().position(|&b| b == b'{').map_or(0, |i| i + 1);
    let end = match ms.get(1) {
        // Up to the next key's opening quote.
        Some(_) => json[value.end..].iter().position(|&b| b == b'"').map_or(value.end, |i| value.end + i),
        None => value.end,
    };
    Span { start: open, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str =
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi \"usage\":null"}}]"#;

    fn with_usage_asked(chunks: usize) -> (String, String) {
        let mut asked = String::new();
        let mut direct = String::new();
        for _ in 0..chunks {
            asked.push_str(&format!("data: {CHUNK},\"usage\":null}}\n\n"));
            direct.push_str(&format!("data: {CHUNK}}}\n\n"));
        }
        asked.push_str(
            r#"data: {"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#,
        );
        asked.push_str("\n\ndata: [DONE]\n\n");
        direct.push_str("data: [DONE]\n\n");
        (asked, direct)
    }

    #[test]
    fn the_client_gets_the_stream_it_would_have_got_however_it_is_cut() {
        let (asked, direct) = with_usage_asked(3);
        for size in [1, 2, 7, 40, 100, asked.len()] {
            let mut hider = Hider::default();
            let mut usage = None;
            let mut got = Vec::new();
            for part in asked.as_bytes().chunks(size) {
                got.extend_from_slice(&hider.pass(part, &mut usage));
            }
            assert_eq!(hider.rest(), None);
            assert_eq!(String::from_utf8(got).unwrap(), direct, "frames of {size}");
            assert_eq!(usage, Some(Usage { prompt_tokens: 9, completion_tokens: 3 }));
        }
    }

    #[test]
    fn usage_null_goes_wherever_it_is_and_crlf_events_end_too() {
        let mut usage = None;
        let mut h = Hider::default();
        let got = h.pass(b"data: {\"usage\":null,\"a\":1}\r\n\r\ndata:{\"usage\":null}\n\nid: 4\ndata: {\"a\":[],\"usage\" : null}\n\n", &mut usage);
        assert_eq!(&got[..], b"data: {\"a\":1}\r\n\r\ndata:{}\n\nid: 4\ndata: {\"a\":[]}\n\n");
        assert_eq!(usage, None);
    }

    #[test]
    fn other_events_and_an_unfinished_end_pass_as_they_came() {
        let mut usage = None;
        let mut h = Hider::default();
        let events =
            b": keep-alive\n\nevent: error\ndata: {\"error\":{\"message\":\"usage\"}}\n\ndata: not json \"usage\"\n\n";
        assert_eq!(&h.pass(events, &mut usage)[..], &events[..]);
        assert_eq!(&h.pass(b"data: {\"choices\":[", &mut usage)[..], b"");
        assert_eq!(h.rest().as_deref(), Some(&b"data: {\"choices\":["[..]));
    }

    #[test]
    fn usage_beside_choices_is_read_and_left_for_the_client() {
        let mut usage = None;
        let mut h = Hider::default();
        let line = b"data: {\"choices\":[{\"index\":0}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n";
        assert_eq!(&h.pass(line, &mut usage)[..], &line[..]);
        assert_eq!(usage, Some(Usage { prompt_tokens: 1, completion_tokens: 2 }));
    }
}
