//! Network awareness against real components: a private `dbus-daemon` carrying a
//! NetworkManager service implemented here with zbus (states, addresses, devices appearing and
//! disappearing, NetworkManager restarting, the bus going away), and the kernel fallback on a
//! veth pair in a network namespace made by the test. Both through `netwatch::run` and the
//! real binary (`pistats network`, the while-connected listener).
//!
//! Real NetworkManager in a container is exercised by `tests/nm/run.sh`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{connect, eventually, next_doc, wait_for_line, BIN, WAIT};
use futures_util::StreamExt;
use pistats::netwatch;
use pistats::stats::model::Connectivity;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

const NM_NAME: &str = "org.freedesktop.NetworkManager";
const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const ACTIVATED: u32 = 100;
const DISCONNECTED: u32 = 30;
/// Longer than the watcher's worst bus reconnect backoff for the few attempts a test needs.
const RECONNECT_WAIT: Duration = Duration::from_secs(40);

/// `netwatch::run` reads the bus address from the environment, which is per process: tests
/// that set it take turns.
static ENV_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------
// A private bus.

struct Bus {
    child: Child,
    dir: tempfile::TempDir,
    address: String,
}

impl Bus {
    fn start() -> Bus {
        let dir = tempfile::tempdir().unwrap();
        let (child, address) = Bus::spawn(dir.path());
        Bus {
            child,
            dir,
            address,
        }
    }

    fn spawn(dir: &Path) -> (Child, String) {
        let socket = dir.join("bus");
        let _ = std::fs::remove_file(&socket);
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
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
        (child, line.trim().to_owned())
    }

    /// Kills the daemon: every connection to it is lost.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new daemon at the same address.
    fn restart(&mut self) {
        self.kill();
        let (child, address) = Bus::spawn(self.dir.path());
        self.child = child;
        self.address = address;
    }

