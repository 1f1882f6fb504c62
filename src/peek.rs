//! Body peek: one pass over the buffered request body that validates it as strict JSON (one
//! object, UTF-8, no duplicate keys at any depth, bounded nesting, nothing after the object) and
//! borrows the few fields the gateway needs. The body is forwarded as it came, except that a
//! stream whose client did not ask for usage gets it asked for ([`crate::usage::ask`]), at the
//! place in the body that peek notes here.
//!
//! Duplicate keys are refused rather than resolved, because parsers disagree on which copy wins
//! (`{"model":"a","model":"b"}`): the policy must never judge a different model than the upstream
//! serves. Keys are compared after JSON unescaping, so `"\u006dodel"` is `"model"`.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Deepest nesting accepted (objects and arrays).
pub const MAX_DEPTH: usize = 64;

/// Objects with more keys than this switch from a linear duplicate scan to a hash set.
const LINEAR_SCAN_KEYS: usize = 32;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Peeked<'a> {
    pub model: Option<Cow<'a, str>>,
    pub stream: bool,
    /// `max_completion_tokens` (or the Responses API's `max_output_tokens`), else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// How many completions the upstream generates: the larger of `n` and `best_of`, at least 1.
    pub choices: u64,
    /// Where `stream_options` is in the body, if it is there.
    pub stream_options: Option<Span>,
    /// Responses API: the stored response the request continues (`previous_response_id`).
    pub continues: Option<Cow<'a, str>>,
    /// Responses API: `background: true`, answered before the response is generated.
    pub background: bool,
}

