//! The hash chain: how a record's line is sealed with its own hash, and how a reader takes the
//! seal off again. Shared by the writer and `customs audit verify`, so the two cannot disagree.
//!
//! A line is `{..."seq":N,"prev":"<hex>",...,"hash":"<hex>"}`, where `hash` covers every byte of
//! the line before `,"hash"` (plus the closing brace), and `prev` is the previous record's
//! `hash`. An edit anywhere changes that record's hash; a removal, insertion or reordering breaks
//! `seq` or `prev` for the record after it. With a key (HMAC-SHA-256) nobody without the key can
//! forge a consistent chain after the fact; without one, the chain head should be anchored
//! elsewhere (it is logged at every rotation and at shutdown).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// `prev` of the first record ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const SUFFIX_LEN: usize = r#","hash":""#.len() + 64 + r#""}"#.len();

#[derive(Clone)]
pub enum Sealer {
    Sha256,
    Hmac(Hmac<Sha256>),
}

impl Sealer {
    /// Keyed when `key` is given. Any key length is accepted by HMAC.
    pub fn new(key: Option<&[u8]>) -> Self {
        match key.and_then(|k| Hmac::<Sha256>::new_from_slice(k).ok()) {
            Some(mac) => Self::Hmac(mac),
            None => Self::Sha256,
        }
    }

    pub fn is_keyed(&self) -> bool {
        matches!(self, Self::Hmac(_))
    }

    /// The hash of a record body (a JSON object without `hash`).
    pub fn hash(&self, body: &[u8]) -> [u8; 32] {
        match self {
            Self::Sha256 => Sha256::digest(body).into(),
            Self::Hmac(mac) => {
                let mut mac = mac.clone();
                mac.update(body);
                mac.finalize().into_bytes().into()
            }
        }
    }

    /// Seals the JSON object at `out[start..]` (ending in `}`) in place into one line, and
    /// writes its hash, as hex, into `hash`.
    pub fn seal_in_place(&self, out: &mut Vec<u8>, start: usize, hash: &mut [u8; 64]) {
        let digest = self.hash(out.get(start..).unwrap_or_default());
        // Both are fixed sizes: 32 bytes encode to exactly 64 hex digits.
        let _ = hex::encode_to_slice(digest, hash);
        if out.last() == Some(&b'}') {
            out.pop();
        }
        out.extend_from_slice(br#","hash":""#);
        out.extend_from_slice(hash);
        out.extend_from_slice(b"\"}\n");
    }
}

/// A sealed line split into the body that was hashed and the hash it claims.
pub struct Unsealed<'a> {
    pub claimed: &'a str,
    /// The body as hashed: the line without the `hash` member, closing brace restored.
    pub body: Vec<u8>,
}

/// Takes the seal off one line (without its newline); `None` if the line does not end in one.
pub fn unseal(line: &[u8]) -> Option<Unsealed<'_>> {
    if line.len() < SUFFIX_LEN + 2 {
        return None;
    }
    let (head, suffix) = line.split_at(line.len() - SUFFIX_LEN);
    let hex = suffix.strip_prefix(br#","hash":""#)?.strip_suffix(br#""}"#)?;
    if !hex.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
        return None;
    }
    let claimed = std::str::from_utf8(hex).ok()?;
    let mut body = Vec::with_capacity(head.len() + 1);
    body.extend_from_slice(head);
    body.push(b'}');
    Some(Unsealed { claimed, body })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seal_then_unseal_round_trips_and_detects_edits() {
        for sealer in [Sealer::new(None), Sealer::new(Some(b"k"))] {
            let mut line = br#"{"seq":1,"prev":"00"}"#.to_vec();
            let mut hash = [0u8; 64];
            sealer.seal_in_place(&mut line, 0, &mut hash);
            let hex = std::str::from_utf8(&hash).unwrap();
            assert_eq!(line.last(), Some(&b'\n'));
            let line = &line[..line.len() - 1];
            serde_json::from_slice::<serde_json::Value>(line).unwrap();
            let u = unseal(line).unwrap();
            assert_eq!(u.claimed, hex);
            assert_eq!(hex::encode(sealer.hash(&u.body)), hex);
            let edited = String::from_utf8(line.to_vec()).unwrap().replace("\"seq\":1", "\"seq\":2");
            let u = unseal(edited.as_bytes()).unwrap();
            assert_ne!(hex::encode(sealer.hash(&u.body)), u.claimed);
        }
        assert!(unseal(br#"{"seq":1}"#).is_none());
    }

    #[test]
    fn keyed_and_plain_hashes_differ() {
        assert_ne!(Sealer::new(None).hash(b"{}"), Sealer::new(Some(b"key")).hash(b"{}"));
        assert_ne!(Sealer::new(Some(b"a")).hash(b"{}"), Sealer::new(Some(b"b")).hash(b"{}"));
    }
}
