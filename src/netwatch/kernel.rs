//! The kernel as the connectivity source, where NetworkManager is not running.
//!
//! The view is read with `getifaddrs` (link flags and addresses, from the caller's network
//! namespace) plus the `operstate` from sysfs, and read again whenever an rtnetlink
//! notification about links or addresses arrives. The interface counts as connected when its
//! link is up and running (carrier) and it has an address that is not link-local.
//!
//! For a wireless interface the kernel also gives signal and link quality
//! (`/proc/net/wireless`); the rest of the Wi-Fi detail (SSID, access point, frequency, bit
//! rate) would need nl80211 and is left unknown. rtnetlink does not announce signal changes,
//! so while the interface is wireless the view is also re-read every [`WIFI_POLL`].

use std::ffi::{CStr, CString};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::{wifi, Publisher, Target};
use crate::stats::ifaddrs::{self, LinkChanges};
use crate::stats::model::Connectivity;
use crate::stats::procfs::{read_number, read_trimmed};

pub(super) const SOURCE: &str = "kernel";

/// Re-read interval when no rtnetlink socket can be opened (e.g. a seccomp filter forbids it).
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Re-read interval of a wireless interface's signal, which has no notification.
const WIFI_POLL: Duration = Duration::from_secs(5);
/// Events arriving this close together (an address and a route, a flap) become one read.
const SETTLE: Duration = Duration::from_millis(20);

/// Follows `interface` through rtnetlink notifications; never returns.
pub(super) async fn follow(target: Target<'_>, out: &Publisher) {
    let interface = target.interface;
    let socket = match Netlink::open() {
        Ok(socket) => Some(socket),
        Err(err) => {
            tracing::warn!(
                "network: cannot subscribe to rtnetlink ({err}); polling {interface} every \
                 {POLL_INTERVAL:?}"
            );
            None
        }
    };
    loop {
        let view = read(target);
        let wireless = view.wifi.is_some();
        out.publish(view);
        match &socket {
            Some(socket) => {
                let changed = async {
                    if wireless {
                        tokio::select! {
                            changed = socket.changed() => changed,
                            _ = tokio::time::sleep(WIFI_POLL) => Ok(()),
                        }
                    } else {
                        socket.changed().await
                    }
                };
                if let Err(err) = changed.await {
                    tracing::warn!("network: rtnetlink read failed: {err}");
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue;
                }
                // Let a burst finish, then read once for all of it.
                tokio::time::sleep(SETTLE).await;
                let _ = socket.drain();
            }
            None => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

/// The kernel's current view of the interface.
pub(super) fn read(target: Target<'_>) -> Connectivity {
    let interface = target.interface;
    let mut view = Connectivity {
        source: SOURCE,
        interface: interface.to_owned(),
        state: "absent".into(),
        ..Connectivity::default()
    };
    let Ok(name) = CString::new(interface) else {
        return view;
    };
    // SAFETY: `name` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return view;
    }
    view.wifi = wifi::from_proc(target.proc_root, interface)
        .or_else(|| is_wireless(interface, index).then(crate::stats::model::Wifi::default));
    let Ok(Link { flags, addresses }) = link(&name) else {
        view.state = "unknown".into();
        return view;
    };
    let up = flags & libc::IFF_UP as u32 != 0;
    let running = up && flags & libc::IFF_RUNNING as u32 != 0;
    view.state = operstate(interface, index).unwrap_or_else(|| {
        match (up, running) {
            (_, true) => "up",
            (true, false) => "no-carrier",
            (false, _) => "down",
        }
        .into()
    });
    view.connected = running && addresses.iter().any(|(ip, _)| routable(ip));
    view.addresses = addresses
        .iter()
        .map(|(ip, prefix)| format!("{ip}/{prefix}"))
        .collect();
    view
}

/// `/sys/class/net/IFACE/operstate`, but only when that sysfs belongs to our network
/// namespace (sysfs shows the namespace of whoever mounted it): its ifindex must match.
fn operstate(interface: &str, index: u32) -> Option<String> {
    let dir = std::path::Path::new("/sys/class/net").join(interface);
    let sys_index: u32 = read_number(&dir.join("ifindex"))?;
    if sys_index != index {
        return None;
    }
    read_trimmed(&dir.join("operstate")).filter(|s| !s.is_empty())
}

/// Whether sysfs (of our network namespace, see [`operstate`]) marks the interface wireless:
/// cfg80211 interfaces have a `wireless` directory even while not associated, when
/// `/proc/net/wireless` leaves them out.
fn is_wireless(interface: &str, index: u32) -> bool {
    let dir = std::path::Path::new("/sys/class/net").join(interface);
    read_number::<u32>(&dir.join("ifindex")) == Some(index) && dir.join("wireless").is_dir()
}

fn routable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_unspecified(),
        // fe80::/10
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80 && !v6.is_unspecified(),
    }
}

struct Link {
    flags: u32,
    addresses: Vec<(IpAddr, u8)>,
}

/// Flags and addresses of one interface, from `getifaddrs`.
fn link(name: &CStr) -> io::Result<Link> {
    let mut link = Link {
        flags: 0,
        addresses: Vec::new(),
    };
    crate::stats::ifaddrs::walk(|entry| {
        if entry.name == name {
            link.flags |= entry.flags;
            link.addresses.extend(entry.address);
        }
    })?;
    link.addresses.sort();
    Ok(link)
}

/// The rtnetlink subscription ([`LinkChanges`]), waited on through the runtime.
struct Netlink(AsyncFd<OwnedFd>);

impl Netlink {
    fn open() -> io::Result<Netlink> {
        let fd = LinkChanges::open()?.into_fd();
        // SAFETY: the AsyncFd owns the descriptor, so it stays open as long as it is
        // registered.
        unsafe { AsyncFd::register(fd) }
            .map(Netlink)
            .map_err(|err| err.into_parts().1)
    }

    /// Waits for at least one notification (or a lost one: the queue overflowed).
    async fn changed(&self) -> io::Result<()> {
        super::drained(&self.0).await
    }

    /// Discards whatever is queued; true when something was.
    fn drain(&self) -> io::Result<bool> {
        match ifaddrs::drain(self.0.as_raw_fd()) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(interface: &str) -> Target<'_> {
        Target {
            interface,
            proc_root: std::path::Path::new("/proc"),
        }
    }

    #[test]
    fn loopback_is_up_with_its_address() {
        let lo = read(target("lo"));
        assert_eq!(lo.source, SOURCE);
        assert!(lo.addresses.iter().any(|a| a == "127.0.0.1/8"), "{lo:?}");
        assert_ne!(lo.state, "absent");
        assert_eq!(lo.wifi, None, "loopback is not wireless");
    }

    #[test]
    fn missing_interface_is_absent() {
        let none = read(target("nosuchif0"));
        assert_eq!(none.state, "absent");
        assert!(!none.connected);
        assert!(none.addresses.is_empty());
    }

    #[test]
    fn link_local_addresses_do_not_count() {
        assert!(!routable(&"169.254.1.2".parse().unwrap()));
        assert!(!routable(&"fe80::1".parse().unwrap()));
        assert!(routable(&"192.0.2.1".parse().unwrap()));
        assert!(routable(&"2001:db8::1".parse().unwrap()));
    }
}
