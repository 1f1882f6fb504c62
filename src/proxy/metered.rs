//! The upstream's response body on its way to the client: every frame is passed on the moment it
//! arrives (frames that arrived together, together: see `coalesce`), while usage is read from it
//! on the side ([`crate::usage`]); a stream whose usage only the gateway asked for goes out whole
//! event by whole event, without that usage. How the body ended, and the usage read, go once to whoever
//! finishes the request (an [`OnEnd`]): when the last frame is read, when the upstream fails, or
//! when the client goes away and the body is dropped.
//!
//! A stream has two clocks ([`StreamTimers`]): one since its last event, one since it started.
//! When either runs out the client gets a last SSE event carrying an OpenAI-shaped error, the
//! upstream body is dropped (which closes its connection), and the stream ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::client::UpstreamBody;
use super::coalesce::Coalesce;
use crate::owners::IdReader;
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
    /// A stream sent nothing for longer than its idle timeout.
    IdleTimeout,
    /// A stream ran past its maximum duration.
    MaxDuration,
}

/// How long a stream may go without an event, and how long it may run.
#[derive(Debug, Clone, Copy)]
pub struct StreamTimers {
    pub idle: Duration,
    pub max: Duration,
}

/// The running clocks of one stream.
struct Clocks {
    idle: Duration,
    idle_at: Pin<Box<Sleep>>,
    end_at: Pin<Box<Sleep>>,
}

/// Told once how the body ended, with the usage read from it; and, when it asks, the id of the
/// stored response the body returns, before the client has it.
pub trait OnEnd {
    fn on_end(&mut self, end: BodyEnd, usage: Option<Usage>);

    /// Whether it wants [`Self::on_response_id`].
    fn reads_id(&self) -> bool {
        false
    }

    fn on_response_id(&mut self, _id: &str) {}
}

pub struct Metered<E: OnEnd> {
    /// `None` once a clock ran out: the upstream is let go of.
    inner: Option<Coalesce<UpstreamBody>>,
    scanner: UsageScanner,
    /// Only when `on_end` wants the response's id.
    ids: Option<IdReader>,
    on_end: Option<E>,
    /// Only for streams.
    clocks: Option<Clocks>,
    /// Anthropic's API: a stream cut by a clock ends with its `error` event.
    anthropic: bool,
}

impl<E: OnEnd> Metered<E> {
    /// `timers` apply when the response is a stream (the scanner reads SSE).
    pub fn new(inner: UpstreamBody, scanner: UsageScanner, on_end: E, timers: StreamTimers, anthropic: bool) -> Self {
        let clocks = scanner.is_stream().then(|| {
            let now = Instant::now();
            Clocks {
                idle: timers.idle,
                idle_at: Box::pin(tokio::time::sleep_until(now + timers.idle)),
                end_at: Box::pin(tokio::time::sleep_until(now + timers.max)),
            }
        });
        let ids = on_end.reads_id().then(|| IdReader::new(scanner.is_stream()));
        Self { inner: Some(Coalesce::new(inner)), scanner, ids, on_end: Some(on_end), clocks, anthropic }
    }

    /// A clock that ran out, if one did (registering for the wake-up otherwise).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<BodyEnd> {
        let c = self.clocks.as_mut()?;
        if c.end_at.as_mut().poll(cx).is_ready() {
            return Some(BodyEnd::MaxDuration);
        }
        c.idle_at.as_mut().poll(cx).is_ready().then_some(BodyEnd::IdleTimeout)
    }

    /// The body is over: a JSON body's id, if its first frame did not show it.
    fn last_id(&mut self) {
        if let Some(id) = self.ids.as_mut().and_then(IdReader::finish)
            && let Some(e) = self.on_end.as_mut()
        {
            e.on_response_id(&id);
        }
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
        loop {
            // Gone once a clock ran out and its error event was sent.
            let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
            return match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(c) = this.clocks.as_mut() {
                        c.idle_at.as_mut().reset(Instant::now() + c.idle);
                    }
                    let frame = match frame.into_data() {
                        Ok(data) => {
                            if let Some(id) = this.ids.as_mut().and_then(|r| r.read(&data))
                                && let Some(e) = this.on_end.as_mut()
                            {
                                e.on_response_id(&id);
                            }
                            let mut data = this.scanner.pass(data);
                            // A body of known length may not be polled past its last frame: end
                            // now, so the accounting is done before the client has the last byte.
                            if this.inner.as_ref().is_some_and(Body::is_end_stream) {
                                this.last_id();
                                if let Some(rest) = this.scanner.rest() {
                                    data = [data, rest].concat().into();
                                }
                                this.end(BodyEnd::Complete);
                            } else if data.is_empty() {
                                // Everything read so far was held back or hidden.
                                continue;
                            }
                            Frame::data(data)
                        }
                        Err(frame) => frame,
                    };
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    this.end(BodyEnd::UpstreamFailed);
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Ready(None) => {
                    this.last_id();
                    this.end(BodyEnd::Complete);
                    this.inner = None;
                    // What a hidden stream held back of an event it never ended.
                    Poll::Ready(this.scanner.rest().map(|rest| Ok(Frame::data(rest))))
                }
                Poll::Pending => match this.expired(cx) {
                    Some(end) => {
                        // Let go of the upstream (its connection closes), then tell the client why.
                        this.inner = None;
                        this.end(end);
                        Poll::Ready(Some(Ok(Frame::data(error_event(end, this.anthropic)))))
                    }
                    None => Poll::Pending,
                },
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) if !self.scanner.rewrites() => inner.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

/// The last event of a stream cut by one of its clocks, in the API's own error shape: OpenAI's,
/// or Anthropic's `error` event.
fn error_event(end: BodyEnd, anthropic: bool) -> Bytes {
    let (code, message) = match end {
        BodyEnd::MaxDuration => ("stream_max_duration", "The stream ran past the gateway's maximum stream duration."),
        _ => ("stream_idle_timeout", "The upstream sent nothing for longer than the gateway's stream idle timeout."),
    };
    if anthropic {
        let error = serde_json::json!({ "type": "error", "error": { "type": "timeout_error", "message": message, "code": code } });
        return Bytes::from(format!("event: error\ndata: {error}\n\n"));
    }
    let error = serde_json::json!({ "error": { "message": message, "type": "timeout", "param": null, "code": code } });
    Bytes::from(format!("data: {error}\n\n"))
}

impl<E: OnEnd> Drop for Metered<E> {
    fn drop(&mut self) {
        // The client went away, or hyper saw the end without polling past it.
        let end =
            if self.inner.as_ref().is_some_and(Body::is_end_stream) { BodyEnd::Complete } else { BodyEnd::ClientGone };
        self.end(end);
    }
}
