//! Client limits, enforced before anything is read or upgraded so a flood is refused with a
//! plain HTTP status instead of costing memory:
//!
//! - [`Connections`]: every accepted connection (until it is upgraded) takes a slot, under a
//!   global cap derived from the real file-descriptor budget and a per-address cap;
//! - [`Admission`]: every WebSocket client takes a slot, under `max_clients` and
//!   `max_clients_per_ip`.
//!
//! Addresses are counted by [`address_key`]: an IPv6 host owns a whole /64 (SLAAC and
//! privacy extensions hand it as many addresses as it likes), so limits apply per /64.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::hub::Hub;

/// Why a client was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Server,
    Address,
}

/// The unit per-address limits count: an IPv4 address (IPv4-mapped IPv6 included), or the
/// /64 prefix of an IPv6 address.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// Counts per address key, shared by both kinds of slot.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    /// Adds one for `key` unless it already holds `max`.
    fn take(&self, key: IpAddr, max: usize) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(key).or_insert(0);
        if *count >= max {
            if *count == 0 {
                map.remove(&key);
            }
            return false;
        }
        *count += 1;
        true
    }

    fn give_back(&self, key: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&key);
            }
        }
    }
}

pub struct Admission {
    hub: Arc<Hub>,
    max_clients: usize,
    max_per_address: usize,
    per_address: PerAddress,
    /// Slots given back since the last [`Admission::take_released`]; a burst that ended
    /// is the moment to hand freed memory back to the OS.
    released: AtomicUsize,
}

/// A held client slot; dropping it frees the slot.
pub struct Slot {
    admission: Arc<Admission>,
    address: Option<IpAddr>,
}

impl Admission {
    pub fn new(hub: Arc<Hub>, max_clients: usize, max_per_address: usize) -> Arc<Admission> {
        Arc::new(Admission {
            hub,
            max_clients,
            max_per_address,
            per_address: PerAddress::default(),
            released: AtomicUsize::new(0),
        })
    }

    /// Takes a slot for a client from `address`, or says which limit is reached.
    pub fn admit(self: &Arc<Self>, address: Option<IpAddr>) -> Result<Slot, Full> {
        let clients = &self.hub.counters.clients;
        if clients.load(Ordering::Relaxed) as usize >= self.max_clients {
            return Err(self.refuse(Full::Server));
        }
        let address = address.map(address_key);
        if let Some(key) = address {
            if !self.per_address.take(key, self.max_per_address) {
                return Err(self.refuse(Full::Address));
            }
        }
        clients.fetch_add(1, Ordering::Relaxed);
        self.hub.counters.clients_changed.notify_one();
        Ok(Slot {
            admission: self.clone(),
            address,
        })
    }

    /// The number of client slots freed since the last call.
    pub fn take_released(&self) -> usize {
        self.released.swap(0, Ordering::Relaxed)
    }

    fn refuse(&self, full: Full) -> Full {
        self.hub
            .counters
            .refused_clients
            .fetch_add(1, Ordering::Relaxed);
        full
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(key) = self.address {
            self.admission.per_address.give_back(key);
        }
        self.admission.released.fetch_add(1, Ordering::Relaxed);
        self.admission
            .hub
            .counters
            .clients
            .fetch_sub(1, Ordering::Relaxed);
        self.admission.hub.counters.clients_changed.notify_one();
    }
}

/// Open connections that hyper still owns (requests being read, answered or kept alive).
/// WebSocket clients leave this count when upgraded and are counted by [`Admission`].
pub struct Connections {
    /// Most connections open at once, WebSocket clients included.
    max_total: usize,
    /// Most connections from one address key.
    max_per_address: usize,
    open: AtomicUsize,
    per_address: PerAddress,
    released: AtomicUsize,
}

/// A held connection slot; dropping it frees the slot.
pub struct ConnectionSlot {
    connections: Arc<Connections>,
    key: IpAddr,
}

