//! Connectivity of the watched interface, event-driven.
//!
//! NetworkManager on the system bus is the preferred source: it knows whether a Wi-Fi link is
//! really usable (associated, authenticated, addressed), not just up. Where it is not running
//! (older Raspberry Pi OS, minimal images, dev machines) the kernel's view is used instead:
//! link flags and addresses, re-read on every rtnetlink event. The watcher switches between
//! the two as NetworkManager comes and goes, and reconnects to the system bus with a bounded
//! backoff when the bus itself goes away. Nothing here blocks the runtime or panics: every
//! failure degrades to the next source and is logged.
//!
//! For a wireless interface the view carries the Wi-Fi link (SSID, access point, signal, bit
//! rate, security) and, when not connected, NetworkManager's reason. Roams (a new access point
//! while connected) and disconnects are logged with the interface and reason as fields, for
//! the events timeline and for `journalctl INTERFACE=… REASON=…`-style searches.
//!
//! The system bus address honours `DBUS_SYSTEM_BUS_ADDRESS`, which the tests use to point the
//! daemon at a private bus.

mod appears;
mod kernel;
mod networkmanager;
mod wifi;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zbus::fdo::DBusProxy;
use zbus::names::{BusName, UniqueName};
use zbus::Connection;

use crate::config::Config;
use crate::stats::ifaddrs;
use crate::stats::model::{Connectivity, Wifi};

/// The kernel's current signal and quality for `interface` in `PROC/net/wireless`'s
/// `content`; `None` when it is not listed there (not wireless, or not associated). The
/// collector reads the file on every tick, as neither source follows the signal in dBm.
pub(crate) fn kernel_wifi(content: &[u8], interface: &str) -> Option<Wifi> {
    wifi::parse_proc(std::str::from_utf8(content).ok()?, interface)
}

/// Well-known bus name of NetworkManager.
const NM_NAME: &str = "org.freedesktop.NetworkManager";
/// Limit for connecting to the system bus, so a wedged bus cannot stall the watcher.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit for `pistats network` to ask NetworkManager.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait before trying the system bus again.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Pause after an unexpected NetworkManager error before following it again.
const NM_RETRY_DELAY: Duration = Duration::from_secs(2);

/// What is watched: the interface, and where the kernel's `/proc` is (for
/// `/proc/net/wireless`; a fixture tree in tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) interface: &'a str,
    pub(crate) proc_root: &'a Path,
}

/// Publishes connectivity changes and logs each transition once.
pub(crate) struct Publisher {
    tx: watch::Sender<Connectivity>,
}

impl Publisher {
    /// Logs and publishes `new` if it differs from the current view. The log line comes
    /// first, so it precedes whatever the daemon does about the change.
    pub(crate) fn publish(&self, new: Connectivity) {
        let previous = self.tx.borrow().clone();
        if previous == new {
            return;
        }
        if previous.source != new.source {
            tracing::info!(
                interface = new.interface.as_str(),
                "network: following {} through {}",
                new.interface,
                source_name(new.source)
            );
        }
        log_wifi(&previous, &new);
        if previous.connected != new.connected || previous.state != new.state {
            tracing::info!(
                interface = new.interface.as_str(),
                "network: {} is {} ({}){}",
                new.interface,
                new.state,
                if new.connected {
                    "connected"
                } else {
                    "not connected"
                },
                if new.addresses.is_empty() {
                    String::new()
                } else {
                    format!(", {}", new.addresses.join(" "))
                }
            );
        } else if previous.addresses != new.addresses {
            tracing::info!(
                interface = new.interface.as_str(),
                "network: {} addresses: {}",
                new.interface,
                if new.addresses.is_empty() {
                    "none".to_owned()
                } else {
                    new.addresses.join(" ")
                }
            );
        }
        // This watcher is the only sender, so nothing changed since the comparison.
        self.tx.send_replace(new);
    }
}

