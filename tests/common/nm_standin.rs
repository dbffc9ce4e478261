//! A NetworkManager stand-in: a real D-Bus service, implemented here with zbus, offering the
//! objects, properties and signals pistats uses (the manager's `GetDeviceByIpIface`,
//! `DeviceAdded` and `DeviceRemoved`; a device's `State`, `Ip4Config` and `Ip6Config`; an IPv4
//! configuration's `AddressData`). Tests run it on a private [`Bus`](super::dbus::Bus) and
//! change states, addresses and devices the way NetworkManager does: a new configuration
//! object for new addresses, new object paths after a restart, bursts of unrelated signals.
//!
//! Real NetworkManager in a container is exercised by `tests/nm/run.sh`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

pub const NM_NAME: &str = "org.freedesktop.NetworkManager";
pub const NM_PATH: &str = "/org/freedesktop/NetworkManager";

/// `NMDeviceState` values (NetworkManager's D-Bus API) the tests use by name.
pub const DISCONNECTED: u32 = 30;
pub const PREPARE: u32 = 40;
pub const CONFIG: u32 = 50;
pub const IP_CONFIG: u32 = 70;
pub const ACTIVATED: u32 = 100;
pub const DEACTIVATING: u32 = 110;
pub const FAILED: u32 = 120;

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.NetworkManager")]
enum NmError {
    #[zbus(error)]
    ZBus(zbus::Error),
    UnknownDevice(String),
}

