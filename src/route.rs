//! Routing: which API operation a request path names (OpenAI `/v1/...`, Azure's
//! `/openai/deployments/{deployment}/...` and `/openai/v1/...`, the dated-preview
//! `/openai/responses`, and Anthropic's `/v1/messages`), and a stored response's own paths
//! (`/v1/responses/{id}`, its `cancel` and `input_items`). Where an operation is sent upstream is
//! [`crate::endpoint`]'s.
//!
//! Paths are matched exactly as received: no percent-decoding, no slash merging, no trailing-slash
//! leniency. A path that is not exactly one of ours is not routed, so the policy can never see a
//! different model than the upstream would serve.

use http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Completions,
    Embeddings,
    /// Creating a response with the Responses API (`POST /v1/responses`).
    Responses,
    /// Anthropic's Messages API (`POST /v1/messages`).
    Messages,
    /// Counting a Messages request's input tokens (`POST /v1/messages/count_tokens`): served by
    /// every model that serves `messages`, and no inference.
    CountTokens,
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Operation::ChatCompletions,
        Operation::Completions,
        Operation::Embeddings,
        Operation::Responses,
        Operation::Messages,
        Operation::CountTokens,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat/completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Responses => "responses",
            Self::Messages => "messages",
            Self::CountTokens => "messages/count_tokens",
        }
    }

    /// Whether Azure's deployment paths carry it: the Responses API names its model in the body
    /// only (`/openai/v1/responses`), and Azure OpenAI does not serve Anthropic's API.
    fn per_deployment(self) -> bool {
        matches!(self, Self::ChatCompletions | Self::Completions | Self::Embeddings)
    }

    /// Whether it is Anthropic's API: routed under `/v1/` only, its refusals in Anthropic's
    /// error shape.
    pub fn anthropic(self) -> bool {
        matches!(self, Self::Messages | Self::CountTokens)
    }

    /// Its name in a model's `operations` in models.toml. Counting tokens goes with `messages`.
    pub fn config_name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Responses => "responses",
            Self::Messages | Self::CountTokens => "messages",
        }
    }

    /// Its place in per-operation tables.
    pub fn index(self) -> usize {
        self as usize
    }

    fn from_suffix(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.suffix() == s)
    }
}

/// What a request does to a response stored upstream, addressed by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// `GET /v1/responses/{id}`
    Retrieve,
    /// `DELETE /v1/responses/{id}`
    Delete,
    /// `POST /v1/responses/{id}/cancel`
    Cancel,
    /// `GET /v1/responses/{id}/input_items`
    InputItems,
}

impl Stored {
    pub const ALL: [Stored; 4] = [Stored::Retrieve, Stored::Delete, Stored::Cancel, Stored::InputItems];

    pub fn method(self) -> Method {
        match self {
            Self::Retrieve | Self::InputItems => Method::GET,
            Self::Delete => Method::DELETE,
            Self::Cancel => Method::POST,
        }
    }

    /// What follows the id in the path: empty, `/cancel` or `/input_items`.
    pub fn tail(self) -> &'static str {
        match self {
            Self::Retrieve | Self::Delete => "",
            Self::Cancel => "/cancel",
            Self::InputItems => "/input_items",
        }
    }
}

/// The longest response id routed: OpenAI's are about 50 characters.
pub const MAX_RESPONSE_ID: usize = 128;

/// Whether `id` can be a response id: what OpenAI issues is letters, digits and '_', and nothing
/// that could change the path it is put into upstream.
pub fn valid_response_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_RESPONSE_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// An inference call. `deployment` is set for Azure paths, where the path names the model.
    Inference {
        op: Operation,
        deployment: Option<&'a str>,
    },
    /// A request about a stored response, which only the tenant that created it may make.
    Stored {
        action: Stored,
        id: &'a str,
    },
    ListModels,
    GetModel(&'a str),
}