/// Logs a roam (another access point while connected) and a disconnect with its reason;
/// the interface, access points and reason are also fields of the line.
fn log_wifi(previous: &Connectivity, new: &Connectivity) {
    let interface = new.interface.as_str();
    if previous.connected && !new.connected && previous.source == new.source {
        let reason = new.reason.as_deref().unwrap_or("no reason given");
        tracing::warn!(
            interface,
            reason,
            "network: {interface} disconnected ({}): {reason}",
            new.state
        );
        return;
    }
    let bssid = |c: &Connectivity| c.wifi.as_ref().and_then(|w| w.bssid.clone());
    if let (true, Some(from), Some(to)) = (
        previous.connected && new.connected,
        bssid(previous),
        bssid(new),
    ) {
        if from != to {
            let wifi = new.wifi.as_ref();
            let ssid = wifi.and_then(|w| w.ssid.as_deref()).unwrap_or("?");
            tracing::info!(
                interface,
                from_bssid = from.as_str(),
                bssid = to.as_str(),
                ssid,
                "network: {interface} roamed from {from} to {to} ({ssid}{})",
                wifi.and_then(|w| w.band)
                    .map(|b| format!(", {b}"))
                    .unwrap_or_default()
            );
        }
    }
}

fn source_name(source: &str) -> &'static str {
    match source {
        networkmanager::SOURCE => "NetworkManager",
        kernel::SOURCE => "the kernel (rtnetlink)",
        _ => "nothing",
    }
}

