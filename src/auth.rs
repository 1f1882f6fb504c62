//! Authentication: the client's API key, from `Authorization: Bearer`, Azure's `api-key` or
//! Anthropic's `x-api-key`, is
//! hashed with SHA-256 and looked up among the tenants' key digests. Plaintext keys are never stored
//! or logged; the final digest comparison is constant-time.
//!
//! A client certificate the TLS listener verified (mTLS) is a second credential: a name it carries
//! (a subject alternative name or the subject's common name) that a tenant lists identifies that
//! tenant, alone or beside a key of the same tenant; a tenant may require both.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

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
    #[error("The API key and the client certificate belong to different tenants.")]
    CertificateMismatch,
    #[error("This tenant authenticates with both an API key and a client certificate.")]
    CertificateRequired,
}

/// The names of the verified client certificate of the connection a request came on.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    pub names: Arc<[Box<str>]>,
}

/// Tenant key digests, by their first eight bytes. Indexing by a prefix of a SHA-256 output leaks
/// nothing useful through timing (and needs no further hashing); the full 32 bytes are then
/// compared in constant time.
#[derive(Default)]
pub struct KeyIndex {
    by_prefix: HashMap<u64, (Digest, TenantIdx), BuildHasherDefault<PrefixHasher>>,
    /// Digests whose prefix another digest already has: in practice none.
    shared_prefix: Vec<(Digest, TenantIdx)>,
    /// Client-certificate names, to the tenant that lists each.
    certificates: HashMap<Box<str>, TenantIdx>,
    /// Tenants that must present a key and a certificate both.
    both: Box<[TenantIdx]>,
}

/// Hashes a digest's prefix as itself: it is already uniformly distributed.
#[derive(Default)]
struct PrefixHasher(u64);

impl std::hash::Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 prefixes are hashed; any other input still hashes, just not as fast.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

// === impl KeyIndex ===

impl KeyIndex {
    pub fn build(entries: impl IntoIterator<Item = (Digest, TenantIdx)>) -> Self {
        let entries = entries.into_iter();
        let mut index = Self::with_capacity(entries.size_hint().0);
        for (digest, tenant) in entries {
            index.insert(digest, tenant);
        }
        index
    }

    pub fn with_capacity(n: usize) -> Self {
        Self { by_prefix: HashMap::with_capacity_and_hasher(n, BuildHasherDefault::default()), ..Self::default() }
    }

