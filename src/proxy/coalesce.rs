//! Forwards a response body's data frames that are already available as one frame, so a burst of
//! SSE events costs one write to the client instead of one per event. It never waits for more: as
//! soon as the upstream has nothing ready, what was read goes out, so a chunk that arrives alone
//! goes out alone and at once.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

/// The most bytes joined into one frame.
const MAX_JOINED: usize = 64 * 1024;

pub struct Coalesce<B: Body> {
    inner: B,
    /// Trailers or an error read after data that went out first; returned on the next poll.
    held: Option<Result<Frame<Bytes>, B::Error>>,
    ended: bool,
}

impl<B: Body> Coalesce<B> {
    pub fn new(inner: B) -> Self {
        Self { inner, held: None, ended: false }
    }
}

/// The first frame is kept as it is; only a second one makes a copy.
#[derive(Default)]
struct Joined {
    first: Option<Bytes>,
    rest: Option<BytesMut>,
}

impl Joined {
    fn push(&mut self, data: Bytes) {
        let Some(first) = &self.first else {
            self.first = Some(data);
            return;
        };
        let buf = self.rest.get_or_insert_with(|| {
            let mut b = BytesMut::with_capacity((first.len() + data.len()).max(4096));
            b.extend_from_slice(first);
            b
        });
        buf.extend_from_slice(&data);
    }

    fn len(&self) -> usize {
        match (&self.first, &self.rest) {
            (_, Some(b)) => b.len(),
            (Some(f), None) => f.len(),
            (None, None) => 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn into_frame<E>(self) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        let data = match (self.first, self.rest) {
            (_, Some(b)) => b.freeze(),
            (Some(f), None) => f,
            (None, None) => return Poll::Ready(None),
        };
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

impl<B> Body for Coalesce<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(held) = this.held.take() {
            return Poll::Ready(Some(held));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let mut joined = Joined::default();
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        joined.push(data);
                        // A body of known length may not be polled past its last frame.
                        if this.inner.is_end_stream() {
                            this.ended = true;
                            return joined.into_frame();
                        }
                        if joined.len() >= MAX_JOINED {
                            return joined.into_frame();
                        }
                    }
                    Err(trailers) if joined.is_empty() => return Poll::Ready(Some(Ok(trailers))),
                    Err(trailers) => {
                        this.held = Some(Ok(trailers));
                        return joined.into_frame();
                    }
                },
                Poll::Ready(Some(Err(e))) if joined.is_empty() => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Err(e))) => {
                    this.held = Some(Err(e));
                    return joined.into_frame();
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    return joined.into_frame();
                }
                Poll::Pending if joined.is_empty() => return Poll::Pending,
                Poll::Pending => return joined.into_frame(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use super::*;

    /// A body that yields scripted polls: `Some(frame)` is ready, `None` is one `Pending`.
    struct Script(VecDeque<Option<Frame<Bytes>>>);

    impl Body for Script {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.0.pop_front() {
                Some(Some(f)) => Poll::Ready(Some(Ok(f))),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                None => Poll::Ready(None),
            }
        }
    }

    fn data(s: &'static str) -> Option<Frame<Bytes>> {
        Some(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    /// Polls to the end, recording each frame's data, or `|` for a `Pending`.
    fn drain(script: Vec<Option<Frame<Bytes>>>) -> Vec<String> {
        let mut body = Coalesce::new(Script(script.into()));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(d) => out.push(String::from_utf8(d.to_vec()).unwrap()),
                    Err(_) => out.push("<trailers>".into()),
                },
                Poll::Ready(Some(Err(e))) => match e {},
                Poll::Ready(None) => return out,
                Poll::Pending => out.push("|".into()),
            }
        }
    }

    #[test]
    fn a_burst_goes_out_as_one_frame() {
        assert_eq!(drain(vec![data("a"), data("b"), data("c")]), ["abc"]);
    }

    #[test]
    fn a_chunk_that_arrives_alone_is_not_held_back() {
        // Data, then the upstream has nothing: the data goes out at once, not joined with what
        // comes after the gap.
        assert_eq!(drain(vec![data("a"), None, data("b"), data("c"), None, data("d")]), ["a", "bc", "d"]);
        // Nothing ready: the caller is told to wait.
        assert_eq!(drain(vec![None, data("a")]), ["|", "a"]);
    }

    #[test]
    fn trailers_follow_the_data_read_before_them() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-t", http::HeaderValue::from_static("1"));
        let script = vec![data("a"), data("b"), Some(Frame::trailers(trailers))];
        assert_eq!(drain(script), ["ab", "<trailers>"]);
    }

    #[test]
    fn joined_frames_stop_at_the_size_cap() {
        let big = Some(Frame::data(Bytes::from("x".repeat(MAX_JOINED))));
        let out = drain(vec![big, data("y")]);
        assert_eq!(out.iter().map(String::len).collect::<Vec<_>>(), [MAX_JOINED, 1]);
    }
}
