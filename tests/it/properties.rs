//! Properties over generated input (proptest) for what parses hostile bytes on the request path:
//! the body peek, path routing, the SSE usage scanner, the response-id reader and config
//! loading. None may panic on any input, each must agree with a plain reference (serde_json, the
//! route table, the unsplit stream), and a split of a stream must not change what is read from it.
//! These run within `cargo test`. The same parsers are also fuzzed coverage-guided with libFuzzer
//! on the stable toolchain (cargo-fuzz with `--sanitizer none`) in `tests/fuzz/`, which CI runs for
//! about a minute (`tests/fuzz/README.md`).

use bytes::Bytes;
use customs::owners::IdReader;
use customs::peek::peek;
use customs::route::{Operation, Route, Stored, classify, valid_response_id};
use customs::usage::{Usage, UsageScanner};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() }
}

/// A JSON value of a few levels, as a client might send.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z\"\\\\ \u{e9}\u{1f600}]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes: the peek answers, and what it accepts is one JSON object.
    #[test]
    fn peek_never_panics_and_accepts_only_json_objects(body in prop::collection::vec(any::<u8>(), 0..256)) {
        if peek(&body).is_ok() {
            let v = serde_json::from_slice::<serde_json::Value>(&body);
            prop_assert!(v.as_ref().is_ok_and(serde_json::Value::is_object), "accepted {:?}", String::from_utf8_lossy(&body));
        }
    }

    /// A generated object with a string `model` (and members the peek does not read: those it
    /// reads have types it checks): the peek reads the model serde_json reads.
    #[test]
    fn peek_reads_the_model_serde_reads(
        model in "[ -~\u{e9}]{1,20}",
        rest in prop::collection::btree_map("x_[a-z]{1,6}", json_value(), 0..5),
    ) {
        let mut object: serde_json::Map<String, serde_json::Value> = rest.into_iter().collect();
        object.insert("model".into(), model.clone().into());
        let body = serde_json::to_vec(&object).unwrap();
        let peeked = peek(&body);
        prop_assert!(peeked.is_ok(), "{:?}", peeked);
        prop_assert_eq!(peeked.ok().and_then(|p| p.model.map(|m| m.into_owned())), Some(model));
    }

    /// Any path: routing answers, and whatever it routes is exactly one of the routes it serves.
    #[test]
    fn routing_routes_only_exact_paths(path in "/[a-z0-9/_.%-]{0,40}") {
        let Some(route) = classify(&path) else { return Ok(()) };
        let known = |p: &str| {
            Operation::ALL.iter().any(|op| {
                p == format!("/v1/{}", op.suffix())
                    || (!op.anthropic() && p == format!("/openai/v1/{}", op.suffix()))
            }) || p == "/openai/responses"
        };
        match route {
            Route::Inference { deployment: None, .. } => prop_assert!(known(&path), "{}", path),
            Route::Inference { op, deployment: Some(d) } => {
                let want = format!("/openai/deployments/{d}/{}", op.suffix());
                prop_assert_eq!(&path, &want);
                prop_assert!(!d.is_empty() && !d.contains('/'));
            }
            Route::Stored { action, id } => {
                prop_assert!(valid_response_id(id));
                let tail = match action { Stored::Cancel => "/cancel", Stored::InputItems => "/input_items", _ => "" };
                let tail = format!("/responses/{id}{tail}");
                prop_assert!(path.ends_with(&tail), "{}", path);
            }
            Route::ListModels => prop_assert!(path == "/v1/models" || path == "/openai/v1/models"),
            Route::GetModel(id) => {
                let tail = format!("/models/{id}");
                prop_assert!(!id.is_empty() && path.ends_with(&tail));
            }
        }
    }

    /// A chat stream with generated content (which may mention usage) and a usage chunk: however
    /// the bytes are split into frames, the usage read is the one the stream reports.
    #[test]
    fn usage_of_a_stream_does_not_depend_on_how_it_is_split(
        texts in prop::collection::vec("[a-z \"usage:{}\\\\]{0,16}", 0..6),
        prompt in 0u64..1_000_000,
        completion in 0u64..1_000_000,
        cuts in prop::collection::vec(1usize..64, 1..32),
        crlf in any::<bool>(),
    ) {
        let end = if crlf { "\r\n\r\n" } else { "\n\n" };
        let mut stream = String::new();
        for t in &texts {
            let chunk = serde_json::json!({"choices": [{"delta": {"content": t}}]});
            stream.push_str(&format!("data: {chunk}{end}"));
        }
        let usage = serde_json::json!({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}});
        stream.push_str(&format!("data: {usage}{end}data: [DONE]{end}"));
        let bytes = stream.as_bytes();
        let mut scanner = UsageScanner::for_content_type(Some(b"text/event-stream"), false);
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= bytes.len() { break; }
            let next = (at + cut).min(bytes.len());
            let passed = scanner.pass(Bytes::copy_from_slice(&bytes[at..next]));
            prop_assert_eq!(&passed[..], &bytes[at..next], "a stream the client asked usage of passes unchanged");
            at = next;
        }
        prop_assert_eq!(scanner.finish(), Some(Usage { prompt_tokens: prompt, completion_tokens: completion }));
    }

    /// Any bytes, any split, any content type: scanning for usage and for a response id answers.
    #[test]
    fn scanners_never_panic_on_any_bytes(
        body in prop::collection::vec(any::<u8>(), 0..512),
        cut in 1usize..64,
        sse in any::<bool>(),
        hide in any::<bool>(),
    ) {
        let ct: &[u8] = if sse { b"text/event-stream" } else { b"application/json" };
        let mut scanner = UsageScanner::for_content_type(Some(ct), hide);
        let mut ids = IdReader::new(sse);
        for part in body.chunks(cut) {
            let _ = scanner.pass(Bytes::copy_from_slice(part));
            let _ = ids.read(part);
        }
        let _ = scanner.rest();
        let _ = scanner.finish();
        let _ = ids.finish();
    }

    /// A Responses stream's id is read whatever the split.
    #[test]
    fn the_id_of_a_stream_does_not_depend_on_how_it_is_split(id in "resp_[A-Za-z0-9]{1,40}", cut in 1usize..48) {
        let created = serde_json::json!({"type": "response.created", "response": {"id": id, "status": "in_progress"}});
        let stream = format!("event: response.created\ndata: {created}\n\nevent: response.in_progress\ndata: {{}}\n\n");
        let mut ids = IdReader::new(true);
        let found: Vec<Box<str>> = stream.as_bytes().chunks(cut).filter_map(|part| ids.read(part)).collect();
        prop_assert_eq!(found, vec![Box::<str>::from(id.as_str())]);
    }

    /// Any text in place of a config file: loading answers with the config or its errors.
    #[test]
    fn config_loading_never_panics(
        file in prop::sample::select(vec!["models.toml", "tenants.toml", "jurisdictions.toml", "gateway.toml", "country-groups.toml"]),
        text in "[a-z_=\\[\\]\"0-9.\n #*-]{0,200}",
    ) {
        let dir = crate::support::example_config_for("127.0.0.1:1".parse().unwrap());
        std::fs::write(dir.path().join(file), text).unwrap();
        let _ = customs::config::load(dir.path(), &|_| Some("k".into()));
    }
}