impl<'a> Route<'a> {
    /// The route as requested with `method`, or `None` when the path does not take it. A stored
    /// response's path is read with `GET` and deleted with `DELETE`.
    pub fn with_method(self, method: &Method) -> Option<Route<'a>> {
        let route = match self {
            Self::Stored { action: Stored::Retrieve, id } if method == Method::DELETE => {
                Self::Stored { action: Stored::Delete, id }
            }
            other => other,
        };
        let expected = match route {
            Self::Inference { .. } => Method::POST,
            Self::Stored { action, .. } => action.method(),
            Self::ListModels | Self::GetModel(_) => Method::GET,
        };
        (method == expected).then_some(route)
    }

    /// Whether its refusals take Anthropic's error shape.
    pub fn anthropic(&self) -> bool {
        matches!(self, Self::Inference { op, .. } if op.anthropic())
    }

    /// Its `operation` label in metrics: one of [`OPERATION_LABELS`].
    pub fn label(&self) -> usize {
        match self {
            Self::Inference { op, .. } => op.index(),
            Self::Stored { action, .. } => Operation::ALL.len() + *action as usize,
            Self::ListModels | Self::GetModel(_) => Operation::ALL.len() + Stored::ALL.len(),
        }
    }
}

/// Every value of the `operation` metric label, indexed by [`Route::label`]; requests that route
/// nowhere are counted under `none`.
pub const OPERATION_LABELS: [&str; 12] = [
    "chat",
    "completions",
    "embeddings",
    "responses",
    "messages",
    "count_tokens",
    "responses_retrieve",
    "responses_delete",
    "responses_cancel",
    "responses_input_items",
    "models",
    "none",
];

/// [`OPERATION_LABELS`]' index of a request that routes nowhere.
pub const NO_OPERATION: usize = OPERATION_LABELS.len() - 1;

/// The operation a [`Route::label`] names, or `None` for [`NO_OPERATION`].
pub fn operation_label(label: usize) -> Option<&'static str> {
    OPERATION_LABELS.get(label).filter(|_| label != NO_OPERATION).copied()
}

/// Classifies a request path, or `None` when it is not one of ours. A stored response's own path
/// classifies as [`Stored::Retrieve`] until [`Route::with_method`] reads the method.
pub fn classify(path: &str) -> Option<Route<'_>> {
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, op) = rest.split_once('/')?;
        if deployment.is_empty() {
            return None;
        }
        let op = Operation::from_suffix(op).filter(|op| op.per_deployment())?;
        return Some(Route::Inference { op, deployment: Some(deployment) });
    }
    // Azure's dated-preview form (`?api-version=` is the query's, not the path's).
    if let Some(rest) = path.strip_prefix("/openai/") {
        if rest == "responses" {
            return Some(Route::Inference { op: Operation::Responses, deployment: None });
        }
        if let Some(stored) = rest.strip_prefix("responses/") {
            return stored_route(stored);
        }
    }
    let (rest, anthropic_ok) = match path.strip_prefix("/v1/") {
        Some(rest) => (rest, true),
        None => (path.strip_prefix("/openai/v1/")?, false),
    };
    if rest == "models" {
        return Some(Route::ListModels);
    }
    if let Some(id) = rest.strip_prefix("models/") {
        return (!id.is_empty()).then_some(Route::GetModel(id));
    }
    if let Some(stored) = rest.strip_prefix("responses/") {
        return stored_route(stored);
    }
    let op = Operation::from_suffix(rest).filter(|op| anthropic_ok || !op.anthropic())?;
    Some(Route::Inference { op, deployment: None })
}

