//! The first request's deadline: from accept until the first request's head has been read
//! whole. hyper's own header-read timer starts only once hyper-util has told HTTP/1 from HTTP/2,
//! and that sniffing waits for bytes without a clock: a connection that sends nothing, or a few
//! bytes of a preface, would hold its slot (and with enough of them, the listener) forever. Here
//! the connection's reads fail once the deadline passes, unless a request reached the service
//! first; the service marks that ([`Marked`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::auth::PeerCertificate;

/// A connection whose reads time out unless its first request arrived in time.
pub struct FirstRequest<T> {
    io: T,
    /// Dropped once a request arrived.
    deadline: Option<Pin<Box<Sleep>>>,
    requests: Arc<AtomicU64>,
}

impl<T> FirstRequest<T> {
    /// The connection, and the count of requests its service has started.
    pub fn new(io: T, within: Duration) -> (Self, Arc<AtomicU64>) {
        let requests = Arc::new(AtomicU64::new(0));
        let deadline = Some(Box::pin(tokio::time::sleep(within)));
        (Self { io, deadline, requests: requests.clone() }, requests)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstRequest<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut() {
            if this.requests.load(Ordering::Relaxed) > 0 {
                this.deadline = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstRequest<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A connection's service, counting the requests that arrive (for the first request's deadline
/// and the idle timeout).
/// On a TLS connection whose client presented a verified certificate, it also hands each request
/// that certificate's names (an extension the gateway's authentication reads).
#[derive(Clone)]
pub struct Marked<S> {
    inner: S,
    requests: Arc<AtomicU64>,
    peer: Option<PeerCertificate>,
}

impl<S> Marked<S> {
    pub fn new(inner: S, requests: Arc<AtomicU64>) -> Self {
        Self { inner, requests, peer: None }
    }

    pub fn with_peer(self, peer: Option<PeerCertificate>) -> Self {
        Self { peer, ..self }
    }
}

impl<S: tower::Service<http::Request<B>>, B> tower::Service<http::Request<B>> for Marked<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> S::Future {
        if let Some(peer) = &self.peer {
            req.extensions_mut().insert(peer.clone());
        }
        // Only this connection's task calls it: a plain load and store, not a locked add.
        let n = self.requests.load(Ordering::Relaxed);
        self.requests.store(n.wrapping_add(1), Ordering::Relaxed);
        self.inner.call(req)
    }
}