/// A value's place in the body, as byte offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// The span of `part`, a slice borrowed from `whole`.
    pub fn of(whole: &[u8], part: &[u8]) -> Self {
        let start = part.as_ptr() as usize - whole.as_ptr() as usize;
        Self { start, end: start + part.len() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeekError {
    #[error("The request body must be a JSON object.")]
    NotObject,
    #[error("The request body is not valid JSON ({0}).")]
    Syntax(String),
    #[error("The request body has a duplicate key {0:?}.")]
    DuplicateKey(String),
    #[error("The request body is nested deeper than {MAX_DEPTH} levels.")]
    TooDeep,
    #[error("`{field}` must be {expected}.")]
    FieldType { field: &'static str, expected: &'static str },
}

impl PeekError {
    /// The request field the error is about, for OpenAI's `error.param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::FieldType { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Validates `body` and extracts the fields the gateway routes and accounts on.
pub fn peek(body: &[u8]) -> Result<Peeked<'_>, PeekError> {
    // The whole body is checked for UTF-8 in one pass, so the parser reads a `str` and does not
    // check each string it meets again.
    let text = std::str::from_utf8(body)
        .map_err(|e| PeekError::Syntax(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let failure = Cell::new(None);
    // Room for a usual request's keys (nested ones included) in one allocation.
    let mut keys = Vec::with_capacity(16);
    let mut de = serde_json::Deserializer::from_str(text);
    let mut out = Peeked { choices: 1, ..Peeked::default() };
    let mut top = Top { body: text, out: &mut out, keys: &mut keys, failure: &failure };
    let result = de.deserialize_any(&mut top).and_then(|()| de.end());
    match (result, failure.take()) {
        (Ok(()), _) => Ok(out),
        (Err(_), Some(ours)) => Err(ours),
        (Err(e), None) => Err(PeekError::Syntax(describe(&e))),
    }
}

/// A syntax error's category and position, without echoing any of the client's content.
fn describe(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// A key or string value: borrowed from the body unless it contained escapes.
struct Str<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A field value the gateway reads. Anything else (objects, arrays, other scalar types) is
/// `Other`, so a wrong type is reported as such while syntax errors pass through unchanged.
enum Scalar<'de> {
    Str(Cow<'de, str>),
    Bool(bool),
    U64(u64),
    Null,
    Other,
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::U64(v))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

struct Top<'o, 'de> {
    body: &'de str,
    out: &'o mut Peeked<'de>,
    keys: &'o mut Vec<Cow<'de, str>>,
    failure: &'o Cell<Option<PeekError>>,
}

impl<'de> Visitor<'de> for &mut Top<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Seen::new(self.keys);
        let mut max_tokens = None;
        let mut max_completion_tokens = None;
        let mut choices = [1; 2];
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            let field = key.clone();
            seen.insert(key, self.failure)?;
            let wrong = |field, expected| {
                self.failure.set(Some(PeekError::FieldType { field, expected }));
                de::Error::custom("field type")
            };
            match &*field {
                "model" => match map.next_value::<Scalar<'de>>()? {
                    Scalar::Str(v) => self.out.model = Some(v),
                    _ => return Err(wrong("model", "a string")),
                },
                "stream" => match map.next_value::<Scalar<'de>>()? {
                    Scalar::Bool(b) => self.out.stream = b,
                    Scalar::Null => self.out.stream = false,
                    _ => return Err(wrong("stream", "a boolean")),
                },
                "max_tokens" | "max_completion_tokens" | "max_output_tokens" => {
                    let v = match map.next_value::<Scalar<'de>>()? {
                        Scalar::U64(n) => Some(n),
                        Scalar::Null => None,
                        _ if &*field == "max_tokens" => return Err(wrong("max_tokens", "a non-negative integer")),
                        _ if &*field == "max_output_tokens" => {
                            return Err(wrong("max_output_tokens", "a non-negative integer"));
                        }
                        _ => return Err(wrong("max_completion_tokens", "a non-negative integer")),
                    };
                    if &*field == "max_tokens" { max_tokens = v } else { max_completion_tokens = v }
                }
                "previous_response_id" => match map.next_value::<Scalar<'de>>()? {
                    Scalar::Str(id) => self.out.continues = Some(id),
                    Scalar::Null => self.out.continues = None,
                    _ => return Err(wrong("previous_response_id", "a string")),
                },
                "background" => match map.next_value::<Scalar<'de>>()? {
                    Scalar::Bool(b) => self.out.background = b,
                    Scalar::Null => self.out.background = false,
                    _ => return Err(wrong("background", "a boolean")),
                },
                "n" | "best_of" => {
                    let v = match map.next_value::<Scalar<'de>>()? {
                        Scalar::U64(n) => n,
                        Scalar::Null => 1,
                        _ if &*field == "n" => return Err(wrong("n", "a positive integer")),
                        _ => return Err(wrong("best_of", "a positive integer")),
                    };
                    choices[usize::from(&*field == "best_of")] = v;
                }
                "stream_options" => {
                    // Kept as its text, for its place in the body; its insides are checked
                    // like any other nested value.
                    let raw = map.next_value::<&'de RawValue>()?;
                    let mut inner = serde_json::Deserializer::from_str(raw.get());
                    Walk { depth: 1, keys: seen.keys_mut(), failure: self.failure }
                        .deserialize(&mut inner)
                        .map_err(|_| de::Error::custom("stream_options"))?;
                    self.out.stream_options = Some(Span::of(self.body.as_bytes(), raw.get().as_bytes()));
                }
                _ => map.next_value_seed(Walk { depth: 1, keys: seen.keys_mut(), failure: self.failure })?,
            }
        }
        self.out.max_tokens = max_completion_tokens.or(max_tokens);
        self.out.choices = choices[0].max(choices[1]).max(1);
        seen.finish();
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.failure.set(Some(PeekError::NotObject));
        Err(de::Error::custom("not an object"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_object()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_object()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_object()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_object()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_object()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_object()
    }
}

impl Top<'_, '_> {
    fn not_object<E: de::Error>(&self) -> Result<(), E> {
        self.failure.set(Some(PeekError::NotObject));
        Err(E::custom("not an object"))
    }
}

/// The keys of the object being read, kept on one shared stack so nested objects cost no
/// allocation of their own; a large object moves to a hash set to keep the check linear.
struct Seen<'k, 'de> {
    keys: &'k mut Vec<Cow<'de, str>>,
    start: usize,
    set: Option<HashSet<Cow<'de, str>>>,
}

impl<'k, 'de> Seen<'k, 'de> {
    fn new(keys: &'k mut Vec<Cow<'de, str>>) -> Self {
        let start = keys.len();
        Self { keys, start, set: None }
    }

