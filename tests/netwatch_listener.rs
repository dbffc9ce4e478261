//! What the listener does with the network view (the `serve` setting), with the real binary:
//! `while-connected` opens and closes it with NetworkManager's device state, on the same
//! address, without leaking descriptors or threads; `loopback-while-offline` moves it between
//! loopback and all addresses, checked from inside a network namespace of the test's own.

mod common;

use std::time::Duration;

use common::daemon::Served;
use common::dbus::Bus;
use common::netns::Netns;
use common::nm_standin::*;
use common::ws::{close_code, connect, doc_after_change, next_doc};

fn refused(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and dbus-daemon: creates a network namespace, runs a private D-Bus"]
async fn listener_moves_to_loopback_while_offline() {
    let ns = Netns::create("loopback");
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
