//! The upstream endpoint table's rows: one upstream serving one model, with its URI parts and
//! credential header resolved at load, so choosing and addressing an upstream allocates nothing.

use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Uri};
use serde::Deserialize;

use crate::auth::{API_KEY_HEADER, X_API_KEY_HEADER};
use crate::ids::ModelIdx;
use crate::route::{Operation, Stored};

/// The API an upstream speaks, which decides its paths and how the credential is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointKind {
    /// `{url}/chat/completions`, credentials as `Authorization: Bearer`.
    #[default]
    Openai,
    /// `{url}/deployments/{deployment}/chat/completions?api-version=…`, credentials as `api-key`.
    Azure,
    /// Anthropic's Messages API: `{url}/messages`, credentials as `x-api-key`.
    Anthropic,
}

impl EndpointKind {
    /// Whether an upstream of this kind speaks `op`'s API.
    pub fn serves(self, op: Operation) -> bool {
        op.anthropic() == (self == Self::Anthropic)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Azure => "azure",
            Self::Anthropic => "anthropic",
        }
    }
}

/// One upstream serving one model, with everything needed to address it resolved at load.
pub struct Endpoint {
    pub model: ModelIdx,
    pub residency: Box<str>,
    pub kind: EndpointKind,
    /// `scheme://authority`, what a connection is made to.
    origin: Uri,
    /// The `Host` header for the authority.
    host: HeaderValue,
    paths: [PathAndQuery; Operation::ALL.len()],
    /// `{url}/responses/`, where a stored response's paths start, and for Azure the
    /// `?api-version=` query they end with.
    stored: (Box<str>, Box<str>),
    credential: Option<(HeaderName, HeaderValue)>,
    /// The URL as configured, for logs and `explain`; never holds a secret.
    pub url: Box<str>,
    /// Streams whose client did not ask for usage are sent asking for it (off for upstreams that
    /// refuse `stream_options`).
    pub ask_stream_usage: bool,
    /// In place of the gateway-wide stream timers, when set.
    pub stream_idle_timeout: Option<Duration>,
    pub stream_max_duration: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("is not a valid URL")]
    InvalidUrl,
    #[error("must use http or https")]
    Scheme,
    #[error("must not carry credentials or a query; name an environment variable in api_key_env")]
    ExtraParts,
    #[error("azure endpoints need `deployment` and `api_version` (letters, digits, '.', '_', '-')")]
    AzureParts,
    #[error("`deployment` and `api_version` are for azure endpoints only")]
    NotAzure,
    #[error("the credential is not a valid header value")]
    Credential,
}

// === impl Endpoint ===

