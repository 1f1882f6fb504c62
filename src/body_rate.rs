//! A minimum rate for request bodies. The body's absolute deadline (`server.body_read_timeout`)
//! lets a client that trickles a byte a second hold a slot and its buffered bytes for that whole
//! time; here, once a grace period is over, the body must keep arriving at an average of at
//! least `bytes_per_second` since it started, or it fails with [`TooSlow`].
//!
//! The clock is armed only when the body first has to wait for bytes: a body that arrived with
//! its head (the common case) costs no timer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The body fell below the minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived more slowly than the minimum rate")]
pub struct TooSlow;

/// `server.min_body_rate` and `server.body_rate_grace`.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    pub bytes_per_second: u64,
    pub grace: Duration,
}

pub struct RateChecked<B> {
    inner: B,
    rate: MinRate,
    started: Instant,
    received: u64,
    /// When the rate is broken unless more arrives; armed on the first wait.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> RateChecked<B> {
    pub fn new(inner: B, rate: MinRate) -> Self {
        Self { inner, rate, started: Instant::now(), received: 0, deadline: None }
    }

    /// The moment the average falls below the rate if nothing more arrives.
    fn due(&self) -> Instant {
        let per = self.rate.bytes_per_second.max(1);
        let earned = Duration::from_secs(self.received / per)
            + Duration::from_nanos((self.received % per) * 1_000_000_000 / per);
        self.started + self.rate.grace + earned
    }
}

impl<B> Body for RateChecked<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let due = this.due();
                    if let Some(deadline) = &mut this.deadline {
                        deadline.as_mut().reset(due);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.rate.bytes_per_second == 0 => Poll::Pending,
            Poll::Pending => {
                let due = this.due();
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TooSlow)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
