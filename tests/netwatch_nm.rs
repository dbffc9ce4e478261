//! NetworkManager, as pistats sees it through the stand-in on a private bus
//! (`common::nm_standin`): the watcher in-process follows states, addresses, devices appearing
//! and disappearing, NetworkManager restarting and the bus going away; `pistats network`
//! reports the NetworkManager view, and the kernel's once NetworkManager is gone.
//!
//! The kernel fallback on real links is in `netwatch_kernel.rs`; what the listener does with
//! the view is in `netwatch_listener.rs`. Real NetworkManager in a container is exercised by
//! `tests/nm/run.sh`.

mod common;

use std::time::Duration;

use common::daemon::network_command;
use common::dbus::Bus;
use common::eventually_async;
use common::nm_standin::*;
use common::watcher::{nm, Watcher};
use common::WAIT;

/// Longer than the watcher's worst bus reconnect backoff for the few attempts a test needs.
const RECONNECT_WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
async fn follows_device_state_and_addresses() {
    let bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("pstw0", DISCONNECTED, &[]).await;

    let mut w = Watcher::start(&bus.address, "pstw0").await;
    let c = w
        .until(WAIT, "disconnected device", |c| {
            nm(c) && c.state == "disconnected"
        })
        .await;
    assert!(!c.connected);
    assert!(c.addresses.is_empty());

    // The usual activation sequence; only `activated` counts as connected.
    for (state, name) in [
        (PREPARE, "prepare"),
        (CONFIG, "config"),
        (IP_CONFIG, "ip-config"),
    ] {
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

    for (state, name) in [
        (DEACTIVATING, "deactivating"),
        (DISCONNECTED, "disconnected"),
    ] {
        fake.set_state("pstw0", state).await;
        let c = w.until(WAIT, name, |c| c.state == name).await;
        assert!(!c.connected);
    }
    fake.set_state("pstw0", FAILED).await;
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
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
async fn unknown_device_is_absent_until_added_and_after_removal() {
    let bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("other0", ACTIVATED, &[("203.0.113.1", 24)])
        .await;

    let mut w = Watcher::start(&bus.address, "pstw1").await;
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
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
async fn networkmanager_coming_going_and_restarting() {
    let bus = Bus::start();

    // Bus but no NetworkManager: the kernel, which has no such interface.
    let mut w = Watcher::start(&bus.address, "pstw2").await;
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
    fake.add_device("pstw2", IP_CONFIG, &[]).await;
    w.until(WAIT, "third NetworkManager", |c| {
        nm(c) && c.state == "ip-config"
    })
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
async fn system_bus_loss_falls_back_to_kernel_and_reconnects() {
    let mut bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("pstw3", ACTIVATED, &[("192.0.2.40", 24)])
        .await;
    let mut w = Watcher::start(&bus.path_address(), "pstw3").await;
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

/// A system bus that starts after pistats (its socket's directory did not exist either) is
/// used as soon as its socket appears, not after the retry backoff: with no socket the
/// watcher waits for one to be created instead of trying every 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
async fn a_system_bus_that_starts_later_is_followed_when_it_appears() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run/dbus");
    let address = format!("unix:path={}", dir.join("bus").display());
    let mut w = Watcher::start(&address, "pstw5").await;
    w.until(WAIT, "kernel without a bus", |c| c.source == "kernel")
        .await;
    // Long enough for a backoff that doubles from 1 s to have reached 16 s.
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert_eq!(w.rx.borrow().source, "kernel");

    std::fs::create_dir_all(&dir).unwrap();
    let bus = Bus::start_in(&dir);
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("pstw5", ACTIVATED, &[("192.0.2.50", 24)])
        .await;
    let c = w
        .until(WAIT, "NetworkManager once the bus appears", |c| {
            nm(c) && c.connected
        })
        .await;
    assert_eq!(c.addresses, ["192.0.2.50/24"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
async fn flapping_leaves_no_tasks_behind() {
    let bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_device("pstw4", DISCONNECTED, &[]).await;
    let mut w = Watcher::start(&bus.address, "pstw4").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
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

fn home_ap() -> Ap {
    Ap {
        ssid: "home",
        bssid: "aa:bb:cc:00:00:01",
        strength: 80,
        frequency_mhz: 2437,
        flags: PRIVACY,
        wpa_flags: 0,
        rsn_flags: RSN_WPA2_PSK,
    }
}

/// The second access point of the same network, in the 5 GHz band, a roam away.
fn upstairs_ap() -> Ap {
    Ap {
        bssid: "aa:bb:cc:00:00:02",
        strength: 64,
        frequency_mhz: 5180,
        rsn_flags: RSN_WPA2_WPA3,
        ..home_ap()
    }
}

/// The Wi-Fi link follows the access point's and the device's property changes (signals, not
/// polling): association, strength and bit rate changes, a roam to another access point, and
/// a disconnect with NetworkManager's reason. A wired device has no Wi-Fi detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
async fn follows_wifi_link_roams_and_disconnect_reasons() {
    let bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_wifi_device("pstw7", DISCONNECTED, &[]).await;
    let home = fake.add_access_point(home_ap()).await;
    let upstairs = fake.add_access_point(upstairs_ap()).await;

    let mut w = Watcher::start(&bus.address, "pstw7").await;
    let c = w
        .until(WAIT, "wireless device", |c| nm(c) && c.wifi.is_some())
        .await;
    // Not associated: wireless, but nothing known about a link.
    assert_eq!(c.wifi.unwrap(), Default::default());

    fake.associate("pstw7", Some(&home), 65_000).await;
    fake.set_addresses("pstw7", &[("192.0.2.70", 24)]).await;
    fake.set_state("pstw7", ACTIVATED).await;
    let c = w
        .until(WAIT, "associated", |c| {
            c.connected && c.wifi.as_ref().is_some_and(|w| w.ssid.is_some())
        })
        .await;
    let wifi = c.wifi.unwrap();
    assert_eq!(wifi.ssid.as_deref(), Some("home"));
    assert_eq!(wifi.bssid.as_deref(), Some("AA:BB:CC:00:00:01"));
    assert_eq!(wifi.quality_percent, Some(80));
    // NetworkManager's strength is a percentage, not a level: no dBm made up from it.
    assert_eq!(wifi.signal_dbm, None);
    assert_eq!(wifi.frequency_mhz, Some(2437));
    assert_eq!(wifi.band, Some("2.4 GHz"));
    assert_eq!(wifi.bitrate_kbps, Some(65_000));
    assert_eq!(wifi.security.as_deref(), Some("WPA2"));
    assert_eq!(c.reason, None);

    // A scan updates the strength; the rate adapts.
    fake.set_strength(&home, 42).await;
    w.until(WAIT, "weaker signal", |c| {
        c.wifi.as_ref().unwrap().quality_percent == Some(42)
    })
    .await;
    fake.set_bitrate("pstw7", 13_500).await;
    w.until(WAIT, "lower bit rate", |c| {
        c.wifi.as_ref().unwrap().bitrate_kbps == Some(13_500)
    })
    .await;

    // Roam: the other access point becomes the active one, still connected.
    fake.associate("pstw7", Some(&upstairs), 433_300).await;
    let c = w
        .until(WAIT, "roamed", |c| {
            c.wifi.as_ref().unwrap().bssid.as_deref() == Some("AA:BB:CC:00:00:02")
        })
        .await;
    assert!(c.connected);
    let wifi = c.wifi.unwrap();
    assert_eq!(wifi.band, Some("5 GHz"));
    assert_eq!(wifi.quality_percent, Some(64));
    assert_eq!(wifi.security.as_deref(), Some("WPA2/WPA3"));
    // The old access point is no longer followed, the new one is.
    fake.set_strength(&home, 5).await;
    fake.set_strength(&upstairs, 71).await;
    let c = w
        .until(WAIT, "new access point's strength", |c| {
            c.wifi.as_ref().unwrap().quality_percent == Some(71)
        })
        .await;
    assert_eq!(c.wifi.unwrap().bssid.as_deref(), Some("AA:BB:CC:00:00:02"));

    // Disconnect, with the reason NetworkManager gives.
    fake.set_state_for("pstw7", DISCONNECTED, REASON_SUPPLICANT_TIMEOUT)
        .await;
    let c = w
        .until(WAIT, "disconnected", |c| c.state == "disconnected")
        .await;
    assert!(!c.connected);
    assert_eq!(c.reason.as_deref(), Some("supplicant timeout"));
    fake.set_state_for("pstw7", ACTIVATED, REASON_NONE).await;
    let c = w.until(WAIT, "reconnected", |c| c.connected).await;
    assert_eq!(c.reason, None, "a connected link has no reason");
    w.stop().await;

    fake.add_device("pstw8", ACTIVATED, &[("192.0.2.71", 24)])
        .await;
    let mut w = Watcher::start(&bus.address, "pstw8").await;
    let c = w
        .until(WAIT, "wired device", |c| nm(c) && c.connected)
        .await;
    assert_eq!(c.wifi, None, "a wired device has no Wi-Fi detail");
    w.stop().await;
}

/// The daemon logs roams and disconnects with the interface and reason, and `pistats
/// network` prints the Wi-Fi link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
async fn daemon_logs_roams_and_disconnects_and_network_prints_wifi() {
    let bus = Bus::start();
    let fake = FakeNm::start(&bus.address, 1).await;
    fake.add_wifi_device("pstw9", ACTIVATED, &[("192.0.2.72", 24)])
        .await;
    let home = fake.add_access_point(home_ap()).await;
    let upstairs = fake.add_access_point(upstairs_ap()).await;
    fake.associate("pstw9", Some(&home), 65_000).await;

    let addr = bus.address.clone();
    let (code, out) = tokio::task::spawn_blocking(move || network_command(&[], &addr, "pstw9"))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    for line in [
        "ssid:       home",
        "bssid:      AA:BB:CC:00:00:01",
        "signal:     —",
        "quality:    80 %",
        "frequency:  2437 MHz (2.4 GHz)",
        "bitrate:    65 Mbit/s",
        "security:   WPA2",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
    }

    let daemon =
        common::daemon::Served::start(&[], &bus.address, &["--interface", "pstw9", "--port", "0"]);
    let daemon = std::sync::Arc::new(daemon);
    let wait_log = |needle: &'static str| {
        let daemon = daemon.clone();
        tokio::task::spawn_blocking(move || daemon.wait_for_log(needle))
    };
    wait_log("pstw9 is activated").await.unwrap();
    fake.associate("pstw9", Some(&upstairs), 433_300).await;
    wait_log("pstw9 roamed from AA:BB:CC:00:00:01 to AA:BB:CC:00:00:02 (home, 5 GHz)")
        .await
        .unwrap();
    fake.set_state_for("pstw9", FAILED, REASON_CARRIER).await;
    wait_log("pstw9 disconnected (failed): carrier lost")
        .await
        .unwrap();
    let log = daemon.log();
    let line = log.iter().find(|l| l.contains("carrier lost")).unwrap();
    assert!(line.contains("WARN"), "a disconnect is a warning: {line}");
}
