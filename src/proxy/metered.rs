//! The upstream's response body on its way to the client: every frame is passed on the moment it
//! arrives (frames that arrived together, together: see `coalesce`), while usage is read from it
//! on the side ([`crate::usage`]). How the body ended, and the usage read, go once to whoever
//! finishes the request (an [`OnEnd`]): when the last frame is read, when the upstream fails, or
//! when the client goes away and the body is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::client::UpstreamBody;
use super::coalesce::Coalesce;
use crate::usage::{Usage, UsageScanner};

/// How a forwarded response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// Read to its end.
    Complete,
    /// The upstream failed partway through.
    UpstreamFailed,
    /// Dropped before its end: the client went away.
    ClientGone,
}

/// Told once how the body ended, with the usage read from it.
pub trait OnEnd {
    fn on_end(&mut self, end: BodyEnd, usage: Option<Usage>);
}

pub struct Metered<E: OnEnd> {
    inner: Coalesce<UpstreamBody>,
    scanner: UsageScanner,
    on_end: Option<E>,
}

impl<E: OnEnd> Metered<E> {
    pub fn new(inner: UpstreamBody, scanner: UsageScanner, on_end: E) -> Self {
        Self { inner: Coalesce::new(inner), scanner, on_end: Some(on_end) }
    }

    fn end(&mut self, end: BodyEnd) {
        if let Some(mut e) = self.on_end.take() {
            let usage = if end == BodyEnd::UpstreamFailed { None } else { self.scanner.finish() };
            e.on_end(end, usage);
        }
    }
}

impl<E: OnEnd + Unpin> Body for Metered<E> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.scanner.feed(data);
                }
                // A body of known length may not be polled past its last frame: end now, so the
                // accounting is done before the client has the last byte.
                if this.inner.is_end_stream() {
                    this.end(BodyEnd::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(BodyEnd::UpstreamFailed);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.end(BodyEnd::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<E: OnEnd> Drop for Metered<E> {
    fn drop(&mut self) {
        // The client went away, or hyper saw the end without polling past it.
        let end = if self.inner.is_end_stream() { BodyEnd::Complete } else { BodyEnd::ClientGone };
        self.end(end);
    }
}