struct Manager {
    devices: Arc<Mutex<HashMap<String, OwnedObjectPath>>>,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl Manager {
    fn get_device_by_ip_iface(&self, iface: &str) -> Result<OwnedObjectPath, NmError> {
        self.devices
            .lock()
            .unwrap()
            .get(iface)
            .cloned()
            .ok_or_else(|| NmError::UnknownDevice(format!("No device found for {iface}")))
    }

    #[zbus(signal)]
    async fn device_added(emitter: &SignalEmitter<'_>, path: ObjectPath<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn device_removed(emitter: &SignalEmitter<'_>, path: ObjectPath<'_>) -> zbus::Result<()>;
}

struct Device {
    state: u32,
    ip4: OwnedObjectPath,
    ip6: OwnedObjectPath,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device")]
impl Device {
    #[zbus(property)]
    fn state(&self) -> u32 {
        self.state
    }
    #[zbus(property)]
    fn ip4_config(&self) -> OwnedObjectPath {
        self.ip4.clone()
    }
    #[zbus(property)]
    fn ip6_config(&self) -> OwnedObjectPath {
        self.ip6.clone()
    }
}

struct Ip4Config {
    addresses: Vec<(String, u32)>,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.IP4Config")]
impl Ip4Config {
    #[zbus(property)]
    fn address_data(&self) -> Vec<HashMap<String, OwnedValue>> {
        self.addresses
            .iter()
            .map(|(address, prefix)| {
                HashMap::from([
                    (
                        "address".to_owned(),
                        OwnedValue::try_from(Value::from(address.as_str())).unwrap(),
                    ),
                    ("prefix".to_owned(), OwnedValue::from(*prefix)),
                ])
            })
            .collect()
    }
}

/// One run of the service; a restart is a new `FakeNm` with another `generation`, so its
/// object paths differ, as they do when NetworkManager restarts.
pub struct FakeNm {
    conn: zbus::Connection,
    devices: Arc<Mutex<HashMap<String, OwnedObjectPath>>>,
    generation: u32,
    next_id: Mutex<u32>,
}

fn path(s: String) -> OwnedObjectPath {
    OwnedObjectPath::try_from(s).unwrap()
}

impl FakeNm {
    pub async fn start(address: &str, generation: u32) -> FakeNm {
        let devices = Arc::new(Mutex::new(HashMap::new()));
        let conn = zbus::connection::Builder::address(address)
            .unwrap()
            .serve_at(
                NM_PATH,
                Manager {
                    devices: devices.clone(),
                },
            )
            .unwrap()
            .name(NM_NAME)
            .unwrap()
            .build()
            .await
            .expect("NetworkManager service on the private bus");
        FakeNm {
            conn,
            devices,
            generation,
            next_id: Mutex::new(0),
        }
    }

    fn next_path(&self, kind: &str) -> OwnedObjectPath {
        let mut id = self.next_id.lock().unwrap();
        *id += 1;
        path(format!("{NM_PATH}/{kind}/{}{}", self.generation, *id))
    }

    async fn new_ip4(&self, addresses: &[(&str, u32)]) -> OwnedObjectPath {
        if addresses.is_empty() {
            return path("/".into());
        }
        let at = self.next_path("IP4Config");
        let config = Ip4Config {
            addresses: addresses.iter().map(|(a, p)| (a.to_string(), *p)).collect(),
        };
        self.conn.object_server().at(&at, config).await.unwrap();
        at
    }

    /// Exports a device and announces it with `DeviceAdded`.
    pub async fn add_device(&self, iface: &str, state: u32, addresses: &[(&str, u32)]) {
        let at = self.next_path("Devices");
        let ip4 = self.new_ip4(addresses).await;
        let device = Device {
            state,
            ip4,
            ip6: path("/".into()),
        };
        self.conn.object_server().at(&at, device).await.unwrap();
        self.devices
            .lock()
            .unwrap()
            .insert(iface.to_owned(), at.clone());
        let emitter = SignalEmitter::new(&self.conn, NM_PATH).unwrap();
        Manager::device_added(&emitter, at.as_ref()).await.unwrap();
    }

    async fn device(&self, iface: &str) -> zbus::object_server::InterfaceRef<Device> {
        let at = self.devices.lock().unwrap()[iface].clone();
        self.conn
            .object_server()
            .interface::<_, Device>(at)
            .await
            .unwrap()
    }

    pub async fn set_state(&self, iface: &str, state: u32) {
        let device = self.device(iface).await;
        device.get_mut().await.state = state;
        device
            .get()
            .await
            .state_changed(device.signal_emitter())
            .await
            .unwrap();
    }

    /// Replaces the device's IPv4 configuration object, as NetworkManager does.
    pub async fn set_addresses(&self, iface: &str, addresses: &[(&str, u32)]) {
        let device = self.device(iface).await;
        let new = self.new_ip4(addresses).await;
        let old = std::mem::replace(&mut device.get_mut().await.ip4, new);
        device
            .get()
            .await
            .ip4_config_changed(device.signal_emitter())
            .await
            .unwrap();
        if old.as_str() != "/" {
            let _ = self.conn.object_server().remove::<Ip4Config, _>(&old).await;
        }
    }

    pub async fn remove_device(&self, iface: &str) {
        let at = self.devices.lock().unwrap().remove(iface).unwrap();
        let _ = self.conn.object_server().remove::<Device, _>(&at).await;
        let emitter = SignalEmitter::new(&self.conn, NM_PATH).unwrap();
        Manager::device_removed(&emitter, at.as_ref())
            .await
            .unwrap();
    }

    /// Signals pistats has no interest in, like the access point updates NetworkManager sends
    /// during every Wi-Fi scan.
    pub async fn noise(&self, count: u32) {
        for i in 0..count {
            let changed = HashMap::from([("Strength", Value::from((i % 100) as u8))]);
            self.conn
                .emit_signal(
                    None::<()>,
                    format!("{NM_PATH}/AccessPoint/{}", i % 7).as_str(),
                    "org.freedesktop.DBus.Properties",
                    "PropertiesChanged",
                    &(
                        "org.freedesktop.NetworkManager.AccessPoint",
                        changed,
                        Vec::<String>::new(),
                    ),
                )
                .await
                .unwrap();
        }
    }

    /// Leaves the bus (NetworkManager stopping).
    pub async fn stop(self) {
        let _ = self.conn.release_name(NM_NAME).await;
        let _ = self.conn.close().await;
    }
}
