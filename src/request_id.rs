//! `x-request-id`: kept from the client when well-formed, otherwise minted; set on the request
//! (so the upstream sees it) and on every response, allowed or refused.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use rand::Rng;
use tower::{Layer, Service};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept; longer or odder ones are replaced, not trusted into logs.
const MAX_LEN: usize = 128;

/// Mints ids as a random per-process prefix plus a counter: unique across restarts, no syscall
/// and no formatting machinery per request.
pub struct Generator {
    prefix: [u8; 12],
    counter: AtomicU64,
}

impl Generator {
    pub fn new() -> Self {
        let mut raw = [0u8; 6];
        rand::rng().fill(&mut raw);
        let mut prefix = [0u8; 12];
        // Both halves are ASCII hex digits; encode_to_slice only fails on a length mismatch.
        let _ = hex::encode_to_slice(raw, &mut prefix);
        Self { prefix, counter: AtomicU64::new(0) }
    }

    pub fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 29];
        buf[..12].copy_from_slice(&self.prefix);
        buf[12] = b'-';
        let _ = hex::encode_to_slice(n.to_be_bytes(), &mut buf[13..]);
        HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("unknown"))
    }
}

impl Default for Generator {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a client's id may be propagated: 1 to 128 of `A-Z a-z 0-9 - _ . :`.
pub fn well_formed(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_LEN && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

#[derive(Clone)]
pub struct RequestIdLayer {
    generator: Arc<Generator>,
}

impl RequestIdLayer {
    pub fn new(generator: Arc<Generator>) -> Self {
        Self { generator }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestId { inner, generator: self.generator.clone() }
    }
}

#[derive(Clone)]
pub struct RequestId<S> {
    inner: S,
    generator: Arc<Generator>,
}

// === impl RequestId ===

impl<S, B, RB> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Unpin,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = WithId<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = match req.headers().get(HEADER) {
            Some(v) if well_formed(v) && req.headers().get_all(HEADER).iter().count() == 1 => v.clone(),
            _ => self.generator.next(),
        };
        req.headers_mut().insert(HEADER, id.clone());
        WithId { inner: self.inner.call(req), id: Some(id) }
    }
}

pub struct WithId<F> {
    inner: F,
    id: Option<HeaderValue>,
}

impl<F, RB, E> Future for WithId<F>
where
    F: Future<Output = Result<Response<RB>, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut res = match Pin::new(&mut self.inner).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r?,
        };
        if let Some(id) = self.id.take() {
            res.headers_mut().insert(HEADER, id);
        }
        Poll::Ready(Ok(res))
    }
}

/// A request id copied inline (ids are at most 128 bytes), so recording one does not allocate.
#[derive(Clone, Copy)]
pub struct RequestIdBuf {
    len: u8,
    bytes: [u8; 128],
}

impl RequestIdBuf {
    pub fn new(id: &[u8]) -> Self {
        let mut bytes = [0u8; 128];
        let len = id.len().min(128);
        bytes[..len].copy_from_slice(&id[..len]);
        Self { len: len as u8, bytes }
    }

    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).ok().filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_minted_ids_are_unique_and_well_formed() {
        let g = Generator::new();
        let (a, b) = (g.next(), g.next());
        assert_ne!(a, b);
        assert!(well_formed(&a) && well_formed(&b));
        assert_eq!(a.len(), 29);
    }

    #[test]
    fn request_id_odd_client_ids_are_not_kept() {
        for bad in ["", "a b", "a\tb", "<script>", "é"] {
            if let Ok(v) = HeaderValue::from_str(bad) {
                assert!(!well_formed(&v), "{bad:?}");
            }
        }
        assert!(!well_formed(&HeaderValue::from_str(&"a".repeat(129)).unwrap()));
        assert!(well_formed(&HeaderValue::from_static("req_01:abc.DEF-9")));
    }
}