    fn insert<E: de::Error>(&mut self, key: Cow<'de, str>, failure: &Cell<Option<PeekError>>) -> Result<(), E> {
        let duplicate = match &mut self.set {
            Some(set) => !set.insert(key.clone()),
            None => {
                let dup = self.keys[self.start..].contains(&key);
                if !dup && self.keys.len() - self.start >= LINEAR_SCAN_KEYS {
                    self.set = Some(self.keys.drain(self.start..).chain(std::iter::once(key.clone())).collect());
                    return Ok(());
                }
                dup
            }
        };
        if duplicate {
            failure.set(Some(PeekError::DuplicateKey(key.into_owned())));
            return Err(E::custom("duplicate key"));
        }
        if self.set.is_none() {
            self.keys.push(key);
        }
        Ok(())
    }

    fn keys_mut(&mut self) -> &mut Vec<Cow<'de, str>> {
        self.keys
    }

    fn finish(self) {
        self.keys.truncate(self.start);
    }
}

/// Walks any nested value, checking nesting depth and duplicate keys.
struct Walk<'k, 'de> {
    depth: usize,
    keys: &'k mut Vec<Cow<'de, str>>,
    failure: &'k Cell<Option<PeekError>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Walk<'_, 'de> {
    fn deeper<E: de::Error>(&self) -> Result<usize, E> {
        if self.depth >= MAX_DEPTH {
            self.failure.set(Some(PeekError::TooDeep));
            return Err(E::custom("too deep"));
        }
        Ok(self.depth + 1)
    }
}

