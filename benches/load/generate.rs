//! The load generator: HTTP/1.1 keep-alive connections driven closed-loop (as fast as the target
//! answers, for throughput) or open-loop at a fixed rate (for latency, charged from the scheduled
//! send time whenever the target made a request wait, so a slow target cannot hide its queueing).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One request, sent over and over.
#[derive(Clone)]
pub struct Shot {
    pub path: &'static str,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// For a stream, bytes its last event carries (`data: [DONE]`, `response.completed`,
    /// `message_stop`): a response without them was cut short and counts as an error.
    pub end: Option<&'static [u8]>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Count {
    pub ok: u64,
    pub errors: u64,
}

/// `--tls`: the client configuration, and the targets spoken to over TLS (the others stay plain).
pub static TLS: OnceLock<(tokio_rustls::TlsConnector, Vec<SocketAddr>)> = OnceLock::new();

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    if let Some((tls, _)) = TLS.get().filter(|(_, over_tls)| over_tls.contains(&addr)) {
        let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
        let stream = tls.connect(name, stream).await.ok()?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Some(sender);
    }
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

/// Sends one request and reads the whole response; returns the time to the first body frame, or
/// `None` unless the status is 200 and a stream ended with its last event.
async fn one(sender: &mut SendRequest<Full<Bytes>>, addr: SocketAddr, shot: &Shot) -> Option<Duration> {
    let started = Instant::now();
    sender.ready().await.ok()?;
    let mut req = Request::post(shot.path).header("host", addr.to_string()).body(Full::new(shot.body.clone())).ok()?;
    req.headers_mut().extend(shot.headers.clone());
    let res = sender.send_request(req).await.ok()?;
    if res.status() != StatusCode::OK {
        return None;
    }
    let mut body = res.into_body();
    let mut first = None;
    let mut end = shot.end.map(Tail::new);
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        first.get_or_insert_with(|| started.elapsed());
        if let (Some(end), Some(data)) = (end.as_mut(), frame.data_ref()) {
            end.feed(data);
        }
    }
    if end.is_some_and(|end| !end.seen) {
        return None;
    }
    Some(first.unwrap_or_else(|| started.elapsed()))
}

/// Looks for a stream's last-event marker in its body, frame by frame, across frame boundaries.
struct Tail {
    needle: &'static [u8],
    /// The body's last bytes so far, one fewer than the marker has.
    carry: Vec<u8>,
    seen: bool,
}

// === impl Tail ===

impl Tail {
    fn new(needle: &'static [u8]) -> Self {
        Self { needle, carry: Vec::with_capacity(2 * needle.len()), seen: needle.is_empty() }
    }

    fn feed(&mut self, data: &[u8]) {
        if self.seen {
            return;
        }
        let keep = self.needle.len() - 1;
        // The marker across the boundary, then within this frame.
        self.carry.extend_from_slice(&data[..data.len().min(keep)]);
        if memchr::memmem::find(&self.carry, self.needle).is_some() || memchr::memmem::find(data, self.needle).is_some()
        {
            self.seen = true;
            return;
        }
        if data.len() >= keep {
            self.carry.clear();
            self.carry.extend_from_slice(&data[data.len() - keep..]);
        } else {
            // All of this frame is in `carry` already.
            let excess = self.carry.len().saturating_sub(keep);
            self.carry.drain(..excess);
        }
    }
}

/// One request on a fresh connection, as a check before measuring: `Ok` with the body's size in
/// bytes and SSE events, or why it failed (the status and the start of the body).
pub async fn probe(addr: SocketAddr, shot: &Shot) -> Result<(usize, usize), String> {
    let mut sender = connect(addr).await.ok_or("could not connect")?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let mut req = Request::post(shot.path)
        .header("host", addr.to_string())
        .body(Full::new(shot.body.clone()))
        .map_err(|e| e.to_string())?;
    req.headers_mut().extend(shot.headers.clone());
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status();
    let body = res.into_body().collect().await.map_err(|e| format!("{status}, then {e}"))?.to_bytes();
    let events = memchr::memmem::find_iter(&body, b"\n\n").count();
    if status != StatusCode::OK {
        let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("{status}: {start}"));
    }
    if let Some(end) = shot.end
        && memchr::memmem::find(&body, end).is_none()
    {
        let end = String::from_utf8_lossy(end);
        return Err(format!("{status}, but the stream ({} bytes, {events} events) has no {end:?}", body.len()));
    }
    Ok((body.len(), events))
}

/// `connections` clients, each sending its next request as soon as the last one is answered.
pub async fn closed_loop(addr: SocketAddr, shot: &Shot, connections: usize, duration: Duration) -> Count {
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let shot = shot.clone();
            tokio::spawn(async move {
                let mut count = Count::default();
                let mut sender = None;
                while Instant::now() < deadline {
                    if sender.is_none() {
                        sender = connect(addr).await;
                    }
                    let Some(s) = sender.as_mut() else {
                        count.errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    match one(s, addr, &shot).await {
                        Some(_) => count.ok += 1,
                        None => {
                            count.errors += 1;
                            sender = None;
                        }
                    }
                }
                count
            })
        })
        .collect();
    let mut total = Count::default();
    for w in workers {
        if let Ok(c) = w.await {
            total.ok += c.ok;
            total.errors += c.errors;
        }
    }
    total
}

/// What a fixed-rate run measured: full-response latencies, and times to first byte.
#[derive(Debug, Default)]
pub struct Timings {
    pub latency: Vec<Duration>,
    pub first_byte: Vec<Duration>,
    pub errors: u64,
}

/// `rate` requests per second spread over `connections` clients, each on its own schedule.
/// A request delayed behind a slow one is charged for the wait.
pub async fn open_loop(addr: SocketAddr, shot: &Shot, rate: u64, connections: usize, duration: Duration) -> Timings {
    let start = Instant::now() + Duration::from_millis(50);
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(connections as f64 / rate as f64);
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            let shot = shot.clone();
            tokio::spawn(async move {
                let mut t = Timings::default();
                let mut sender = connect(addr).await;
                let offset = Duration::from_secs_f64(i as f64 / rate as f64);
                let mut n = 0u64;
                let mut last_done = start;
                while n * connections as u64 + (i as u64) < total {
                    let scheduled = start + offset + interval * n as u32;
                    tokio::time::sleep_until(scheduled).await;
                    n += 1;
                    // The timer wakes up to a millisecond late; that lateness is the generator's,
                    // so latency counts from the wake-up, unless this client was still busy with
                    // its previous request at the scheduled time: then the wait is the target's.
                    let begin = if last_done > scheduled { scheduled } else { Instant::now() };
                    if sender.is_none() {
                        sender = connect(addr).await;
                    }
                    let Some(s) = sender.as_mut() else {
                        t.errors += 1;
                        continue;
                    };
                    let sent = Instant::now();
                    let result = one(s, addr, &shot).await;
                    last_done = Instant::now();
                    match result {
                        Some(first) => {
                            t.latency.push(begin.elapsed());
                            t.first_byte.push(first + (sent - begin));
                        }
                        None => {
                            t.errors += 1;
                            sender = None;
                        }
                    }
                }
                t
            })
        })
        .collect();
    let mut all = Timings::default();
    for w in workers {
        if let Ok(mut t) = w.await {
            all.latency.append(&mut t.latency);
            all.first_byte.append(&mut t.first_byte);
            all.errors += t.errors;
        }
    }
    all
}

/// The `q` quantile (0..=1) of `samples`, in milliseconds.
pub fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[i.min(samples.len() - 1)].as_secs_f64() * 1e3
}
