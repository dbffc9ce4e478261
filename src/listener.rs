//! The listener supervisor: opens the HTTP/WebSocket listener once the first snapshot exists,
//! then opens, moves and closes it as the serve policy and the watched interface's state
//! require (`serve = "while-connected"` closes it while the interface is down,
//! `"loopback-while-offline"` moves it to loopback). Closing a listener sends every WebSocket
//! client a close frame (1001), so clients know to come back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ServePolicy};
use crate::http::tls::Tls;
use crate::http::{self, AppState};
use crate::hub::Hub;
use crate::stats::model::Connectivity;
use crate::systemd;

/// Time allowed for open connections to finish when a listener closes.
const LISTENER_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Kernel send buffer per client socket: room for a dozen documents.
const SOCKET_SEND_BUFFER: u32 = 64 * 1024;
/// Wait before trying again to bind after a failure while the interface is up.
const REBIND_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Starts the supervisor, which serves until `cancel` fires and then closes the listener.
/// It sends READY=1 once the listener is where the policy wants it, and keeps `status` (the
/// systemd status line) current. With `serve = "always"`, a bind failure at start ends it
/// with the error; gated policies retry instead, since the address may come with the
/// interface.
pub fn spawn(
    config: &Arc<Config>,
    tls: Option<Tls>,
    hub: &Arc<Hub>,
    connectivity: watch::Receiver<Connectivity>,
    status: watch::Sender<String>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> JoinHandle<Result<(), BindError>> {
    let config = config.clone();
    let hub = hub.clone();
    tracker.spawn(async move {
        // The first document exists before anyone can connect, so every client gets one at
        // once.
        let mut first = hub.subscribe();
        tokio::select! {
            _ = first.wait_for(|s| s.is_some()) => {}
            _ = cancel.cancelled() => return Ok(()),
        }
        supervise(&config, &tls, &hub, connectivity, &status, &cancel).await
    })
}

/// An open listener and the server task behind it.
struct Listener {
    addr: SocketAddr,
    closed: CancellationToken,
    task: JoinHandle<()>,
    sessions: TaskTracker,
}

impl Listener {
    async fn open(
        addr: SocketAddr,
        hub: &Arc<Hub>,
        config: &Arc<Config>,
        tls: &Option<Tls>,
        parent: &CancellationToken,
    ) -> Result<Listener, BindError> {
        let socket = bind(addr).map_err(|source| BindError { addr, source })?;
        let addr = socket.local_addr().unwrap_or(addr);
        let closed = parent.child_token();
        let sessions = TaskTracker::new();
        let state = Arc::new(AppState::new(
            hub.clone(),
            config.clone(),
            closed.clone(),
            sessions.clone(),
            tls.as_ref().map(|tls| tls.acceptor().clone()),
        ));
        let task = tokio::spawn(http::serve(socket, state));
        tracing::info!("listening on {addr}");
        Ok(Listener {
            addr,
            closed,
            task,
            sessions,
        })
    }

    /// Stops accepting, sends every WebSocket client a close frame (1001) and waits, within
    /// [`LISTENER_CLOSE_TIMEOUT`], for them and for HTTP requests in flight.
    async fn close(self) {
        self.closed.cancel();
        self.sessions.close();
        let finished = async {
            let _ = self.task.await;
            self.sessions.wait().await;
        };
        if tokio::time::timeout(LISTENER_CLOSE_TIMEOUT, finished)
            .await
            .is_err()
        {
            // Each session ends on its own within its close and send timeouts; the
            // listener does not wait for the slowest client.
            tracing::warn!(
                "connections still closing after {LISTENER_CLOSE_TIMEOUT:?}; not waiting for them"
            );
        }
        tracing::info!("stopped listening on {}", self.addr);
    }
}

/// Binds the listening socket. Its send buffer size is inherited by every accepted socket:
/// a fixed [`SOCKET_SEND_BUFFER`] caps the kernel memory a client that never reads can pin
/// (autotuning would let it grow to megabytes) and lets the send timeout detect it quickly.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(SOCKET_SEND_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Opens, moves and closes the listener as the serve policy and the interface's state
/// require, until `cancel` fires.
async fn supervise(
    config: &Arc<Config>,
    tls: &Option<Tls>,
    hub: &Arc<Hub>,
    mut connectivity: watch::Receiver<Connectivity>,
    status: &watch::Sender<String>,
    cancel: &CancellationToken,
) -> Result<(), BindError> {
    // Keeps an ephemeral port (`port = 0`) across reopenings, so clients can come back.
    let mut port = config.port;
    let mut listener: Option<Listener> = None;
    let mut ready_sent = false;
    // The last bind failure and when to try again.
    let mut failed: Option<(tokio::time::Instant, BindError)> = None;
    loop {
        let link = connectivity.borrow_and_update().clone();
        let wanted = wanted_host(config, link.connected).map(|ip| SocketAddr::new(ip, port));
        if let Some(open) = listener.take_if(|open| Some(open.addr.ip()) != wanted.map(|a| a.ip()))
        {
            tracing::info!(
                "{} is {} ({}): {}",
                link.interface,
                link.state,
                link.source,
                match wanted {
                    Some(addr) => format!("moving the listener to {addr}"),
                    None => "closing the listener".to_owned(),
                }
            );
            open.close().await;
        }
        let retry_due = failed
            .as_ref()
            .is_none_or(|(at, _)| *at <= tokio::time::Instant::now());
        if let Some(addr) = wanted.filter(|_| listener.is_none() && retry_due) {
            match Listener::open(addr, hub, config, tls, cancel).await {
                Ok(open) => {
                    port = open.addr.port();
                    failed = None;
                    listener = Some(open);
                }
                Err(err) if !ready_sent && config.serve == ServePolicy::Always => return Err(err),
                // With a gated policy the address may become available with the interface.
                Err(err) => {
                    tracing::warn!("{err}; retrying in {REBIND_DELAY:?}");
                    failed = Some((tokio::time::Instant::now() + REBIND_DELAY, err));
                }
            }
        }

        let line = match &listener {
            Some(open) if open.addr.ip() != config.host => format!(
                "serving on {} only: {} {}",
                open.addr, link.interface, link.state
            ),
            Some(open) => format!("serving on {}", open.addr),
            None if wanted.is_some() => match &failed {
                Some((_, err)) => format!("{err}; retrying"),
                None => "not listening".to_owned(),
            },
            None => format!("waiting for {} ({})", link.interface, link.state),
        };
        if !ready_sent {
            systemd::ready(&line);
            ready_sent = true;
        }
        status.send_replace(line);

        let retry_at = failed.as_ref().map(|(at, _)| *at);
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = connectivity.changed() => if changed.is_err() {
                // The watcher ended: keep the current state until shutdown.
                cancel.cancelled().await;
                break;
            },
            _ = retry => {}
        }
    }
    if let Some(open) = listener.take() {
        open.close().await;
    }
    Ok(())
}