    /// The address without the daemon's guid, stable across restarts.
    fn path_address(&self) -> String {
        format!("unix:path={}", self.dir.path().join("bus").display())
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------
// A NetworkManager service: the manager object, devices and their IP configurations, with the
// properties and signals pistats uses.

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
struct FakeNm {
    conn: zbus::Connection,
    devices: Arc<Mutex<HashMap<String, OwnedObjectPath>>>,
    generation: u32,
    next_id: Mutex<u32>,
}

fn path(s: String) -> OwnedObjectPath {
    OwnedObjectPath::try_from(s).unwrap()
}

impl FakeNm {
    async fn start(address: &str, generation: u32) -> FakeNm {
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
    async fn add_device(&self, iface: &str, state: u32, addresses: &[(&str, u32)]) {
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

    async fn set_state(&self, iface: &str, state: u32) {
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
    async fn set_addresses(&self, iface: &str, addresses: &[(&str, u32)]) {
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

    async fn remove_device(&self, iface: &str) {
        let at = self.devices.lock().unwrap().remove(iface).unwrap();
        let _ = self.conn.object_server().remove::<Device, _>(&at).await;
        let emitter = SignalEmitter::new(&self.conn, NM_PATH).unwrap();
        Manager::device_removed(&emitter, at.as_ref())
            .await
            .unwrap();
    }

    /// Signals pistats has no interest in, like the access point updates NetworkManager sends
    /// during every Wi-Fi scan.
    async fn noise(&self, count: u32) {
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
    async fn stop(self) {
        let _ = self.conn.release_name(NM_NAME).await;
        let _ = self.conn.close().await;
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
    /// Starts `netwatch::run` against the system bus at `address`.
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
            connected: false,
            addresses: Vec::new(),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(netwatch::run(interface.to_owned(), tx, cancel.clone()));
        Watcher { rx, cancel, task }
    }

    /// Waits for a view matching `pred`, failing with the last one seen.
    async fn until(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Connectivity) -> bool,
    ) -> Connectivity {
        let found = tokio::time::timeout(limit, self.rx.wait_for(|c| pred(c)))
            .await
            .ok()
            .and_then(|r| r.ok().map(|c| c.clone()));
        found.unwrap_or_else(|| panic!("no {what} within {limit:?}; last: {:?}", *self.rx.borrow()))
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
async fn follows_device_state_and_addresses() {
    let _env = ENV_LOCK.lock().await;
    let bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("pstw0", DISCONNECTED, &[]).await;

    let mut w = Watcher::start(&bus.address, "pstw0");
    let c = w
        .until(WAIT, "disconnected device", |c| {
            nm(c) && c.state == "disconnected"
        })
        .await;
    assert!(!c.connected);
    assert!(c.addresses.is_empty());

    // The usual activation sequence; only `activated` counts as connected.
    for (state, name) in [(40, "prepare"), (50, "config"), (70, "ip-config")] {
        fake.set_state("pstw0", state).await;
        let c = w.until(WAIT, name, |c| c.state == name).await;
        assert!(!c.connected, "{name} is not connected");
    }
    fake.set_addresses("pstw0", &[("192.0.2.10", 24)]).await;
    fake.set_state("pstw0", ACTIVATED).await;
    let c = w.until(WAIT, "activated", |c| c.connected).await;
    assert_eq!(c.state, "activated");
    assert_eq!(c.addresses, ["192.0.2.10/24"]);
    assert_eq!(c.interface, "pstw0");

    // A new IPv4 configuration object with other addresses.
    fake.set_addresses("pstw0", &[("192.0.2.11", 24), ("198.51.100.7", 25)])
        .await;
    let c = w
        .until(WAIT, "new addresses", |c| c.addresses.len() == 2)
        .await;
    assert_eq!(c.addresses, ["192.0.2.11/24", "198.51.100.7/25"]);
    assert!(c.connected);

    for (state, name) in [(110, "deactivating"), (DISCONNECTED, "disconnected")] {
        fake.set_state("pstw0", state).await;
        let c = w.until(WAIT, name, |c| c.state == name).await;
        assert!(!c.connected);
    }
    fake.set_state("pstw0", 120).await;
    w.until(WAIT, "failed", |c| c.state == "failed").await;

    // Bursts of unrelated signals while it is busy reading neither stall nor hide changes.
    for round in 0..20 {
        let (state, name) = if round % 2 == 0 {
            (ACTIVATED, "activated")
        } else {
            (DISCONNECTED, "disconnected")
        };
        fake.set_state("pstw0", state).await;
        fake.noise(200).await;
        w.until(WAIT, name, |c| c.state == name).await;
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_device_is_absent_until_added_and_after_removal() {
    let _env = ENV_LOCK.lock().await;
    let bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("other0", ACTIVATED, &[("203.0.113.1", 24)])
        .await;

    let mut w = Watcher::start(&bus.address, "pstw1");
    let c = w
        .until(WAIT, "absent device", |c| nm(c) && c.state == "absent")
        .await;
    assert!(!c.connected);

    fake.add_device("pstw1", ACTIVATED, &[("192.0.2.20", 24)])
        .await;
    let c = w.until(WAIT, "added device", |c| c.connected).await;
    assert_eq!(c.addresses, ["192.0.2.20/24"]);

    // Another device going away changes nothing; ours going away does.
    fake.remove_device("other0").await;
    fake.set_state("pstw1", DISCONNECTED).await;
    w.until(WAIT, "disconnected", |c| c.state == "disconnected")
        .await;
    fake.set_state("pstw1", ACTIVATED).await;
    w.until(WAIT, "activated again", |c| c.connected).await;
    fake.remove_device("pstw1").await;
    let c = w
        .until(WAIT, "removed device", |c| c.state == "absent")
        .await;
    assert!(nm(&c) && !c.connected);

    fake.add_device("pstw1", ACTIVATED, &[("192.0.2.21", 24)])
        .await;
    let c = w.until(WAIT, "re-added device", |c| c.connected).await;
    assert_eq!(c.addresses, ["192.0.2.21/24"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networkmanager_coming_going_and_restarting() {
    let _env = ENV_LOCK.lock().await;
    let bus = Bus::start();

    // Bus but no NetworkManager: the kernel, which has no such interface.
    let mut w = Watcher::start(&bus.address, "pstw2");
    let c = w
        .until(WAIT, "kernel source", |c| c.source == "kernel")
        .await;
    assert_eq!(c.state, "absent");

    // NetworkManager appears: it takes over.
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("pstw2", ACTIVATED, &[("192.0.2.30", 24)])
        .await;
    let c = w
        .until(WAIT, "NetworkManager source", |c| nm(c) && c.connected)
        .await;
    assert_eq!(c.addresses, ["192.0.2.30/24"]);

    // It stops: back to the kernel.
    fake.stop().await;
    w.until(WAIT, "kernel after NetworkManager left", |c| {
        c.source == "kernel"
    })
    .await;

    // It restarts with other object paths and another unique name.
    let fake = FakeNm::start(&bus.address, 2).await;
    fake.add_device("pstw2", DISCONNECTED, &[]).await;
    w.until(WAIT, "restarted NetworkManager", |c| {
        nm(c) && c.state == "disconnected"
    })
    .await;
    fake.set_addresses("pstw2", &[("192.0.2.31", 24)]).await;
    fake.set_state("pstw2", ACTIVATED).await;
    let c = w
        .until(WAIT, "activated on the new paths", |c| c.connected)
        .await;
    assert_eq!(c.addresses, ["192.0.2.31/24"]);

    // Once more in quick succession, straight into an intermediate state.
    fake.stop().await;
    let fake = FakeNm::start(&bus.address, 3).await;
    fake.add_device("pstw2", 70, &[]).await;
    w.until(WAIT, "third NetworkManager", |c| {
        nm(c) && c.state == "ip-config"
    })
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_bus_loss_falls_back_to_kernel_and_reconnects() {
    let _env = ENV_LOCK.lock().await;
    let mut bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("pstw3", ACTIVATED, &[("192.0.2.40", 24)])
        .await;
    let mut w = Watcher::start(&bus.path_address(), "pstw3");
    w.until(WAIT, "NetworkManager source", |c| nm(c) && c.connected)
        .await;

    bus.kill();
    let c = w
        .until(WAIT, "kernel after bus loss", |c| c.source == "kernel")
        .await;
    assert!(!c.connected, "no such interface in the kernel: {c:?}");
    drop(fake);

    // Let a few reconnect attempts fail, then bring the bus back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.rx.borrow().source, "kernel");
    bus.restart();
    let fake = FakeNm::start(&bus.address, 2).await;
    fake.add_device("pstw3", ACTIVATED, &[("192.0.2.41", 24)])
        .await;
    let c = w
        .until(RECONNECT_WAIT, "NetworkManager after reconnect", |c| {
            nm(c) && c.connected
        })
        .await;
    assert_eq!(c.addresses, ["192.0.2.41/24"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_leaves_no_tasks_behind() {
    let _env = ENV_LOCK.lock().await;
    let bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("pstw4", DISCONNECTED, &[]).await;
    let mut w = Watcher::start(&bus.address, "pstw4");
    w.until(WAIT, "first view", nm).await;

    let metrics = tokio::runtime::Handle::current().metrics();
    async fn flap(fake: &FakeNm, w: &mut Watcher) {
        fake.set_addresses("pstw4", &[("192.0.2.50", 24)]).await;
        fake.set_state("pstw4", ACTIVATED).await;
        w.until(WAIT, "up", |c| c.connected).await;
        fake.set_state("pstw4", DISCONNECTED).await;
        fake.set_addresses("pstw4", &[]).await;
        w.until(WAIT, "down", |c| !c.connected && c.addresses.is_empty())
            .await;
    }
    flap(&fake, &mut w).await;
    let tasks_before = metrics.num_alive_tasks();
    for _ in 0..100 {
        flap(&fake, &mut w).await;
    }
    // Tasks finishing asynchronously (zbus's own) get a moment to go.
    eventually_async(WAIT, || metrics.num_alive_tasks() <= tasks_before).await;
    let tasks_after = metrics.num_alive_tasks();
    assert!(
        tasks_after <= tasks_before,
        "alive tasks grew from {tasks_before} to {tasks_after} over 100 flaps"
    );
    w.stop().await;
}

async fn eventually_async(limit: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

// ---------------------------------------------------------------------------------------
// The real binary.

/// `pistats` with `args` and the system bus at `bus` (no config file, so nothing installed on
/// the machine interferes), through `prefix` (e.g. `ip netns exec NS`).
fn pistats_command(prefix: &[&str], bus: &str, args: &[&str]) -> Command {
    let (program, rest) = match prefix.split_first() {
        Some((program, rest)) => (*program, rest.to_vec()),
        None => (BIN, Vec::new()),
    };
    let mut cmd = Command::new(program);
    cmd.args(rest);
    if !prefix.is_empty() {
        cmd.arg(BIN);
    }
    cmd.args(["--config", "/dev/null"])
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    cmd
}

fn network_command(prefix: &[&str], bus: &str, interface: &str) -> (i32, String) {
    let out = pistats_command(prefix, bus, &["--interface", interface, "network"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), stdout)
}

/// A serving daemon whose log is collected, with no expectation about listening.
struct Served {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    fn start(prefix: &[&str], bus: &str, args: &[&str]) -> Served {
        let mut cmd = pistats_command(prefix, bus, args);
        if !args.contains(&"--host") {
            cmd.args(["--host", "127.0.0.1"]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Served { child, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Listener openings and closings so far, and the last address opened.
    fn listener_events(&self) -> (usize, usize, Option<String>) {
        let log = self.log();
        let mut opened = 0;
        let mut closed = 0;
        let mut addr = None;
        for line in &log {
            if line.contains("stopped listening on ") {
                closed += 1;
            } else if let Some(rest) = line.split("listening on ").nth(1) {
                opened += 1;
                addr = Some(rest.trim().to_owned());
            }
        }
        (opened, closed, addr)
    }

    fn wait_for_events(&self, opened: usize, closed: usize) -> String {
        eventually(WAIT, || {
            let (o, c, addr) = self.listener_events();
            (o == opened && c == closed).then_some(addr.unwrap_or_default())
        })
        .unwrap_or_else(|| {
            panic!(
                "expected {opened} openings and {closed} closings; log: {:#?}",
                self.log()
            )
        })
    }

    fn wait_for_log(&self, needle: &str) {
        wait_for_line(&self.log, needle);
    }

    /// The daemon's sockets, pipes and event fds (what a listener or a watcher would leak),
    /// and its threads. Files are left out: the stats collector keeps a `/proc/PID/stat`
    /// open per process on the machine, which varies with whatever else runs.
    fn fds_and_threads(&self) -> (usize, usize) {
        let pid = self.child.id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| {
                let target = std::fs::read_link(entry.path()).unwrap_or_default();
                let target = target.to_string_lossy();
                ["socket:", "pipe:", "anon_inode:"]
                    .iter()
                    .any(|kind| target.starts_with(kind))
            })
            .count();
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        (fds, threads)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn refused(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_command_reports_networkmanager_and_kernel_views() {
    let bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("pstw5", ACTIVATED, &[("192.0.2.60", 24)])
        .await;
    let addr = bus.address.clone();
    let run = move |iface: &'static str| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || network_command(&[], &addr, iface))
    };

    let (code, out) = run("pstw5").await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("networkmanager"), "{out}");
    assert!(out.contains("activated"), "{out}");
    assert!(out.contains("192.0.2.60/24"), "{out}");

    fake.set_state("pstw5", DISCONNECTED).await;
    let (code, out) = run("pstw5").await.unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("disconnected"), "{out}");

    let (code, out) = run("pstw-none").await.unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("absent") && out.contains("networkmanager"),
        "{out}"
    );

    // Without NetworkManager: the kernel's view; loopback is up and addressed.
    fake.stop().await;
    let (code, out) = run("lo").await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("kernel") && out.contains("127.0.0.1/8"),
        "{out}"
    );
    drop(bus);
    let (code, out) = tokio::task::spawn_blocking(|| {
        network_command(&[], "unix:path=/nonexistent/pistats-bus", "pstw-none")
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("kernel") && out.contains("absent"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_opens_and_closes_with_networkmanager_state() {
    let bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("pstw6", DISCONNECTED, &[]).await;
    let daemon = Served::start(
        &[],
        &bus.address,
        &[
            "--serve",
            "while-connected",
            "--interface",
            "pstw6",
            "--port",
            "0",
        ],
    );
    daemon.wait_for_log("through NetworkManager");
    daemon.wait_for_log("pstw6 is disconnected");
    assert_eq!(daemon.listener_events(), (0, 0, None));

    fake.set_addresses("pstw6", &[("192.0.2.70", 24)]).await;
    fake.set_state("pstw6", ACTIVATED).await;
    let addr = daemon.wait_for_events(1, 0);

    // A client gets documents, with the connectivity in them, and a close frame when the
    // interface goes down.
    let mut ws = connect(&format!("ws://{addr}/ws")).await;
    let doc = doc_after_change(&mut ws).await;
    assert_eq!(doc["connectivity"]["source"], "networkmanager");
    assert_eq!(doc["connectivity"]["state"], "activated");
    assert_eq!(doc["connectivity"]["connected"], true);
    assert_eq!(doc["connectivity"]["addresses"][0], "192.0.2.70/24");

    fake.set_state("pstw6", DISCONNECTED).await;
    assert_eq!(close_code(&mut ws).await, 1001);
    daemon.wait_for_events(1, 1);
    assert!(refused(&addr), "{addr} still accepts after closing");

    // Reopened on the same address.
    fake.set_state("pstw6", ACTIVATED).await;
    let again = daemon.wait_for_events(2, 1);
    assert_eq!(again, addr);
    let mut ws = connect(&format!("ws://{addr}/")).await;
    next_doc(&mut ws).await;
    drop(ws);

    // 100 flaps leave no file descriptors or threads behind.
    fake.set_state("pstw6", DISCONNECTED).await;
    daemon.wait_for_events(2, 2);
    fake.set_state("pstw6", ACTIVATED).await;
    daemon.wait_for_events(3, 2);
    // Sockets come and go within a tick (the collector's netlink queries, a probe being
    // closed): compare the steady state, the fewest seen over a short while.
    let settled_fds = || {
        (0..10)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(50));
                daemon.fds_and_threads().0
            })
            .min()
            .unwrap()
    };
    let fds_before = settled_fds();
    let threads_before = daemon.fds_and_threads().1;
    for i in 0..100 {
        fake.set_state("pstw6", DISCONNECTED).await;
        daemon.wait_for_events(3 + i, 3 + i);
        fake.set_state("pstw6", ACTIVATED).await;
        daemon.wait_for_events(4 + i, 3 + i);
    }
    assert!(!refused(&addr));
    let fds_after = settled_fds();
    let threads_after = daemon.fds_and_threads().1;
    assert!(
        fds_after <= fds_before,
        "open fds grew from {fds_before} to {fds_after} over 100 flaps"
    );
    // The runtime's blocking pool may hold a spare thread or two; a leak would be 100.
    assert!(
        threads_after <= threads_before + 4,
        "threads grew from {threads_before} to {threads_after} over 100 flaps"
    );
}

/// The first document collected after the interface connected. A client gets the latest
/// document at once, which may be from the tick before the change.
async fn doc_after_change<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let first = next_doc(ws).await;
    if first["connectivity"]["connected"] == true {
        return first;
    }
    next_doc(ws).await
}

/// Reads until a close frame arrives and returns its code.
async fn close_code<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> u16
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = tokio::time::timeout(WAIT, async {
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Close(frame)) = msg {
                return frame;
            }
        }
        None
    })
    .await
    .expect("close frame in time");
    u16::from(frame.expect("close frame with a code").code)
}

// ---------------------------------------------------------------------------------------
// The kernel fallback, in a network namespace of the test's own.

/// A network namespace with a veth pair `pstk0` (watched) / `pstk1` (the far end), removed
/// on drop.
struct Netns {
    name: String,
}

impl Netns {
    /// `tag` tells apart the namespaces of tests running at once.
    fn create(tag: &str) -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let name = format!("pistats-test-{}-{tag}", std::process::id());
        let ns = Netns { name };
        ns.ip(&["netns", "add", &ns.name]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&[
            "ip", "link", "add", "pstk0", "type", "veth", "peer", "name", "pstk1",
        ]);
        Some(ns)
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(args)
            .output()
            .expect("ip (iproute2)");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn exec(&self, args: &[&str]) {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        self.ip(&full);
    }

    fn prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn kernel_fallback_follows_link_and_addresses_in_a_namespace() {
    let Some(ns) = Netns::create("kernel") else {
        eprintln!("SKIPPED kernel_fallback_follows_link_and_addresses_in_a_namespace: needs root to create a network namespace");
        return;
    };
    let no_bus = "unix:path=/nonexistent/pistats-test-bus";
    let prefix = ns.prefix();

    let (code, out) = network_command(&prefix, no_bus, "pstk0");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("kernel") && out.contains("down"), "{out}");

    let daemon = Served::start(
        &prefix,
        no_bus,
        &[
            "--serve",
            "while-connected",
            "--interface",
            "pstk0",
            "--port",
            "0",
        ],
    );
    daemon.wait_for_log("through the kernel");
    daemon.wait_for_log("pstk0 is down");
    assert_eq!(daemon.listener_events(), (0, 0, None));

    // Up with an address, but no carrier until the far end is up too.
    ns.exec(&["ip", "addr", "add", "192.0.2.80/24", "dev", "pstk0"]);
    ns.exec(&["ip", "link", "set", "pstk0", "up"]);
    daemon.wait_for_log("pstk0 is lowerlayerdown");
    assert_eq!(daemon.listener_events().0, 0);
    ns.exec(&["ip", "link", "set", "pstk1", "up"]);
    daemon.wait_for_events(1, 0);
    let (code, out) = network_command(&prefix, no_bus, "pstk0");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("192.0.2.80/24"), "{out}");

    // Carrier lost, carrier back.
    ns.exec(&["ip", "link", "set", "pstk1", "down"]);
    daemon.wait_for_events(1, 1);
    ns.exec(&["ip", "link", "set", "pstk1", "up"]);
    daemon.wait_for_events(2, 1);

    // Only a link-local address left: not connected.
    ns.exec(&["ip", "addr", "flush", "dev", "pstk0", "scope", "global"]);
    daemon.wait_for_events(2, 2);
    ns.exec(&["ip", "addr", "add", "192.0.2.81/24", "dev", "pstk0"]);
    daemon.wait_for_events(3, 2);

    // Administratively down and up, then 100 carrier flaps.
    ns.exec(&["ip", "link", "set", "pstk0", "down"]);
    daemon.wait_for_events(3, 3);
    ns.exec(&["ip", "link", "set", "pstk0", "up"]);
    daemon.wait_for_events(4, 3);
    let (fds_before, _) = daemon.fds_and_threads();
    for i in 0..100 {
        ns.exec(&["ip", "link", "set", "pstk1", "down"]);
        daemon.wait_for_events(4 + i, 4 + i);
        ns.exec(&["ip", "link", "set", "pstk1", "up"]);
        daemon.wait_for_events(5 + i, 4 + i);
    }
    let (fds_after, _) = daemon.fds_and_threads();
    assert!(
        fds_after <= fds_before,
        "open fds grew from {fds_before} to {fds_after} over 100 flaps"
    );
    // The interface disappears altogether.
    ns.exec(&["ip", "link", "del", "pstk0"]);
    daemon.wait_for_events(104, 104);
    daemon.wait_for_log("pstk0 is absent");
}

impl Netns {
    /// A TCP connection to `addr` from inside the namespace: a thread enters it (network
    /// namespaces are per thread) and hands the socket back.
    fn tcp_connect(&self, addr: &str) -> std::io::Result<std::net::TcpStream> {
        let path = format!("/run/netns/{}", self.name);
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(path)?;
            // SAFETY: setns only reads the descriptor and moves this thread alone.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        })
        .join()
        .unwrap()
    }

    fn refuses(&self, addr: &str) -> bool {
        match self.tcp_connect(addr) {
            Ok(_) => false,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => true,
            Err(err) => panic!("connecting to {addr} in the namespace: {err}"),
        }
    }

    async fn ws_connect(&self, addr: &str) -> NsWebSocket {
        let stream = self.tcp_connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        let stream = tokio::net::TcpStream::from_std(stream).unwrap();
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
            .await
            .unwrap();
        ws
    }
}

type NsWebSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_moves_to_loopback_while_offline() {
    let Some(ns) = Netns::create("loopback") else {
        eprintln!("SKIPPED listener_moves_to_loopback_while_offline: needs root to create a network namespace");
        return;
    };
    // The namespace's "LAN" address; the daemon listens on all addresses, as packaged.
    ns.exec(&["ip", "addr", "add", "192.0.2.90/24", "dev", "pstk1"]);
    ns.exec(&["ip", "link", "set", "pstk0", "up"]);
    ns.exec(&["ip", "link", "set", "pstk1", "up"]);
    let bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("pstw8", DISCONNECTED, &[]).await;
    let daemon = Served::start(
        &ns.prefix(),
        &bus.path_address(),
        &[
            "--serve",
            "loopback-while-offline",
            "--interface",
            "pstw8",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
    );

    let local = daemon.wait_for_events(1, 0);
    let port = local.rsplit(':').next().unwrap().to_owned();
    assert_eq!(local, format!("127.0.0.1:{port}"));
    let lan = format!("192.0.2.90:{port}");
    assert!(ns.refuses(&lan), "{lan} accepts while offline");
    let mut ws = ns.ws_connect(&local).await;
    assert_eq!(next_doc(&mut ws).await["connectivity"]["connected"], false);

    fake.set_state("pstw8", ACTIVATED).await;
    assert_eq!(close_code(&mut ws).await, 1001);
    assert_eq!(daemon.wait_for_events(2, 1), format!("0.0.0.0:{port}"));
    daemon.wait_for_log("pstw8 is activated (networkmanager): moving the listener to 0.0.0.0");
    let mut ws = ns.ws_connect(&lan).await;
    let doc = doc_after_change(&mut ws).await;
    assert_eq!(doc["connectivity"]["connected"], true);

    fake.set_state("pstw8", DISCONNECTED).await;
    assert_eq!(close_code(&mut ws).await, 1001);
    assert_eq!(daemon.wait_for_events(3, 2), local);
    assert!(
        ns.refuses(&lan),
        "{lan} still accepts after the interface went down"
    );
    let mut ws = ns.ws_connect(&local).await;
    next_doc(&mut ws).await;
}
