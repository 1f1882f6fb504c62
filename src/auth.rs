//! Authentication: the client's API key, from `Authorization: Bearer`, Azure's `api-key` or
//! Anthropic's `x-api-key`, is
//! hashed with SHA-256 and looked up among the tenants' key digests. Plaintext keys are never stored
//! or logged; the final digest comparison is constant-time.

use std::collections::HashMap;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};
use rand::Rng;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::TenantIdx;

pub type Digest = [u8; 32];

pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("api-key");
/// Anthropic's key header.
pub const X_API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("No API key was provided.")]
    Missing,
    #[error("The API key header is malformed.")]
    Malformed,
    #[error("Two different API keys were provided.")]
    Conflicting,
    #[error("The API key is not valid.")]
    Unknown,
}

/// Tenant key digests, bucketed by their first eight bytes. Bucketing by a prefix of a SHA-256
/// output leaks nothing useful through timing; the full 32 bytes are then compared in constant time.
#[derive(Default)]
pub struct KeyIndex {
    buckets: HashMap<u64, Box<[(Digest, TenantIdx)]>>,
}

// === impl KeyIndex ===

impl KeyIndex {
    pub fn build(entries: impl IntoIterator<Item = (Digest, TenantIdx)>) -> Self {
        let mut grouped: HashMap<u64, Vec<(Digest, TenantIdx)>> = HashMap::new();
        for (digest, tenant) in entries {
            grouped.entry(prefix(&digest)).or_default().push((digest, tenant));
        }
        Self { buckets: grouped.into_iter().map(|(k, v)| (k, v.into_boxed_slice())).collect() }
    }

    pub fn lookup(&self, digest: &Digest) -> Option<TenantIdx> {
        let bucket = self.buckets.get(&prefix(digest))?;
        let mut found = None;
        for (d, t) in bucket.iter() {
            if bool::from(d.ct_eq(digest)) {
                found = Some(*t);
            }
        }
        found
    }
}

fn prefix(d: &Digest) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&d[..8]);
    u64::from_le_bytes(p)
}

pub fn digest(key: &[u8]) -> Digest {
    Sha256::digest(key).into()
}

/// Finds the tenant for a request's credentials.
pub fn authenticate(keys: &KeyIndex, headers: &HeaderMap) -> Result<TenantIdx, AuthError> {
    let key = presented_key(headers)?;
    keys.lookup(&digest(key)).ok_or(AuthError::Unknown)
}

/// The one key a request presents. Several headers, or two different keys, are refused rather
/// than resolved by picking one.
fn presented_key(headers: &HeaderMap) -> Result<&[u8], AuthError> {
    let bearer = single(headers, &AUTHORIZATION)?
        .map(|v| {
            let (scheme, rest) = v.split_at_checked(7).ok_or(AuthError::Malformed)?;
            if scheme.eq_ignore_ascii_case(b"bearer ") { Ok(rest) } else { Err(AuthError::Malformed) }
        })
        .transpose()?;
    let mut key = bearer;
    for other in [single(headers, &API_KEY_HEADER)?, single(headers, &X_API_KEY_HEADER)?].into_iter().flatten() {
        match key {
            Some(k) if k != other => return Err(AuthError::Conflicting),
            _ => key = Some(other),
        }
    }
    let key = key.ok_or(AuthError::Missing)?;
    if key.is_empty() || !key.iter().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::Malformed);
    }
    Ok(key)
}

fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h [u8]>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// A fresh random API key: `sk-customs-` and 40 alphanumerics (about 238 bits).
pub fn generate_key() -> String {
    let mut rng = rand::rng();
    let body: String = (0..40).map(|_| char::from(rng.sample(rand::distr::Alphanumeric))).collect();
    format!("sk-customs-{body}")
}

/// Parses a `key_sha256` entry: 64 hex digits.
pub fn parse_digest(hex_digest: &str) -> Option<Digest> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn index() -> KeyIndex {
        KeyIndex::build([(digest(b"sk-a"), 0), (digest(b"sk-b"), 1)])
    }

    #[test]
    fn auth_bearer_or_api_key_finds_tenant() {
        let keys = index();
        assert_eq!(authenticate(&keys, &headers(&[("authorization", "Bearer sk-a")])), Ok(0));
        assert_eq!(authenticate(&keys, &headers(&[("authorization", "bearer sk-b")])), Ok(1));
        assert_eq!(authenticate(&keys, &headers(&[("api-key", "sk-b")])), Ok(1));
        assert_eq!(authenticate(&keys, &headers(&[("authorization", "Bearer sk-a"), ("api-key", "sk-a")])), Ok(0));
        assert_eq!(authenticate(&keys, &headers(&[("x-api-key", "sk-b")])), Ok(1));
        assert_eq!(authenticate(&keys, &headers(&[("x-api-key", "sk-a"), ("api-key", "sk-a")])), Ok(0));
    }

    #[test]
    fn auth_bad_credentials_are_refused() {
        let keys = index();
        let cases: &[(&[(&str, &str)], AuthError)] = &[
            (&[], AuthError::Missing),
            (&[("authorization", "Bearer sk-c")], AuthError::Unknown),
            (&[("authorization", "Basic sk-a")], AuthError::Malformed),
            (&[("authorization", "Bearer")], AuthError::Malformed),
            (&[("authorization", "Bearer ")], AuthError::Malformed),
            (&[("authorization", "Bearer  sk-a")], AuthError::Malformed),
            (&[("authorization", "Bearer sk-a"), ("authorization", "Bearer sk-b")], AuthError::Malformed),
            (&[("authorization", "Bearer sk-a"), ("api-key", "sk-b")], AuthError::Conflicting),
            (&[("api-key", "sk-a"), ("api-key", "sk-a")], AuthError::Malformed),
            (&[("authorization", "Bearer sk-a"), ("x-api-key", "sk-b")], AuthError::Conflicting),
            (&[("api-key", "sk-a"), ("x-api-key", "sk-b")], AuthError::Conflicting),
            (&[("x-api-key", "sk-a"), ("x-api-key", "sk-a")], AuthError::Malformed),
            (&[("x-api-key", "")], AuthError::Malformed),
        ];
        for (pairs, want) in cases {
            let mut h = HeaderMap::new();
            for (k, v) in *pairs {
                h.append(*k, HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(authenticate(&keys, &h), Err(*want), "{pairs:?}");
        }
    }

    #[test]
    fn keygen_key_is_long_and_its_digest_parses() {
        let key = generate_key();
        assert!(key.starts_with("sk-customs-") && key.len() == 51);
        let hexd = hex::encode(digest(key.as_bytes()));
        assert_eq!(parse_digest(&hexd), Some(digest(key.as_bytes())));
        assert_eq!(parse_digest("abc"), None);
    }
}