impl Connections {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max_total,
            max_per_address,
            open: AtomicUsize::new(0),
            per_address: PerAddress::default(),
            released: AtomicUsize::new(0),
        })
    }

    /// Takes a slot for a connection from `ip` while `websockets` clients are connected.
    pub fn open(self: &Arc<Self>, ip: IpAddr, websockets: usize) -> Result<ConnectionSlot, Full> {
        if self.open.load(Ordering::Relaxed) + websockets >= self.max_total {
            return Err(Full::Server);
        }
        let key = address_key(ip);
        if !self.per_address.take(key, self.max_per_address) {
            return Err(Full::Address);
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionSlot {
            connections: self.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The number of connection slots freed since the last call.
    pub fn take_released(&self) -> usize {
        self.released.swap(0, Ordering::Relaxed)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.connections.per_address.give_back(self.key);
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
        self.connections.released.fetch_add(1, Ordering::Relaxed);
    }
}

/// File descriptors kept for everything but client connections: the listener, the
/// collector's transient files, netlink and D-Bus sockets, logging.
pub const FD_RESERVE: usize = 64;
/// Most `/proc/PID/stat` files the process scan may keep open (one per process, so each scan
/// reads without opening; see `stats::processes`).
pub const SYSINFO_FILES: usize = 512;
/// Connections hyper owns (requests, keep-alive) allowed beside `max_clients` WebSockets.
pub const MAX_HTTP_CONNECTIONS: usize = 256;

/// How the process's file descriptors are shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// For the process scan's open `/proc/PID/stat` files.
    pub sysinfo: usize,
    /// For client connections of every kind.
    pub connections: usize,
}

impl FdBudget {
    /// The shares of a soft limit of `limit` descriptors.
    pub fn of(limit: u64) -> FdBudget {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let sysinfo = SYSINFO_FILES.min(limit / 4);
        FdBudget {
            sysinfo,
            connections: limit.saturating_sub(sysinfo + FD_RESERVE).max(1),
        }
    }

    /// The shares of the process's current soft limit.
    pub fn current() -> FdBudget {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct passed to it.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        // rlim_t is 32 bits wide on armhf.
        #[allow(clippy::useless_conversion)]
        let soft = u64::from(limit.rlim_cur);
        FdBudget::of(if ok { soft } else { 1024 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits_are_enforced_and_released() {
        let hub = Hub::new(Duration::from_secs(1), 0);
        let admission = Admission::new(hub.clone(), 3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = admission.admit(Some(a)).unwrap();
        let _s2 = admission.admit(Some(a)).unwrap();
        assert_eq!(admission.admit(Some(a)).err(), Some(Full::Address));
        let _s3 = admission.admit(Some(b)).unwrap();
        assert_eq!(admission.admit(Some(b)).err(), Some(Full::Server));
        assert_eq!(hub.clients(), 3);
        drop(s1);
        assert_eq!(hub.clients(), 2);
        assert!(admission.admit(Some(a)).is_ok());
        assert_eq!(hub.counters.refused_clients.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:bbbb:cccc:dddd:eeee"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_ne!(address_key(ip("192.0.2.7")), address_key(ip("192.0.2.8")));

        // 30 addresses of one host take at most `max_per_address` WebSocket slots.
        let hub = Hub::new(Duration::from_secs(1), 0);
        let admission = Admission::new(hub.clone(), 100, 2);
        let admitted: Vec<_> = (1..=30)
            .filter_map(|i| admission.admit(Some(ip(&format!("2001:db8::{i:x}")))).ok())
            .collect();
        assert_eq!(admitted.len(), 2);
        assert!(admission.admit(Some(ip("2001:db8:0:1::1"))).is_ok());
    }

    #[test]
    fn fd_budget_leaves_room_for_the_collector() {
        assert_eq!(
            FdBudget::of(256),
            FdBudget {
                sysinfo: 64,
                connections: 128
            }
        );
        let big = FdBudget::of(524_288);
        assert_eq!(big.sysinfo, SYSINFO_FILES);
        assert_eq!(big.connections, 524_288 - SYSINFO_FILES - FD_RESERVE);
        assert_eq!(FdBudget::of(10).connections, 1);
    }

    #[test]
    fn connection_caps_count_websockets_and_addresses() {
        let connections = Connections::new(4, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = connections.open(a, 0).unwrap();
        let _second = connections.open(a, 0).unwrap();
        assert_eq!(connections.open(a, 0).err(), Some(Full::Address));
        // Two WebSocket clients fill the remaining budget.
        assert_eq!(connections.open(b, 2).err(), Some(Full::Server));
        let _third = connections.open(b, 1).unwrap();
        assert_eq!(connections.count(), 3);
        drop(first);
        assert_eq!(connections.count(), 2);
        assert_eq!(connections.take_released(), 1);
        assert!(connections.open(a, 0).is_ok());
    }
}
