//! HTTPS on the listeners, with a CA and a certificate generated for the test: requests over
//! TLS by HTTP/1.1 and HTTP/2 (ALPN), plain HTTP refused on the TLS port, a stalled handshake cut
//! off by the first request's deadline, a bad certificate path named by `customs check`, and an
//! upstream behind a private CA reached with `upstream.ca_file`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::support::{Example, edit_file};

/// A new CA and a certificate for `names` signed by it: (the CA's PEM, the certificate's PEM,
/// its key's PEM).
fn signed(names: &[&str]) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let cert = CertificateParams::new(names).unwrap().signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// Writes a CA and a certificate for `localhost` and 127.0.0.1 signed by it into `dir`; returns
/// the CA's PEM.
fn certificates(dir: &Path) -> String {
    let (ca, cert, key) = signed(&["localhost", "127.0.0.1"]);
    std::fs::write(dir.join("tls.crt"), cert + &ca).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    ca
}

fn https_client(
    ca: &str,
    http2: bool,
) -> Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Empty<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_only();
    let https = if http2 { https.enable_http2().build() } else { https.enable_http1().build() };
    Client::builder(TokioExecutor::new()).http2_only(http2).build(https)
}

#[tokio::test]
async fn both_listeners_serve_https_by_http1_and_http2() {
    let mut ca = String::new();
    let ex = Example::start_with(|d| {
        ca = certificates(d);
        edit_file(d, "gateway.toml", "header_read_timeout = \"10s\"", "header_read_timeout = \"500ms\"");
        let gateway = std::fs::read_to_string(d.join("gateway.toml")).unwrap();
        let files = format!("cert_file = \"{0}/tls.crt\"\nkey_file = \"{0}/tls.key\"\n", d.display());
        let tls = format!("\n[server.tls]\n{files}\n[admin.tls]\n{files}");
        std::fs::write(d.join("gateway.toml"), gateway + &tls).unwrap();
    })
    .await;
    for http2 in [false, true] {
        let client = https_client(&ca, http2);
        let req = |url: String| {
            Request::get(url).header("authorization", "Bearer sk-demo-us").body(Empty::<Bytes>::new()).unwrap()
        };
        let res = client.request(req(format!("https://localhost:{}/v1/models", ex.gw.addr.port()))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.version(), if http2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 });
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("gpt-4o-mini"), "{body:?}");
        let health = client.request(req(format!("https://localhost:{}/healthz", ex.gw.admin_addr.port()))).await;
        assert_eq!(health.unwrap().status(), StatusCode::OK);
    }

    // Plain HTTP on the TLS port gets no HTTP answer; a client that starts no handshake is cut off.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut plain = tokio::net::TcpStream::connect(ex.gw.addr).await.unwrap();
    plain.write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut got)).await.expect("closed");
    assert!(!got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    let mut silent = tokio::net::TcpStream::connect(ex.gw.addr).await.unwrap();
    let mut nothing = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut nothing)).await;
    assert!(cut.is_ok(), "a connection that never started its handshake was not closed");
    ex.stop().await;
}

#[test]
fn a_tls_file_that_does_not_load_is_named_by_the_config_check() {
    let dir = crate::support::example_config_for("127.0.0.1:1".parse().unwrap());
    let gateway = std::fs::read_to_string(dir.path().join("gateway.toml")).unwrap();
    let tls = "\n[server.tls]\ncert_file = \"/nonexistent/tls.crt\"\nkey_file = \"/nonexistent/tls.key\"\n";
    std::fs::write(dir.path().join("gateway.toml"), gateway + tls).unwrap();
    edit_file(dir.path(), "gateway.toml", "[upstream]", "[upstream]\nca_file = \"/nonexistent/ca.pem\"");
    let err = crate::support::load_err(dir.path());
    assert!(err.contains("gateway.toml: server.tls: cert_file /nonexistent/tls.crt:"), "{err}");
    assert!(err.contains("gateway.toml: upstream.ca_file: /nonexistent/ca.pem:"), "{err}");
}

