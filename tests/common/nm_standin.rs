//! A NetworkManager stand-in: a real D-Bus service, implemented here with zbus, offering the
//! objects, properties and signals pistats uses (the manager's `GetDeviceByIpIface`,
//! `DeviceAdded` and `DeviceRemoved`; a device's `State`, `Ip4Config` and `Ip6Config`; the IP
//! configurations' `AddressData`; for a wireless device its `DeviceType`, `StateReason`, the
//! `Device.Wireless` interface's `ActiveAccessPoint` and `Bitrate`, and access point objects
//! with `Ssid`, `HwAddress`, `Strength`, `Frequency` and security flags). Tests run it on a
//! private [`Bus`](super::dbus::Bus) and change states, addresses and devices the way
//! NetworkManager does: a new configuration object for new addresses, new object paths after a
//! restart, bursts of unrelated signals, access points whose strength changes during scans, a
//! roam to another access point, and (an armed [`Flip`]) a change landing inside a handler,
//! while pistats reads the device.
//!
//! Real NetworkManager in a container is exercised by `tests/nm/run.sh`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

pub const NM_NAME: &str = "org.freedesktop.NetworkManager";
pub const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const DEVICE_IFACE: &str = "org.freedesktop.NetworkManager.Device";
const IP4_IFACE: &str = "org.freedesktop.NetworkManager.IP4Config";
const PROPERTIES_IFACE: &str = "org.freedesktop.DBus.Properties";

/// `NMDeviceState` values (NetworkManager's D-Bus API) the tests use by name.
pub const DISCONNECTED: u32 = 30;
pub const PREPARE: u32 = 40;
pub const CONFIG: u32 = 50;
pub const IP_CONFIG: u32 = 70;
pub const ACTIVATED: u32 = 100;
pub const DEACTIVATING: u32 = 110;
pub const FAILED: u32 = 120;

/// `NMDeviceStateReason` values the tests use.
pub const REASON_NONE: u32 = 0;
pub const REASON_SUPPLICANT_TIMEOUT: u32 = 11;
pub const REASON_CARRIER: u32 = 40;

/// `NMDeviceType`.
const TYPE_ETHERNET: u32 = 1;
const TYPE_WIFI: u32 = 2;

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

/// A change the service makes from inside one of its handlers, once: it lands while pistats
/// is in the middle of reading the device, and its signals reach pistats before the reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Flip {
    /// The device activates just after its `State` was read (when `Ip4Config` is read).
    ActivateAfterStateRead,
    /// The IPv4 configuration gets this address just after `AddressData` was read (the
    /// IPv6 configuration is read next).
    AddressAfterRead(String, u32),
}

/// The armed [`Flip`], shared by the handlers, and how often one fired.
#[derive(Default)]
struct Hooks {
    flip: Mutex<Option<Flip>>,
    fired: Mutex<u32>,
}

impl Hooks {
    /// Takes the armed change if `pred` accepts it.
    fn take(&self, pred: impl Fn(&Flip) -> bool) -> Option<Flip> {
        let taken = self.flip.lock().unwrap().take_if(|f| pred(f));
        if taken.is_some() {
            *self.fired.lock().unwrap() += 1;
        }
        taken
    }
}

async fn properties_changed(
    conn: &zbus::Connection,
    path: &ObjectPath<'_>,
    iface: &str,
    name: &str,
    value: Value<'_>,
) {
    conn.emit_signal(
        None::<()>,
        path,
        PROPERTIES_IFACE,
        "PropertiesChanged",
        &(iface, HashMap::from([(name, value)]), Vec::<String>::new()),
    )
    .await
    .unwrap();
}

struct Device {
    hooks: Arc<Hooks>,
    state: Mutex<u32>,
    reason: u32,
    kind: u32,
    ip4: OwnedObjectPath,
    ip6: OwnedObjectPath,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device")]
impl Device {
    #[zbus(property)]
    fn state(&self) -> u32 {
        *self.state.lock().unwrap()
    }

