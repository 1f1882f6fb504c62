//! Header rewriting between client and upstream. The request side is rebuilt from an explicit
//! strip list so that no client credential, hop-by-hop header, spoofable forwarding header,
//! model-selecting header or internal `x-customs-*` header ever reaches an upstream.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

use crate::auth::{API_KEY_HEADER, X_API_KEY_HEADER};
use crate::request_id;

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
        || n.contains("model")
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

/// Cleans the upstream's response headers in place. The upstream's own request id is kept under
/// another name so ours stays the one the client correlates on.
pub fn response_headers(headers: &mut HeaderMap) {
    // The upstream's rate-limit headers describe the gateway's own upstream account; the
    // client gets its tenant's limits from the gateway instead.
    let upstream_limit = |k: &HeaderName| k.as_str().starts_with("x-ratelimit-");
    // One look over the few headers a response has, instead of a lookup per name to strip:
    // a plain JSON answer usually carries none of them.
    if headers.keys().any(|k| HOP_BY_HOP.contains(k) || upstream_limit(k)) {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        let upstream_limits: Vec<HeaderName> = headers.keys().filter(|k| upstream_limit(k)).cloned().collect();
        for name in upstream_limits {
            headers.remove(name);
        }
    }
    if let Some(id) = headers.remove(request_id::HEADER) {
        headers.insert(HeaderName::from_static("x-upstream-request-id"), id);
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
        response_headers(&mut h);
        assert!(h.get("x-ratelimit-remaining-requests").is_none());
        assert_eq!(h.get("x-upstream-request-id").unwrap(), "up-1");
        assert!(h.get("x-request-id").is_none() && h.get("transfer-encoding").is_none());
        assert!(h.get("content-type").is_some());
    }
}