impl<'de> Visitor<'de> for Walk<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.deeper()?;
        let mut seen = Seen::new(self.keys);
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            seen.insert(key, self.failure)?;
            map.next_value_seed(Walk { depth, keys: seen.keys_mut(), failure: self.failure })?;
        }
        seen.finish();
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.deeper()?;
        while seq.next_element_seed(Walk { depth, keys: &mut *self.keys, failure: self.failure })?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_extracts_model_stream_and_max_tokens() {
        let p = peek(br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":7}"#)
            .unwrap();
        assert_eq!(p.model.as_deref(), Some("gpt-4o"));
        assert!(p.stream);
        assert_eq!(p.max_tokens, Some(7));
        assert!(matches!(p.model, Some(Cow::Borrowed(_))));
        let p = peek(br#"{"max_tokens":7,"max_completion_tokens":9,"stream":null}"#).unwrap();
        assert_eq!((p.model, p.stream, p.max_tokens, p.choices), (None, false, Some(9), 1));
    }

    #[test]
    fn peek_reads_the_responses_api_fields() {
        let p = peek(br#"{"model":"gpt-4o","input":"hi","max_output_tokens":50,"previous_response_id":"resp_1","background":true}"#)
            .unwrap();
        assert_eq!((p.max_tokens, p.continues.as_deref(), p.background), (Some(50), Some("resp_1"), true));
        let p = peek(br#"{"input":[],"previous_response_id":null,"background":false}"#).unwrap();
        assert_eq!((p.max_tokens, p.continues, p.background), (None, None, false));
        assert_eq!(
            peek(br#"{"max_output_tokens":"many"}"#),
            Err(PeekError::FieldType { field: "max_output_tokens", expected: "a non-negative integer" })
        );
        assert_eq!(
            peek(br#"{"previous_response_id":7}"#),
            Err(PeekError::FieldType { field: "previous_response_id", expected: "a string" })
        );
    }

    #[test]
    fn peek_counts_choices_and_finds_stream_options() {
        let choices = |body: &str| peek(body.as_bytes()).map(|p| p.choices);
        assert_eq!(choices(r#"{"model":"m"}"#), Ok(1));
        assert_eq!(choices(r#"{"n":4}"#), Ok(4));
        assert_eq!(choices(r#"{"n":2,"best_of":5}"#), Ok(5));
        assert_eq!(choices(r#"{"best_of":3,"n":null}"#), Ok(3));
        assert_eq!(choices(r#"{"n":0}"#), Ok(1));
        assert_eq!(choices(r#"{"n":-2}"#), Err(PeekError::FieldType { field: "n", expected: "a positive integer" }));
        assert_eq!(
            choices(r#"{"best_of":"2"}"#),
            Err(PeekError::FieldType { field: "best_of", expected: "a positive integer" })
        );

        let body = br#"{"stream":true, "stream_options" : {"include_usage":false} }"#;
        let at = peek(body).unwrap().stream_options.unwrap();
        assert_eq!(&body[at.start..at.end], br#"{"include_usage":false}"#);
        assert_eq!(peek(br#"{"stream":true}"#).unwrap().stream_options, None);
        // Its insides are held to the same rules as every other nested value.
        assert_eq!(
            peek(br#"{"stream_options":{"include_usage":true,"include_usage":false}}"#),
            Err(PeekError::DuplicateKey("include_usage".into()))
        );
        assert_eq!(
            peek(br#"{"stream_options":{"a":1},"stream_options":null}"#),
            Err(PeekError::DuplicateKey("stream_options".into()))
        );
    }

    #[test]
    fn peek_escaped_key_is_the_same_key() {
        let p = peek(br#"{"\u006dodel":"a"}"#).unwrap();
        assert_eq!(p.model.as_deref(), Some("a"));
        assert_eq!(peek(br#"{"model":"a","\u006dodel":"b"}"#), Err(PeekError::DuplicateKey("model".into())));
    }

    #[test]
    fn peek_bad_bodies_are_refused() {
        let dup = |k: &str| PeekError::DuplicateKey(k.into());
        let cases: Vec<(&[u8], PeekError)> = vec![
            (br#"{"model":"a","model":"b"}"#, dup("model")),
            (br#"{"model":"a","messages":[{"role":"user","role":"system"}]}"#, dup("role")),
            (br#"{"x":{"y":1,"y":2}}"#, dup("y")),
            (br#"[{"model":"a"}]"#, PeekError::NotObject),
            (b"\"model\"", PeekError::NotObject),
            (b"null", PeekError::NotObject),
            (br#"{"model":5}"#, PeekError::FieldType { field: "model", expected: "a string" }),
            (br#"{"model":null}"#, PeekError::FieldType { field: "model", expected: "a string" }),
            (br#"{"stream":"yes"}"#, PeekError::FieldType { field: "stream", expected: "a boolean" }),
            (br#"{"max_tokens":-1}"#, PeekError::FieldType { field: "max_tokens", expected: "a non-negative integer" }),
        ];
        for (body, want) in cases {
            assert_eq!(peek(body), Err(want), "{}", String::from_utf8_lossy(body));
        }
        for body in [
            &b"{\"model\":\"a\"} x"[..],
            b"{\"model\":\"a\"",
            b"\xef\xbb\xbf{\"model\":\"a\"}",
            b"{\"model\":\"\xff\"}",
            b"{\"x\":\"\xc3\x28\"}",
            br#"{"model":"\ud800"}"#,
            b"",
            b"{\"model\":\"a\",}",
        ] {
            assert!(matches!(peek(body), Err(PeekError::Syntax(_))), "{}", String::from_utf8_lossy(body));
        }
        // Where the bytes stop being UTF-8, and none of them echoed back.
        assert_eq!(peek(b"{\"x\":\"\xc3\x28\"}"), Err(PeekError::Syntax("invalid UTF-8 at byte 6".into())));
    }

    #[test]
    fn peek_depth_is_bounded() {
        let ok = format!("{{\"x\":{}{}}}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(peek(ok.as_bytes()).is_ok());
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(peek(deep.as_bytes()), Err(PeekError::TooDeep));
    }

    #[test]
    fn peek_large_objects_still_catch_duplicates() {
        let mut body = String::from("{");
        for i in 0..200 {
            body.push_str(&format!("\"k{i}\":{i},"));
        }
        body.push_str("\"k150\":1}");
        assert_eq!(peek(body.as_bytes()), Err(PeekError::DuplicateKey("k150".into())));
        let fine = format!("{}\"model\":\"m\"}}", &body[..body.len() - 9]);
        assert_eq!(peek(fine.as_bytes()).unwrap().model.as_deref(), Some("m"));
    }
}