    /// Adds a key digest; the tenant that already had it, if one did (it keeps it).
    pub fn insert(&mut self, digest: Digest, tenant: TenantIdx) -> Option<TenantIdx> {
        if let Some(had) = self.lookup(&digest) {
            return Some(had);
        }
        match self.by_prefix.entry(prefix(&digest)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((digest, tenant));
            }
            std::collections::hash_map::Entry::Occupied(_) => self.shared_prefix.push((digest, tenant)),
        }
        None
    }

    /// How many key digests it holds.
    pub fn len(&self) -> usize {
        self.by_prefix.len() + self.shared_prefix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the client-certificate names, and the tenants that need a key and a certificate.
    pub fn with_certificates(mut self, names: HashMap<Box<str>, TenantIdx>, both: Vec<TenantIdx>) -> Self {
        self.certificates = names;
        self.both = both.into();
        self
    }

    /// The tenant a certificate identifies: none when its names point at no tenant or at two.
    fn certificate(&self, peer: &PeerCertificate) -> Result<Option<TenantIdx>, AuthError> {
        let mut found = None;
        for t in peer.names.iter().filter_map(|n| self.certificates.get(n)) {
            match found {
                Some(f) if f != *t => return Err(AuthError::CertificateMismatch),
                _ => found = Some(*t),
            }
        }
        Ok(found)
    }

    pub fn lookup(&self, digest: &Digest) -> Option<TenantIdx> {
        let mut found = None;
        let candidates = self.by_prefix.get(&prefix(digest)).into_iter().chain(&self.shared_prefix);
        for (d, t) in candidates {
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

/// Finds the tenant for a request's credentials: its key, and the client certificate of its
/// connection when there is one.
pub fn authenticate(
    keys: &KeyIndex,
    headers: &HeaderMap,
    peer: Option<&PeerCertificate>,
) -> Result<TenantIdx, AuthError> {
    let by_certificate = match peer {
        Some(p) if !keys.certificates.is_empty() => keys.certificate(p)?,
        _ => None,
    };
    let tenant = match (presented_key(headers), by_certificate) {
        (Err(AuthError::Missing), Some(t)) => {
            return if keys.both.contains(&t) { Err(AuthError::CertificateRequired) } else { Ok(t) };
        }
        (Err(e), _) => return Err(e),
        (Ok(key), _) => key_tenant(keys, key)?,
    };
    match by_certificate {
        Some(t) if t != tenant => Err(AuthError::CertificateMismatch),
        None if keys.both.contains(&tenant) => Err(AuthError::CertificateRequired),
        _ => Ok(tenant),
    }
}

/// The tenant a key belongs to. One function for the server and `customs explain --key`, so
/// that explain resolves a key exactly as a request's key is resolved.
pub fn key_tenant(keys: &KeyIndex, key: &[u8]) -> Result<TenantIdx, AuthError> {
    if key.is_empty() || !key.iter().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::Malformed);
    }
    keys.lookup(&digest(key)).ok_or(AuthError::Unknown)
}

/// The one key a request presents. Several headers, or two different keys, are refused rather
/// than resolved by picking one. Its shape is checked by [`key_tenant`].
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
    key.ok_or(AuthError::Missing)
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

    #[test]
    fn digests_that_share_a_prefix_are_both_found() {
        let a = [7u8; 32];
        let mut b = a;
        b[31] = 8;
        let index = KeyIndex::build([(a, 1), (b, 2)]);
        assert_eq!((index.lookup(&a), index.lookup(&b), index.len()), (Some(1), Some(2), 2));
        let mut c = a;
        c[0] = 9;
        assert_eq!(index.lookup(&c), None);
        let mut index = index;
        assert_eq!(index.insert(b, 3), Some(2), "a digest stays with its first tenant");
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn by_key(keys: &KeyIndex, headers: &HeaderMap) -> Result<TenantIdx, AuthError> {
        authenticate(keys, headers, None)
    }

    fn index() -> KeyIndex {
        KeyIndex::build([(digest(b"sk-a"), 0), (digest(b"sk-b"), 1)])
    }

    #[test]
    fn auth_bearer_or_api_key_finds_tenant() {
        let keys = index();
        assert_eq!(by_key(&keys, &headers(&[("authorization", "Bearer sk-a")])), Ok(0));
        assert_eq!(by_key(&keys, &headers(&[("authorization", "bearer sk-b")])), Ok(1));
        assert_eq!(by_key(&keys, &headers(&[("api-key", "sk-b")])), Ok(1));
        assert_eq!(by_key(&keys, &headers(&[("authorization", "Bearer sk-a"), ("api-key", "sk-a")])), Ok(0));
        assert_eq!(by_key(&keys, &headers(&[("x-api-key", "sk-b")])), Ok(1));
        assert_eq!(by_key(&keys, &headers(&[("x-api-key", "sk-a"), ("api-key", "sk-a")])), Ok(0));
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
            assert_eq!(by_key(&keys, &h), Err(*want), "{pairs:?}");
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

    #[test]
    fn auth_a_client_certificate_identifies_its_tenant_alone_or_beside_its_key() {
        let names = HashMap::from([("a.example".into(), 0), ("b.example".into(), 1)]);
        let keys = index().with_certificates(names, vec![1]);
        let peer = |names: &[&str]| PeerCertificate { names: names.iter().map(|n| Box::from(*n)).collect() };
        let none = headers(&[]);
        let key_a = headers(&[("authorization", "Bearer sk-a")]);
        let key_b = headers(&[("authorization", "Bearer sk-b")]);
        assert_eq!(authenticate(&keys, &none, Some(&peer(&["a.example"]))), Ok(0), "the certificate alone");
        assert_eq!(authenticate(&keys, &key_a, Some(&peer(&["x", "a.example"]))), Ok(0), "both, agreeing");
        assert_eq!(authenticate(&keys, &key_a, Some(&peer(&["unlisted"]))), Ok(0), "an unlisted one is no credential");
        assert_eq!(authenticate(&keys, &key_b, Some(&peer(&["a.example"]))), Err(AuthError::CertificateMismatch));
        assert_eq!(
            authenticate(&keys, &none, Some(&peer(&["a.example", "b.example"]))),
            Err(AuthError::CertificateMismatch),
            "one certificate naming two tenants"
        );
        // Tenant 1 needs both.
        assert_eq!(authenticate(&keys, &key_b, None), Err(AuthError::CertificateRequired));
        assert_eq!(authenticate(&keys, &none, Some(&peer(&["b.example"]))), Err(AuthError::CertificateRequired));
        assert_eq!(authenticate(&keys, &key_b, Some(&peer(&["b.example"]))), Ok(1));
        assert_eq!(authenticate(&keys, &none, Some(&peer(&["unlisted"]))), Err(AuthError::Missing));
    }
}
