//! Attacks from a hostile LAN, replayed on loopback against the real daemon: clients that
//! never read, connection caps, bursts and the memory they leave, DNS-rebinding `Host`
//! headers, log floods, links and FIFOs among the dashboard files, signals while something
//! is stuck, and the corners of HTTP and WebSocket that scanners poke at.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::rlimit::raise_fd_limit;
use common::{eventually, rss_kib, Daemon, HttpResponse, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Sends `request` as it is and reads the answer until the server closes.
fn raw_request(addr: SocketAddr, request: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response to {request:?}: {text:?}"));
    HttpResponse {
        status,
        headers: head.to_owned(),
        body: body.to_owned(),
    }
}

fn request(method: &str, path: &str, host: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n")
}

/// The headers of a WebSocket upgrade with this protocol version and key.
fn upgrade_headers(version: &str, key: &str) -> String {
    format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: {version}\r\n\
         Sec-WebSocket-Key: {key}\r\n"
    )
}

/// A well-formed WebSocket upgrade request for `/ws` (version 13, the fixed [`KEY`]).
fn upgrade_request(host: &str) -> String {
    request("GET", "/ws", host, &upgrade_headers("13", KEY))
}

/// Open sockets of a process (its other descriptors, such as the `/proc` files the
/// collector keeps open, come and go with the machine's processes).
fn open_sockets(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// The largest file of the dashboard (name, size): what a slow reader asks for.
fn largest_asset() -> (String, usize) {
    std::fs::read_dir("assets")
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_file())
        .map(|entry| {
            let size = entry.metadata().unwrap().len() as usize;
            (entry.file_name().into_string().unwrap(), size)
        })
        .max_by_key(|(_, size)| *size)
        .unwrap()
}

/// Requests that make the responses far larger than any socket buffer (1 MiB in all).
fn requests_beyond_buffers(size: usize) -> usize {
    (1 << 20) / size + 1
}

/// A client that pipelines `n` requests for the dashboard file `name` with a tiny receive
/// buffer and never reads: the responses cannot all fit in the socket buffers.
async fn slow_reader(addr: SocketAddr, name: &str, n: usize) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let one = format!("GET /{name} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(one.repeat(n).as_bytes()).await.unwrap();
    stream
}

#[tokio::test]
async fn clients_that_never_read_are_cut_off_at_the_write_deadline() {
    let daemon = Daemon::start(&["--send-timeout", "1s"]);
    let (name, size) = largest_asset();
    let n = requests_beyond_buffers(size);
    let baseline = open_sockets(daemon.pid());
    let mut readers = Vec::new();
    for _ in 0..20 {
        readers.push(slow_reader(daemon.addr, &name, n).await);
    }
    let all_open = eventually(WAIT, || {
        (open_sockets(daemon.pid()) >= baseline + 20).then_some(())
    });
    assert!(all_open.is_some(), "the slow readers were not accepted");
    // The clients keep their sockets open and still read nothing: only the daemon can end
    // these connections.
    let released = eventually(WAIT * 2, || {
        (open_sockets(daemon.pid()) <= baseline + 1).then_some(())
    });
    assert!(
        released.is_some(),
        "{} sockets open, {baseline} before the slow readers",
        open_sockets(daemon.pid())
    );
    // What they receive now is less than they asked for, and then the end.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, readers[0].read_to_end(&mut got))
        .await
        .expect("connection still open");
    assert!(got.len() < n * size, "{} bytes delivered", got.len());
    assert_eq!(daemon.get("/healthz").status, 200);
}

#[test]
fn an_address_over_its_connection_cap_is_refused() {
    let daemon = Daemon::start_with_config("max_clients_per_ip = 3\n", &[]);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(daemon.addr).unwrap())
        .collect();
    let mut over = TcpStream::connect(daemon.addr).unwrap();
    over.set_read_timeout(Some(WAIT)).unwrap();
    let mut answer = String::new();
    let _ = over.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer:?}");
    assert!(answer.contains("Retry-After"), "{answer:?}");
    drop(held);
    // Until the daemon has seen the closes, a new connection is still refused (and may be
    // reset before the answer is read): try again.
    let healthz = || -> Option<String> {
        let mut stream = TcpStream::connect(daemon.addr).ok()?;
        stream.set_read_timeout(Some(WAIT)).ok()?;
        let request = request("GET", "/healthz", &daemon.addr.to_string(), "");
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer)
    };
    let served = eventually(WAIT, || healthz().filter(|a| a.starts_with("HTTP/1.1 200")));
    assert!(served.is_some(), "slots were not released");
}