#[tokio::test]
async fn an_upstream_behind_a_private_ca_is_reached_only_with_its_ca_file() {
    let certs = tempfile::TempDir::new().unwrap();
    let ca = certificates(certs.path());
    std::fs::write(certs.path().join("ca.pem"), &ca).unwrap();
    let tls = customs::tls::TlsSettings {
        cert_file: certs.path().join("tls.crt"),
        key_file: certs.path().join("tls.key"),
        client_ca_file: None,
    };
    let opts = customs::mock::MockOptions {
        name: "private".into(),
        api_keys: vec![crate::support::UPSTREAM_KEY.into()],
        tls: Some(tls),
        ..Default::default()
    };
    let mock = customs::mock::MockUpstream::start("127.0.0.1:0".parse().unwrap(), opts).await.unwrap();
    let https = format!("https://localhost:{}", mock.addr.port());

    for trusted in [false, true] {
        let dir = crate::support::example_config_for(mock.addr);
        let models = std::fs::read_to_string(dir.path().join("models.toml")).unwrap();
        std::fs::write(dir.path().join("models.toml"), models.replace(&format!("http://{}", mock.addr), &https))
            .unwrap();
        if trusted {
            let ca_file = format!("[upstream]\nca_file = \"{}\"", certs.path().join("ca.pem").display());
            edit_file(dir.path(), "gateway.toml", "[upstream]", &ca_file);
        }
        let gw = crate::support::gateway(dir.path()).await;
        let r = crate::support::chat(gw.addr, "sk-demo-us", "gpt-4o", None).await;
        if trusted {
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        } else {
            // The public roots do not know the private CA: the connection is refused.
            assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_GATEWAY, "upstream_unavailable"));
        }
        gw.shutdown().await;
    }
    assert_eq!(mock.requests().await.len(), 1, "only the gateway that trusts the CA reached it");
    mock.stop().await;
}

#[tokio::test]
async fn a_reload_presents_the_renewed_certificate_to_new_connections() {
    let mut old_ca = String::new();
    let mut dir = std::path::PathBuf::new();
    let ex = Example::start_with(|d| {
        old_ca = certificates(d);
        dir = d.to_owned();
        let gateway = std::fs::read_to_string(d.join("gateway.toml")).unwrap();
        let tls = format!("\n[server.tls]\ncert_file = \"{0}/tls.crt\"\nkey_file = \"{0}/tls.key\"\n", d.display());
        std::fs::write(d.join("gateway.toml"), gateway + &tls).unwrap();
    })
    .await;
    let url = format!("https://localhost:{}/v1/models", ex.gw.addr.port());
    let get = |ca: &str| {
        let client = https_client(ca, false);
        let req = Request::get(url.clone()).header("authorization", "Bearer sk-demo-us").body(Empty::<Bytes>::new());
        async move { client.request(req.unwrap()).await.map(|r| r.status()) }
    };
    assert_eq!(get(&old_ca).await.unwrap(), StatusCode::OK);

    // Renewed under another CA (the files replaced in place, as a mounted secret is).
    let new_ca = certificates(&dir);
    assert!(get(&new_ca).await.is_err(), "the old certificate is still presented before a reload");
    let r = crate::support::admin_post(ex.gw.admin_addr, "/admin/reload", "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(get(&new_ca).await.unwrap(), StatusCode::OK);
    assert!(get(&old_ca).await.is_err(), "the old certificate is gone");

    // A key that does not match its certificate is refused; the renewed one stays in use.
    std::fs::write(dir.join("tls.key"), KeyPair::generate().unwrap().serialize_pem()).unwrap();
    crate::support::admin_post(ex.gw.admin_addr, "/admin/reload", "").await;
    assert_eq!(get(&new_ca).await.unwrap(), StatusCode::OK);

    let audit = ex.audit_dir();
    let Example { mock, gw, dir: _kept } = ex;
    gw.shutdown().await;
    mock.stop().await;
    let results: Vec<String> = crate::support::trail(&audit)
        .iter()
        .filter(|r| r["type"] == "tls_reload")
        .map(|r| format!("{} {}", r["listener"].as_str().unwrap(), r["result"].as_str().unwrap()))
        .collect();
    assert_eq!(results, ["server success", "server failure"]);
}

/// A client certificate for `name` (a DNS subject alternative name) signed by a new CA.
fn client_certificate(name: &str) -> (String, String, String) {
    signed(&[name])
}

/// A client trusting `ca` that presents `identity` (chain and key PEM) when given one.
fn mtls_client(
    ca: &str,
    identity: Option<(&str, &str)>,
) -> Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Empty<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_only().enable_http1().build();
    Client::builder(TokioExecutor::new()).build(https)
}