/// The address the listener should be bound to now, if any.
fn wanted_host(config: &Config, connected: bool) -> Option<IpAddr> {
    match config.serve {
        ServePolicy::Always => Some(config.host),
        _ if connected => Some(config.host),
        ServePolicy::WhileConnected => None,
        ServePolicy::LoopbackWhileOffline => Some(loopback_for(config.host)),
    }
}

/// The loopback address standing in for `host` while offline: `host` itself if it is
/// loopback already, `::1` for a specific IPv6 address, else `127.0.0.1` (which also covers
/// `::`, whose socket accepts IPv4 too: `localhost` works either way).
fn loopback_for(host: IpAddr) -> IpAddr {
    match host {
        host if host.is_loopback() => host,
        IpAddr::V6(v6) if !v6.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        _ => Ipv4Addr::LOCALHOST.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(serve: ServePolicy, host: &str) -> Config {
        Config {
            serve,
            host: host.parse().unwrap(),
            ..Config::default()
        }
    }

    #[test]
    fn each_policy_binds_where_it_should() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let always = config(ServePolicy::Always, "0.0.0.0");
        assert_eq!(wanted_host(&always, false), ip("0.0.0.0"));
        let gated = config(ServePolicy::WhileConnected, "0.0.0.0");
        assert_eq!(wanted_host(&gated, true), ip("0.0.0.0"));
        assert_eq!(wanted_host(&gated, false), None);
        let local = config(ServePolicy::LoopbackWhileOffline, "0.0.0.0");
        assert_eq!(wanted_host(&local, true), ip("0.0.0.0"));
        assert_eq!(wanted_host(&local, false), ip("127.0.0.1"));
        let any6 = config(ServePolicy::LoopbackWhileOffline, "::");
        assert_eq!(wanted_host(&any6, false), ip("127.0.0.1"));
        let local6 = config(ServePolicy::LoopbackWhileOffline, "2001:db8::1");
        assert_eq!(wanted_host(&local6, false), ip("::1"));
        let loopback = config(ServePolicy::LoopbackWhileOffline, "127.0.0.2");
        assert_eq!(wanted_host(&loopback, false), ip("127.0.0.2"));
    }
}