/// RSS after a burst of connections comes back near where it was before; without handing
/// freed memory back to the OS it stays at the burst's peak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_from_a_connection_burst_is_returned() {
    raise_fd_limit();
    let daemon = Daemon::start_with_config(
        "max_clients = 4000\nmax_clients_per_ip = 4000\n",
        &["--interval", "1s"],
    );
    let pid = daemon.pid();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(pid);
    let url = daemon.ws_url("/ws");
    let mut clients = Vec::new();
    for _ in 0..30 {
        let batch = futures_util::future::join_all((0..100).map(|_| common::connect(&url))).await;
        clients.extend(batch);
    }
    for ws in clients.iter_mut().take(50) {
        common::next_doc(ws).await;
    }
    let peak = rss_kib(pid);
    drop(clients);
    let grown = peak.saturating_sub(before);
    assert!(grown > 4 * 1024, "the burst cost only {grown} KiB: no test");
    let returned = eventually(WAIT * 2, || {
        let now = rss_kib(pid);
        (now < before + grown / 2).then_some(now)
    });
    assert!(
        returned.is_some(),
        "RSS {before} KiB before, {peak} KiB at the peak, {} KiB after",
        rss_kib(pid)
    );
}

#[test]
fn rebinding_host_headers_are_refused() {
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr;
    let port = addr.port();
    for host in [
        format!("evil.example:{port}"),
        "attacker.example".to_owned(),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        for path in ["/", "/api/v1/stats", "/metrics", "/healthz", "/app.js"] {
            let answer = raw_request(addr, &request("GET", path, &host, ""));
            assert_eq!(answer.status, 421, "{path} for {host}");
        }
        let ws = raw_request(addr, &upgrade_request(&host));
        assert_eq!(ws.status, 421, "WebSocket for {host}");
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("{}:{port}", hostname.trim()),
        format!("{}.local", hostname.trim()),
        "[::1]".to_owned(),
    ] {
        let answer = raw_request(addr, &request("GET", "/api/v1/stats", &host, ""));
        assert_eq!(answer.status, 200, "{host}");
    }
    daemon.wait_for_log("evil.example");
}

#[test]
fn a_connect_close_loop_writes_a_bounded_number_of_log_lines() {
    let daemon = Daemon::start(&[]);
    let upgrade = upgrade_request(&daemon.addr.to_string());
    for _ in 0..2000 {
        let mut stream = TcpStream::connect(daemon.addr).unwrap();
        stream.write_all(upgrade.as_bytes()).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 101");
    }
    daemon.wait_for_log("not logged");
    let lines = daemon.log();
    let per_client = lines
        .iter()
        .filter(|l| l.contains("client connected") || l.contains("client disconnected"))
        .count();
    assert!(per_client < 200, "{per_client} per-client lines");
    assert!(lines.len() < 300, "{} lines logged", lines.len());
}

fn assets_with_traps() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["index.html", "app.js", "style.css"] {
        std::fs::copy(format!("assets/{file}"), dir.path().join(file)).unwrap();
    }
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd.txt")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("etc")).unwrap();
    std::os::unix::fs::symlink("app.js", dir.path().join("alias.js")).unwrap();
    mkfifo(&dir.path().join("fifo.js"));
    dir
}

