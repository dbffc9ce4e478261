//! The kernel fallback on real links: a veth pair in a network namespace of the test's own
//! (`common::netns`), no D-Bus at all. `pistats network` and the while-connected listener
//! follow carrier, addresses and the interface disappearing.

mod common;

use common::daemon::{network_command, Served};
use common::netns::Netns;
use common::ws::next_doc;

#[test]
#[ignore = "needs root: creates a network namespace"]
fn kernel_fallback_follows_link_and_addresses_in_a_namespace() {
    let ns = Netns::create("kernel");
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

/// A wireless interface without NetworkManager: signal and quality come from
/// `/proc/net/wireless` (here the Pi 4 fixture's, through `--proc-root`), everything the
/// kernel file does not say is unknown rather than guessed, and an interface the file does
/// not list is not wireless.
#[test]
#[ignore = "needs root: creates a network namespace"]
fn kernel_fallback_reads_wifi_signal_from_proc_net_wireless() {
    let ns = Netns::create("wifi");
    let no_bus = "unix:path=/nonexistent/pistats-test-bus";
    let proc_root = common::fixtures().join("pi4/proc");
    let proc_root = proc_root.to_str().unwrap();
    ns.exec(&["ip", "link", "set", "pstk0", "name", "wlan0"]);
    ns.exec(&["ip", "addr", "add", "192.0.2.90/24", "dev", "wlan0"]);
    ns.exec(&["ip", "link", "set", "wlan0", "up"]);
    ns.exec(&["ip", "link", "set", "pstk1", "up"]);

    let network = |interface: &str| {
        let out = common::daemon::pistats_command(&ns.prefix())
            .args(["--config", "/dev/null", "--proc-root", proc_root])
            .args(["--interface", interface, "network"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", no_bus)
            .output()
            .expect("run pistats network");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = network("wlan0");
    for line in [
        "source:     kernel",
        "connected:  yes",
        "signal:     -40 dBm",
        "quality:    100 %",
        "ssid:       —",
        "bssid:      —",
        "frequency:  —",
        "bitrate:    —",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
    }
    // The other end of the pair is not listed: no Wi-Fi lines at all.
    let out = network("pstk1");
    assert!(out.contains("source:     kernel"), "{out}");
    assert!(!out.contains("signal:"), "{out}");

    // The same view in the document, with nulls for what is unknown.
    let out = common::daemon::pistats_command(&ns.prefix())
        .args(["--config", "/dev/null", "--proc-root", proc_root])
        .args(["--interface", "wlan0", "snapshot"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", no_bus)
        .output()
        .expect("run pistats snapshot");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON document");
    let wifi = &doc["connectivity"]["wifi"];
    assert_eq!(wifi["signal_dbm"], -40, "{wifi}");
    assert_eq!(wifi["quality_percent"], 100, "{wifi}");
    for unknown in [
        "ssid",
        "bssid",
        "frequency_mhz",
        "band",
        "bitrate_mbps",
        "security",
    ] {
        assert!(wifi[unknown].is_null(), "{unknown} in {wifi}");
    }
    assert!(doc["connectivity"]["reason"].is_null(), "{doc}");
}

/// A watched daemon repeats the interfaces' link facts and addresses between ticks and reads
/// them again when the kernel announces a change: each change below shows in the feed within
/// a few documents (the safety-net re-read comes only after a minute), and stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates a network namespace"]
async fn the_feed_follows_link_and_address_changes_as_the_kernel_announces_them() {
    let ns = Netns::create("links");
    let no_bus = "unix:path=/nonexistent/pistats-test-bus";
    let daemon = Served::start(
        &ns.prefix(),
        no_bus,
        &["--interface", "pstk0", "--port", "0"],
    );
    let addr = daemon.wait_for_events(1, 0);
    let mut ws = ns.ws_connect(&addr).await;
    let pstk0 = |doc: &serde_json::Value| doc["network"]["interfaces"]["pstk0"].clone();
    let first = pstk0(&next_doc(&mut ws).await);
    assert_eq!(first["is_up"], false, "{first}");
    assert_eq!(first["addresses"], serde_json::json!([]), "{first}");
    assert_eq!(first["mtu"], 1500, "{first}");

    // Waits at most five documents for `holds`, then checks that three more keep it.
    async fn shows(
        ws: &mut common::netns::NsWebSocket,
        what: &str,
        holds: impl Fn(&serde_json::Value) -> bool,
    ) {
        let mut seen = Vec::new();
        for _ in 0..5 {
            let interface = next_doc(ws).await["network"]["interfaces"]["pstk0"].clone();
            if holds(&interface) {
                for _ in 0..3 {
                    let interface = next_doc(ws).await["network"]["interfaces"]["pstk0"].clone();
                    assert!(holds(&interface), "{what} did not last: {interface}");
                }
                return;
            }
            seen.push(interface);
        }
        panic!("{what} not in five documents: {seen:?}");
    }

    ns.exec(&["ip", "addr", "add", "192.0.2.77/24", "dev", "pstk0"]);
    shows(&mut ws, "the new address", |i| {
        i["addresses"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["address"] == "192.0.2.77" && a["prefix_len"] == 24)
        })
    })
    .await;
    ns.exec(&["ip", "link", "set", "pstk0", "mtu", "1400"]);
    shows(&mut ws, "the new MTU", |i| i["mtu"] == 1400).await;
    ns.exec(&["ip", "link", "set", "pstk0", "address", "02:00:00:00:00:77"]);
    shows(&mut ws, "the new MAC", |i| i["mac"] == "02:00:00:00:00:77").await;
    ns.exec(&["ip", "link", "set", "pstk0", "up"]);
    shows(&mut ws, "the link up", |i| i["is_up"] == true).await;
    ns.exec(&["ip", "addr", "del", "192.0.2.77/24", "dev", "pstk0"]);
    shows(&mut ws, "the address gone", |i| {
        i["addresses"]
            .as_array()
            .is_some_and(|a| !a.iter().any(|a| a["address"] == "192.0.2.77"))
    })
    .await;
    // An interface that appears is in the next documents with its facts.
    ns.exec(&[
        "ip", "link", "add", "pstk2", "mtu", "1280", "type", "veth", "peer", "name", "pstk3",
    ]);
    let mut found = None;
    for _ in 0..5 {
        let doc = next_doc(&mut ws).await;
        if let Some(i) = doc["network"]["interfaces"].get("pstk2") {
            found = Some(i.clone());
            break;
        }
    }
    let pstk2 = found.expect("pstk2 not in five documents");
    assert_eq!(pstk2["mtu"], 1280, "{pstk2}");
}
