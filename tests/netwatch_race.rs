//! The NetworkManager watcher against changes that land while it is reading a device.
//!
//! A private `dbus-daemon` carries the NetworkManager stand-in (`common::nm_standin`) with a
//! [`Flip`] armed: its handlers change the device in the middle of the watcher's read (the
//! state flips right after the watcher read it, the addresses change right after it read
//! them, a replaced device activates while the watcher resolves it). The signals for those changes reach the watcher before the reply that
//! ends its read, and must lead to one more read; without it the published view stays stale
//! until the device's next change, which at boot may never come.

mod common;

use common::dbus::Bus;
use common::nm_standin::{FakeNm, Flip, ACTIVATED, DISCONNECTED};
use common::watcher::{nm, Watcher};
use common::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
async fn activation_during_the_first_read_is_not_missed() {
    let bus = Bus::start();
    let nm_ = FakeNm::start(&bus.address, 0).await;
    nm_.add_device("pstr0", DISCONNECTED, &[("192.0.2.1", 24)])
        .await;
    nm_.arm(Flip::ActivateAfterStateRead);

    let mut w = Watcher::start(&bus.address, "pstr0").await;
    let c = w
        .until(WAIT, "activated device", |c| nm(c) && c.connected)
        .await;
    assert_eq!(nm_.fired(), 1, "the activation happened during the read");
    assert_eq!(c.state, "activated");
    assert_eq!(c.addresses, ["192.0.2.1/24"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
async fn address_during_the_first_read_is_not_missed() {
    let bus = Bus::start();
    let nm_ = FakeNm::start(&bus.address, 0).await;
    nm_.add_dual_stack_device(
        "pstr1",
        ACTIVATED,
        &[("192.0.2.10", 24)],
        &[("2001:db8::10", 64)],
    )
    .await;
    nm_.arm(Flip::AddressAfterRead("198.51.100.10".into(), 25));

    let mut w = Watcher::start(&bus.address, "pstr1").await;
    let c = w
        .until(WAIT, "all addresses", |c| nm(c) && c.addresses.len() == 3)
        .await;
    assert_eq!(nm_.fired(), 1, "the address came during the read");
    assert_eq!(
        c.addresses,
        ["192.0.2.10/24", "198.51.100.10/25", "2001:db8::10/64"]
    );
    assert!(c.connected);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: runs a private D-Bus (bash tests/netwatch-setup.sh)"]
async fn activation_while_resolving_a_replaced_device_is_not_missed() {
    let bus = Bus::start();
    let nm_ = FakeNm::start(&bus.address, 0).await;
    nm_.add_device("pstr2", ACTIVATED, &[("192.0.2.20", 24)])
        .await;
    let mut w = Watcher::start(&bus.address, "pstr2").await;
    w.until(WAIT, "first device", |c| nm(c) && c.connected)
        .await;

    // The device is replaced (a USB adapter replugged: a new object path), and the new one
    // activates while the watcher is reading it.
    nm_.arm(Flip::ActivateAfterStateRead);
    nm_.remove_device("pstr2").await;
    nm_.add_device("pstr2", DISCONNECTED, &[("192.0.2.21", 24)])
        .await;
    let c = w
        .until(WAIT, "the new device activated", |c| {
            c.connected && c.addresses == ["192.0.2.21/24"]
        })
        .await;
    assert_eq!(nm_.fired(), 1, "the activation happened during the read");
    assert!(nm(&c));
    w.stop().await;
}
