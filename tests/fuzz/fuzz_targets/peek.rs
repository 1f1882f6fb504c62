//! The body peek on any bytes: it accepts exactly the bodies a plain serde_json parse finds to be
//! one object with no repeated key at any depth, nested at most `MAX_DEPTH`, whose few read fields
//! have the right types; it reads those fields as serde_json does; and a body it asks usage for
//! (`usage::ask`) is still one it accepts, changed only in `stream_options.include_usage`.
#![no_main]

use std::fmt;

use bytes::Bytes;
use customs::peek::{MAX_DEPTH, PeekError, Peeked, peek};
use customs::usage::{Ask, ask};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let reference = Reference::of(body);
    match peek(body) {
        Ok(peeked) => {
            let r = reference.unwrap_or_else(|| panic!("peek accepted what serde_json refuses: {body:?}"));
            assert!(r.acceptable(), "peek accepted a body with a repeated key, too deep or mistyped: {r:?}");
            r.agrees(body, &peeked);
            asked_usage_is_still_valid(body, &peeked, &r);
        }
        Err(e) => {
            if let Some(r) = &reference {
                assert!(!r.acceptable(), "peek refused a valid body ({e:?}): {body:?}");
            }
            match e {
                // The reference parse and the peek share a grammar: a syntax error is one for both.
                PeekError::Syntax(_) => assert!(reference.is_none() && not_json(body), "{e:?}: {body:?}"),
                PeekError::NotObject => assert!(!body.trim_ascii_start().starts_with(b"{"), "{body:?}"),
                PeekError::TooDeep => {
                    let open = body.iter().filter(|b| b"[{".contains(b)).count();
                    assert!(open > MAX_DEPTH, "too deep with {open} brackets: {body:?}");
                }
                PeekError::DuplicateKey(_) | PeekError::FieldType { .. } => {}
            }
        }
    }
});

/// Whether serde_json refuses `body` as any JSON value. Its depth limit (128) is past the peek's.
fn not_json(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_err()
}

/// A top-level object as a plain parse sees it: members in body order (a `Value` sorts them, and
/// which of two token limits the peek keeps depends on which came last), nesting depth and
/// whether any object repeats a key.
#[derive(Debug)]
struct Reference {
    members: Vec<(String, Value)>,
    shape: Shape,
}