/// Starts following the configured interface until `cancel` fires; the receiver sees every
/// change (`unknown` until the first view).
pub fn spawn(
    config: &Config,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> watch::Receiver<Connectivity> {
    let (tx, rx) = watch::channel(Connectivity {
        source: "none",
        interface: config.interface.clone(),
        state: "unknown".into(),
        ..Connectivity::default()
    });
    tracker.spawn(run_in(
        config.interface.clone(),
        config.proc_root.clone(),
        tx,
        cancel,
    ));
    rx
}

/// Follows `interface` until `cancel` fires, publishing every change on `tx`.
pub async fn run(interface: String, tx: watch::Sender<Connectivity>, cancel: CancellationToken) {
    run_in(interface, PathBuf::from("/proc"), tx, cancel).await
}

/// [`run`] with the kernel's `/proc` at `proc_root`.
pub async fn run_in(
    interface: String,
    proc_root: PathBuf,
    tx: watch::Sender<Connectivity>,
    cancel: CancellationToken,
) {
    let out = Publisher { tx };
    let target = Target {
        interface: &interface,
        proc_root: &proc_root,
    };
    tokio::select! {
        _ = follow(target, &out) => {}
        _ = cancel.cancelled() => {}
    }
}

/// Waits until `fd` is readable and discards what is queued: for the rtnetlink socket and the
/// inotify instance, whose messages only say "look again".
async fn drained(fd: &AsyncFd<OwnedFd>) -> io::Result<()> {
    loop {
        let mut guard = fd.readable().await?;
        // Nothing queued (`WouldBlock`) clears the readiness and waits again.
        if let Ok(result) = guard.try_io(|fd| ifaddrs::drain(fd.as_raw_fd())) {
            return result;
        }
    }
}

/// Never returns: alternates between the system bus (while it is reachable) and the kernel.
///
/// Without the bus the kernel follower runs without a break while the retries go on beside
/// it: restarting it for every attempt would reopen its rtnetlink socket and re-read the
/// interface each time, which on a machine without a system bus was most of what an
/// unwatched daemon's runtime did.
async fn follow(target: Target<'_>, out: &Publisher) {
    let mut retry = BusRetry::new(system_bus_socket(
        std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok().as_deref(),
    ));
    let mut conn = match retry.attempt().await {
        Ok(conn) => conn,
        Err(why) => {
            retry.failed(&why);
            kernel_until_bus(target, out, &mut retry).await
        }
    };
    loop {
        retry.connected();
        let since = tokio::time::Instant::now();
        match on_bus(&conn, target, out).await {
            Ok(()) => tracing::warn!("network: lost the system bus; reconnecting"),
            Err(err) => tracing::warn!("network: system bus error: {err}; reconnecting"),
        }
        // A bus that was fine for a while gets a quick retry; one that fails right after
        // connecting keeps backing off.
        if since.elapsed() > BACKOFF_MAX {
            retry.backoff = BACKOFF_MIN;
        }
        conn = kernel_until_bus(target, out, &mut retry).await;
    }
}

/// Follows the kernel, the only source without the bus, until an attempt connects.
async fn kernel_until_bus(target: Target<'_>, out: &Publisher, retry: &mut BusRetry) -> Connection {
    loop {
        tokio::select! {
            () = kernel::follow(target, out) => {}
            conn = retry.until_connected() => return conn,
        }
    }
}

/// Attempts to connect to the system bus, with a doubling backoff between them.
struct BusRetry {
    /// The bus's socket, when its address names one. While it does not exist there is
    /// nothing to connect to (and an attempt is not free: zbus connects on a blocking thread,
    /// a new one for each attempt when they are 30 s apart), so the next attempt waits for it
    /// to be created.
    socket: Option<PathBuf>,
    backoff: Duration,
    /// Failed attempts in a row, so only the first is logged at `info`.
    failures: u32,
}

impl BusRetry {
    fn new(socket: Option<PathBuf>) -> BusRetry {
        BusRetry {
            socket,
            backoff: BACKOFF_MIN,
            failures: 0,
        }
    }

    /// One attempt; the error says why, in words a Pi owner can act on.
    async fn attempt(&self) -> Result<Connection, String> {
        if let Some(path) = self.socket.as_deref().filter(|path| !path.exists()) {
            return Err(format!(
                "no system bus to connect to, is dbus running? ({} does not exist)",
                path.display()
            ));
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, Connection::system()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(describe_bus_error(&err)),
            Err(_) => Err(format!("it did not answer within {CONNECT_TIMEOUT:?}")),
        }
    }

    /// Waits out the backoff (or, while the socket does not exist, for it to be created) and
    /// attempts again, until an attempt connects.
    async fn until_connected(&mut self) -> Connection {
        loop {
            match self.socket.as_deref().filter(|path| !path.exists()) {
                Some(missing) => appears::appears(missing).await,
                None => {
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
            }
            match self.attempt().await {
                Ok(conn) => return conn,
                Err(why) => self.failed(&why),
            }
        }
    }

    /// The first failure is worth a line in the log; retries every few seconds are not.
    fn failed(&mut self, err: &str) {
        if self.failures == 0 {
            tracing::info!(
                "network: system bus unavailable ({err}); using the kernel, retrying the bus \
                 when its socket appears, or with backoff up to {BACKOFF_MAX:?}"
            );
        } else {
            tracing::debug!("network: system bus still unavailable ({err})");
        }
        self.failures += 1;
    }

    fn connected(&mut self) {
        if self.failures > 0 {
            tracing::info!("network: connected to the system bus");
        }
        self.failures = 0;
    }
}

/// The socket the system bus listens on, when its address is one plain `unix:path=`
/// (`DBUS_SYSTEM_BUS_ADDRESS`, else the standard path); `None` for anything else (several
/// addresses, escaped characters, abstract sockets, TCP), which is left to zbus to try.
fn system_bus_socket(address: Option<&str>) -> Option<PathBuf> {
    let address = address.unwrap_or("unix:path=/var/run/dbus/system_bus_socket");
    let path = address.strip_prefix("unix:path=")?;
    let path = path.split_once(',').map_or(path, |(path, _)| path);
    (!path.is_empty() && !path.contains([';', '%'])).then(|| PathBuf::from(path))
}

/// Why the system bus could not be used, in words a Pi owner can act on. A missing socket
/// means dbus is not running (or not installed); a connection dropped during the handshake
/// means dbus-daemon refused this process's user, which it does for a systemd `DynamicUser=`
/// (the packaged unit runs as the static user `pistats` for this reason).
fn describe_bus_error(err: &zbus::Error) -> String {
    use std::io::ErrorKind;
    let io_kind = match err {
        zbus::Error::Connection(io, _) | zbus::Error::InputOutput(io) => Some(io.kind()),
        _ => None,
    };
    match (io_kind, err) {
        (Some(ErrorKind::NotFound | ErrorKind::ConnectionRefused), _) => {
            format!("no system bus to connect to, is dbus running? ({err})")
        }
        (Some(_), _) | (None, zbus::Error::Handshake(_)) => format!(
            "the system bus refused pistats ({err}); NetworkManager cannot be followed: \
             check that dbus runs and that no drop-in sets DynamicUser=yes \
             (systemctl cat pistats)"
        ),
        _ => err.to_string(),
    }
}

/// Follows NetworkManager while it owns its name and the kernel while it does not, until the
/// bus connection is lost (`Ok`) or fails (`Err`).
async fn on_bus(conn: &Connection, target: Target<'_>, out: &Publisher) -> zbus::Result<()> {
    let dbus = DBusProxy::new(conn).await?;
    // Subscribe before asking for the owner, so no change falls between the two.
    let mut owners = dbus
        .receive_name_owner_changed_with_args(&[(0, NM_NAME)])
        .await?;
    let mut owner = nm_owner(&dbus).await?;
    loop {
        let next_owner = async {
            loop {
                let signal = owners.next().await?;
                match signal.args() {
                    Ok(args) => return Some(args.new_owner().as_ref().map(|o| o.to_owned())),
                    Err(err) => tracing::debug!("network: bad NameOwnerChanged signal: {err}"),
                }
            }
        };
        match owner.clone() {
            Some(nm) => {
                tracing::debug!("network: NetworkManager is {nm}");
                tokio::select! {
                    new = next_owner => match new {
                        Some(new) => {
                            if new.is_none() {
                                tracing::info!("network: NetworkManager left the system bus");
                            }
                            owner = new;
                        }
                        None => return Ok(()),
                    },
                    err = networkmanager::follow(conn, &nm, target.interface, out) => {
                        if conn.is_closed() {
                            return Ok(());
                        }
                        tracing::warn!(
                            "network: following NetworkManager failed: {err}; \
                             trying again in {NM_RETRY_DELAY:?}"
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(NM_RETRY_DELAY) => {}
                            _ = conn.closed() => return Ok(()),
                        }
                        owner = nm_owner(&dbus).await?;
                    }
                    _ = conn.closed() => return Ok(()),
                }
            }
            None => {
                tracing::debug!("network: NetworkManager is not on the system bus");
                tokio::select! {
                    new = next_owner => match new {
                        Some(new) => owner = new,
                        None => return Ok(()),
                    },
                    _ = kernel::follow(target, out) => {}
                    _ = conn.closed() => return Ok(()),
                }
            }
        }
    }
}

/// NetworkManager's unique bus name, if it is running.
async fn nm_owner(dbus: &DBusProxy<'_>) -> zbus::Result<Option<UniqueName<'static>>> {
    let name = BusName::try_from(NM_NAME)?;
    match dbus.get_name_owner(name).await {
        Ok(owner) => Ok(Some(owner.into_inner())),
        Err(zbus::fdo::Error::NameHasNoOwner(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// One-shot view of `interface`, for `pistats network`: NetworkManager's when it is on the
/// system bus, the kernel's otherwise.
pub async fn probe(interface: &str, proc_root: &Path) -> Connectivity {
    let from_nm = async {
        let conn = Connection::system().await.ok()?;
        let dbus = DBusProxy::new(&conn).await.ok()?;
        let nm = nm_owner(&dbus).await.ok()??;
        networkmanager::read_once(&conn, &nm, interface).await.ok()
    };
    match tokio::time::timeout(PROBE_TIMEOUT, from_nm).await {
        Ok(Some(connectivity)) => connectivity,
        _ => kernel::read(Target {
            interface,
            proc_root,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a plain socket path is checked before connecting; anything zbus parses further
    /// (several addresses, escapes, abstract sockets, TCP) is left to it.
    #[test]
    fn the_bus_socket_is_known_only_for_a_plain_path() {
        let path = |address| system_bus_socket(address);
        assert_eq!(
            path(None),
            Some(PathBuf::from("/var/run/dbus/system_bus_socket"))
        );
        assert_eq!(
            path(Some("unix:path=/tmp/bus,guid=0123")),
            Some(PathBuf::from("/tmp/bus"))
        );
        assert_eq!(
            path(Some("unix:path=/tmp/bus")),
            Some(PathBuf::from("/tmp/bus"))
        );
        assert_eq!(path(Some("unix:path=/tmp/a%20b")), None);
        assert_eq!(path(Some("unix:path=/tmp/a;unix:path=/tmp/b")), None);
        assert_eq!(path(Some("unix:abstract=bus")), None);
        assert_eq!(path(Some("tcp:host=127.0.0.1,port=1")), None);
        assert_eq!(path(Some("unix:path=")), None);
    }
}