/// `{id}`, `{id}/cancel` or `{id}/input_items`.
fn stored_route(rest: &str) -> Option<Route<'_>> {
    let (id, action) = match rest.split_once('/') {
        None => (rest, Stored::Retrieve),
        Some((id, "cancel")) => (id, Stored::Cancel),
        Some((id, "input_items")) => (id, Stored::InputItems),
        Some(_) => return None,
    };
    valid_response_id(id).then_some(Route::Stored { action, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_exact_paths_only() {
        use Operation::*;
        let inf = |op, deployment| Some(Route::Inference { op, deployment });
        let stored = |action, id| Some(Route::Stored { action, id });
        assert_eq!(classify("/v1/chat/completions"), inf(ChatCompletions, None));
        assert_eq!(classify("/openai/v1/embeddings"), inf(Embeddings, None));
        assert_eq!(classify("/v1/completions"), inf(Completions, None));
        assert_eq!(classify("/openai/deployments/gpt-4o/chat/completions"), inf(ChatCompletions, Some("gpt-4o")));
        assert_eq!(classify("/v1/responses"), inf(Responses, None));
        assert_eq!(classify("/openai/v1/responses"), inf(Responses, None));
        assert_eq!(classify("/openai/responses"), inf(Responses, None));
        assert_eq!(classify("/v1/messages"), inf(Messages, None));
        assert_eq!(classify("/v1/messages/count_tokens"), inf(CountTokens, None));
        assert_eq!(classify("/v1/models"), Some(Route::ListModels));
        assert_eq!(classify("/v1/models/gpt-4o"), Some(Route::GetModel("gpt-4o")));
        for prefix in ["/v1/responses/", "/openai/v1/responses/", "/openai/responses/"] {
            assert_eq!(classify(&format!("{prefix}resp_1")), stored(Stored::Retrieve, "resp_1"));
            assert_eq!(classify(&format!("{prefix}resp_1/cancel")), stored(Stored::Cancel, "resp_1"));
            assert_eq!(classify(&format!("{prefix}resp_1/input_items")), stored(Stored::InputItems, "resp_1"));
        }
        for bad in [
            "//v1/chat/completions",
            "/v1/chat/completions/",
            "/v1/chat/../chat/completions",
            "/V1/chat/completions",
            "/v1/chat%2Fcompletions",
            "/openai/deployments//chat/completions",
            "/openai/deployments/a/b/chat/completions",
            "/v1/models/",
            "/v2/chat/completions",
            "/v1/responses/",
            "/v1/responses//cancel",
            "/v1/responses/resp_1/",
            "/v1/responses/resp_1/cancel/",
            "/v1/responses/resp_1/other",
            "/v1/responses/resp%2F1",
            "/v1/responses/resp.1",
            "/v1/responses/resp_1/input_items/item_1",
            "/openai/deployments/gpt-4o/responses",
            "/openai/deployments/claude/messages",
            "/openai/v1/messages",
            "/v1/messages/",
            "/v1/messages/batches",
        ] {
            assert_eq!(classify(bad), None, "{bad}");
        }
        assert_eq!(classify(&format!("/v1/responses/{}", "a".repeat(MAX_RESPONSE_ID + 1))), None);
    }

    #[test]
    fn route_methods_pick_the_stored_action() {
        let item = classify("/v1/responses/resp_1").unwrap();
        assert_eq!(item.with_method(&Method::GET), Some(Route::Stored { action: Stored::Retrieve, id: "resp_1" }));
        assert_eq!(item.with_method(&Method::DELETE), Some(Route::Stored { action: Stored::Delete, id: "resp_1" }));
        assert_eq!(item.with_method(&Method::POST), None);
        let cancel = classify("/v1/responses/resp_1/cancel").unwrap();
        assert_eq!(cancel.with_method(&Method::GET), None);
        assert!(cancel.with_method(&Method::POST).is_some());
        assert_eq!(classify("/v1/messages").unwrap().with_method(&Method::GET), None);
        assert_eq!(classify("/v1/models").unwrap().with_method(&Method::POST), None);
        // Every label is distinct and every route has one.
        let mut labels = OPERATION_LABELS.to_vec();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), OPERATION_LABELS.len());
        assert_eq!(Route::ListModels.label(), NO_OPERATION - 1);
    }
}
