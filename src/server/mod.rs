//! Listeners: the accept loop with a connection cap, HTTP/1.1 and HTTP/2 with the header-read
//! deadline actually armed (hyper ignores it without a timer), and graceful drain on shutdown.
//! [`Server::start`] wires a loaded config to both listeners.

mod deadline;
mod drain;
mod memory;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::admin::{self, AdminState, SharedEnv};
use crate::audit::{Audit, AuditError};
use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::gateway::Shared;
use crate::killswitch::{KillSwitchError, Suspensions};
use crate::owners::Owners;
use crate::policy::DayClock;
use crate::proxy::{ClientError, Upstreams};
use crate::request_id::Generator;
use crate::snapshot::Snapshot;
use crate::stack;
use crate::telemetry::{Metrics, MetricsError};
use crate::tls::{self, TlsError};
use deadline::{FirstRequest, Marked};
use drain::Drain;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    KillSwitch(#[from] KillSwitchError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cannot watch the config folder: {0}")]
    Watch(#[from] notify::Error),
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(std::io::Error),
    #[error("{0}.tls: {1}")]
    Tls(&'static str, TlsError),
}

/// Connection-level limits for one listener, and its TLS.
#[derive(Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// The HTTP layer refuses heads over twice these (a bare 431, hyper's own); the gateway
    /// refuses those over them with its JSON error, record and metric.
    pub max_header_bytes: u32,
    pub max_header_fields: u32,
    pub idle_timeout: Duration,
    /// Zero sends no PINGs.
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
    pub shutdown_grace: Duration,
    /// HTTPS: the handshake runs inside the first request's deadline.
    pub tls: Option<TlsAcceptor>,
}

/// A running gateway: the inference listener and the admin listener.
pub struct Server {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<JoinSet<()>>>,
    /// Background tasks (reload triggers, idle-connection eviction); aborted at shutdown.
    triggers: Vec<JoinHandle<()>>,
    _watcher: Option<notify::RecommendedWatcher>,
    shutdown_grace: Duration,
}

impl Server {
    /// Binds both listeners (use port 0 for any free port), opens the audit trail and starts
    /// serving, deciding as of the days `day` gives. `env` resolves credentials now and on every
    /// reload.
    pub async fn start(
        config: Config,
        listen: SocketAddr,
        admin_listen: SocketAddr,
        env: SharedEnv,
        day: DayClock,
    ) -> Result<Self, ServerError> {
        let upstreams = Upstreams::new(&config.settings.upstream)?;
        Self::start_with(config, listen, admin_listen, env, day, upstreams).await
    }

    /// [`Server::start`] with upstreams of the caller's making (in memory, for the in-process
    /// benchmark).
    pub async fn start_with(
        config: Config,
        listen: SocketAddr,
        admin_listen: SocketAddr,
        env: SharedEnv,
        day: DayClock,
        upstreams: Upstreams,
    ) -> Result<Self, ServerError> {
        let settings = config.settings;
        if let DayClock::Fixed(d) = day {
            tracing::warn!(day = %d, "Policy decided as of a fixed day, not today's date (--at).");
        }
        let metrics = Arc::new(Metrics::new()?);
        let suspensions = match &settings.admin.state_file {
            Some(path) => Suspensions::load(path)?,
            None => Suspensions::default(),
        };
        let cluster = match &settings.cluster {
            Some(c) => {
                // The epoch the state file's set was at; a set kept before cluster mode has none,
                // and counts as newer than an empty store, so it is given to the store rather
                // than lifted by it.
                let applied = suspensions.epoch().unwrap_or(u64::from(!suspensions.is_empty()));
                let cluster = Cluster::new(c, &*env, applied)?;
                metrics.killswitch_epoch.set(i64::try_from(applied).unwrap_or(i64::MAX));
                // Stale until the first confirmation.
                metrics.cluster_stale.set(1);
                tracing::info!(replica = %cluster.replica, "Cluster mode: kill switch shared through the store.");
                Some(Arc::new(cluster))
            }
            None => None,
        };
        let audit = Audit::open(&settings.audit, &*env, &metrics, config.policy.version())?;
        let snapshot = Snapshot::new(config.policy, &settings.limits, &metrics, Arc::new(suspensions));
        admin::reload::mark_loaded(&metrics);
        let owners = Owners::new(
            usize::try_from(settings.responses.max_bound_ids).unwrap_or(usize::MAX),
            cluster.clone(),
            settings.responses.bound_for,
        );
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            upstreams,
            max_body_bytes: settings.server.max_body_bytes,
            max_header_bytes: settings.server.max_header_bytes,
            max_header_fields: settings.server.max_header_fields,
            body_budget: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(settings.server.max_buffered_body_bytes)
                    .unwrap_or(usize::MAX)
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            body_read_timeout: settings.server.body_read_timeout,
            memory_pressure: Arc::default(),
            min_body_rate: crate::body_rate::MinRate {
                bytes_per_second: settings.server.min_body_rate,
                grace: settings.server.body_rate_grace,
            },
            day,
            audit,
            cluster,
            owners: Arc::new(owners),
        });
        let mut certificates = Vec::new();
        let mut acceptor = |section, s: &Option<tls::TlsSettings>| -> Result<_, ServerError> {
            let Some(s) = s else { return Ok(None) };
            let cert = tls::Certificate::load(s).map_err(|e| ServerError::Tls(section, e))?;
            let acceptor = cert.acceptor().map_err(|e| ServerError::Tls(section, e))?;
            certificates.push((section, cert));
            Ok(Some(acceptor))
        };
        let server_tls = acceptor("server", &settings.server.tls)?;
        let admin_tls = acceptor("admin", &settings.admin.tls)?;
        let admin_state = Arc::new(AdminState::new(shared.clone(), config.dir, env, &settings, certificates));
        let limits = Limits {
            header_read_timeout: settings.server.header_read_timeout,
            max_connections: usize::try_from(settings.server.max_connections).unwrap_or(usize::MAX),
            max_header_bytes: settings.server.max_header_bytes,
            max_header_fields: settings.server.max_header_fields,
            idle_timeout: settings.server.idle_timeout,
            http2_keep_alive_interval: settings.server.http2_keep_alive_interval,
            http2_keep_alive_timeout: settings.server.http2_keep_alive_timeout,
            shutdown_grace: settings.server.shutdown_grace,
            tls: server_tls,
        };
        let bind =
            |addr| async move { TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source }) };
        let listener = bind(listen).await?;
        let admin = bind(admin_listen).await?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: listen, source })?;
        let admin_addr = admin.local_addr().map_err(|source| ServerError::Bind { addr: admin_listen, source })?;
        let (stop, stopped) = watch::channel(false);
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let mut triggers = Vec::new();
        #[cfg(unix)]
        triggers.push(admin::reload::on_sighup(admin_state.clone()).map_err(ServerError::Signal)?);
        let watcher = if settings.reload.watch {
            let ignore = settings.audit.dir.iter().chain(settings.admin.state_file.iter()).cloned().collect();
            let (watcher, task) = admin::reload::watch(admin_state.clone(), settings.reload.debounce, ignore)?;
            triggers.push(task);
            Some(watcher)
        } else {
            None
        };

        if let Some(cluster) = &shared.cluster {
            triggers.push(tokio::spawn(admin::cluster::run(admin_state.clone(), cluster.clone())));
        }
        if let Some(limit) = memory::limit(settings.server.max_memory_bytes) {
            let gauge = shared.metrics.memory_shedding.clone();
            triggers.push(tokio::spawn(memory::watch(limit, shared.memory_pressure.clone(), gauge)));
        }
        triggers.push(tokio::spawn(evict_idle_connections(shared.clone(), settings.upstream.pool_idle_timeout)));

        let svc = stack::build(shared.clone(), Arc::new(Generator::new()));
        let shutdown_grace = limits.shutdown_grace;
        // Its own cap, so that the gateway's traffic can never starve the probes and the kill switch.
        let admin_limits = Limits { max_connections: settings.admin.max_connections, tls: admin_tls, ..limits.clone() };
        let main = tokio::spawn(serve(listener, svc, limits, wait(stopped.clone())));
        let admin_svc = tower::service_fn(move |req: Request<Incoming>| admin::http::handle(admin_state.clone(), req));
        let admin_task = tokio::spawn(serve(admin, admin_svc, admin_limits, wait(stopped)));
        tracing::info!(%addr, %admin_addr, policy_version = shared.snapshot.load().policy.version(), "Gateway listening.");
        Ok(Self {
            addr,
            admin_addr,
            shared,
            stop,
            tasks: vec![main, admin_task],
            triggers,
            _watcher: watcher,
            shutdown_grace,
        })
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period), cuts the rest,
    /// then returns. Every decided request's records, the outcomes of cut streams included, are
    /// written before the trail's `stop` record.
    pub async fn shutdown(self) {
        for t in &self.triggers {
            t.abort();
        }
        let _ = self.stop.send(true);
        let mut remaining = Vec::new();
        for t in self.tasks {
            if let Ok(set) = t.await {
                remaining.push(set);
            }
        }
        if remaining.iter().any(|set| !set.is_empty()) {
            self.shared.audit.cut();
            for mut set in remaining {
                // Dropping a connection drops its response bodies, which end their requests.
                set.abort_all();
                while set.join_next().await.is_some() {}
            }
        }
        let shared = self.shared.clone();
        let patience = self.shutdown_grace.max(Duration::from_secs(5));
        let _ = tokio::task::spawn_blocking(move || shared.audit.close(patience)).await;
    }
}

