//! Asking the upstream for a stream's usage when the client did not: `stream_options.include_usage`
//! is set to `true` by inserting (or flipping) those few bytes in place, so the rest of the body
//! goes upstream exactly as the client wrote it.

use bytes::Bytes;

use super::members;
use crate::peek::{Peeked, Span};

/// Whether the body already asks for usage, and if not, the body that does.
#[derive(Debug, PartialEq, Eq)]
pub enum Ask {
    /// The client asked (or the body is not a stream): forwarded as it is, and the usage chunk is
    /// the client's.
    Asked,
    /// The body asks for usage now; the usage chunk is the gateway's, to be hidden.
    Inserted(Bytes),
    /// `stream_options` is something the upstream will refuse (not an object, or a non-boolean
    /// `include_usage`): left for the upstream to answer.
    Untouched,
}

const OPTIONS: &[u8] = br#","stream_options":{"include_usage":true}"#;
/// `"include_usage":true` after a comma; without its first byte when it is the only member.
const INCLUDE: &[u8] = br#","include_usage":true"#;

/// What to forward for a streamed `body` so the upstream reports usage.
pub fn ask(body: &Bytes, peeked: &Peeked<'_>) -> Ask {
    if !peeked.stream {
        return Ask::Asked;
    }
    let Some(at) = peeked.stream_options else {
        // A streamed body has at least its `stream` member, so the new one follows a comma.
        let Some(end) = body.iter().rposition(|&b| b == b'}') else { return Ask::Untouched };
        return Ask::Inserted(splice(body, Span { start: end, end }, OPTIONS));
    };
    let value = &body[at.start..at.end];
    if value == b"null" {
        return Ask::Inserted(splice(body, at, &OPTIONS[br#","stream_options":"#.len()..]));
    }
    if value.first() != Some(&b'{') {
        return Ask::Untouched;
    }
    let Some(options) = members(value) else { return Ask::Untouched };
    match options.iter().find(|(k, _)| *k == "include_usage") {
        Some((_, v)) if v.get() == "true" => Ask::Asked,
        Some((_, v)) if v.get() == "false" => {
            let span = Span::of(body, v.get().as_bytes());
            Ask::Inserted(splice(body, span, b"true"))
        }
        Some(_) => Ask::Untouched,
        None => {
            let end = at.end - 1;
            let insert = if options.is_empty() { &INCLUDE[1..] } else { INCLUDE };
            Ask::Inserted(splice(body, Span { start: end, end }, insert))
        }
    }
}

/// `body` with `at` replaced by `with`, in one allocation.
fn splice(body: &[u8], at: Span, with: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() - (at.end - at.start) + with.len());
    out.extend_from_slice(&body[..at.start]);
    out.extend_from_slice(with);
    out.extend_from_slice(&body[at.end..]);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peek::peek;

    fn asked(body: &str) -> Ask {
        let body = Bytes::copy_from_slice(body.as_bytes());
        ask(&body, &peek(&body).unwrap())
    }

    fn inserted(body: &str) -> String {
        match asked(body) {
            Ask::Inserted(b) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn usage_is_asked_for_in_place_whatever_the_client_wrote() {
        assert_eq!(
            inserted(r#"{"model":"m","stream":true} "#),
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}} "#
        );
        assert_eq!(
            inserted(r#"{"stream":true,"stream_options":null,"x":1}"#),
            r#"{"stream":true,"stream_options":{"include_usage":true},"x":1}"#
        );
        assert_eq!(
            inserted(r#"{"stream":true,"stream_options":{ }}"#),
            r#"{"stream":true,"stream_options":{ "include_usage":true}}"#
        );
        assert_eq!(
            inserted(r#"{"stream":true,"stream_options":{"x":{"y":[1]}}}"#),
            r#"{"stream":true,"stream_options":{"x":{"y":[1]},"include_usage":true}}"#
        );
        assert_eq!(
            inserted(r#"{"stream_options":{"include_usage" : false,"z":0},"stream":true}"#),
            r#"{"stream_options":{"include_usage" : true,"z":0},"stream":true}"#
        );
        // Whitespace and escapes elsewhere are not touched.
        assert_eq!(
            inserted("{\"messages\":[{\"content\":\"}\\u00e9\"}],\n \"stream\": true\n}\n"),
            "{\"messages\":[{\"content\":\"}\\u00e9\"}],\n \"stream\": true\n,\"stream_options\":{\"include_usage\":true}}\n"
        );
    }

    #[test]
    fn a_client_that_asked_or_sent_something_odd_is_left_alone() {
        assert_eq!(asked(r#"{"stream":true,"stream_options":{"include_usage":true}}"#), Ask::Asked);
        assert_eq!(asked(r#"{"stream":false}"#), Ask::Asked);
        assert_eq!(asked(r#"{"stream_options":{"include_usage":false}}"#), Ask::Asked);
        assert_eq!(asked(r#"{"stream":true,"stream_options":"yes"}"#), Ask::Untouched);
        assert_eq!(asked(r#"{"stream":true,"stream_options":{"include_usage":1}}"#), Ask::Untouched);
    }

    #[test]
    fn what_is_inserted_is_valid_json_with_the_same_members() {
        for body in [
            r#"{"model":"m","stream":true}"#,
            r#"{"stream":true,"stream_options":null}"#,
            r#"{"stream":true,"stream_options":{}}"#,
            r#"{"stream":true,"stream_options":{"a":1}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":false}}"#,
        ] {
            let v: serde_json::Value = serde_json::from_str(&inserted(body)).unwrap();
            assert_eq!(v["stream_options"]["include_usage"], true, "{body}");
            assert_eq!(v["stream"], true);
            assert_eq!(peek(inserted(body).as_bytes()).map(|p| p.stream), Ok(true));
        }
    }
}
