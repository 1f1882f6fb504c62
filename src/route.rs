//! Routing: which API operation a request path names (OpenAI `/v1/...`, Azure's
//! `/openai/deployments/{deployment}/...` and `/openai/v1/...`, and the dated-preview
//! `/openai/responses`). Where an operation is sent upstream is
//! [`crate::endpoint`]'s.
//!
//! Paths are matched exactly as received: no percent-decoding, no slash merging, no trailing-slash
//! leniency. A path that is not exactly one of ours is not routed, so the policy can never see a
//! different model than the upstream would serve.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Completions,
    Embeddings,
    /// The Responses API (`POST /v1/responses`). Only creating a response is routed: reading,
    /// deleting or continuing one by id needs ids bound to their tenant, which customs does not
    /// do yet, so those paths stay unrouted (404).
    Responses,
}

impl Operation {
    pub const ALL: [Operation; 4] =
        [Operation::ChatCompletions, Operation::Completions, Operation::Embeddings, Operation::Responses];

    pub fn suffix(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat/completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Responses => "responses",
        }
    }

    /// Whether Azure's deployment paths carry it: the Responses API names its model in the body
    /// only (`/openai/v1/responses`).
    fn per_deployment(self) -> bool {
        !matches!(self, Self::Responses)
    }

    /// Its name in a model's `operations` in models.toml.
    pub fn config_name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Responses => "responses",
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// An inference call. `deployment` is set for Azure paths, where the path names the model.
    Inference {
        op: Operation,
        deployment: Option<&'a str>,
    },
    ListModels,
    GetModel(&'a str),
}

/// Classifies a request path, or `None` when it is not one of ours.
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
    if path == "/openai/responses" {
        return Some(Route::Inference { op: Operation::Responses, deployment: None });
    }
    let rest = path.strip_prefix("/v1/").or_else(|| path.strip_prefix("/openai/v1/"))?;
    if rest == "models" {
        return Some(Route::ListModels);
    }
    if let Some(id) = rest.strip_prefix("models/") {
        return (!id.is_empty()).then_some(Route::GetModel(id));
    }
    Some(Route::Inference { op: Operation::from_suffix(rest)?, deployment: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_exact_paths_only() {
        use Operation::*;
        let inf = |op, deployment| Some(Route::Inference { op, deployment });
        assert_eq!(classify("/v1/chat/completions"), inf(ChatCompletions, None));
        assert_eq!(classify("/openai/v1/embeddings"), inf(Embeddings, None));
        assert_eq!(classify("/v1/completions"), inf(Completions, None));
        assert_eq!(classify("/openai/deployments/gpt-4o/chat/completions"), inf(ChatCompletions, Some("gpt-4o")));
        assert_eq!(classify("/v1/responses"), inf(Responses, None));
        assert_eq!(classify("/openai/v1/responses"), inf(Responses, None));
        assert_eq!(classify("/openai/responses"), inf(Responses, None));
        assert_eq!(classify("/v1/models"), Some(Route::ListModels));
        assert_eq!(classify("/v1/models/gpt-4o"), Some(Route::GetModel("gpt-4o")));
        for bad in [
            "//v1/chat/completions",
            "/v1/chat/completions/",
            "/v1//chat/completions",
            "/v1/chat/../chat/completions",
            "/V1/chat/completions",
            "/v1/chat%2Fcompletions",
            "/openai/deployments//chat/completions",
            "/openai/deployments/a/b/chat/completions",
            "/v1/models/",
            "/v2/chat/completions",
            // Not routed until response ids are bound to tenants.
            "/v1/responses/resp_123",
            "/v1/responses/resp_123/cancel",
            "/v1/responses/resp_123/input_items",
            "/openai/deployments/gpt-4o/responses",
            "/v1/responses/",
        ] {
            assert_eq!(classify(bad), None, "{bad}");
        }
    }
}