/// Upstream connections idle past the timeout are closed even when no request comes to reuse
/// (and so check) them.
async fn evict_idle_connections(shared: Arc<Shared>, timeout: Duration) {
    let mut tick = tokio::time::interval((timeout / 2).max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.upstreams.evict_idle(shared.snapshot.load().pools());
    }
}

/// Serves one listener until `shutdown` resolves, then drains. Returns the connections still
/// open when the grace period ran out, for the caller to cut once it is ready to record them.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> JoinSet<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let head = limits.max_header_bytes.saturating_mul(2);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size((head as usize).max(64 * 1024));
    // Up to 100 fields hyper parses into an array on the stack; a larger limit costs an
    // allocation per request, so it is only set when asked for.
    if limits.max_header_fields > 100 {
        builder.http1().max_headers(limits.max_header_fields.saturating_mul(2) as usize);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        // HPACK counts 32 bytes more per field than the field's name and value.
        .max_header_list_size(head.saturating_add(limits.max_header_fields.saturating_mul(64)));
    if !limits.http2_keep_alive_interval.is_zero() {
        builder
            .http2()
            .keep_alive_interval(limits.http2_keep_alive_interval)
            .keep_alive_timeout(limits.http2_keep_alive_timeout);
    }
    let drain = Arc::new(Drain::default());
    // At most u32::MAX: a semaphore panics above its maximum, and draining waits for them all
    // in one acquire, which counts in u32.
    let connections = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(connections as usize));
    let mut open = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Finished connections are let go of here, so the set holds only open ones.
        while open.try_join_next().is_some() {}
        // Waiting for a slot before accepting leaves excess connections in the kernel backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (stream, requests) = FirstRequest::new(stream, limits.header_read_timeout);
        let service = Marked::new(service.clone(), requests.clone());
        match &limits.tls {
            None => {
                let service = TowerToHyperService::new(service);
                let conn = drain.watch(
                    builder.serve_connection(TokioIo::new(stream), service).into_owned(),
                    requests,
                    limits.idle_timeout,
                );
                open.spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            Some(acceptor) => {
                // The handshake reads through the first request's deadline, so a client that
                // stalls it is cut off like one that stalls its request head.
                let (accept, builder, drain) = (acceptor.accept(stream), builder.clone(), drain.clone());
                let idle = limits.idle_timeout;
                open.spawn(async move {
                    match accept.await {
                        Ok(tls) => {
                            let peer = tls::peer_certificate(tls.get_ref().1);
                            let service = TowerToHyperService::new(service.with_peer(peer));
                            let conn = builder.serve_connection(TokioIo::new(tls), service).into_owned();
                            let _ = drain.watch(conn, requests, idle).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "TLS handshake failed."),
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    drain.stop();
    // Every connection holds a slot until it closes: all slots free means all drained.
    tokio::select! {
        _ = slots.acquire_many(connections) => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("Shutdown grace period over; closing remaining connections.");
        }
    }
    while open.try_join_next().is_some() {}
    open
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::{mpsc, oneshot};

    use super::*;

    async fn read_response(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.ends_with(b"ok") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the response: {}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(buf).unwrap()
    }

    /// On stop, a keep-alive connection waiting for its next request is closed rather than
    /// holding the drain up for the grace period, and a request in flight is still answered.
    #[tokio::test]
    async fn stop_closes_idle_connections_and_answers_requests_in_flight() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (entered_tx, mut entered) = mpsc::unbounded_channel::<()>();
        let (release_tx, release) = watch::channel(false);
        let service = tower::service_fn(move |req: Request<Incoming>| {
            let (entered_tx, mut release) = (entered_tx.clone(), release.clone());
            async move {
                if req.uri().path() == "/slow" {
                    let _ = entered_tx.send(());
                    let _ = release.wait_for(|r| *r).await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        });
        let limits = Limits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 8,
            max_header_bytes: 32 * 1024,
            max_header_fields: 100,
            idle_timeout: Duration::from_secs(60),
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(60),
            tls: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, service, limits, async {
            let _ = stopped.await;
        }));

        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        entered.recv().await.unwrap();

        stop.send(()).unwrap();
        // The idle connection closing shows the server has seen the stop, with the slow request
        // still in flight: only then is it let finish.
        let mut rest_idle = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(20), idle.read_to_end(&mut rest_idle)).await;
        assert_eq!(closed.expect("the idle connection was closed at stop").unwrap(), 0);
        assert!(!server.is_finished(), "the server waits for the request in flight");
        release_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("drained long before the 60 s grace period")
            .unwrap();
        assert!(read_response(&mut busy).await.starts_with("HTTP/1.1 200"));
        let mut rest_busy = Vec::new();
        assert_eq!(busy.read_to_end(&mut rest_busy).await.unwrap(), 0, "closed after its answer");
    }
}
