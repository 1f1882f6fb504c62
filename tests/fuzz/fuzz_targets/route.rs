//! Path routing on any path, raw and as `http` parses a request target: it routes exactly what a
//! plain reading of the route table by path segments routes, a stored response's id is always one
//! `valid_response_id` takes, and each route takes the one method it is served with.
#![no_main]

use customs::route::{NO_OPERATION, Operation, Route, Stored, classify, operation_label, valid_response_id};
use http::{Method, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        check(path);
        let id_like = !path.is_empty()
            && path.len() <= 128
            && path.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        assert_eq!(valid_response_id(path), id_like, "{path:?}");
    }
    // The gateway classifies the path of the request target hyper parsed.
    if let Ok(uri) = Uri::try_from(data) {
        check(uri.path());
    }
});

fn check(path: &str) {
    let route = classify(path);
    assert_eq!(route.map(Want::from), reference(path), "{path:?}");
    let Some(route) = route else { return };
    let methods = [Method::GET, Method::POST, Method::DELETE, Method::PUT, Method::PATCH, Method::HEAD];
    let served: Vec<_> = methods.iter().filter_map(|m| route.with_method(m).map(|r| (m, r))).collect();
    let expected: &[Method] = match route {
        Route::Inference { .. } => &[Method::POST],
        Route::Stored { action: Stored::Retrieve, .. } => &[Method::GET, Method::DELETE],
        Route::Stored { action, .. } => &[action.method()],
        Route::ListModels | Route::GetModel(_) => &[Method::GET],
    };
    assert_eq!(served.iter().map(|(m, _)| (*m).clone()).collect::<Vec<_>>(), expected, "{path:?}");
    for (m, r) in served {
        assert!(r.label() < NO_OPERATION && operation_label(r.label()).is_some(), "{path:?} {m}");
        assert_eq!(r.anthropic(), matches!(r, Route::Inference { op, .. } if op.anthropic()));
        if *m == Method::DELETE {
            assert!(matches!(r, Route::Stored { action: Stored::Delete, .. }), "{path:?}");
        }
    }
}

/// A route, owned, to compare with the reference's.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    Inference(Operation, Option<String>),
    Stored(Stored, String),
    ListModels,
    GetModel(String),
}

impl From<Route<'_>> for Want {
    fn from(r: Route<'_>) -> Self {
        match r {
            Route::Inference { op, deployment } => Self::Inference(op, deployment.map(str::to_owned)),
            Route::Stored { action, id } => Self::Stored(action, id.to_owned()),
            Route::ListModels => Self::ListModels,
            Route::GetModel(id) => Self::GetModel(id.to_owned()),
        }
    }
}

/// The route table read by segments, written apart from `classify`'s prefix stripping.
fn reference(path: &str) -> Option<Want> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let op = |rest: &[&str]| Operation::ALL.into_iter().find(|op| op.suffix() == rest.join("/"));
    let stored = |rest: &[&str]| {
        let (id, action) = match rest {
            [id] => (*id, Stored::Retrieve),
            [id, "cancel"] => (*id, Stored::Cancel),
            [id, "input_items"] => (*id, Stored::InputItems),
            _ => return None,
        };
        let ok =
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
        ok.then(|| Want::Stored(action, id.to_owned()))
    };
    let api = |rest: &[&str], anthropic_ok: bool| match rest {
        ["models"] => Some(Want::ListModels),
        ["models", id @ ..] => {
            let id = id.join("/");
            (!id.is_empty()).then_some(Want::GetModel(id))
        }
        ["responses", id @ ..] if !id.is_empty() => stored(id),
        _ => op(rest).filter(|op| anthropic_ok || !op.anthropic()).map(|op| Want::Inference(op, None)),
    };
    match segments.as_slice() {
        ["openai", "deployments", deployment, rest @ ..] => {
            let per_deployment = [Operation::ChatCompletions, Operation::Completions, Operation::Embeddings];
            let op = op(rest).filter(|op| per_deployment.contains(op) && !deployment.is_empty())?;
            Some(Want::Inference(op, Some((*deployment).to_owned())))
        }
        ["openai", "responses"] => Some(Want::Inference(Operation::Responses, None)),
        ["openai", "responses", rest @ ..] => stored(rest),
        ["openai", "v1", rest @ ..] => api(rest, false),
        ["v1", rest @ ..] => api(rest, true),
        _ => None,
    }
}
