//! Harness shared by the integration tests: the real `pistats` binary on loopback (or in a
//! network namespace), HTTP and WebSocket clients, a private D-Bus with a NetworkManager
//! stand-in, and the checks for what a test needs from the machine.
//!
//! | module          | what it gives a test                                                  |
//! |-----------------|-----------------------------------------------------------------------|
//! | (this one)      | timeouts, polling, log capture, free ports, root and tool checks      |
//! | [`daemon`]      | the real binary: [`Daemon`] (listening), [`Served`] (any policy)      |
//! | [`http`]        | a minimal HTTP/1.1 GET with chunked bodies                            |
//! | [`ws`]          | WebSocket clients: documents, close codes, refusals, stuck clients    |
//! | [`dbus`]        | a private `dbus-daemon`                                               |
//! | [`nm_standin`]  | a NetworkManager service on that bus                                  |
//! | [`watcher`]     | `netwatch::run` in-process, against any bus                           |
//! | [`netns`]       | a network namespace with a veth pair                                  |
//! | [`rlimit`]      | the open-file limit raised for many clients (benchmarks use it too)   |
//!
//! A test that needs root or a tool is `#[ignore = "needs …"]` and calls [`need_root`] or
//! [`need_tool`] first: run with `--include-ignored` on a machine without them, it fails and
//! says what is missing instead of passing without testing anything.
#![allow(dead_code, unused_imports)]

pub mod daemon;
pub mod dbus;
pub mod http;
pub mod netns;
pub mod nm_standin;
pub mod rlimit;
pub mod watcher;
pub mod ws;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use daemon::{Daemon, Served};
pub use http::{http_get, try_http_get, HttpResponse};
pub use ws::{close_code, connect, next_doc, Ws};

pub const BIN: &str = env!("CARGO_BIN_EXE_pistats");

/// How long a test waits for anything the daemon should do within a few ticks.
pub const WAIT: Duration = Duration::from_secs(10);

/// The repository's `tests/fixtures` (device trees copied from real machines).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Fails the test unless it runs as root (the test is `#[ignore = "needs root: …"]`).
pub fn need_root(why: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root to {why}, and runs as uid {euid}: run it as root \
         (scripts/test.sh does), or leave out --include-ignored"
    );
}

/// The path of `name` on `PATH`, or a failure that names the script installing it.
pub fn need_tool(name: &str, installed_by: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test needs `{name}`, which is not installed: run `{installed_by}` \
                 (scripts/test.sh does), or leave out --include-ignored"
            )
        })
}

/// Lines a child process wrote, collected by a thread for the process's whole life (so it
/// never blocks on a full pipe). Waiters wake on each new line rather than polling, so a test
/// that waits for hundreds of log lines in a row is not slowed down by the waiting.
#[derive(Clone, Default)]
pub struct Log(Arc<Lines>);

#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

impl Log {
    /// Collects `stream` line by line; `on_line` sees each line as it arrives.
    pub fn capture(
        stream: impl Read + Send + 'static,
        mut on_line: impl FnMut(&str) + Send + 'static,
    ) -> Log {
        let log = Log::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                on_line(&line);
                sink.0.lines.lock().unwrap().push(line);
                sink.0.grew.notify_all();
            }
        });
        log
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lines.lock().unwrap().clone()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.0
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Waits, at most `limit`, until `check` finds what it looks for in the lines so far.
    pub fn wait_until<T>(
        &self,
        limit: Duration,
        mut check: impl FnMut(&[String]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + limit;
        let mut lines = self.0.lines.lock().unwrap();
        loop {
            if let Some(found) = check(&lines) {
                return Some(found);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self.0.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Waits, at most [`WAIT`], until a line contains `needle`.
    pub fn wait_for(&self, needle: &str) {
        self.wait_until(WAIT, |lines| {
            lines.iter().any(|l| l.contains(needle)).then_some(())
        })
        .unwrap_or_else(|| panic!("no {needle:?} in the log: {:#?}", self.lines()));
    }
}

/// Polls `check` until it returns `Some`, for at most `limit`.
pub fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`eventually`] for async tests: polls `check` without blocking the runtime.
pub async fn eventually_async(limit: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

/// A loopback port free right now, for a server that takes no port 0 (Prometheus).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/<pid>/status`): what a test
/// watches to see that hostile clients do not make the daemon grow without bound.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}
