//! A private `dbus-daemon`: the bus pistats takes for the system bus in these tests (through
//! `DBUS_SYSTEM_BUS_ADDRESS`), which a test can kill and restart at the same address.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::need_tool;

pub struct Bus {
    child: Child,
    /// Where the socket `bus` is.
    dir: PathBuf,
    /// The temporary directory `dir` is, when the bus made it.
    _temp: Option<tempfile::TempDir>,
    /// The address `dbus-daemon` printed, with its guid.
    pub address: String,
}

impl Bus {
    /// Starts a bus on a socket in a temporary directory; fails the test if `dbus-daemon` is
    /// not installed.
    pub fn start() -> Bus {
        let temp = tempfile::tempdir().unwrap();
        let mut bus = Bus::start_in(temp.path());
        bus._temp = Some(temp);
        bus
    }

    /// Starts a bus on the socket `dir/bus`.
    pub fn start_in(dir: &Path) -> Bus {
        let (child, address) = Bus::spawn(dir);
        Bus {
            child,
            dir: dir.to_owned(),
            _temp: None,
            address,
        }
    }

    fn spawn(dir: &Path) -> (Child, String) {
        let program = need_tool("dbus-daemon", "bash tests/netwatch-setup.sh");
        let socket = dir.join("bus");
        let _ = std::fs::remove_file(&socket);
        let mut child = Command::new(program)
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdout(Stdio::piped())
            // Only a complaint that it cannot raise its fd limit, as a non-system bus.
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("unix:"), "dbus-daemon printed {line:?}");
        (child, line.trim().to_owned())
    }

    /// Kills the daemon: every connection to it is lost.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new daemon at the same address.
    pub fn restart(&mut self) {
        self.kill();
        let (child, address) = Bus::spawn(&self.dir);
        self.child = child;
        self.address = address;
    }

    /// The address without the daemon's guid, stable across restarts.
    pub fn path_address(&self) -> String {
        format!("unix:path={}", self.dir.join("bus").display())
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.kill();
    }
}
