//! The NetworkManager watcher against changes that land while it is reading a device.
//!
//! A private `dbus-daemon` carries a NetworkManager stand-in (zbus) whose handlers change the
//! device in the middle of the watcher's read: the state flips right after the watcher read
//! it, the addresses change right after it read them, the device reappears right after the
//! lookup missed it. The signals for those changes reach the watcher before the reply that
//! ends its read, and must lead to one more read; without it the published view stays stale
//! until the device's next change, which at boot may never come.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pistats::netwatch;
use pistats::stats::model::Connectivity;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

const NM_NAME: &str = "org.freedesktop.NetworkManager";
const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const DEVICE_IFACE: &str = "org.freedesktop.NetworkManager.Device";
const IP4_IFACE: &str = "org.freedesktop.NetworkManager.IP4Config";
const PROPERTIES_IFACE: &str = "org.freedesktop.DBus.Properties";
const ACTIVATED: u32 = 100;
const DISCONNECTED: u32 = 30;
/// Far longer than a few bus round trips; a stale view never changes, however long.
const WAIT: Duration = Duration::from_secs(10);

/// `netwatch::run` reads the bus address from the environment, which is per process: tests
/// that set it take turns.
static ENV_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A private session-type `dbus-daemon` standing in for the system bus.
struct Bus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Bus {
    fn start() -> Bus {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                dir.path().join("bus").display()
            ))
            .stdout(Stdio::piped())
            // Only a complaint that it cannot raise its fd limit, as a non-system bus.
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (apt-get install dbus)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("unix:"), "dbus-daemon printed {line:?}");
        Bus {
            child,
            address: line.trim().to_owned(),
            _dir: dir,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The stand-in: the manager, devices and IPv4 configurations, each with one armed change.

/// A change the stand-in makes from inside a handler, once.
#[derive(Debug, Clone, PartialEq)]
enum Flip {
    /// The device activates just after its `State` was read (when `Ip4Config` is read).
    ActivateAfterStateRead,
    /// The IPv4 configuration gets this address just after `AddressData` was read (the
    /// IPv6 configuration is read next).
    AddressAfterRead(String, u32),
}

/// What the handlers share: the device table, the armed change and how often one fired.
#[derive(Default)]
struct World {
    devices: Mutex<HashMap<String, OwnedObjectPath>>,
    next_id: Mutex<u32>,
    flip: Mutex<Option<Flip>>,
    fired: Mutex<u32>,
}

impl World {
    /// Takes the armed change if `pred` accepts it.
    fn take(&self, pred: impl Fn(&Flip) -> bool) -> Option<Flip> {
        let mut flip = self.flip.lock().unwrap();
        let taken = flip.take_if(|f| pred(f));
        if taken.is_some() {
            *self.fired.lock().unwrap() += 1;
        }
        taken
    }

    fn fired(&self) -> u32 {
        *self.fired.lock().unwrap()
    }

    fn next_path(&self, kind: &str) -> OwnedObjectPath {
        let mut id = self.next_id.lock().unwrap();
        *id += 1;
        OwnedObjectPath::try_from(format!("{NM_PATH}/{kind}/{}", *id)).unwrap()
    }
}

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.NetworkManager")]
enum NmError {
    #[zbus(error)]
    ZBus(zbus::Error),
    UnknownDevice(String),
}

struct Manager {
    world: Arc<World>,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl Manager {
    fn get_device_by_ip_iface(&self, iface: &str) -> Result<OwnedObjectPath, NmError> {
        self.world
            .devices
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
    world: Arc<World>,
    state: Mutex<u32>,
    ip4: OwnedObjectPath,
    ip6: OwnedObjectPath,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device")]
impl Device {
    #[zbus(property)]
    fn state(&self) -> u32 {
        *self.state.lock().unwrap()
    }

    /// The watcher reads this after `State`: an activation now is one it has not seen.
    #[zbus(property)]
    async fn ip4_config(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> OwnedObjectPath {
        if self
            .world
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
}

struct Ip4Config {
    world: Arc<World>,
    addresses: Mutex<Vec<(String, u32)>>,
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
        let flip = self.world.take(|f| matches!(f, Flip::AddressAfterRead(..)));
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

/// Exports a device with IPv4 and IPv6 configurations (none without addresses) and announces
/// it with `DeviceAdded`.
async fn export_device(
    conn: &zbus::Connection,
    world: &Arc<World>,
    iface: &str,
    state: u32,
    ip4: &[(&str, u32)],
    ip6: &[(&str, u32)],
) -> OwnedObjectPath {
    let server = conn.object_server();
    let owned = |addresses: &[(&str, u32)]| -> Vec<(String, u32)> {
        addresses.iter().map(|(a, p)| (a.to_string(), *p)).collect()
    };
    let none = || OwnedObjectPath::try_from("/").unwrap();
    let ip4 = if ip4.is_empty() {
        none()
    } else {
        let at = world.next_path("IP4Config");
        let config = Ip4Config {
            world: world.clone(),
            addresses: Mutex::new(owned(ip4)),
        };
        server.at(&at, config).await.unwrap();
        at
    };
    let ip6 = if ip6.is_empty() {
        none()
    } else {
        let at = world.next_path("IP6Config");
        let config = Ip6Config {
            addresses: owned(ip6),
        };
        server.at(&at, config).await.unwrap();
        at
    };
    let at = world.next_path("Devices");
    let device = Device {
        world: world.clone(),
        state: Mutex::new(state),
        ip4,
        ip6,
    };
    server.at(&at, device).await.unwrap();
    world
        .devices
        .lock()
        .unwrap()
        .insert(iface.to_owned(), at.clone());
    let emitter = SignalEmitter::new(conn, NM_PATH).unwrap();
    Manager::device_added(&emitter, at.as_ref()).await.unwrap();
    at
}

struct StandIn {
    conn: zbus::Connection,
    world: Arc<World>,
}

impl StandIn {
    async fn start(address: &str) -> StandIn {
        let world = Arc::new(World::default());
        let conn = zbus::connection::Builder::address(address)
            .unwrap()
            .serve_at(
                NM_PATH,
                Manager {
                    world: world.clone(),
                },
            )
            .unwrap()
            .name(NM_NAME)
            .unwrap()
            .build()
            .await
            .expect("NetworkManager stand-in on the private bus");
        StandIn { conn, world }
    }

    async fn add_device(&self, iface: &str, state: u32, ip4: &[(&str, u32)], ip6: &[(&str, u32)]) {
        export_device(&self.conn, &self.world, iface, state, ip4, ip6).await;
    }

    async fn remove_device(&self, iface: &str) {
        let at = self.world.devices.lock().unwrap().remove(iface).unwrap();
        let _ = self.conn.object_server().remove::<Device, _>(&at).await;
        let emitter = SignalEmitter::new(&self.conn, NM_PATH).unwrap();
        Manager::device_removed(&emitter, at.as_ref())
            .await
            .unwrap();
    }

    fn arm(&self, flip: Flip) {
        *self.world.flip.lock().unwrap() = Some(flip);
    }
}

// ---------------------------------------------------------------------------------------
// The watcher in-process.

struct Watcher {
    rx: watch::Receiver<Connectivity>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    fn start(address: &str, interface: &str) -> Watcher {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", address);
        let (tx, rx) = watch::channel(Connectivity {
            source: "none",
            interface: interface.to_owned(),
            state: "unknown".into(),
            ..Connectivity::default()
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(netwatch::run(interface.to_owned(), tx, cancel.clone()));
        Watcher { rx, cancel, task }
    }

    /// Waits for a view matching `pred`, failing with the last one seen.
    async fn until(&mut self, what: &str, pred: impl Fn(&Connectivity) -> bool) -> Connectivity {
        let found = tokio::time::timeout(WAIT, self.rx.wait_for(|c| pred(c)))
            .await
            .ok()
            .and_then(|r| r.ok().map(|c| c.clone()));
        found.unwrap_or_else(|| panic!("no {what} within {WAIT:?}; last: {:?}", *self.rx.borrow()))
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("netwatch::run stops when cancelled")
            .unwrap();
    }
}

fn nm(c: &Connectivity) -> bool {
    c.source == "networkmanager"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_during_the_first_read_is_not_missed() {
    let _env = ENV_LOCK.lock().await;
    let bus = Bus::start();
    let nm_ = StandIn::start(&bus.address).await;
    nm_.add_device("pstr0", DISCONNECTED, &[("192.0.2.1", 24)], &[])
        .await;
    nm_.arm(Flip::ActivateAfterStateRead);

    let mut w = Watcher::start(&bus.address, "pstr0");
    let c = w.until("activated device", |c| nm(c) && c.connected).await;
    assert_eq!(
        nm_.world.fired(),
        1,
        "the activation happened during the read"
    );
    assert_eq!(c.state, "activated");
    assert_eq!(c.addresses, ["192.0.2.1/24"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_during_the_first_read_is_not_missed() {
    let _env = ENV_LOCK.lock().await;
    let bus = Bus::start();
    let nm_ = StandIn::start(&bus.address).await;
    nm_.add_device(
        "pstr1",
        ACTIVATED,
        &[("192.0.2.10", 24)],
        &[("2001:db8::10", 64)],
    )
    .await;
    nm_.arm(Flip::AddressAfterRead("198.51.100.10".into(), 25));

    let mut w = Watcher::start(&bus.address, "pstr1");
    let c = w
        .until("all addresses", |c| nm(c) && c.addresses.len() == 3)
        .await;
    assert_eq!(nm_.world.fired(), 1, "the address came during the read");
    assert_eq!(
        c.addresses,
        ["192.0.2.10/24", "198.51.100.10/25", "2001:db8::10/64"]
    );
    assert!(c.connected);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_while_resolving_a_replaced_device_is_not_missed() {
    let _env = ENV_LOCK.lock().await;
    let bus = Bus::start();
    let nm_ = StandIn::start(&bus.address).await;
    nm_.add_device("pstr2", ACTIVATED, &[("192.0.2.20", 24)], &[])
        .await;
    let mut w = Watcher::start(&bus.address, "pstr2");
    w.until("first device", |c| nm(c) && c.connected).await;

    // The device is replaced (a USB adapter replugged: a new object path), and the new one
    // activates while the watcher is reading it.
    nm_.arm(Flip::ActivateAfterStateRead);
    nm_.remove_device("pstr2").await;
    nm_.add_device("pstr2", DISCONNECTED, &[("192.0.2.21", 24)], &[])
        .await;
    let c = w
        .until("the new device activated", |c| {
            c.connected && c.addresses == ["192.0.2.21/24"]
        })
        .await;
    assert_eq!(
        nm_.world.fired(),
        1,
        "the activation happened during the read"
    );
    assert!(nm(&c));
    w.stop().await;
}
