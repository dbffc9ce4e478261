//! Interface addresses and flags from `getifaddrs(3)`: one netlink dump per call. The one
//! walker of that C list, shared by the collector and the kernel connectivity source
//! ([`crate::netwatch`]), and the rtnetlink subscription both use to know when to walk it
//! again ([`LinkChanges`]).
//!
//! sysinfo's `Networks` would also do this, but each refresh first reads every interface's
//! counter files under `/sys/class/net`, which pistats takes from `/proc/net/dev` in one read;
//! that was a fifth of the collector's time.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// One entry of the `getifaddrs` list. An interface has one entry per address, plus one for
/// its link layer (`address` is `None` there).
pub struct Entry<'a> {
    pub name: &'a CStr,
    /// `IFF_*` flags of the interface.
    pub flags: u32,
    /// An IPv4 or IPv6 address with its prefix length.
    pub address: Option<(IpAddr, u8)>,
}

/// Calls `visit` for every entry of one `getifaddrs` dump.
pub fn walk(mut visit: impl FnMut(Entry<'_>)) -> io::Result<()> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: on success `head` is a list owned by us until `freeifaddrs` below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list, which stays alive until `freeifaddrs`; the
        // name is a C string, the address and netmask point to sockaddrs of the family that
        // `sa_family` names.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_name.is_null() {
            continue;
        }
        let address = if entry.ifa_addr.is_null() {
            None
        } else {
            unsafe { decode(entry.ifa_addr, entry.ifa_netmask) }
        };
        visit(Entry {
            name: unsafe { CStr::from_ptr(entry.ifa_name) },
            flags: entry.ifa_flags,
            address,
        });
    }
    // SAFETY: `head` came from a successful `getifaddrs` and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(())
}

/// Every interface's IPv4 and IPv6 addresses with their prefix lengths, by interface name.
/// Empty when `getifaddrs` fails.
pub fn interface_addresses() -> BTreeMap<String, Vec<(IpAddr, u8)>> {
    let mut by_interface: BTreeMap<String, Vec<(IpAddr, u8)>> = BTreeMap::new();
    let walked = walk(|entry| {
        if let Some(address) = entry.address {
            by_interface
                .entry(entry.name.to_string_lossy().into_owned())
                .or_default()
                .push(address);
        }
    });
    if walked.is_err() {
        by_interface.clear();
    }
    by_interface
}

/// A non-blocking `NETLINK_ROUTE` socket subscribed to link and address notifications (a
/// link added, removed, up or down, its carrier, MTU or MAC changed; an address added or
/// removed). Their content is not parsed: any notification means "read again". The
/// subscription needs no privilege.
pub struct LinkChanges(OwnedFd);

impl LinkChanges {
    pub fn open() -> io::Result<LinkChanges> {
        // SAFETY: plain socket/bind calls; the fd is owned by `OwnedFd` right away, and
        // `addr` is a zeroed `sockaddr_nl` of the size passed.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            addr.nl_groups =
                (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
            if libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(LinkChanges(fd))
        }
    }

    /// Whether anything changed since the last call: discards what is queued, and counts a
    /// lost notification (the queue overflowed) or a failed read as a change.
    pub fn pending(&self) -> bool {
        match drain(self.0.as_raw_fd()) {
            Ok(()) => true,
            Err(err) => err.kind() != io::ErrorKind::WouldBlock,
        }
    }

    /// The socket, for a caller that waits on it (see [`drain`]).
    pub fn into_fd(self) -> OwnedFd {
        self.0
    }
}

/// Reads the non-blocking `fd` until it is empty: for sockets and inotify instances whose
/// messages only say "look again". `Ok` when anything arrived (a netlink overflow counts:
/// notifications were lost, so a re-read is due); `WouldBlock` when nothing did.
pub fn drain(fd: RawFd) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    let mut any = false;
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            any = true;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ENOBUFS) => any = true,
            _ if err.kind() == io::ErrorKind::WouldBlock => {
                return if any { Ok(()) } else { Err(err) };
            }
            _ => return Err(err),
        }
    }
}

/// An IPv4 or IPv6 address and its prefix length; `None` for other families (link layer).
///
/// # Safety
/// `addr` must point to a valid sockaddr; `netmask`, if not null, to one of the same family.
unsafe fn decode(
    addr: *const libc::sockaddr,
    netmask: *const libc::sockaddr,
) -> Option<(IpAddr, u8)> {
    match i32::from(unsafe { (*addr).sa_family }) {
        libc::AF_INET => {
            let ip = unsafe { &*addr.cast::<libc::sockaddr_in>() }
                .sin_addr
                .s_addr;
            let prefix = if netmask.is_null() {
                32
            } else {
                let mask = unsafe { &*netmask.cast::<libc::sockaddr_in>() }
                    .sin_addr
                    .s_addr;
                mask.count_ones() as u8
            };
            Some((IpAddr::V4(Ipv4Addr::from(u32::from_be(ip))), prefix))
        }
        libc::AF_INET6 => {
            let ip = unsafe { &*addr.cast::<libc::sockaddr_in6>() }
                .sin6_addr
                .s6_addr;
            let prefix = if netmask.is_null() {
                128
            } else {
                let mask = unsafe { &*netmask.cast::<libc::sockaddr_in6>() }
                    .sin6_addr
                    .s6_addr;
                mask.iter().map(|b| b.count_ones()).sum::<u32>() as u8
            };
            Some((IpAddr::V6(Ipv6Addr::from(ip)), prefix))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_addresses() {
        let all = interface_addresses();
        let lo = all.get("lo").expect("lo is listed");
        assert!(lo.contains(&(IpAddr::V4(Ipv4Addr::LOCALHOST), 8)), "{lo:?}");
    }
}
