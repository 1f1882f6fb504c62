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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};

/// The stop signal shared by one listener's connections.
#[derive(Default)]
pub struct Drain {
    stopping: AtomicBool,
    notify: Arc<Notify>,
}

impl Drain {
    /// Wraps a connection so that it shuts down gracefully once [`Drain::stop`] is called, or
    /// once `requests` (the count of requests it started) has not moved for a whole `idle`.
    pub fn watch<C: GracefulConnection>(
        self: &Arc<Self>,
        conn: C,
        requests: Arc<AtomicU64>,
        idle: Duration,
    ) -> Watched<C> {
        Watched {
            conn: Box::pin(conn),
            signal: Box::pin(self.notify.clone().notified_owned()),
            drain: self.clone(),
            registered: false,
            draining: false,
            idle: Idle { every: idle, check: Box::pin(tokio::time::sleep(idle)), requests, seen: 0 },
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
    idle: Idle,
}

/// HTTP/2 has no idle timeout of its own (and HTTP/1's keep-alive one is the header timer): a
/// connection that sends settings and then nothing would hold its slot for ever. Checked every
/// `every`: a connection that started no request since the last check is shut down gracefully,
/// so one is closed between one and two `every`s after its last request started, and requests in
/// flight on it (a long stream) still finish.
struct Idle {
    every: Duration,
    check: Pin<Box<Sleep>>,
    requests: Arc<AtomicU64>,
    seen: u64,
}

impl Idle {
    /// Whether the connection has been idle since the last check. Reads the timer's state
    /// without polling it except to register it, so a wake-up for a request costs one load.
    fn expired(&mut self, cx: &mut Context<'_>, first: bool) -> bool {
        if !first && !self.check.is_elapsed() {
            return false;
        }
        if !first {
            let now = self.requests.load(Ordering::Relaxed);
            if now == self.seen {
                return true;
            }
            self.seen = now;
            self.check.as_mut().reset(Instant::now() + self.every);
        }
        // Registers this task's waker with the timer.
        let _ = self.check.as_mut().poll(cx);
        false
    }
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        if !this.draining {
            let first = !this.registered;
            if first {
                this.registered = true;
                // Registers this task's waker; a stop from now on wakes it.
                let _ = this.signal.as_mut().poll(cx);
            }
            // Read after registering, so a stop between the two is not missed.
            if this.drain.stopping.load(Ordering::Acquire) || this.idle.expired(cx, first) {
                this.draining = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.as_mut().poll(cx)
    }
}
