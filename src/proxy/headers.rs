//! Header rewriting between client and upstream. The request side is rebuilt from an explicit
//! strip list so that no client credential, hop-by-hop header, spoofable forwarding header,
//! model-selecting header or internal `x-customs-*` header ever reaches an upstream.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

use crate::auth::{API_KEY_HEADER, X_API_KEY_HEADER};
use crate::request_id;

/// Built once: `str::contains` would set up a searcher for every header of every request.
static MODEL: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new("model"));

/// Hop-by-hop headers (RFC 9110 §7.6.1) and `Host`, which the client sets for the new authority.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Headers the gateway adds to an upstream's response.
const RESPONSE_ROOM: usize = 8;

fn strip_on_request(name: &HeaderName) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(name)
        || *name == header::HOST
        || *name == header::AUTHORIZATION
        || *name == header::COOKIE
        || *name == header::CONTENT_LENGTH
        || *name == header::FORWARDED
        || *name == API_KEY_HEADER
        || *name == X_API_KEY_HEADER
        || n.starts_with("x-forwarded-")
        || n.starts_with("x-customs-")
        || n == "openai-organization"
        || n == "openai-project"
        // Some servers read `x_forwarded_for` as `x-forwarded-for` (CGI folds both to one name).
        || n.contains('_')
        // Only the body's (or the deployment's) model is decided on: a header naming another
        // (`x-model`, `x-ms-model-mesh-model-name`) must not choose what the upstream serves.
        || MODEL.find(n.as_bytes()).is_some()
}

/// Headers named in `Connection` are hop-by-hop too.
fn connection_listed(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(name.as_str()))))
}

/// The headers sent upstream: the upstream's `Host`, the client's headers less the strip list,
/// and the upstream credential.
pub fn request_headers(
    client: &HeaderMap,
    host: &HeaderValue,
    credential: Option<(&HeaderName, &HeaderValue)>,
) -> HeaderMap {
    let has_connection = client.contains_key(header::CONNECTION);
    // hyper parses the upstream's response head into the map of the request it last sent on
    // the connection, and the gateway adds its own headers to that response (request id, policy
    // version, rate limits): room for them now saves growing the map then.
    let mut out = HeaderMap::with_capacity(client.len() + 2 + RESPONSE_ROOM);
    out.insert(header::HOST, host.clone());
    for (name, value) in client {
        if strip_on_request(name) || (has_connection && connection_listed(client, name)) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some((name, value)) = credential {
        out.insert(name.clone(), value.clone());
    }
    out
}

/// The upstream response headers a client gets: what it needs to read the body, and the
/// upstream's processing time and API version. Everything else stays behind: `server` and
/// `via` (what runs upstream), cookies, the upstream account's organization and rate limits
/// (the client gets its tenant's from the gateway), load-balancer and region headers.
const RESPONSE_ALLOWED: [HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CACHE_CONTROL,
    HeaderName::from_static("openai-processing-ms"),
    HeaderName::from_static("openai-version"),
];

/// Where an upstream's own request id goes: `x-request-id` (OpenAI, Azure) and `request-id`
/// (Anthropic) are kept under this name, so the gateway's id stays the one the client
/// correlates on.
const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");
const ANTHROPIC_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// Cuts the upstream's response headers down to [`RESPONSE_ALLOWED`], in place, keeping its
/// request id under [`UPSTREAM_REQUEST_ID`].
pub fn response_headers(headers: &mut HeaderMap) {
    let id = headers.remove(request_id::HEADER).or_else(|| headers.remove(ANTHROPIC_REQUEST_ID));
    // A response has few headers: looking again after each removal allocates nothing.
    while let Some(name) = headers.keys().find(|k| !RESPONSE_ALLOWED.contains(k)).cloned() {
        headers.remove(name);
    }
    if let Some(id) = id {
        headers.insert(UPSTREAM_REQUEST_ID, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_request_headers_strip_client_credentials_and_hops() {
        let mut client = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer sk-client"),
            ("api-key", "sk-client"),
            ("x-api-key", "sk-client"),
            ("anthropic-version", "2023-06-01"),
            ("cookie", "s=1"),
            ("host", "gateway"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-customs-purpose", "research"),
            ("openai-organization", "org-x"),
            ("content-type", "application/json"),
            ("x-request-id", "abc"),
            ("content-length", "12"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x-model", "frontier-x"),
            ("x-ms-model-mesh-model-name", "frontier-x"),
        ] {
            client.append(k, HeaderValue::from_static(v));
        }
        let cred = (header::AUTHORIZATION, HeaderValue::from_static("Bearer upstream"));
        let out = request_headers(&client, &HeaderValue::from_static("upstream:443"), Some((&cred.0, &cred.1)));
        let names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["host", "anthropic-version", "content-type", "x-request-id", "authorization"]);
        assert_eq!(out["host"], "upstream:443");
        assert_eq!(out.get_all("authorization").iter().count(), 1);
        assert_eq!(out["authorization"], "Bearer upstream");
    }

    #[test]
    fn proxy_response_headers_keep_upstream_id_aside() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("up-1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("text/event-stream"));
        h.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("9999"));
        for (k, v) in [
            ("server", "vllm/0.6.1"),
            ("set-cookie", "lb=abc"),
            ("openai-organization", "org-gateway"),
            ("x-ms-region", "internal-eastus-7"),
            ("openai-processing-ms", "12"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        response_headers(&mut h);
        let mut kept: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["content-type", "openai-processing-ms", "x-upstream-request-id"]);
        assert_eq!(h["x-upstream-request-id"], "up-1");

        // Anthropic's own request id, under the same name.
        let mut a = HeaderMap::new();
        a.insert("request-id", HeaderValue::from_static("req_011"));
        a.insert("anthropic-organization-id", HeaderValue::from_static("org"));
        response_headers(&mut a);
        assert_eq!(a.len(), 1);
        assert_eq!(a["x-upstream-request-id"], "req_011");
    }
}
