//! A stream's response body: every event ready at once, or fed from a channel so the mock can
//! pace, hold and abort the stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::mpsc;

pub enum EventBody {
    /// All events are ready: they go out as fast as the connection takes them, as from an
    /// upstream that has already generated them (a burst).
    Ready(std::vec::IntoIter<Bytes>),
    Paced(mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut *self {
            Self::Ready(events) => Poll::Ready(events.next().map(|e| Ok(Frame::data(e)))),
            Self::Paced(rx) => rx.poll_recv(cx).map(|item| item.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Ready(events) if events.len() == 0)
    }
}