#[test]
fn only_regular_files_inside_the_dashboard_directory_are_served() {
    let assets = assets_with_traps();
    let daemon = Daemon::start(&["--assets-dir", assets.path().to_str().unwrap()]);
    assert_eq!(daemon.get("/app.js").status, 200);
    assert_eq!(daemon.get("/alias.js").status, 200, "links inside are fine");
    for path in [
        "/passwd.txt",
        "/etc/passwd",
        "/etc/hostname",
        "/%2e%2e/etc/passwd",
    ] {
        let answer = daemon.get(path);
        assert_eq!(answer.status, 404, "{path}");
        assert!(!answer.body.contains("root:"), "{path}");
    }
    // A FIFO nobody writes to: answered at once, not after the client gives up.
    let fifo = daemon.get("/fifo.js");
    assert_eq!(fifo.status, 404);
    assert_eq!(daemon.get("/").status, 200);
}

#[test]
fn sigterm_while_a_request_is_stuck_exits_promptly() {
    let assets = assets_with_traps();
    let mut daemon = Daemon::start(&[
        "--assets-dir",
        assets.path().to_str().unwrap(),
        "--send-timeout",
        "60s",
    ]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let css = std::fs::metadata("assets/style.css").unwrap().len() as usize;
    let _reader = runtime.block_on(slow_reader(
        daemon.addr,
        "style.css",
        requests_beyond_buffers(css),
    ));
    let _fifo = std::thread::spawn({
        let addr = daemon.addr;
        move || raw_request(addr, &request("GET", "/fifo.js", &addr.to_string(), ""))
    });
    std::thread::sleep(Duration::from_millis(500));
    daemon.signal("TERM");
    let status = daemon.wait_exit(WAIT).expect("still running after SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// A collector stuck opening a FIFO under `proc_root` does not hold up SIGTERM.
#[test]
fn sigterm_while_the_collector_is_blocked_exits_promptly() {
    let root = tempfile::tempdir().unwrap();
    let proc_root = root.path().join("proc");
    std::fs::create_dir(&proc_root).unwrap();
    for entry in std::fs::read_dir("tests/fixtures/pi4/proc").unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), proc_root.join(entry.file_name())).unwrap();
        }
    }
    let _ = std::fs::remove_file(proc_root.join("uptime"));
    mkfifo(&proc_root.join("uptime"));
    let config = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(config.path())
        .args(["--host", "127.0.0.1", "--port", "0", "--proc-root"])
        .arg(&proc_root)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(child.try_wait().unwrap().is_none(), "exited on its own");
    // SAFETY: kill sends a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let exited = eventually(WAIT, || child.try_wait().unwrap());
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("still running {WAIT:?} after SIGTERM");
    }
}

#[test]
fn bearer_scheme_is_case_insensitive_and_healthz_hides_details_without_token() {
    let daemon = Daemon::start_with_config("token = \"s3cret\"\n", &[]);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let answer = common::http_get(
            daemon.addr,
            "/api/v1/stats",
            &[("Authorization", &format!("{scheme} s3cret"))],
        );
        assert_eq!(answer.status, 200, "{scheme}");
    }
    let anonymous = daemon.get("/healthz").json();
    assert_eq!(anonymous["status"], "ok");
    assert!(anonymous.get("clients").is_none() && anonymous.get("version").is_none());
    let known = common::http_get(
        daemon.addr,
        "/healthz",
        &[("Authorization", "Bearer s3cret")],
    )
    .json();
    assert!(
        known["clients"].is_u64() && known["version"].is_string(),
        "{known}"
    );
}

#[test]
fn websocket_handshake_errors_get_their_statuses() {
    let daemon = Daemon::start(&[]);
    let host = daemon.addr.to_string();
    let old = raw_request(
        daemon.addr,
        &request("GET", "/ws", &host, &upgrade_headers("8", KEY)),
    );
    assert_eq!(old.status, 426);
    assert_eq!(old.header("sec-websocket-version").as_deref(), Some("13"));
    for key in [
        "short",
        "dGhlIHNhbXBsZSBub25jZQ",
        "!!!!!!!!!!!!!!!!!!!!!!==",
    ] {
        let bad = raw_request(
            daemon.addr,
            &request("GET", "/", &host, &upgrade_headers("13", key)),
        );
        assert_eq!(bad.status, 400, "key {key:?}");
    }
}

