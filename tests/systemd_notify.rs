//! The sd_notify protocol as systemd sees it: the real binary with `NOTIFY_SOCKET` pointing at
//! a datagram socket of the test's own and the watchdog enabled (`WATCHDOG_USEC`), as the
//! packaged unit runs it (`Type=notify`, `WatchdogSec=`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pistats");
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
    let mut config = tempfile::NamedTempFile::new().unwrap();
    config.write_all(b"").unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config.path())
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
        .env_remove("WATCHDOG_PID")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pistats");
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });

    // READY=1 once the first snapshot exists and the listener is open, with the status line.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = next(&socket, left.max(Duration::from_millis(1)));
        match msg {
            Some(msg) if msg.contains("READY=1") => break msg,
            Some(_) => {}
            None => {
                let _ = child.kill();
                panic!("no READY=1; log: {:?}", log.lock().unwrap());
            }
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

    // SIGTERM: STOPPING=1, then a clean exit.
    // SAFETY: kill only sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let mut stopping = false;
    while let Some(msg) = next(&socket, Duration::from_secs(5)) {
        if msg.contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let log = log.lock().unwrap();
    assert!(stopping, "no STOPPING=1; log: {log:?}");
    assert!(status.success(), "{status}; log: {log:?}");
    // The watchdog had nothing to complain about: no warning at start or after.
    assert!(
        !log.iter().any(|l| l.contains("withholding watchdog ping")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.contains("pistats stopped")), "{log:?}");
}
