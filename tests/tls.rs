//! TLS: the real daemon with a freshly made certificate, real rustls clients for HTTPS and WSS,
//! plain-text clients refused without harm, and certificate problems as configuration errors.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{next_doc, Daemon, BIN, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;

/// A self-signed certificate for localhost and 127.0.0.1, written as PEM files.
struct TestCert {
    dir: tempfile::TempDir,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl TestCert {
    fn new() -> TestCert {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("key.pem"),
            certified.signing_key.serialize_pem(),
        )
        .unwrap();
        TestCert {
            der: certified.cert.der().clone(),
            dir,
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn start_daemon(&self) -> Daemon {
        Daemon::start(&[
            "--tls-cert",
            self.cert().to_str().unwrap(),
            "--tls-key",
            self.key().to_str().unwrap(),
        ])
    }

    /// A client that trusts only this certificate.
    fn connector(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    async fn tls_stream(&self, daemon: &Daemon) -> TlsStream {
        self.handshake(daemon).await.expect("TLS handshake")
    }

    /// A TLS connection that fails if the daemon presents another certificate.
    async fn handshake(&self, daemon: &Daemon) -> std::io::Result<TlsStream> {
        let tcp = TcpStream::connect(daemon.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        tokio::time::timeout(WAIT, self.connector().connect(name, tcp))
            .await
            .expect("TLS handshake timed out")
    }

    /// Puts this pair in place of `other`'s files, each replaced at once as renewal tools do.
    fn install_over(&self, other: &TestCert) {
        for (from, to) in [(self.cert(), other.cert()), (self.key(), other.key())] {
            let staged = to.with_extension("new");
            std::fs::copy(from, &staged).unwrap();
            std::fs::rename(staged, to).unwrap();
        }
    }
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn wss_connect(cert: &TestCert, daemon: &Daemon, path: &str) -> WebSocketStream<TlsStream> {
    let tls = cert.tls_stream(daemon).await;
    let url = format!("wss://localhost:{}{path}", daemon.addr.port());
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, tls))
        .await
        .expect("WSS handshake timed out")
        .expect("WSS handshake");
    ws
}

async fn https_get(cert: &TestCert, daemon: &Daemon, path: &str) -> String {
    let mut tls = cert.tls_stream(daemon).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut response))
        .await
        .expect("HTTPS response timed out")
        .ok();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn https_and_wss_serve_the_api_dashboard_and_feed() {
    let cert = TestCert::new();
    let daemon = cert.start_daemon();
    assert!(
        daemon.log().iter().any(|l| l.contains("TLS on")),
        "{:?}",
        daemon.log()
    );

    let stats = https_get(&cert, &daemon, "/api/v1/stats").await;
    assert!(stats.starts_with("HTTP/1.1 200"), "{stats}");
    let body = stats.split_once("\r\n\r\n").unwrap().1;
    assert!(body.contains("\"cpu_usage_percent\""), "{body}");
    let page = https_get(&cert, &daemon, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<html"), "{page}");

    for path in ["/", "/ws"] {
        let mut ws = wss_connect(&cert, &daemon, path).await;
        let first = next_doc(&mut ws).await;
        let second = next_doc(&mut ws).await;
        assert!(first["timestamp"].is_string() && first["cpu"].is_object());
        assert_ne!(
            first["timestamp"], second["timestamp"],
            "{path}: a live feed"
        );
    }
}

#[tokio::test]
async fn plain_text_and_garbage_on_the_tls_port_are_dropped_without_harm() {
    let cert = TestCert::new();
    let daemon = cert.start_daemon();

    // Plain HTTP: no HTTP answer comes back, only the end of the connection.
    let mut plain = TcpStream::connect(daemon.addr).await.unwrap();
    plain
        .write_all(b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, plain.read_to_end(&mut answer))
        .await
        .expect("plain-text client was not disconnected")
        .ok();
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    // Random bytes, and a client that connects and says nothing, stay on their own.
    let mut garbage = TcpStream::connect(daemon.addr).await.unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0x00, 0x42])
        .await
        .unwrap();
    let mut silent = TcpStream::connect(daemon.addr).await.unwrap();

    let stats = https_get(&cert, &daemon, "/healthz").await;
    assert!(stats.starts_with("HTTP/1.1 200"), "{stats}");

    // A client that never starts the handshake is cut off with the header-read deadline.
    let mut buf = [0u8; 16];
    let cut_off = tokio::time::timeout(
        pistats::http::HEADER_READ_TIMEOUT + WAIT,
        silent.read(&mut buf),
    )
    .await
    .expect("a silent client was never disconnected");
    assert!(matches!(cut_off, Ok(0) | Err(_)), "{cut_off:?}");
}

/// The top-level `"timestamp"` of a stats document in an HTTP response.
fn timestamp_in(response: &str) -> String {
    let start = response.find("\"timestamp\":\"").expect("a timestamp") + 13;
    let len = response[start..].find('"').unwrap();
    response[start..start + len].to_owned()
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_clients() {
    let first = TestCert::new();
    let daemon = first.start_daemon();
    let mut feed = wss_connect(&first, &daemon, "/ws").await;
    next_doc(&mut feed).await;

    let renewed = TestCert::new();
    renewed.install_over(&first);
    daemon.signal("HUP");
    daemon.wait_for_log("TLS certificate reloaded");
    assert!(
        renewed.handshake(&daemon).await.is_ok(),
        "new pair not served"
    );
    assert!(
        first.handshake(&daemon).await.is_err(),
        "old pair still served"
    );
    // The client connected before the reload still gets documents collected after it.
    let latest = https_get(&renewed, &daemon, "/api/v1/stats").await;
    let reloaded_at = timestamp_in(&latest);
    let mut newer = false;
    for _ in 0..5 {
        let doc = next_doc(&mut feed).await;
        if doc["timestamp"].as_str().unwrap() > reloaded_at.as_str() {
            newer = true;
            break;
        }
    }
    assert!(newer, "the feed opened before the reload stopped");

    // The same files again: nothing changes, and the log says so.
    daemon.signal("HUP");
    daemon.wait_for_log("holds the certificate already in use");

    // A renewed certificate installed without its key is refused; the pair in use stays.
    let third = TestCert::new();
    std::fs::copy(third.cert(), first.cert()).unwrap();
    daemon.signal("HUP");
    daemon.wait_for_log("do not go together");
    daemon.wait_for_log("still using the previous certificate");
    assert!(renewed.handshake(&daemon).await.is_ok());

    // Without TLS, SIGHUP changes nothing and stops nothing.
    let plain = Daemon::start(&[]);
    plain.signal("HUP");
    plain.wait_for_log("nothing to reload");
    assert_eq!(plain.get("/healthz").status, 200);
}

#[test]
fn certificate_problems_are_configuration_errors() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let missing = Path::new("/nonexistent/pistats-key.pem");
    let not_pem = cert.dir.path().join("not-pem.txt");
    std::fs::write(&not_pem, "hello\n").unwrap();

    let cases: [(&Path, &Path, &str); 4] = [
        (&cert.cert(), missing, "/nonexistent/pistats-key.pem"),
        (&not_pem, &cert.key(), "not-pem.txt"),
        // A key that does not belong to the certificate.
        (&cert.cert(), &other.key(), "do not go together"),
        // A private key given as the certificate.
        (&cert.key(), &cert.key(), "key.pem"),
    ];
    for (cert_path, key_path, expected) in cases {
        for subcommand in [None, Some("check-config")] {
            let mut command = std::process::Command::new(BIN);
            command.args([
                "--config",
                "/dev/null",
                "--port",
                "0",
                "--host",
                "127.0.0.1",
            ]);
            command.args(subcommand);
            command.arg("--tls-cert").arg(cert_path);
            command.arg("--tls-key").arg(key_path);
            let out = command.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{subcommand:?} {err}");
            assert!(err.contains(expected), "{subcommand:?}: {err}");
        }
    }

    // One without the other.
    let out = std::process::Command::new(BIN)
        .args(["--config", "/dev/null", "check-config", "--tls-cert"])
        .arg(cert.cert())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls_key"));
}

#[test]
fn valid_certificate_passes_check_config() {
    let cert = TestCert::new();
    let out = std::process::Command::new(BIN)
        .args(["--config", "/dev/null", "check-config", "--tls-cert"])
        .arg(cert.cert())
        .arg("--tls-key")
        .arg(cert.key())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