impl Endpoint {
    pub fn build(
        model: ModelIdx,
        url: &str,
        kind: EndpointKind,
        residency: &str,
        deployment: Option<&str>,
        api_version: Option<&str>,
        credential: Option<&str>,
    ) -> Result<Self, EndpointError> {
        let uri: Uri = url.parse().map_err(|_| EndpointError::InvalidUrl)?;
        let scheme = uri.scheme().cloned().ok_or(EndpointError::InvalidUrl)?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(EndpointError::Scheme);
        }
        let authority = uri.authority().cloned().ok_or(EndpointError::InvalidUrl)?;
        if authority.as_str().contains('@') || uri.query().is_some() {
            return Err(EndpointError::ExtraParts);
        }
        let base = uri.path().trim_end_matches('/');
        let token_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        let path_for = |op: Operation| -> Result<PathAndQuery, EndpointError> {
            let p = match kind {
                EndpointKind::Openai | EndpointKind::Anthropic => format!("{base}/{}", op.suffix()),
                EndpointKind::Azure => match (deployment, api_version) {
                    // Azure's Responses API is not per deployment: the body's model names it.
                    (Some(_), Some(v)) if op == Operation::Responses && token_ok(v) => {
                        format!("{base}/responses?api-version={v}")
                    }
                    (Some(d), Some(v)) if token_ok(d) && token_ok(v) => {
                        format!("{base}/deployments/{d}/{}?api-version={v}", op.suffix())
                    }
                    _ => return Err(EndpointError::AzureParts),
                },
            };
            PathAndQuery::try_from(p).map_err(|_| EndpointError::InvalidUrl)
        };
        if kind != EndpointKind::Azure && (deployment.is_some() || api_version.is_some()) {
            return Err(EndpointError::NotAzure);
        }
        let [a, b, c, d, e, f] = Operation::ALL;
        let paths = [path_for(a)?, path_for(b)?, path_for(c)?, path_for(d)?, path_for(e)?, path_for(f)?];
        let stored = match api_version {
            Some(v) => (format!("{base}/responses/").into(), format!("?api-version={v}").into()),
            None => (format!("{base}/responses/").into(), "".into()),
        };
        let credential = credential
            .map(|secret| {
                let (name, value) = match kind {
                    EndpointKind::Openai => (http::header::AUTHORIZATION, format!("Bearer {secret}")),
                    EndpointKind::Azure => (API_KEY_HEADER, secret.to_owned()),
                    EndpointKind::Anthropic => (X_API_KEY_HEADER, secret.to_owned()),
                };
                let mut value = HeaderValue::try_from(value).map_err(|_| EndpointError::Credential)?;
                value.set_sensitive(true);
                Ok((name, value))
            })
            .transpose()?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| EndpointError::InvalidUrl)?;
        let origin = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|_| EndpointError::InvalidUrl)?;
        Ok(Self {
            model,
            residency: residency.into(),
            kind,
            origin,
            host,
            paths,
            stored,
            credential,
            url: url.into(),
            ask_stream_usage: true,
            stream_idle_timeout: None,
            stream_max_duration: None,
        })
    }

    /// The origin-form request target for an operation (what goes on the request line).
    pub fn path(&self, op: Operation) -> &PathAndQuery {
        &self.paths[op.index()]
    }

    /// The request target for `action` on the stored response `id` (a valid response id, so the
    /// path stays what it says), with the client's query (`?after=` pages input items, `?stream=`
    /// resumes a stream) less any `api-version`, which is the endpoint's.
    pub fn stored_path(&self, action: Stored, id: &str, query: Option<&str>) -> Option<PathAndQuery> {
        let (base, own) = &self.stored;
        let mut target = format!("{base}{id}{}{own}", action.tail());
        let client =
            query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty() && !p.starts_with("api-version="));
        for param in client {
            target.push(if target.contains('?') { '&' } else { '?' });
            target.push_str(param);
        }
        PathAndQuery::try_from(target).ok()
    }

    pub fn origin(&self) -> &Uri {
        &self.origin
    }

    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    pub fn credential(&self) -> Option<(&HeaderName, &HeaderValue)> {
        self.credential.as_ref().map(|(n, v)| (n, v))
    }

    pub fn authority(&self) -> &str {
        self.origin.authority().map_or("", Authority::as_str)
    }

    pub fn is_loopback(&self) -> bool {
        matches!(self.origin.host(), Some("127.0.0.1" | "localhost" | "[::1]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_uri_and_credentials_are_precomputed() {
        let e = Endpoint::build(0, "http://127.0.0.1:1/v1/", EndpointKind::Openai, "us-east", None, None, Some("k"))
            .unwrap();
        assert_eq!(e.origin().to_string(), "http://127.0.0.1:1/");
        assert_eq!(e.host(), "127.0.0.1:1");
        assert_eq!(e.authority(), "127.0.0.1:1");
        assert!(e.is_loopback());
        assert_eq!(e.path(Operation::ChatCompletions).as_str(), "/v1/chat/completions");
        let (name, value) = e.credential().unwrap();
        assert_eq!((name.as_str(), value.as_bytes()), ("authorization", &b"Bearer k"[..]));
        assert!(value.is_sensitive());

        let a = Endpoint::build(
            0,
            "https://r.openai.azure.com/openai",
            EndpointKind::Azure,
            "eu-west",
            Some("gpt4o-prod"),
            Some("2024-10-21"),
            Some("k"),
        )
        .unwrap();
        assert_eq!(a.origin().to_string(), "https://r.openai.azure.com/");
        assert!(!a.is_loopback());
        let v6 = Endpoint::build(0, "http://[::1]:8081/v1", EndpointKind::Openai, "x", None, None, None).unwrap();
        assert!(v6.is_loopback());
        assert_eq!(
            a.path(Operation::Embeddings).as_str(),
            "/openai/deployments/gpt4o-prod/embeddings?api-version=2024-10-21"
        );
        assert_eq!(a.credential().unwrap().0.as_str(), "api-key");
        assert_eq!(
            a.stored_path(Stored::Cancel, "resp_1", Some("api-version=2025-04-01-preview")).unwrap().as_str(),
            "/openai/responses/resp_1/cancel?api-version=2024-10-21"
        );
        assert_eq!(
            a.stored_path(Stored::InputItems, "r", Some("limit=5&api-version=x&after=i_1")).unwrap().as_str(),
            "/openai/responses/r/input_items?api-version=2024-10-21&limit=5&after=i_1"
        );
        assert_eq!(e.stored_path(Stored::Retrieve, "resp_1", None).unwrap().as_str(), "/v1/responses/resp_1");
        assert_eq!(
            e.stored_path(Stored::Retrieve, "resp_1", Some("stream=true&starting_after=4")).unwrap().as_str(),
            "/v1/responses/resp_1?stream=true&starting_after=4"
        );
        assert_eq!(e.stored_path(Stored::InputItems, "r", Some("")).unwrap().as_str(), "/v1/responses/r/input_items");

        let c =
            Endpoint::build(0, "https://api.anthropic.com/v1", EndpointKind::Anthropic, "us", None, None, Some("k"))
                .unwrap();
        assert_eq!(c.path(Operation::Messages).as_str(), "/v1/messages");
        assert_eq!(c.path(Operation::CountTokens).as_str(), "/v1/messages/count_tokens");
        let (name, value) = c.credential().unwrap();
        assert_eq!((name.as_str(), value.as_bytes()), ("x-api-key", &b"k"[..]));
        assert!(EndpointKind::Anthropic.serves(Operation::CountTokens));
        assert!(!EndpointKind::Anthropic.serves(Operation::ChatCompletions));
        assert!(!EndpointKind::Azure.serves(Operation::Messages));
    }

    #[test]
    fn endpoint_bad_urls_are_refused() {
        let b = |url, kind, d| Endpoint::build(0, url, kind, "x", d, None, None).err();
        assert_eq!(b("ftp://h/v1", EndpointKind::Openai, None), Some(EndpointError::Scheme));
        assert_eq!(b("http://u:p@h/v1", EndpointKind::Openai, None), Some(EndpointError::ExtraParts));
        assert_eq!(b("http://h/v1?key=1", EndpointKind::Openai, None), Some(EndpointError::ExtraParts));
        assert_eq!(b("/v1", EndpointKind::Openai, None), Some(EndpointError::InvalidUrl));
        assert_eq!(b("http://h/openai", EndpointKind::Azure, Some("d")), Some(EndpointError::AzureParts));
        assert_eq!(b("http://h/v1", EndpointKind::Openai, Some("d")), Some(EndpointError::NotAzure));
    }
}
