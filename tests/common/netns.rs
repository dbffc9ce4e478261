//! A network namespace of the test's own, with a veth pair `pstk0` / `pstk1` in it: real
//! links whose carrier and addresses a test changes with `ip`, isolated from the machine's
//! network. Creating one needs root and iproute2.

use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use super::{need_root, need_tool};

/// A namespace with the veth pair `pstk0` (the end pistats watches) and `pstk1` (the far
/// end), both down; removed on drop.
pub struct Netns {
    pub name: String,
}

pub type NsWebSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

impl Netns {
    /// Creates the namespace, failing the test if not root or without `ip`. `tag` tells apart
    /// the namespaces of tests running at once.
    pub fn create(tag: &str) -> Netns {
        need_root("create a network namespace");
        need_tool("ip", "bash tests/netwatch-setup.sh");
        let name = format!("pistats-test-{}-{tag}", std::process::id());
        let ns = Netns { name };
        ns.ip(&["netns", "add", &ns.name]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&[
            "ip", "link", "add", "pstk0", "type", "veth", "peer", "name", "pstk1",
        ]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(args)
            .output()
            .expect("ip (iproute2)");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `args` inside the namespace, failing the test if it fails.
    pub fn exec(&self, args: &[&str]) {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        self.ip(&full);
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// A TCP connection to `addr` from inside the namespace: a thread enters it (network
    /// namespaces are per thread) and hands the socket back.
    pub fn tcp_connect(&self, addr: &str) -> std::io::Result<std::net::TcpStream> {
        let path = format!("/run/netns/{}", self.name);
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(path)?;
            // SAFETY: setns only reads the descriptor and moves this thread alone.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        })
        .join()
        .unwrap()
    }

    /// Whether a connection to `addr` from inside the namespace is refused (any other
    /// failure fails the test).
    pub fn refuses(&self, addr: &str) -> bool {
        match self.tcp_connect(addr) {
            Ok(_) => false,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => true,
            Err(err) => panic!("connecting to {addr} in the namespace: {err}"),
        }
    }

    /// A WebSocket client of the feed at `addr`, connected from inside the namespace.
    pub async fn ws_connect(&self, addr: &str) -> NsWebSocket {
        let stream = self.tcp_connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        let stream = tokio::net::TcpStream::from_std(stream).unwrap();
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
            .await
            .unwrap();
        ws
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
