//! The upstream HTTP/1.1 client: keep-alive connections pooled per origin, each driven by the
//! task of the request using it instead of a task of its own.
//!
//! hyper-util's pooled client spawns every connection as a task and hands the response body over
//! through a one-slot channel, so each response chunk costs a wake-up of two tasks and reaches
//! the client as its own write. Here the request's own task polls the connection (to send the
//! request, read the head and then each body chunk), so chunks the upstream sent together are
//! read, decoded and forwarded together, with no task switch between them. A connection goes
//! back to its pool only after its response was read to the end; one dropped mid-response is
//! closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt;

use super::balance::InFlight;

type Connection = http1::Connection<Io, Full<Bytes>>;

/// Opens an in-memory connection to an upstream served in this process (the in-process
/// benchmark's mock), in place of a socket.
pub type Dial = Arc<dyn Fn() -> tokio::io::DuplexStream + Send + Sync>;

/// Where connections come from: the network (TCP, TLS when the origin is https), or memory.
#[derive(Clone)]
pub enum Connector {
    Net(HttpsConnector<HttpConnector>),
    Memory(Dial),
}

impl Connector {
    /// TCP with `TCP_NODELAY`, TLS for https origins, checked against `roots` or else the
    /// public (webpki) roots. HTTP/1.1 only: ALPN offers nothing else, so a TLS upstream never
    /// switches to HTTP/2.
    pub fn net(connect_timeout: Duration, roots: Option<rustls::RootCertStore>) -> Result<Self, rustls::Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let provider = rustls::crypto::ring::default_provider();
        let builder = match roots {
            Some(roots) => HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            ),
            None => HttpsConnectorBuilder::new().with_provider_and_webpki_roots(provider)?,
        };
        Ok(Self::Net(builder.https_or_http().enable_http1().wrap_connector(http)))
    }
}

/// A connection's transport.
#[expect(clippy::large_enum_variant, reason = "it lives in the boxed `Link`, once per connection")]
enum Io {
    Net(MaybeHttpsStream<TokioIo<TcpStream>>),
    Memory(TokioIo<tokio::io::DuplexStream>),
}