#[tokio::test]
async fn a_client_certificate_authenticates_its_tenant_alone_or_with_its_key() {
    let (us_ca, us_cert, us_key) = client_certificate("app.demo-us.example");
    let (de_ca, de_cert, de_key) = client_certificate("app.demo-de.example");
    // The same name, from a CA the listener does not trust.
    let (_, stranger_cert, stranger_key) = client_certificate("app.demo-us.example");
    let mut server_ca = String::new();
    let ex = Example::start_with(|d| {
        server_ca = certificates(d);
        std::fs::write(d.join("clients.pem"), format!("{us_ca}{de_ca}")).unwrap();
        let gateway = std::fs::read_to_string(d.join("gateway.toml")).unwrap();
        let tls = format!(
            "\n[server.tls]\ncert_file = \"{0}/tls.crt\"\nkey_file = \"{0}/tls.key\"\nclient_ca_file = \"{0}/clients.pem\"\n",
            d.display()
        );
        std::fs::write(d.join("gateway.toml"), gateway + &tls).unwrap();
        let us = "key_sha256 = [\"0ee9085462db24cdd03f8476e5be9b13d8719e1023e06a3d4f2c2d6aee172384\"]  # sk-demo-us";
        edit_file(d, "tenants.toml", us, &format!("{us}\nclient_certificate_names = [\"app.demo-us.example\"]"));
        let de = "key_sha256 = [\"b800c57fd847abfda5c5430b77ae88ce87c0dcb033b146a80171ce687e246357\"]  # sk-demo-de";
        let both = "client_certificate_names = [\"app.demo-de.example\"]\nrequire_key_and_certificate = true";
        edit_file(d, "tenants.toml", de, &format!("{de}\n{both}"));
    })
    .await;
    let url = format!("https://localhost:{}/v1/models", ex.gw.addr.port());
    let call = |identity: Option<(&str, &str)>, key: Option<&str>| {
        let client = mtls_client(&server_ca, identity);
        let mut req = Request::get(url.clone());
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = req.body(Empty::<Bytes>::new()).unwrap();
        async move {
            let res = client.request(req).await?;
            let status = res.status();
            let reason = res.headers().get("x-customs-reason").map(|v| v.to_str().unwrap().to_owned());
            Ok::<_, hyper_util::client::legacy::Error>((status, reason))
        }
    };
    let us = Some((us_cert.as_str(), us_key.as_str()));
    let de = Some((de_cert.as_str(), de_key.as_str()));
    let ok = (StatusCode::OK, None);
    let refused = |code: &str| (StatusCode::UNAUTHORIZED, Some(code.to_owned()));

    assert_eq!(call(us, None).await.unwrap(), ok, "the certificate alone");
    assert_eq!(call(us, Some("sk-demo-us")).await.unwrap(), ok, "certificate and key agree");
    assert_eq!(call(None, Some("sk-demo-us")).await.unwrap(), ok, "the key alone");
    assert_eq!(call(us, Some("sk-demo-cn")).await.unwrap(), refused("invalid_api_key"), "they disagree");
    assert_eq!(call(None, None).await.unwrap(), refused("invalid_api_key"));
    // demo-de needs both.
    assert_eq!(call(None, Some("sk-demo-de")).await.unwrap(), refused("client_certificate_required"));
    assert_eq!(call(de, None).await.unwrap(), refused("client_certificate_required"));
    assert_eq!(call(de, Some("sk-demo-de")).await.unwrap(), ok);
    // A certificate from a CA the listener does not trust ends the handshake.
    assert!(call(Some((stranger_cert.as_str(), stranger_key.as_str())), Some("sk-demo-us")).await.is_err());
    ex.stop().await;
}
