//! The speed-of-light baseline: a pass-through proxy on the same stack as customs (hyper 1.x
//! server, hyper-util pooled client, tokio, and jemalloc as customs has), with no policy, limits,
//! metrics or logging. It forwards the request body as it streams in and the response as it
//! streams back.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type Body = http_body_util::Either<Incoming, http_body_util::Full<bytes::Bytes>>;

pub fn run(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        let mut out = std::io::stdout();
        writeln!(out, "bare-proxy listening on http://{}", listener.local_addr()?)?;
        out.flush()?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client: Arc<Client<HttpConnector, Incoming>> = Arc::new(Client::builder(TokioExecutor::new()).build(http));
        let authority: Authority = upstream.to_string().parse().map_err(std::io::Error::other)?;
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let authority = authority.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                let authority = authority.clone();
                async move { Ok::<_, Infallible>(forward(&client, authority, req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    })
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    authority: Authority,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority);
    uri.path_and_query = parts.uri.path_and_query().cloned();
    parts.uri = Uri::from_parts(uri).unwrap_or_default();
    parts.headers.remove(http::header::HOST);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(res) => res.map(http_body_util::Either::Left),
        Err(_) => {
            let mut res = Response::new(http_body_util::Either::Right(http_body_util::Full::new(bytes::Bytes::new())));
            *res.status_mut() = http::StatusCode::BAD_GATEWAY;
            res
        }
    }
}