impl hyper::rt::Read for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Net(io) => Pin::new(io).poll_read(cx, buf),
            Io::Memory(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Net(io) => Pin::new(io).poll_write(cx, buf),
            Io::Memory(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Net(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Io::Memory(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Net(io) => io.is_write_vectored(),
            Io::Memory(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Net(io) => Pin::new(io).poll_flush(cx),
            Io::Memory(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Net(io) => Pin::new(io).poll_shutdown(cx),
            Io::Memory(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// Idle connections kept per origin; one released while this many wait is closed.
const MAX_IDLE: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made: the request never left.
    #[error("connect: {0}")]
    Connect(Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// One connection: the handle requests are sent on and the state machine that has to be polled
/// for anything to happen on it.
struct Link {
    tx: http1::SendRequest<Full<Bytes>>,
    conn: Connection,
    idle_since: Instant,
}

impl Link {
    /// Polls the connection once without a task to wake. This reads a close or a stray byte the
    /// upstream sent while the connection sat idle, and lets a connection that just finished a
    /// response mark itself ready for the next request.
    fn still_usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.conn).poll(&mut cx) {
            Poll::Ready(_) => false,
            Poll::Pending => self.tx.is_ready(),
        }
    }
}

/// The idle connections to one origin (scheme and authority).
pub struct OriginPool {
    // Lock-free and bounded. First in, first out: the connection taken is the one idle longest,
    // which `take` checks for a close before using, and eviction finds expired ones at the head.
    idle: ArrayQueue<Box<Link>>,
}

impl Default for OriginPool {
    fn default() -> Self {
        Self { idle: ArrayQueue::new(MAX_IDLE) }
    }
}

impl OriginPool {
    fn take(&self, idle_timeout: Duration) -> Option<Box<Link>> {
        while let Some(mut link) = self.idle.pop() {
            if link.idle_since.elapsed() < idle_timeout && link.still_usable() {
                return Some(link);
            }
        }
        None
    }

    fn put(&self, mut link: Box<Link>) {
        link.idle_since = Instant::now();
        // A full pool closes the connection (dropped here).
        let _ = self.idle.push(link);
    }

    /// Closes the connections idle for longer than `timeout`.
    pub fn evict(&self, timeout: Duration) {
        // One full turn of the queue keeps the survivors in their order.
        for _ in 0..self.idle.len() {
            let Some(link) = self.idle.pop() else { return };
            if link.idle_since.elapsed() < timeout {
                let _ = self.idle.push(link);
            }
        }
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.len()
    }
}

pub struct Client {
    connector: Connector,
    idle_timeout: Duration,
}

impl Client {
    pub fn new(connector: Connector, idle_timeout: Duration) -> Self {
        Self { connector, idle_timeout }
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Sends `req` (origin-form URI, `Host` set) to `origin` on an idle connection from `pool`, or
    /// a new one. A request refused by a reused connection before any of it was written (the
    /// upstream closed it as it was taken) is sent once more on a new connection.
    pub async fn send(
        &self,
        pool: &Arc<OriginPool>,
        origin: &Uri,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let mut from_pool = true;
        loop {
            let (mut link, reused) = match from_pool.then(|| pool.take(self.idle_timeout)).flatten() {
                Some(link) => (link, true),
                // Boxed: connecting (TLS state included) would otherwise size every request's
                // future, which is moved and allocated per request, for the rare new connection.
                None => (Box::pin(self.connect(origin)).await?, false),
            };
            let mut conn_done = false;
            let sent = {
                let mut response = std::pin::pin!(link.tx.try_send_request(req));
                // The connection is polled here, by this task, for the request to go out and
                // the response head to come in.
                std::future::poll_fn(|cx| {
                    if !conn_done && Pin::new(&mut link.conn).poll(cx).is_ready() {
                        conn_done = true;
                    }
                    response.as_mut().poll(cx)
                })
                .await
            };
            match sent {
                Ok(res) => {
                    let link = (!conn_done).then_some(link);
                    return Ok(res.map(|body| UpstreamBody {
                        body,
                        link,
                        pool: pool.clone(),
                        ended: false,
                        held: None,
                    }));
                }
                Err(e) => match retry(e, reused) {
                    Ok(again) => {
                        req = again;
                        from_pool = false;
                    }
                    Err(e) => return Err(SendError::Http(e)),
                },
            }
        }
    }

    async fn connect(&self, origin: &Uri) -> Result<Box<Link>, SendError> {
        let io = match &self.connector {
            Connector::Net(net) => Io::Net(net.clone().oneshot(origin.clone()).await.map_err(SendError::Connect)?),
            Connector::Memory(dial) => Io::Memory(TokioIo::new(dial())),
        };
        let (tx, conn) = http1::Builder::new().handshake(io).await?;
        Ok(Box::new(Link { tx, conn, idle_since: Instant::now() }))
    }
}

/// The request back when it can be sent again: it was never written, on a reused connection.
fn retry(mut e: TrySendError<Request<Full<Bytes>>>, reused: bool) -> Result<Request<Full<Bytes>>, hyper::Error> {
    match e.take_message() {
        Some(req) if reused => Ok(req),
        _ => Err(e.into_error()),
    }
}

/// An upstream response body that drives its connection as it is read, and gives the
/// connection back to the pool once read to the end.
pub struct UpstreamBody {
    body: Incoming,
    /// `None` once the connection has finished (closed by either side).
    link: Option<Box<Link>>,
    pool: Arc<OriginPool>,
    ended: bool,
    /// The request's place in its endpoint's in-flight count, given up when the body is.
    held: Option<InFlight>,
}

impl UpstreamBody {
    /// Keeps `held` until this body is dropped: a response counts as in flight until it ends.
    pub fn hold(&mut self, held: InFlight) {
        self.held = Some(held);
    }

    /// Lets the connection read and decode what has arrived, moving the next chunk into the body.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(link) = &mut self.link
            && Pin::new(&mut link.conn).poll(cx).is_ready()
        {
            // Finished: it has handed over all it read, and the body will end.
            self.link = None;
        }
    }

    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Err(_))) => self.link = None,
            _ => {}
        }
        polled
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // Body first: its first poll tells the connection the body is wanted. Then the
        // connection, which moves the next decoded chunk (if it has one) into the body.
        if let Poll::Ready(frame) = this.poll_body(cx) {
            return Poll::Ready(frame);
        }
        this.drive(cx);
        this.poll_body(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(link) = self.link.take()
            && self.is_end_stream()
        {
            self.pool.put(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn client() -> Client {
        Client::new(Connector::net(Duration::from_secs(5), None).unwrap(), Duration::from_secs(60))
    }

    fn request(host: &str) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::from_static(b"{}")));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = Uri::from_static("/v1/chat/completions");
        req.headers_mut().insert(http::header::HOST, host.parse().unwrap_or(http::HeaderValue::from_static("x")));
        req
    }

    /// Reads one request head plus a 2-byte body from `s`.
    async fn read_request(s: &mut TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.ends_with(b"{}") {
                return String::from_utf8(buf).ok();
            }
        }
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_is_reused_and_one_dropped_early_is_not()
    -> Result<(), Box<dyn std::error::Error>> {
        // Three chunks in one write: they arrive together.
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n";
        let (addr, accepted) = upstream(chunked, usize::MAX).await?;
        let client = client();
        let pool = Arc::new(OriginPool::default());
        let origin: Uri = format!("http://{addr}").parse()?;
        let host = addr.to_string();

        for _ in 0..3 {
            let res = client.send(&pool, &origin, request(&host)).await?;
            let body = res.into_body().collect().await?.to_bytes();
            assert_eq!(&body[..], b"hello world");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection served all three");
        assert_eq!(pool.idle_count(), 1);

        // Dropped before the end: that connection is closed, the next request opens another.
        let res = client.send(&pool, &origin, request(&host)).await?;
        drop(res);
        assert_eq!(pool.idle_count(), 0);
        let res = client.send(&pool, &origin, request(&host)).await?;
        assert_eq!(&res.into_body().collect().await?.to_bytes()[..], b"hello world");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        Ok(())
    }

    #[tokio::test]
    async fn chunks_that_arrived_together_are_read_in_one_poll() -> Result<(), Box<dyn std::error::Error>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let _ = read_request(&mut s).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
            let _ = wait.await;
            let _ = s.write_all(b"2\r\nab\r\n2\r\ncd\r\n2\r\nef\r\n").await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let client = client();
        let pool = Arc::new(OriginPool::default());
        let origin: Uri = format!("http://{addr}").parse()?;
        let res = client.send(&pool, &origin, request(&addr.to_string())).await?;
        let mut body = res.into_body();
        let _ = release.send(());
        // The first frame needs the data to arrive; after it, the other two are already read
        // and decoded, so polling with a waker that never fires yields them at once.
        let first = body.frame().await.ok_or("ended")??;
        assert_eq!(first.into_data().ok().as_deref(), Some(&b"ab"[..]));
        let mut cx = Context::from_waker(Waker::noop());
        for want in [&b"cd"[..], b"ef"] {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => assert_eq!(f.into_data().ok().as_deref(), Some(want)),
                other => return Err(format!("expected a ready frame, got {:?}", other.map(|_| ())).into()),
            }
        }
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending(), "nothing more has arrived");
        Ok(())
    }

    /// An upstream that answers each request (checked to be the one `request` builds) with
    /// `response`, `per_connection` times per connection, then closes the connection (as a
    /// keep-alive timeout would). Counts the connections it accepts.
    async fn upstream(
        response: &'static [u8],
        per_connection: usize,
    ) -> std::io::Result<(std::net::SocketAddr, Arc<AtomicUsize>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    for _ in 0..per_connection {
                        let Some(head) = read_request(&mut s).await else { return };
                        assert!(head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"), "{head}");
                        if s.write_all(response).await.is_err() {
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                });
            }
        });
        Ok((addr, accepted))
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test]
    async fn a_response_of_known_length_read_to_its_end_frees_the_connection() -> Result<(), Box<dyn std::error::Error>>
    {
        let (addr, accepted) = upstream(OK, usize::MAX).await?;
        let client = client();
        let pool = Arc::new(OriginPool::default());
        let origin: Uri = format!("http://{addr}").parse()?;
        for _ in 0..5 {
            let res = client.send(&pool, &origin, request(&addr.to_string())).await?;
            assert_eq!(&res.into_body().collect().await?.to_bytes()[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        Ok(())
    }

    #[tokio::test]
    async fn an_idle_connection_the_upstream_closed_is_not_used() -> Result<(), Box<dyn std::error::Error>> {
        let (addr, accepted) = upstream(OK, 1).await?;
        let client = client();
        let pool = Arc::new(OriginPool::default());
        let origin: Uri = format!("http://{addr}").parse()?;
        let host = addr.to_string();
        let res = client.send(&pool, &origin, request(&host)).await?;
        assert_eq!(&res.into_body().collect().await?.to_bytes()[..], b"ok");
        assert_eq!(pool.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let res = client.send(&pool, &origin, request(&host)).await?;
        assert_eq!(&res.into_body().collect().await?.to_bytes()[..], b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        Ok(())
    }

    #[tokio::test]
    async fn eviction_closes_connections_idle_too_long() -> Result<(), Box<dyn std::error::Error>> {
        let (addr, _) = upstream(OK, usize::MAX).await?;
        let client = client();
        let pool = Arc::new(OriginPool::default());
        let origin: Uri = format!("http://{addr}").parse()?;
        let res = client.send(&pool, &origin, request(&addr.to_string())).await?;
        res.into_body().collect().await?;
        pool.evict(Duration::from_secs(60));
        assert_eq!(pool.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        pool.evict(Duration::from_millis(10));
        assert_eq!(pool.idle_count(), 0);
        Ok(())
    }
}