/// A raw WebSocket client: the handshake, then frames as they come.
struct RawWs(TcpStream);

impl RawWs {
    fn open(daemon: &Daemon) -> RawWs {
        let mut stream = TcpStream::connect(daemon.addr).unwrap();
        stream.set_read_timeout(Some(WAIT * 3)).unwrap();
        let request = upgrade_request(&daemon.addr.to_string());
        stream.write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        RawWs(stream)
    }

    /// Sends one masked frame.
    fn send(&mut self, opcode: u8, payload: &[u8]) {
        assert!(payload.len() < 126);
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.0.write_all(&frame).unwrap();
    }

    /// (opcode, payload) of the next frame.
    fn next(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        self.0.read_exact(&mut head).unwrap();
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                self.0.read_exact(&mut ext).unwrap();
                u16::from_be_bytes(ext) as usize
            }
            127 => {
                let mut ext = [0u8; 8];
                self.0.read_exact(&mut ext).unwrap();
                u64::from_be_bytes(ext) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.0.read_exact(&mut payload).unwrap();
        (head[0] & 0x0f, payload)
    }

    /// The close code of the first close frame, skipping documents and pings.
    fn close_code(&mut self) -> u16 {
        loop {
            let (opcode, payload) = self.next();
            if opcode == 8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }
}

#[test]
fn invalid_utf8_text_closes_with_1007() {
    let daemon = Daemon::start(&[]);
    let mut ws = RawWs::open(&daemon);
    ws.send(0x1, &[b'o', b'k', 0xff, 0xfe]);
    assert_eq!(ws.close_code(), 1007);
}

#[test]
fn a_ping_timeout_sends_a_close_frame() {
    let daemon = Daemon::start(&["--ping-interval", "1s", "--ping-timeout", "1s"]);
    let mut ws = RawWs::open(&daemon);
    // Pings are never answered.
    assert_eq!(ws.close_code(), 1008);
}

/// Pings go out with the documents; a client that answers each one stays connected through
/// many ping timeouts, and gets every document.
#[test]
fn a_client_that_answers_pings_stays_connected() {
    let daemon = Daemon::start(&[
        "--interval",
        "250ms",
        "--ping-interval",
        "500ms",
        "--ping-timeout",
        "400ms",
    ]);
    let mut ws = RawWs::open(&daemon);
    let (mut pings, mut documents) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        match ws.next() {
            (0x9, payload) => {
                pings += 1;
                ws.send(0xa, &payload);
            }
            (0x1, _) => documents += 1,
            (opcode, payload) => panic!("unexpected frame {opcode:#x}: {payload:?}"),
        }
    }
    // One ping every other document: over 4 s, 16 documents and 8 pings.
    assert!(pings >= 5, "{pings} pings");
    assert!(documents >= 10, "{documents} documents");
}

#[test]
fn head_works_on_every_get_resource_and_other_methods_are_405_or_404() {
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr;
    let host = addr.to_string();
    for path in [
        "/",
        "/app.js",
        "/style.css",
        "/api/v1/stats",
        "/api/v1/history",
        "/healthz",
        "/metrics",
    ] {
        let get = raw_request(addr, &request("GET", path, &host, ""));
        let head = raw_request(addr, &request("HEAD", path, &host, ""));
        assert_eq!(head.status, 200, "HEAD {path}");
        assert_eq!(get.status, 200, "GET {path}");
        assert!(head.body.is_empty(), "HEAD {path} has a body");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let answer = raw_request(addr, &request(method, path, &host, "Content-Length: 0\r\n"));
            assert_eq!(answer.status, 405, "{method} {path}");
            let allow = answer.header("allow").unwrap_or_default();
            assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
        }
    }
    assert_eq!(
        raw_request(addr, &request("HEAD", "/nope", &host, "")).status,
        404
    );
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/nope", "/api/v2/stats", "/app.js/x"] {
            let answer = raw_request(addr, &request(method, path, &host, "Content-Length: 0\r\n"));
            assert_eq!(answer.status, 404, "{method} {path}");
        }
    }
}