impl Reference {
    fn of(body: &[u8]) -> Option<Self> {
        // Shape first: it also fails on trailing bytes and on invalid UTF-8 in any string.
        let shape: Shape = serde_json::from_slice(body).ok()?;
        let members: Members = serde_json::from_slice(body).ok()?;
        Some(Self { members: members.0, shape })
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether the peek must accept it.
    fn acceptable(&self) -> bool {
        let typed = |key, ok: fn(&Value) -> bool| self.get(key).is_none_or(ok);
        let count = |v: &Value| v.is_null() || v.as_u64().is_some();
        let flag = |v: &Value| v.is_null() || v.is_boolean();
        let text = |v: &Value| v.is_null() || v.is_string();
        !self.shape.duplicate
            && self.shape.depth <= MAX_DEPTH
            && typed("model", Value::is_string)
            && typed("stream", flag)
            && typed("background", flag)
            && typed("previous_response_id", text)
            && ["max_tokens", "max_completion_tokens", "max_output_tokens", "n", "best_of"]
                .into_iter()
                .all(|k| typed(k, count))
    }

    fn agrees(&self, body: &[u8], p: &Peeked<'_>) {
        let s = |k| self.get(k).and_then(Value::as_str);
        let on = |k| self.get(k).and_then(Value::as_bool).unwrap_or(false);
        assert_eq!(p.model.as_deref(), s("model"), "model");
        assert_eq!(p.continues.as_deref(), s("previous_response_id"), "previous_response_id");
        assert_eq!(p.stream, on("stream"), "stream");
        assert_eq!(p.background, on("background"), "background");
        let (mut max_tokens, mut max_completion) = (None, None);
        for (k, v) in &self.members {
            match k.as_str() {
                "max_tokens" => max_tokens = v.as_u64(),
                "max_completion_tokens" | "max_output_tokens" => max_completion = v.as_u64(),
                _ => {}
            }
        }
        assert_eq!(p.max_tokens, max_completion.or(max_tokens), "max tokens");
        let n = |k| self.get(k).and_then(Value::as_u64).unwrap_or(1);
        assert_eq!(p.choices, n("n").max(n("best_of")).max(1), "choices");
        match (p.stream_options, self.get("stream_options")) {
            (None, None) => {}
            (Some(span), Some(v)) => {
                let at: Value = serde_json::from_slice(&body[span.start..span.end]).expect("stream_options span");
                assert_eq!(&at, v, "stream_options span");
            }
            (got, want) => panic!("stream_options: peek {got:?}, serde_json {want:?}"),
        }
    }
}

/// The one change `ask` may make: `stream_options.include_usage` set to true, all else the same.
fn asked_usage_is_still_valid(body: &[u8], p: &Peeked<'_>, r: &Reference) {
    let before: Value = serde_json::from_slice(body).expect("accepted");
    let include = |v: &Value| v.get("stream_options").and_then(|o| o.get("include_usage")).cloned();
    match ask(&Bytes::copy_from_slice(body), p) {
        Ask::Asked => assert!(!p.stream || include(&before) == Some(Value::Bool(true)), "asked: {body:?}"),
        Ask::Untouched => {
            let options = r.get("stream_options").expect("untouched without stream_options");
            let raw = &body[p.stream_options.map_or(0..0, |s| s.start..s.end)];
            // Keys with escapes are not read (`usage::members`), so such options are left alone.
            let odd = !options.is_object() || include(&before).is_some_and(|v| !v.is_boolean()) || raw.contains(&b'\\');
            assert!(p.stream && odd, "untouched: {body:?}");
        }
        Ask::Inserted(after) => {
            assert!(p.stream, "inserted into a body that does not stream: {body:?}");
            let again = peek(&after).unwrap_or_else(|e| panic!("{e:?}: {after:?} from {body:?}"));
            assert_eq!((again.model, again.stream, again.max_tokens), (p.model.clone(), true, p.max_tokens));
            let mut after: Value = serde_json::from_slice(&after).expect("peek accepted it");
            assert_eq!(include(&after), Some(Value::Bool(true)), "{after}");
            let mut before = before;
            for v in [&mut before, &mut after] {
                if let Some(Value::Object(o)) = v.get_mut("stream_options") {
                    o.remove("include_usage");
                }
            }
            if before.get("stream_options").is_none_or(Value::is_null) {
                assert_eq!(after.get("stream_options"), Some(&Value::Object(Default::default())));
                for v in [&mut before, &mut after] {
                    v.as_object_mut().map(|o| o.remove("stream_options"));
                }
            }
            assert_eq!(before, after, "ask changed more than include_usage");
        }
    }
}

/// How deep a value nests (a scalar is 0) and whether any object in it repeats a key.
#[derive(Debug, Default)]
struct Shape {
    depth: usize,
    duplicate: bool,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                let (mut keys, mut out) = (Vec::<String>::new(), Shape::default());
                while let Some((k, v)) = map.next_entry::<String, Shape>()? {
                    out.duplicate |= v.duplicate || keys.contains(&k);
                    out.depth = out.depth.max(v.depth);
                    keys.push(k);
                }
                out.depth += 1;
                Ok(out)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                let mut out = Shape::default();
                while let Some(v) = seq.next_element::<Shape>()? {
                    out.duplicate |= v.duplicate;
                    out.depth = out.depth.max(v.depth);
                }
                out.depth += 1;
                Ok(out)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::default())
            }
            fn visit_unit<E>(self) -> Result<Shape, E> {
                Ok(Shape::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object's members in order; fails on anything but an object.
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some(member) = map.next_entry()? {
                    out.push(member);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}
