//! The serving daemon: wires the subsystems together and owns their lifecycle.
//!
//! One task or thread per subsystem, each stopped by a cancellation token: the collector
//! thread (hub), the network watcher, the systemd notifier, and the listener supervisor that
//! opens and closes the HTTP/WebSocket listener according to the serve policy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ServePolicy};
use crate::http::tls::{Reloaded, Tls, TlsError};
use crate::http::{self, AppState, FdBudget};
use crate::hub::{self, Hub};
use crate::stats::model::Connectivity;
use crate::stats::Collector;
use crate::{netwatch, systemd};

/// Time allowed for open connections to finish when a listener closes.
const LISTENER_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for the collector thread to finish its tick at shutdown.
const COLLECTOR_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Kernel send buffer per client socket: room for a dozen documents.
const SOCKET_SEND_BUFFER: u32 = 64 * 1024;
/// Wait before trying again to bind after a failure while the interface is up.
const REBIND_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
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
    ) -> Result<Listener, DaemonError> {
        let socket = bind(addr).map_err(|source| DaemonError::Bind { addr, source })?;
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
            tracing::warn!(
                "connections still open after {LISTENER_CLOSE_TIMEOUT:?}; dropping them"
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

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config, config_file: Option<PathBuf>) -> Result<(), DaemonError> {
    let config = Arc::new(config);
    // Certificate problems are configuration errors: report them before anything starts.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::load(cert, key)?),
        _ => None,
    };
    let cancel = CancellationToken::new();
    raise_fd_limit();
    spawn_signal_handlers(tls.clone(), cancel.clone())?;

    tracing::info!(
        "pistats {} starting: interval {:?}, serve {:?} (interface {}), config {}, dashboard {}",
        env!("CARGO_PKG_VERSION"),
        config.interval,
        config.serve,
        config.interface,
        config_file.map_or_else(
            || "built-in defaults".to_owned(),
            |p| p.display().to_string()
        ),
        config
            .resolved_assets_dir()
            .map_or_else(|| "not found".to_owned(), |p| p.display().to_string()),
    );

    if let Some(tls) = &tls {
        tracing::info!(
            "TLS on: https:// and wss:// only (certificate {}; SIGHUP reloads it)",
            tls.certificate_path().display()
        );
    }

    let (connectivity_tx, connectivity) = watch::channel(Connectivity {
        source: "none",
        interface: config.interface.clone(),
        state: "unknown".into(),
        connected: false,
        addresses: Vec::new(),
    });
    tokio::spawn(netwatch::run(
        config.interface.clone(),
        connectivity_tx,
        cancel.clone(),
    ));

    let hub = Hub::new(config.interval, config.history_len());
    let collector = Collector::new(&config);
    let collector_thread =
        hub::spawn_collector(hub.clone(), collector, connectivity.clone(), cancel.clone());

    let (status_tx, status_rx) = watch::channel(String::from("starting"));
    tokio::spawn(systemd::run(hub.clone(), status_rx, cancel.clone()));

    // The first document exists before anyone can connect, so every client gets one at once.
    let mut first = hub.subscribe();
    tokio::select! {
        _ = first.wait_for(|s| s.is_some()) => {}
        _ = cancel.cancelled() => {}
    }

    let result = supervise_listener(&config, &tls, &hub, connectivity, &status_tx, &cancel).await;
    systemd::stopping();
    cancel.cancel();
    // A collector blocked on a file that never answers (a FIFO or a hung FUSE mount under
    // `proc_root`) must not hold up the exit: the process ends without it.
    let joined = tokio::task::spawn_blocking(move || collector_thread.join());
    if tokio::time::timeout(COLLECTOR_STOP_TIMEOUT, joined)
        .await
        .is_err()
    {
        tracing::warn!(
            "the collector did not stop within {COLLECTOR_STOP_TIMEOUT:?}; exiting without it"
        );
    }
    tracing::info!("pistats stopped");
    result
}

/// Opens, moves and closes the listener as the serve policy and the interface's state
/// require, until `cancel` fires.
async fn supervise_listener(
    config: &Arc<Config>,
    tls: &Option<Tls>,
    hub: &Arc<Hub>,
    mut connectivity: watch::Receiver<Connectivity>,
    status: &watch::Sender<String>,
    cancel: &CancellationToken,
) -> Result<(), DaemonError> {
    // Keeps an ephemeral port (`port = 0`) across reopenings, so clients can come back.
    let mut port = config.port;
    let mut listener: Option<Listener> = None;
    let mut ready_sent = false;
    // The last bind failure and when to try again.
    let mut failed: Option<(tokio::time::Instant, DaemonError)> = None;
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

/// glibc's malloc arenas allowed (`MALLOC_ARENA_MAX` in the environment wins).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: i32 = 1;

/// Caps glibc's malloc arenas, before the runtime starts its threads. By default each thread
/// that allocates under contention gets an arena of its own (up to 8 per core) and clients
/// coming and going scatter their buffers over all of them: RSS after 30,000 connections
/// settles near 20 MiB instead of 17 MiB with one arena, at the same CPU cost (see
/// docs/benchmarks.md). Other C libraries allocate differently and are left alone.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no allocation is in flight on
        // another thread yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

/// Each client is a file descriptor; systemd's default soft limit (1024) would refuse
/// connections before `max_clients` does. sysinfo raises the soft limit to the hard one on
/// its first use anyway, and then keeps up to half of it for open `/proc` files; so the soft
/// limit is raised here, sysinfo is held to its share of [`FdBudget`], and the connection
/// caps (`AppState::new`) are derived from what remains.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("cannot raise the open-file limit to {}", limit.rlim_max);
            }
        }
    }
    sysinfo::set_open_files_limit(FdBudget::current().sysinfo);
}

/// SIGTERM and SIGINT shut down; SIGHUP (`systemctl reload`) reloads the TLS certificate.
fn spawn_signal_handlers(tls: Option<Tls>, cancel: CancellationToken) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    tokio::spawn(async move {
        let name = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => reload(tls.as_ref()),
                _ = cancel.cancelled() => return,
            }
        };
        tracing::info!("{name} received: shutting down");
        cancel.cancel();
    });
    Ok(())
}

fn reload(tls: Option<&Tls>) {
    let Some(tls) = tls else {
        tracing::info!("SIGHUP received: nothing to reload (TLS is off; settings need a restart)");
        return;
    };
    let path = tls.certificate_path().display();
    match tls.reload() {
        Ok(Reloaded::Changed) => {
            tracing::info!("SIGHUP received: TLS certificate reloaded from {path}")
        }
        Ok(Reloaded::Unchanged) => tracing::warn!(
            "SIGHUP received: {path} holds the certificate already in use (a credential \
             copy is only refreshed by a restart)"
        ),
        Err(err) => tracing::error!("SIGHUP received: {err}; still using the previous certificate"),
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