    /// pistats reads this after `State`: an activation now is one it has not seen.
    #[zbus(property)]
    async fn ip4_config(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> OwnedObjectPath {
        if self
            .hooks
            .take(|f| *f == Flip::ActivateAfterStateRead)
            .is_some()
        {
            let old = std::mem::replace(&mut *self.state.lock().unwrap(), ACTIVATED);
            // As NetworkManager does: the device's own signal and the property change.
            let conn = emitter.connection();
            let path = emitter.path().to_owned();
            conn.emit_signal(
                None::<()>,
                &path,
                DEVICE_IFACE,
                "StateChanged",
                &(ACTIVATED, old, 0u32),
            )
            .await
            .unwrap();
            properties_changed(conn, &path, DEVICE_IFACE, "State", Value::from(ACTIVATED)).await;
        }
        self.ip4.clone()
    }

    #[zbus(property)]
    fn ip6_config(&self) -> OwnedObjectPath {
        self.ip6.clone()
    }
    #[zbus(property)]
    fn state_reason(&self) -> (u32, u32) {
        (*self.state.lock().unwrap(), self.reason)
    }
    #[zbus(property)]
    fn device_type(&self) -> u32 {
        self.kind
    }
}

struct Wireless {
    active: OwnedObjectPath,
    bitrate_kbps: u32,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device.Wireless")]
impl Wireless {
    #[zbus(property)]
    fn active_access_point(&self) -> OwnedObjectPath {
        self.active.clone()
    }
    #[zbus(property)]
    fn bitrate(&self) -> u32 {
        self.bitrate_kbps
    }
}

/// An access point as NetworkManager describes it.
#[derive(Debug, Clone)]
pub struct Ap {
    pub ssid: &'static str,
    /// Lower case, as NetworkManager prints it.
    pub bssid: &'static str,
    /// Percent.
    pub strength: u8,
    pub frequency_mhz: u32,
    pub flags: u32,
    pub wpa_flags: u32,
    pub rsn_flags: u32,
}

/// `NM80211ApFlags` privacy and `NM80211ApSecurityFlags` of a WPA2-Personal network (CCMP
/// pairwise and group ciphers, PSK key management).
pub const PRIVACY: u32 = 0x1;
pub const RSN_WPA2_PSK: u32 = 0x188;
/// WPA3-Personal (SAE) next to WPA2-Personal, as transition-mode routers announce.
pub const RSN_WPA2_WPA3: u32 = 0x588;

struct AccessPoint(Ap);

#[zbus::interface(name = "org.freedesktop.NetworkManager.AccessPoint")]
impl AccessPoint {
    #[zbus(property)]
    fn ssid(&self) -> Vec<u8> {
        self.0.ssid.as_bytes().to_vec()
    }
    #[zbus(property)]
    fn hw_address(&self) -> String {
        self.0.bssid.to_owned()
    }
    #[zbus(property)]
    fn strength(&self) -> u8 {
        self.0.strength
    }
    #[zbus(property)]
    fn frequency(&self) -> u32 {
        self.0.frequency_mhz
    }
    #[zbus(property)]
    fn flags(&self) -> u32 {
        self.0.flags
    }
    #[zbus(property)]
    fn wpa_flags(&self) -> u32 {
        self.0.wpa_flags
    }
    #[zbus(property)]
    fn rsn_flags(&self) -> u32 {
        self.0.rsn_flags
    }
}

fn address_data(addresses: &[(String, u32)]) -> Vec<HashMap<String, OwnedValue>> {
    addresses
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

fn owned(addresses: &[(&str, u32)]) -> Vec<(String, u32)> {
    addresses.iter().map(|(a, p)| (a.to_string(), *p)).collect()
}

struct Ip4Config {
    hooks: Arc<Hooks>,
    addresses: Mutex<Vec<(String, u32)>>,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.IP4Config")]
impl Ip4Config {
    /// Answers with the addresses as they were when the call came in; an armed change lands
    /// before the answer leaves.
    #[zbus(property)]
    async fn address_data(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Vec<HashMap<String, OwnedValue>> {
        let answer = address_data(&self.addresses.lock().unwrap());
        let flip = self.hooks.take(|f| matches!(f, Flip::AddressAfterRead(..)));
        if let Some(Flip::AddressAfterRead(address, prefix)) = flip {
            let now = {
                let mut addresses = self.addresses.lock().unwrap();
                addresses.push((address, prefix));
                address_data(&addresses)
            };
            let path = emitter.path().to_owned();
            let value = Value::from(now).try_to_owned().unwrap();
            properties_changed(
                emitter.connection(),
                &path,
                IP4_IFACE,
                "AddressData",
                value.into(),
            )
            .await;
        }
        answer
    }
}

struct Ip6Config {
    addresses: Vec<(String, u32)>,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.IP6Config")]
impl Ip6Config {
    #[zbus(property)]
    fn address_data(&self) -> Vec<HashMap<String, OwnedValue>> {
        address_data(&self.addresses)
    }
}

/// One run of the service; a restart is a new `FakeNm` with another `generation`, so its
/// object paths differ, as they do when NetworkManager restarts.
pub struct FakeNm {
    conn: zbus::Connection,
    devices: Arc<Mutex<HashMap<String, OwnedObjectPath>>>,
    hooks: Arc<Hooks>,
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
            hooks: Arc::default(),
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
            hooks: self.hooks.clone(),
            addresses: Mutex::new(owned(addresses)),
        };
        self.conn.object_server().at(&at, config).await.unwrap();
        at
    }

    async fn new_ip6(&self, addresses: &[(&str, u32)]) -> OwnedObjectPath {
        if addresses.is_empty() {
            return path("/".into());
        }
        let at = self.next_path("IP6Config");
        let config = Ip6Config {
            addresses: owned(addresses),
        };
        self.conn.object_server().at(&at, config).await.unwrap();
        at
    }

    /// Exports a device with IPv4 `addresses` and announces it with `DeviceAdded`.
    pub async fn add_device(&self, iface: &str, state: u32, addresses: &[(&str, u32)]) {
        self.add_device_of(TYPE_ETHERNET, iface, state, addresses, &[])
            .await;
    }

    /// Exports a wireless device, not associated, and announces it.
    pub async fn add_wifi_device(&self, iface: &str, state: u32, addresses: &[(&str, u32)]) {
        self.add_device_of(TYPE_WIFI, iface, state, addresses, &[])
            .await;
    }

    /// Exports a device with IPv4 and IPv6 configurations (none for no addresses) and
    /// announces it with `DeviceAdded`.
    pub async fn add_dual_stack_device(
        &self,
        iface: &str,
        state: u32,
        ip4: &[(&str, u32)],
        ip6: &[(&str, u32)],
    ) {
        self.add_device_of(TYPE_ETHERNET, iface, state, ip4, ip6)
            .await;
    }

    async fn add_device_of(
        &self,
        kind: u32,
        iface: &str,
        state: u32,
        ip4: &[(&str, u32)],
        ip6: &[(&str, u32)],
    ) {
        let at = self.next_path("Devices");
        let device = Device {
            hooks: self.hooks.clone(),
            state: Mutex::new(state),
            reason: REASON_NONE,
            kind,
            ip4: self.new_ip4(ip4).await,
            ip6: self.new_ip6(ip6).await,
        };
        // The wireless interface first: a watcher that sees the device sees all of it.
        if kind == TYPE_WIFI {
            let wireless = Wireless {
                active: path("/".into()),
                bitrate_kbps: 0,
            };
            self.conn.object_server().at(&at, wireless).await.unwrap();
        }
        self.conn.object_server().at(&at, device).await.unwrap();
        self.devices
            .lock()
            .unwrap()
            .insert(iface.to_owned(), at.clone());
        let emitter = SignalEmitter::new(&self.conn, NM_PATH).unwrap();
        Manager::device_added(&emitter, at.as_ref()).await.unwrap();
    }

    /// Arms `flip`: the next handler it belongs to makes the change (once).
    pub fn arm(&self, flip: Flip) {
        *self.hooks.flip.lock().unwrap() = Some(flip);
    }

    /// How many armed changes have fired.
    pub fn fired(&self) -> u32 {
        *self.hooks.fired.lock().unwrap()
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
        self.set_state_for(iface, state, REASON_NONE).await;
    }

    /// A state change with NetworkManager's reason for it (`StateReason`).
    pub async fn set_state_for(&self, iface: &str, state: u32, reason: u32) {
        let device = self.device(iface).await;
        {
            let mut d = device.get_mut().await;
            *d.state.lock().unwrap() = state;
            d.reason = reason;
        }
        let d = device.get().await;
        d.state_changed(device.signal_emitter()).await.unwrap();
        d.state_reason_changed(device.signal_emitter())
            .await
            .unwrap();
    }

    /// Exports an access point, as NetworkManager does for each one a scan finds.
    pub async fn add_access_point(&self, ap: Ap) -> OwnedObjectPath {
        let at = self.next_path("AccessPoint");
        self.conn
            .object_server()
            .at(&at, AccessPoint(ap))
            .await
            .unwrap();
        at
    }

    async fn wireless(&self, iface: &str) -> zbus::object_server::InterfaceRef<Wireless> {
        let at = self.devices.lock().unwrap()[iface].clone();
        self.conn
            .object_server()
            .interface::<_, Wireless>(at)
            .await
            .unwrap()
    }

    /// Makes `ap` (or none, `/`) the device's active access point, with a new bit rate: an
    /// association or a roam.
    pub async fn associate(&self, iface: &str, ap: Option<&OwnedObjectPath>, bitrate_kbps: u32) {
        let wireless = self.wireless(iface).await;
        {
            let mut w = wireless.get_mut().await;
            w.active = ap.cloned().unwrap_or_else(|| path("/".into()));
            w.bitrate_kbps = bitrate_kbps;
        }
        let w = wireless.get().await;
        w.active_access_point_changed(wireless.signal_emitter())
            .await
            .unwrap();
        w.bitrate_changed(wireless.signal_emitter()).await.unwrap();
    }

    pub async fn set_bitrate(&self, iface: &str, bitrate_kbps: u32) {
        let wireless = self.wireless(iface).await;
        wireless.get_mut().await.bitrate_kbps = bitrate_kbps;
        wireless
            .get()
            .await
            .bitrate_changed(wireless.signal_emitter())
            .await
            .unwrap();
    }

    /// A new signal strength for `ap`, as a scan reports it.
    pub async fn set_strength(&self, ap: &OwnedObjectPath, strength: u8) {
        let ap = self
            .conn
            .object_server()
            .interface::<_, AccessPoint>(ap)
            .await
            .unwrap();
        ap.get_mut().await.0.strength = strength;
        ap.get()
            .await
            .strength_changed(ap.signal_emitter())
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
