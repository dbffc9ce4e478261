//! Client limits: a global cap and a per-address cap on WebSocket clients, enforced before
//! the upgrade so a flood is refused with a plain HTTP status instead of a half-open socket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::hub::Hub;

/// Why a client was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Server,
    Address,
}

pub struct Admission {
    hub: Arc<Hub>,
    max_clients: usize,
    max_per_address: usize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
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
            per_address: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for a client from `address`, or says which limit is reached.
    pub fn admit(self: &Arc<Self>, address: Option<IpAddr>) -> Result<Slot, Full> {
        let mut per_address = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let clients = &self.hub.counters.clients;
        if clients.load(Ordering::Relaxed) as usize >= self.max_clients {
            return Err(self.refuse(Full::Server));
        }
        if let Some(address) = address {
            let count = per_address.entry(address).or_insert(0);
            if *count >= self.max_per_address {
                return Err(self.refuse(Full::Address));
            }
            *count += 1;
        }
        clients.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            admission: self.clone(),
            address,
        })
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
        let mut per_address = self
            .admission
            .per_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(address) = self.address {
            if let Some(count) = per_address.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    per_address.remove(&address);
                }
            }
        }
        self.admission
            .hub
            .counters
            .clients
            .fetch_sub(1, Ordering::Relaxed);
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
}
