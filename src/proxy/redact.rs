//! What an upstream's error body may show in the gateway's own log: the body with anything that
//! looks like a credential taken out. Upstreams echo keys in their errors ("Incorrect API key
//! provided: sk-…"), and the key they got is the gateway's own.

use std::sync::LazyLock;

use bytes::Bytes;
use http_body_util::BodyExt;
use regex::Regex;

use super::client::UpstreamBody;

/// The most of an error body kept for the log.
const MAX_LOGGED_BYTES: usize = 8 * 1024;
/// How long reading it may take: the client is waiting for its answer.
const READ_FOR: std::time::Duration = std::time::Duration::from_millis(500);

/// API keys as providers issue them, bearer tokens, and `key=value` pairs that name a secret.
static SECRETS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(sk-[a-z0-9_\-]{6,}|bearer\s+[^\s",}]+|(api[_-]?key|x-api-key|authorization|token|secret|password)("?\s*[:=]\s*"?)[^\s",}&]+)"#,
    )
    .ok()
});

/// The start of an upstream error body, read within a short time, for the log.
pub async fn error_body(mut body: UpstreamBody) -> Bytes {
    let mut kept = Vec::new();
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                let room = MAX_LOGGED_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
                if kept.len() >= MAX_LOGGED_BYTES {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(READ_FOR, read).await;
    Bytes::from(kept)
}

/// `text` without `secret` (the endpoint's own credential, wherever it appears) and without
/// anything shaped like a credential.
pub fn redact(text: &str, secret: Option<&str>) -> String {
    let mut out = match secret.filter(|s| s.len() >= 4) {
        Some(s) => text.replace(s, "[redacted]"),
        None => text.to_owned(),
    };
    if let Some(re) = SECRETS.as_ref() {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| match (c.get(2), c.get(3)) {
                (Some(name), Some(sep)) => format!("{}{}[redacted]", name.as_str(), sep.as_str()),
                _ => "[redacted]".to_owned(),
            })
            .into_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_takes_out_the_endpoints_key_and_anything_key_shaped() {
        let body = r#"{"error":{"message":"Incorrect API key provided: sk-proj-abc123XYZ. Also Bearer eyJhbGciOi and api_key=hunter22 and {"x-api-key": "k-777"} and upstream-secret-9"}}"#;
        let out = redact(body, Some("upstream-secret-9"));
        for leaked in ["sk-proj-abc123XYZ", "eyJhbGciOi", "hunter22", "k-777", "upstream-secret-9"] {
            assert!(!out.contains(leaked), "{leaked} in {out}");
        }
        assert!(out.contains("Incorrect API key provided: [redacted]"), "{out}");
        assert!(out.contains("api_key=[redacted]"), "{out}");
        assert_eq!(redact("model not found", None), "model not found");
    }
}
