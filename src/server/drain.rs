//! Graceful drain: when a listener stops, each of its open connections finishes the request it
//! is serving and closes, instead of waiting for another one.
//!
//! hyper-util's `GracefulShutdown` does the same through a watch channel that every connection
//! polls again on each of its wake-ups: work on the path of every request (its callgrind count is
//! in the commit that replaced it), for a signal that comes once. Here a connection
//! registers for the signal on its first poll and afterwards reads one flag. One registration is
//! enough because a connection is polled only by its own spawned task, whose waker wakes that
//! same task for its whole life.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

/// The stop signal shared by one listener's connections.
#[derive(Default)]
pub struct Drain {
    stopping: AtomicBool,
    notify: Arc<Notify>,
}

impl Drain {
    /// Wraps a connection so that it shuts down gracefully once [`Drain::stop`] is called.
    pub fn watch<C: GracefulConnection>(self: &Arc<Self>, conn: C) -> Watched<C> {
        Watched {
            conn: Box::pin(conn),
            signal: Box::pin(self.notify.clone().notified_owned()),
            drain: self.clone(),
            registered: false,
            draining: false,
        }
    }

    /// Tells every watched connection to finish what it is serving and close.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// A connection that drains when its listener stops.
pub struct Watched<C> {
    conn: Pin<Box<C>>,
    signal: Pin<Box<OwnedNotified>>,
    drain: Arc<Drain>,
    registered: bool,
    draining: bool,
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        if !this.draining {
            if !this.registered {
                this.registered = true;
                // Registers this task's waker; a stop from now on wakes it.
                let _ = this.signal.as_mut().poll(cx);
            }
            // Read after registering, so a stop between the two is not missed.
            if this.drain.stopping.load(Ordering::Acquire) {
                this.draining = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.as_mut().poll(cx)
    }
}
