//! The real `pistats` binary: [`Daemon`] listens on a free loopback port before the test
//! goes on; [`Served`] is any serving process (a listener that opens and closes with the
//! network, or one inside a namespace), observed through its log.

use std::ffi::OsStr;
use std::io::Write;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::http::{http_get, HttpResponse};
use super::{Log, BIN, WAIT};

/// How long the daemon may take to start listening (a debug build on a busy machine).
const STARTUP: Duration = Duration::from_secs(20);

/// `pistats` run through `prefix` (e.g. `ip netns exec NS`, or nothing), without `RUST_LOG`
/// from the environment and without colours, so log lines can be matched, and without the
/// systemd notification variables of whatever runs the tests (a test sets its own).
pub fn pistats_command(prefix: &[&str]) -> Command {
    let mut cmd = match prefix.split_first() {
        Some((program, rest)) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(BIN);
            cmd
        }
        None => Command::new(BIN),
    };
    cmd.env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env("NO_COLOR", "1");
    cmd
}

/// `pistats network` for `interface` with the system bus at `bus` (no config file, so nothing
/// installed on the machine interferes): exit code and standard output.
pub fn network_command(prefix: &[&str], bus: &str, interface: &str) -> (i32, String) {
    let out = pistats_command(prefix)
        .args(["--config", "/dev/null", "--interface", interface, "network"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .output()
        .expect("run pistats network");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), stdout)
}

/// The arguments that point pistats at a fixture tree instead of this machine: `root/proc`
/// and `root/sys` (laid out as on the device the tree was recorded from), and the fake
/// `vcgencmd` script when one is given.
pub fn tree_args(root: &Path, vcgencmd: Option<&Path>) -> Vec<String> {
    let path = |p: &Path| p.to_str().expect("UTF-8 fixture path").to_owned();
    let mut args = vec![
        "--proc-root".to_owned(),
        path(&root.join("proc")),
        "--sys-root".to_owned(),
        path(&root.join("sys")),
    ];
    if let Some(vcgencmd) = vcgencmd {
        args.extend(["--vcgencmd".to_owned(), path(vcgencmd)]);
    }
    args
}

/// Listener openings and closings in `log`, and the last address opened.
fn listener_events(log: &[String]) -> (usize, usize, Option<String>) {
    let mut opened = 0;
    let mut closed = 0;
    let mut addr = None;
    for line in log {
        if line.contains("stopped listening on ") {
            closed += 1;
        } else if let Some(rest) = line.split("listening on ").nth(1) {
            opened += 1;
            addr = Some(rest.trim().to_owned());
        }
    }
    (opened, closed, addr)
}

/// A serving daemon whose log is collected, with no expectation about listening; killed on
/// drop.
pub struct Served {
    child: Child,
    log: Log,
}

impl Served {
    /// `pistats ARGS` through `prefix` with the system bus at `bus` and no config file;
    /// on 127.0.0.1 unless `args` name a `--host`.
    pub fn start(prefix: &[&str], bus: &str, args: &[&str]) -> Served {
        let mut cmd = pistats_command(prefix);
        cmd.args(["--config", "/dev/null"])
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus);
        if !args.contains(&"--host") {
            cmd.args(["--host", "127.0.0.1"]);
        }
        Served::spawn(cmd, |_| {})
    }

    fn spawn(mut cmd: Command, on_line: impl FnMut(&str) + Send + 'static) -> Served {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pistats");
        let stderr = child.stderr.take().unwrap();
        let log = Log::capture(stderr, on_line);
        Served { child, log }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lines()
    }

    pub fn wait_for_log(&self, needle: &str) {
        self.log.wait_for(needle);
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Listener openings and closings so far, and the last address opened.
    pub fn listener_events(&self) -> (usize, usize, Option<String>) {
        listener_events(&self.log())
    }

    /// Waits until exactly `opened` openings and `closed` closings are logged; returns the
    /// last address opened.
    pub fn wait_for_events(&self, opened: usize, closed: usize) -> String {
        self.log
            .wait_until(WAIT, |lines| {
                let (o, c, addr) = listener_events(lines);
                (o == opened && c == closed).then_some(addr.unwrap_or_default())
            })
            .unwrap_or_else(|| {
                panic!(
                    "expected {opened} openings and {closed} closings; log: {:#?}",
                    self.log()
                )
            })
    }

    /// The daemon's sockets, pipes and event fds (what a listener or a watcher would leak),
    /// and its threads. Files are left out: the stats collector keeps a `/proc/PID/stat`
    /// open per process on the machine, which varies with whatever else runs.
    pub fn fds_and_threads(&self) -> (usize, usize) {
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

/// A daemon listening on 127.0.0.1 at an ephemeral port; killed on drop. Everything
/// [`Served`] offers is available through it.
pub struct Daemon {
    served: Served,
    pub addr: SocketAddr,
    _config: tempfile::NamedTempFile,
}

impl Deref for Daemon {
    type Target = Served;

    fn deref(&self) -> &Served {
        &self.served
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Served {
        &mut self.served
    }
}

impl Daemon {
    /// Starts pistats with an empty config file (so a config installed on the machine cannot
    /// interfere) and `args`.
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_with_config("", args)
    }

    /// Starts pistats with `config` as its config file, and `args`; returns once it listens.
    /// Its log lines are echoed to the test's output (shown when the test fails).
    pub fn start_with_config(config: &str, args: &[&str]) -> Daemon {
        Daemon::start_with_env(config, args, &[])
    }

    /// [`Daemon::start_with_config`] with the variables `env` set for the daemon (e.g. the
    /// `NOTIFY_SOCKET` systemd would give it).
    pub fn start_with_env(config: &str, args: &[&str], env: &[(&str, &OsStr)]) -> Daemon {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(config.as_bytes()).unwrap();
        let mut cmd = pistats_command(&[]);
        cmd.arg("--config")
            .arg(file.path())
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .envs(env.iter().copied());
        let (tx, rx) = std::sync::mpsc::channel();
        let served = Served::spawn(cmd, move |line| {
            eprintln!("pistats: {line}");
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_owned());
            }
        });
        let addr = match rx.recv_timeout(STARTUP) {
            Ok(addr) => addr
                .parse()
                .unwrap_or_else(|e| panic!("bad listen address {addr:?}: {e}")),
            Err(_) => panic!(
                "pistats did not start listening in {STARTUP:?}: {:#?}",
                served.log()
            ),
        };
        Daemon {
            served,
            addr,
            _config: file,
        }
    }

    /// Starts pistats on a fixture tree (see [`tree_args`]) with the fake `vcgencmd` at
    /// `vcgencmd`, `config` as its config file, and `args`.
    pub fn start_on_tree(root: &Path, vcgencmd: &Path, config: &str, args: &[&str]) -> Daemon {
        let tree = tree_args(root, Some(vcgencmd));
        let mut all: Vec<&str> = tree.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        Daemon::start_with_config(config, &all)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(self.addr, path, &[])
    }
}
