//! Authentication on any `Authorization`, `api-key` and `x-api-key` headers and any client
//! certificate names: `auth::authenticate` answers exactly as a plain model of its rules does,
//! error for error, so a request is never let in under a key it did not present unambiguously.
//!
//! The input is records of a kind byte (header, certificate name, or the connection having a
//! certificate at all), a length byte and that many bytes of value.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use customs::auth::{AuthError, KeyIndex, PeerCertificate, authenticate, digest};
use customs::ids::TenantIdx;
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const KEYS: [(&str, TenantIdx); 3] = [("sk-a", 0), ("sk-b", 1), ("sk-both", 2)];
const NAMES: [(&str, TenantIdx); 4] = [("a.example", 0), ("b.example", 1), ("both.example", 2), ("b2.example", 1)];
/// The tenant that must present a key and a certificate.
const BOTH: TenantIdx = 2;

static INDEX: LazyLock<KeyIndex> = LazyLock::new(|| {
    let names: HashMap<Box<str>, TenantIdx> = NAMES.iter().map(|(n, t)| (Box::from(*n), *t)).collect();
    KeyIndex::build(KEYS.iter().map(|(k, t)| (digest(k.as_bytes()), *t))).with_certificates(names, vec![BOTH])
});

fuzz_target!(|data: &[u8]| {
    let headers_by_name = [AUTHORIZATION, HeaderName::from_static("api-key"), HeaderName::from_static("x-api-key")];
    let mut headers = HeaderMap::new();
    let mut sent: [Vec<Vec<u8>>; 3] = Default::default();
    let mut names: Vec<Box<str>> = Vec::new();
    let mut has_certificate = false;
    let mut rest = data;
    while let [kind, len, tail @ ..] = rest {
        let (value, more) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = more;
        match kind % 5 {
            k @ 0..=2 => {
                let Ok(v) = HeaderValue::from_bytes(value) else { continue };
                headers.append(headers_by_name[usize::from(k)].clone(), v);
                sent[usize::from(k)].push(value.to_vec());
            }
            3 => {
                has_certificate = true;
                if let Ok(name) = std::str::from_utf8(value) {
                    names.push(name.into());
                }
            }
            _ => has_certificate = true,
        }
    }
    let peer = has_certificate.then(|| PeerCertificate { names: Arc::from(names) });
    let got = authenticate(&INDEX, &headers, peer.as_ref());
    assert_eq!(got, model(&sent, peer.as_ref()), "{headers:?} {peer:?}");
});

/// The rules as the module states them, checked in the order it states them.
fn model(sent: &[Vec<Vec<u8>>; 3], peer: Option<&PeerCertificate>) -> Result<TenantIdx, AuthError> {
    let mut by_certificate = None;
    for name in peer.map_or(&[][..], |p| &p.names[..]) {
        let Some((_, t)) = NAMES.iter().find(|(n, _)| **n == **name) else { continue };
        match by_certificate {
            Some(other) if other != *t => return Err(AuthError::CertificateMismatch),
            _ => by_certificate = Some(*t),
        }
    }
    let key = presented(sent);
    let tenant = match (key, by_certificate) {
        (Err(AuthError::Missing), Some(t)) if t == BOTH => return Err(AuthError::CertificateRequired),
        (Err(AuthError::Missing), Some(t)) => return Ok(t),
        (Err(e), _) => return Err(e),
        (Ok(key), _) => KEYS.iter().find(|(k, _)| k.as_bytes() == key).map(|(_, t)| *t).ok_or(AuthError::Unknown)?,
    };
    match by_certificate {
        Some(t) if t != tenant => Err(AuthError::CertificateMismatch),
        None if tenant == BOTH => Err(AuthError::CertificateRequired),
        _ => Ok(tenant),
    }
}

/// One key, from at most one of each header, all that are sent the same; `Bearer` in any case.
fn presented(sent: &[Vec<Vec<u8>>; 3]) -> Result<Vec<u8>, AuthError> {
    let one = |values: &Vec<Vec<u8>>| match values.as_slice() {
        [] => Ok(None),
        [v] => Ok(Some(v.clone())),
        _ => Err(AuthError::Malformed),
    };
    let bearer = match one(&sent[0])? {
        Some(v) if v.len() >= 7 && v[..7].eq_ignore_ascii_case(b"bearer ") => Some(v[7..].to_vec()),
        Some(_) => return Err(AuthError::Malformed),
        None => None,
    };
    let others = [one(&sent[1])?, one(&sent[2])?];
    let mut key = bearer;
    for other in others.into_iter().flatten() {
        match &key {
            Some(k) if *k != other => return Err(AuthError::Conflicting),
            _ => key = Some(other),
        }
    }
    let key = key.ok_or(AuthError::Missing)?;
    if key.is_empty() || !key.iter().all(u8::is_ascii_graphic) {
        return Err(AuthError::Malformed);
    }
    Ok(key)
}
