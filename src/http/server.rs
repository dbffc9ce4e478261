//! The HTTP/1.1 accept loop around the warp routes.
//!
//! pistats runs hyper itself rather than `warp::serve` for three things warp's server does
//! not offer: a header-read timeout (a client that opens a connection and sends nothing, or
//! a byte a minute, is cut off), the raw upgrade handle (so each WebSocket gets buffers sized
//! for thousands of clients instead of tungstenite's 128 KiB default), and the peer address
//! as a plain request extension for the per-address limits. With TLS configured, each
//! connection is a rustls stream instead of the plain socket; nothing above notices.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper::upgrade::OnUpgrade;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{routes, AppState};

/// A client must send its complete request head within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted; pistats' requests are tiny.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connection's peer, inserted into every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// hyper's upgrade handle, made cloneable so a warp filter can extract it; taken once.
#[derive(Clone)]
pub struct PendingUpgrade(Arc<Mutex<Option<OnUpgrade>>>);

impl PendingUpgrade {
    pub fn take(&self) -> Option<OnUpgrade> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Serves `listener` until `state.listener_closed` fires, then waits for requests in flight
/// (WebSocket sessions are tracked separately, in `state.sessions`).
pub async fn serve(listener: TcpListener, state: Arc<AppState>) {
    let closed = state.listener_closed.clone();
    let tls = state.tls.clone();
    let service = TowerToHyperService::new(warp::service(routes(state)));
    let connections = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD);
    loop {
        let (stream, peer) = tokio::select! {
            _ = closed.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let per_request = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let extensions = request.extensions_mut();
            extensions.insert(Peer(peer));
            if let Some(upgrade) = extensions.remove::<OnUpgrade>() {
                extensions.insert(PendingUpgrade(Arc::new(Mutex::new(Some(upgrade)))));
            }
            service.call(request)
        });
        let builder = builder.clone();
        let closed = closed.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let result = match tls {
                None => drive(&builder, stream, per_request, &closed).await,
                // The handshake shares the header-read deadline: a client that opens a
                // connection and stays silent is cut off either way.
                Some(tls) => {
                    let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream));
                    let stream = tokio::select! {
                        _ = closed.cancelled() => return,
                        done = handshake => match done {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(err)) => {
                                tracing::debug!("TLS handshake with {peer} failed: {err}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake with {peer} timed out");
                                return;
                            }
                        },
                    };
                    drive(&builder, stream, per_request, &closed).await
                }
            };
            if let Err(err) = result {
                tracing::debug!("connection from {peer}: {err}");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Serves one connection (plain TCP or TLS) until it ends; when the listener closes, the
/// request in flight finishes and the connection is not kept alive.
async fn drive<I, S>(
    builder: &http1::Builder,
    io: I,
    service: S,
    closed: &CancellationToken,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = closed.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}
