//! The sd_notify protocol as systemd sees it: the real binary with `NOTIFY_SOCKET` pointing at
//! a datagram socket of the test's own and the watchdog enabled (`WATCHDOG_USEC`), as the
//! packaged unit runs it (`Type=notify`, `WatchdogSec=`).

mod common;

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::Daemon;

/// The watchdog period announced to the daemon; it pings at half of it.
const WATCHDOG: Duration = Duration::from_secs(1);

/// Next notification, or `None` after `limit`.
fn next(socket: &UnixDatagram, limit: Duration) -> Option<String> {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn ready_then_watchdog_pings_without_a_start_up_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let usec = WATCHDOG.as_micros().to_string();
    let env = [
        ("NOTIFY_SOCKET", path.as_os_str()),
        ("WATCHDOG_USEC", OsStr::new(&usec)),
    ];
    let mut daemon = Daemon::start_with_env("", &[], &env);

    // READY=1 once the first snapshot exists and the listener is open, with the status line.
    let deadline = Instant::now() + common::WAIT;
    let ready = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = next(&socket, left.max(Duration::from_millis(1)));
        match msg {
            Some(msg) if msg.contains("READY=1") => break msg,
            Some(_) => {}
            None => panic!("no READY=1; log: {:#?}", daemon.log()),
        }
    };
    assert!(ready.contains("STATUS=serving on 127.0.0.1:"), "{ready:?}");

    // Pings at half the watchdog period, while the collector produces.
    let mut pings = 0;
    let deadline = Instant::now() + WATCHDOG * 4;
    while Instant::now() < deadline {
        if let Some(msg) = next(&socket, WATCHDOG) {
            pings += msg.lines().filter(|l| *l == "WATCHDOG=1").count();
        }
    }
    assert!(pings >= 3, "{pings} watchdog pings in {:?}", WATCHDOG * 4);

    // The status line follows the client count without polling for it: a client connecting
    // shows within the refresh spacing (5 s) and leaving shows too.
    let status_with = |clients: &str| {
        let needle = format!("; {clients} client(s)");
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Some(msg) = next(&socket, Duration::from_millis(200)) {
                if msg
                    .lines()
                    .any(|l| l.starts_with("STATUS=") && l.ends_with(&needle))
                {
                    return true;
                }
            }
        }
        false
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ws = runtime.block_on(common::ws::connect(&daemon.ws_url("/ws")));
    runtime.block_on(common::ws::next_doc(&mut ws));
    assert!(
        status_with("1"),
        "no status line with the client; log: {:#?}",
        daemon.log()
    );
    drop(ws);
    assert!(
        status_with("0"),
        "no status line after it left; log: {:#?}",
        daemon.log()
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    daemon.signal("TERM");
    let mut stopping = false;
    while let Some(msg) = next(&socket, Duration::from_secs(5)) {
        if msg.contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    let status = daemon.wait_exit(Duration::from_secs(5));
    daemon.wait_for_log("pistats stopped");
    let log = daemon.log();
    assert!(stopping, "no STOPPING=1; log: {log:#?}");
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}; log: {log:#?}"
    );
    // The watchdog had nothing to complain about: no warning at start or after.
    assert!(
        !log.iter().any(|l| l.contains("withholding watchdog ping")),
        "{log:#?}"
    );
}
