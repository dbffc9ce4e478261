//! Interface addresses and flags from `getifaddrs(3)`: one netlink dump per call. The one
//! walker of that C list, shared by the collector and the kernel connectivity source
//! ([`crate::netwatch`]).
//!
//! sysinfo's `Networks` would also do this, but each refresh first reads every interface's
//! counter files under `/sys/class/net`, which pistats takes from `/proc/net/dev` in one read;
//! that was a fifth of the collector's time.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
