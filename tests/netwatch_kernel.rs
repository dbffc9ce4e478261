//! The kernel fallback on real links: a veth pair in a network namespace of the test's own
//! (`common::netns`), no D-Bus at all. `pistats network` and the while-connected listener
//! follow carrier, addresses and the interface disappearing.

mod common;

use common::daemon::{network_command, Served};
use common::netns::Netns;

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
