//! Load benchmark: runs the real daemon, connects N WebSocket clients (and optionally some
//! that never read), and reports the daemon's CPU use and memory from `/proc` and the clients'
//! inter-arrival times.
//!
//! Run: `cargo bench --bench clients -- [--clients 0,500,1000] [--seconds 30] [--stuck 0]
//! [--churn 0]`
//!
//! `--churn N` closes N clients a second and connects N new ones, for soak runs:
//! `cargo bench --bench clients -- --clients 500 --churn 10 --seconds 1800` reports whether
//! RSS and the number of open file descriptors stay flat.
//!
//! `--burst N` connects N WebSocket clients at once, holds them 5 s, closes them all and
//! reports RSS before the burst, at its peak, and every 5 s for 30 s after it:
//! `cargo bench --bench clients -- --burst 5000`.
//!
//! `--binary PATH` (repeatable) measures other builds of pistats as well, one window each after
//! this one, in the same run: a before/after comparison on the same machine and load
//! (`--clients 0 --seconds 60 --binary /tmp/pistats-before`).
//!
//! `--floor` measures the floor too: a minimal sender (this benchmark's own binary, started
//! with `--floor-server`) that accepts the same WebSocket handshakes and does nothing per tick
//! but one `write(2)` of a prebuilt frame of a real pistats document to each client. `--repeat
//! N` runs every program N times, interleaved (floor, pistats, other builds, floor, …), and the
//! summary gives each program's median CPU and its ratio to the floor's:
//! `cargo bench --bench clients -- --clients 500,1000 --seconds 20 --repeat 3 --floor`.
//!
//! With no clients, `--floor` measures an *idle floor* instead: this binary started with
//! `--idle-floor-server`, one thread and no runtime, that once a second does the least any 1 Hz
//! history recorder must: reads kept-open `/proc/stat`, `/proc/meminfo`, `/proc/loadavg`,
//! `/proc/net/dev`, `/proc/diskstats` and the first thermal zone's `temp` (where there is one)
//! with `pread` from offset 0 to the end, and calls `statfs("/")`. What an idle process costs
//! depends on how idle the machine is (waking an idle virtual CPU costs several times what waking
//! a busy one does), so the unwatched daemon is judged by its ratio to this floor, measured in
//! the same run. Its CPU is a few milliseconds a minute: use windows of 120 s or more,
//! `cargo bench --bench clients -- --clients 0 --seconds 120 --repeat 3 --floor`.
//!
//! `--deflate` makes the feed clients offer `permessage-deflate` (as browsers do); the floor
//! still sends the uncompressed frame. The summary reports the bytes per message each client
//! received (frame headers included).
//!
//! With `perf` installed, each window also reports the daemon's page faults a second: a count
//! that, unlike CPU time, does not move with the machine's load.
//!
//! The feed clients speak the WebSocket protocol on a plain socket (handshake, frame headers,
//! pongs): the cheapest reader possible, so that as little as possible of the machine goes to
//! the clients, and one that accepts compressed frames.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{invoked_by_cargo_bench, raise_fd_limit};

struct Args {
    clients: Vec<usize>,
    seconds: u64,
    stuck: usize,
    churn: usize,
    burst: Option<usize>,
    /// This build first, then any `--binary` given.
    binaries: Vec<String>,
    floor: bool,
    repeat: usize,
    deflate: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        clients: vec![0, 500, 1000],
        seconds: 30,
        stuck: 0,
        churn: 0,
        burst: None,
        binaries: vec![env!("CARGO_BIN_EXE_pistats").to_owned()],
        floor: false,
        repeat: 1,
        deflate: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--clients" => {
                args.clients = it
                    .next()
                    .expect("--clients N[,N…]")
                    .split(',')
                    .map(|n| n.parse().expect("client count"))
                    .collect()
            }
            "--seconds" => {
                args.seconds = it.next().and_then(|s| s.parse().ok()).expect("--seconds N")
            }
            "--stuck" => args.stuck = it.next().and_then(|s| s.parse().ok()).expect("--stuck N"),
            "--churn" => args.churn = it.next().and_then(|s| s.parse().ok()).expect("--churn N"),
            "--burst" => {
                args.burst = Some(it.next().and_then(|s| s.parse().ok()).expect("--burst N"))
            }
            "--binary" => args.binaries.push(it.next().expect("--binary PATH")),
            "--floor" => args.floor = true,
            "--deflate" => args.deflate = true,
            "--repeat" => args.repeat = it.next().and_then(|s| s.parse().ok()).expect("--repeat N"),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

/// (utime + stime in seconds, RSS in KiB, open fds) of a process.
fn proc_usage(pid: u32) -> (f64, u64, usize) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (ticks / hz, rss, fds)
}

/// What the feed clients saw: the time between consecutive documents, and the bytes.
#[derive(Default)]
struct Seen {
    arrivals: Vec<Duration>,
    messages: u64,
    /// Frame headers included.
    bytes: u64,
    /// Clients whose handshake answer accepted `permessage-deflate`.
    deflated: usize,
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Opens a WebSocket on a plain socket (offering `permessage-deflate` if `deflate`), then
/// reads frames until aborted: records each data message's arrival and size, answers pings.
async fn feed_client(
    addr: String,
    deflate: bool,
    seen: Arc<Mutex<Seen>>,
) -> tokio::task::JoinHandle<()> {
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let _ = s.set_nodelay(true);
    let offer = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("handshake");
    let mut buf = Vec::with_capacity(8192);
    let head_end = loop {
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await.expect("handshake answer");
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "not upgraded: {head}");
    if head.contains("permessage-deflate") {
        seen.lock().unwrap().deflated += 1;
    }
    buf.drain(..head_end);
    tokio::spawn(async move {
        let mut last: Option<Instant> = None;
        let mut chunk = vec![0u8; 16384];
        loop {
            // Every complete frame in the buffer.
            while let Some((header, len)) = frame_header(&buf) {
                if buf.len() < header + len {
                    break;
                }
                let (b0, total) = (buf[0], header + len);
                match b0 & 0x0f {
                    0x9 => {
                        // Pong with the ping's payload, masked with a zero key.
                        let mut pong = vec![0x8a, 0x80 | len as u8, 0, 0, 0, 0];
                        pong.extend_from_slice(&buf[header..total]);
                        if s.write_all(&pong).await.is_err() {
                            return;
                        }
                    }
                    0x8 => return,
                    0x0..=0x2 if b0 & 0x80 != 0 => {
                        let now = Instant::now();
                        let mut seen = seen.lock().unwrap();
                        if let Some(prev) = last {
                            seen.arrivals.push(now - prev);
                        }
                        seen.messages += 1;
                        seen.bytes += total as u64;
                        last = Some(now);
                    }
                    _ => {}
                }
                buf.drain(..total);
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
}

/// (header length, payload length) of the server frame at the start of `buf`, once its
/// header is complete.
fn frame_header(buf: &[u8]) -> Option<(usize, usize)> {
    let b1 = *buf.get(1)?;
    match b1 & 0x7f {
        126 => Some((
            4,
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
        )),
        127 => Some((
            10,
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
        )),
        n => Some((2, n as usize)),
    }
}

/// Starts a server (pistats or a floor) and waits for the line it prints when ready; returns
/// what follows `ready` on that line (the address it listens on).
fn start_server(mut command: Command, ready: &'static str) -> (std::process::Child, String) {
    let mut child = command
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split(ready).nth(1) {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("server listening");
    (child, addr)
}

/// Starts the daemon allowing `max_clients` clients from one address; returns it, its
/// address and its config file.
fn start_daemon(
    binary: &str,
    max_clients: usize,
) -> (std::process::Child, String, std::path::PathBuf) {
    // All benchmark clients come from 127.0.0.1: lift the per-address limit.
    let config = std::env::temp_dir().join(format!("pistats-bench-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!("max_clients = {max_clients}\nmax_clients_per_ip = {max_clients}\n"),
    )
    .unwrap();
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(&config)
        .args(["--host", "127.0.0.1", "--port", "0"]);
    let (child, addr) = start_server(command, LISTENING);
    (child, addr, config)
}

/// One real document from this build of pistats: what the floor sends. The third one: the
/// first ticks lack the rates (no earlier counters to compare with), so they are shorter than
/// what a client gets from then on, and the floor would send fewer bytes than pistats.
async fn sample_document() -> Vec<u8> {
    const TAKEN: usize = 3;
    let (mut child, addr, config) = start_daemon(env!("CARGO_BIN_EXE_pistats"), 10);
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let document = loop {
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "no document");
        buf.extend_from_slice(&chunk[..n]);
        let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let mut frames = &buf[i + 4..];
        let mut seen = 0;
        let mut taken = None;
        while let Some((header, len)) = frame_header(frames) {
            if frames.len() < header + len {
                break;
            }
            // Text frames only (a ping is not a document).
            seen += usize::from(frames[0] & 0x0f == 1);
            if seen == TAKEN {
                taken = Some(frames[header..header + len].to_vec());
                break;
            }
            frames = &frames[header + len..];
        }
        if let Some(document) = taken {
            break document;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&config);
    document
}

/// The floor: accepts WebSocket handshakes, then once a second writes one prebuilt text frame
/// of `document` to every client with a single `write(2)` each, and does nothing else (no
/// runtime, no pings, no reading).
fn floor_server(document: &str) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

    let payload = std::fs::read(document).expect("document file");
    let mut frame = vec![0x81u8];
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= 0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&payload);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    eprintln!("floor listening on {}", listener.local_addr().unwrap());
    let clients: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let accepted = clients.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let Some(key) = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            }) else {
                continue;
            };
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            if stream.write_all(answer.as_bytes()).is_ok() {
                let _ = stream.set_nodelay(true);
                accepted.lock().unwrap().push(stream);
            }
        }
    });
    let mut next = Instant::now();
    loop {
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        for mut client in clients.lock().unwrap().iter() {
            let _ = client.write(&frame);
        }
    }
}

/// What a server prints once it accepts connections, before its address.
const LISTENING: &str = "listening on ";

/// What the idle floor prints once its files are open.
const IDLE_FLOOR_READY: &str = "idle floor ready";

/// The idle floor: once a second, on this one thread and without a runtime, reads what a 1 Hz
/// history of CPU, memory, load, network, disks and temperature needs and nothing else: the
/// kept-open `/proc` files (and the first thermal zone's `temp`) with `pread` from offset 0
/// until a read returns nothing (a `seq_file` hands out at most a page per read, so a short
/// read is not the end), and `statfs("/")` for the root file system's use.
fn idle_floor_server() {
    use std::os::unix::fs::FileExt;

    let mut files: Vec<std::fs::File> = [
        "/proc/stat",
        "/proc/meminfo",
        "/proc/loadavg",
        "/proc/net/dev",
        "/proc/diskstats",
    ]
    .iter()
    .map(|path| std::fs::File::open(path).expect(path))
    .collect();
    let mut zones: Vec<std::path::PathBuf> = std::fs::read_dir("/sys/class/thermal")
        .map(|dir| dir.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    zones.retain(|z| {
        z.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("thermal_zone"))
    });
    // thermal_zone0 sorts first.
    zones.sort();
    files.extend(
        zones
            .iter()
            .find_map(|z| std::fs::File::open(z.join("temp")).ok()),
    );
    let mut buf = vec![0u8; 64 * 1024];
    eprintln!("{IDLE_FLOOR_READY}: {} files", files.len());
    let mut next = Instant::now();
    loop {
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        for file in &files {
            let mut offset = 0;
            while let Ok(n @ 1..) = file.read_at(&mut buf, offset) {
                offset += n as u64;
            }
        }
        let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: the path is a NUL-terminated string and fs a writable statfs.
        unsafe { libc::statfs(c"/".as_ptr(), fs.as_mut_ptr()) };
        std::hint::black_box((&buf, &fs));
    }
}

/// RSS before, at the peak of, and after a burst of `n` WebSocket clients.
async fn burst(n: usize) {
    let (mut child, addr, config) = start_daemon(env!("CARGO_BIN_EXE_pistats"), n + 100);
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, before, fds_before) = proc_usage(pid);
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let mut tasks = Vec::with_capacity(n);
    let mut peak = before;
    let started = Instant::now();
    while tasks.len() < n {
        let batch = (n - tasks.len()).min(250);
        let connected = futures_util::future::join_all(
            (0..batch).map(|_| feed_client(addr.clone(), false, seen.clone())),
        )
        .await;
        tasks.extend(connected);
        peak = peak.max(proc_usage(pid).1);
    }
    let connect_time = started.elapsed();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak = peak.max(proc_usage(pid).1);
    }
    let (_, held, fds_held) = proc_usage(pid);
    for t in tasks {
        t.abort();
    }
    let mut after = Vec::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        after.push(proc_usage(pid).1);
    }
    let (_, _, fds_after) = proc_usage(pid);
    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    println!(
        "burst of {n} clients (connected in {:.1} s): RSS before {} MiB, peak {} MiB, held {} MiB, \
         30 s after {} MiB | fds {fds_before} → {fds_held} → {fds_after}",
        connect_time.as_secs_f64(),
        mib(before),
        mib(peak),
        mib(held),
        mib(*after.last().unwrap()),
    );
    let timeline: Vec<String> = after.iter().map(|&k| mib(k)).collect();
    println!("      RSS every 5 s after (MiB): {}", timeline.join(" "));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&config);
}

/// The 1-minute load average: what else the machine was doing during a window.
fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// A server to measure: a floor or a build of pistats.
enum Server<'a> {
    Floor(&'a std::path::Path),
    IdleFloor,
    Pistats(&'a str),
}

impl Server<'_> {
    fn label(&self) -> String {
        match self {
            Server::Floor(_) => "floor (one write per client per tick)".to_owned(),
            Server::IdleFloor => IDLE_FLOOR_LABEL.to_owned(),
            Server::Pistats(binary) => binary.to_string(),
        }
    }
}

/// One measured window.
struct Window {
    label: String,
    clients: usize,
    cpu_percent: f64,
    /// Page faults a second (with `perf`).
    faults_per_second: Option<f64>,
    max_rss_mib: f64,
    bytes_per_message: f64,
    deflated: usize,
}

struct Load {
    clients: usize,
    stuck: usize,
    churn: usize,
    seconds: u64,
    deflate: bool,
}

async fn run(server: &Server<'_>, load: &Load) -> Window {
    let Load {
        clients,
        stuck,
        churn,
        seconds,
        deflate,
    } = *load;
    let (mut child, addr, config) = match server {
        Server::Pistats(binary) => {
            let (child, addr, config) = start_daemon(binary, 4096);
            (child, addr, Some(config))
        }
        Server::Floor(document) => {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command.arg("--bench").arg("--floor-server").arg(document);
            let (child, addr) = start_server(command, LISTENING);
            (child, addr, None)
        }
        Server::IdleFloor => {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command.arg("--bench").arg("--idle-floor-server");
            let (child, _) = start_server(command, IDLE_FLOOR_READY);
            (child, String::new(), None)
        }
    };
    let pid = child.id();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let mut tasks = std::collections::VecDeque::new();
    for _ in 0..clients {
        tasks.push_back(feed_client(addr.clone(), deflate, seen.clone()).await);
    }
    let mut stuck_sockets = Vec::new();
    for _ in 0..stuck {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes()).await.unwrap();
        stuck_sockets.push(s);
    }
    // Let connection set-up settle, then measure a steady window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    {
        let mut seen = seen.lock().unwrap();
        seen.arrivals.clear();
        seen.messages = 0;
        seen.bytes = 0;
    }
    let (cpu0, rss0, fds0) = proc_usage(pid);
    let task_clock = TaskClock::start(pid);
    let load_at_start = load1();
    let t0 = Instant::now();
    let mut max_rss = 0;
    let mut churned = 0;
    // RSS at every tenth of the window: growth that levels off is the allocator settling,
    // growth that does not is a leak.
    let sample_every = seconds.div_ceil(10).max(1);
    let mut timeline = vec![rss0];
    let mut second = 0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for _ in 0..churn.min(tasks.len()) {
            if let Some(old) = tasks.pop_front() {
                old.abort();
            }
            tasks.push_back(feed_client(addr.clone(), deflate, seen.clone()).await);
            churned += 1;
        }
        let rss = proc_usage(pid).1;
        max_rss = max_rss.max(rss);
        second += 1;
        if second % sample_every == 0 {
            timeline.push(rss);
        }
    }
    let (cpu1, rss, fds) = proc_usage(pid);
    let window = t0.elapsed().as_secs_f64();
    let (cpu_seconds, faults) = task_clock
        .and_then(TaskClock::stop)
        .unwrap_or((cpu1 - cpu0, None));
    let label = server.label();
    println!("{label} (load average {load_at_start} → {})", load1());
    let seen = seen.lock().unwrap();
    let mut gaps = seen.arrivals.clone();
    gaps.sort();
    let p = |q: f64| {
        gaps.get(((gaps.len().max(1) - 1) as f64 * q) as usize)
            .map_or("—".to_owned(), |d| format!("{:.3}s", d.as_secs_f64()))
    };
    let cpu_percent = cpu_seconds / window * 100.0;
    let bytes_per_message = seen.bytes as f64 / seen.messages.max(1) as f64;
    let faults_per_second = faults.map(|n| n as f64 / window);
    let faults_text =
        faults_per_second.map_or(String::new(), |f| format!(" ({f:.1} page faults/s)"));
    println!(
        "{clients:>5} clients {stuck:>3} stuck {churned:>6} churned | daemon CPU {cpu_percent:>7.4}% of one core{faults_text} | RSS {:>5.1} → {:>5.1} MiB (max {:.1}) | fds {fds0} → {fds} | inter-arrival p50 {} p99 {} max {} ({} samples) | {bytes_per_message:.0} B/message{}",
        rss0 as f64 / 1024.0,
        rss as f64 / 1024.0,
        max_rss as f64 / 1024.0,
        p(0.5),
        p(0.99),
        p(1.0),
        gaps.len(),
        if deflate { format!(", {} of {clients} compressed", seen.deflated) } else { String::new() },
    );
    if churn > 0 {
        let mib: Vec<String> = timeline
            .iter()
            .map(|kib| format!("{:.1}", *kib as f64 / 1024.0))
            .collect();
        println!("      RSS every {sample_every} s (MiB): {}", mib.join(" "));
    }
    let result = Window {
        label,
        clients,
        cpu_percent,
        faults_per_second,
        max_rss_mib: max_rss as f64 / 1024.0,
        bytes_per_message,
        deflated: seen.deflated,
    };
    drop(seen);
    for t in tasks {
        t.abort();
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Some(config) = config {
        let _ = std::fs::remove_file(&config);
    }
    result
}

/// The CPU time of every thread of a process over a window, to the nanosecond, from `perf stat
/// -e task-clock` (a software counter: it works where hardware counters are not exposed), and
/// its page faults, a count that does not move with the machine's load.
/// `/proc/PID/stat` counts in clock ticks (10 ms), too coarse for the floor's few tens of
/// milliseconds per window; it is the fallback when `perf` is missing.
struct TaskClock(std::process::Child);

impl TaskClock {
    fn start(pid: u32) -> Option<TaskClock> {
        let child = Command::new("perf")
            .args([
                "stat",
                "-x,",
                "-e",
                "task-clock,page-faults",
                "-p",
                &pid.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        // perf attaches within milliseconds; the window is seconds long.
        std::thread::sleep(Duration::from_millis(100));
        Some(TaskClock(child))
    }

    /// CPU seconds and page faults since `start`.
    fn stop(self) -> Option<(f64, Option<u64>)> {
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let output = self.0.wait_with_output().ok()?;
        let text = String::from_utf8_lossy(&output.stderr);
        let count = |event: &str| {
            let line = text.lines().find(|l| l.contains(event))?;
            line.split(',').next()?.trim().parse::<f64>().ok()
        };
        let msec = count("task-clock")?;
        Some((msec / 1000.0, count("page-faults").map(|n| n as u64)))
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

const IDLE_FLOOR_LABEL: &str = "idle floor (reads what history needs, one thread)";

fn floor_label() -> String {
    Server::Floor(std::path::Path::new("")).label()
}

/// Median CPU of `label` at 1 client.
fn one_client(windows: &[Window], label: &str) -> f64 {
    median(
        windows
            .iter()
            .filter(|w| w.clients == 1 && w.label == label)
            .map(|w| w.cpu_percent)
            .collect(),
    )
}

/// Median CPU, max RSS and bytes per message of each program at each client count, and the
/// CPU's ratio to the floor's.
fn summary(windows: &[Window], clients: &[usize]) {
    println!("\nsummary (median of the repeats)");
    for &n in clients {
        let mut labels: Vec<&str> = Vec::new();
        for w in windows.iter().filter(|w| w.clients == n) {
            if !labels.contains(&w.label.as_str()) {
                labels.push(&w.label);
            }
        }
        let cpu = |label: &str| {
            median(
                windows
                    .iter()
                    .filter(|w| w.clients == n && w.label == label)
                    .map(|w| w.cpu_percent)
                    .collect(),
            )
        };
        let has = |label: &str| windows.iter().any(|w| w.clients == n && w.label == label);
        let floor = has(&floor_label()).then(|| cpu(&floor_label()));
        // With no clients: the idle floor, if it ran.
        let idle_floor = has(IDLE_FLOOR_LABEL).then(|| cpu(IDLE_FLOOR_LABEL));
        for label in labels {
            let of = |f: fn(&Window) -> f64| {
                windows
                    .iter()
                    .filter(|w| w.clients == n && w.label == label)
                    .map(f)
                    .collect::<Vec<_>>()
            };
            let c = cpu(label);
            let runs: Vec<String> = of(|w| w.cpu_percent)
                .iter()
                .map(|v| format!("{v:.4}"))
                .collect();
            let ratio = match (floor, idle_floor) {
                (Some(f), _) if f > 0.0 => format!(" | {:.2}× the floor", c / f),
                (_, Some(f)) if f > 0.0 => format!(" | {:.2}× the idle floor", c / f),
                _ => String::new(),
            };
            // What the clients cost beyond one client (which already makes pistats scan
            // processes every tick): the fan-out itself, per client and document.
            let one = windows
                .iter()
                .any(|w| w.clients == 1 && w.label == label)
                .then(|| one_client(windows, label));
            let fan_out = match one {
                Some(base) if n > 1 => {
                    let extra = c - base;
                    let per_client_us = extra / 100.0 / (n - 1) as f64 * 1e6;
                    let vs_floor = match floor.map(|f| (f, one_client(windows, &floor_label()))) {
                        Some((f, f1)) if f - f1 > 0.0 => {
                            format!(", {:.2}× the floor's", extra / (f - f1))
                        }
                        _ => String::new(),
                    };
                    format!(" | fan-out {extra:.3}% ({per_client_us:.2} µs per client per document{vs_floor})")
                }
                _ => String::new(),
            };
            let rss = of(|w| w.max_rss_mib).into_iter().fold(0.0, f64::max);
            let faults: Vec<f64> = windows
                .iter()
                .filter(|w| w.clients == n && w.label == label)
                .filter_map(|w| w.faults_per_second)
                .collect();
            let faults = if faults.is_empty() {
                String::new()
            } else {
                format!(", {:.1} page faults/s", median(faults))
            };
            let bytes = median(of(|w| w.bytes_per_message));
            let deflated = of(|w| w.deflated as f64).into_iter().fold(0.0, f64::max);
            println!(
                "{n:>5} clients | {label}: CPU {c:.4}% ({:.0} µs/s; runs {}{faults}){ratio}{fan_out} | max RSS {rss:.1} MiB | {bytes:.0} B/message ({deflated} compressed)",
                c * 1e4,
                runs.join(" ")
            );
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--idle-floor-server") {
        idle_floor_server();
        return;
    }
    let mut argv = std::env::args().skip_while(|a| a != "--floor-server");
    if argv.next().is_some() {
        floor_server(&argv.next().expect("--floor-server DOCUMENT"));
        return;
    }
    if !invoked_by_cargo_bench("clients") {
        return;
    }
    let args = parse_args();
    raise_fd_limit();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if let Some(n) = args.burst {
        runtime.block_on(burst(n));
        return;
    }
    println!(
        "pistats load benchmark: {} s windows at the default 1 s interval{}",
        args.seconds,
        if args.deflate {
            ", clients offer permessage-deflate"
        } else {
            ""
        }
    );
    let document = args.floor.then(|| {
        let path = std::env::temp_dir().join(format!("pistats-floor-{}.json", std::process::id()));
        std::fs::write(&path, runtime.block_on(sample_document())).unwrap();
        path
    });
    if args.floor && args.clients.contains(&0) && args.seconds < 120 {
        println!(
            "note: the idle floor costs a few ms a minute; windows of 120 s or more are advised \
             for 0 clients (--seconds 120)"
        );
    }
    let mut windows = Vec::new();
    for &clients in &args.clients {
        // With nobody connected (and no stuck sockets) the floor is the idle floor.
        let mut servers = Vec::new();
        match &document {
            Some(_) if clients == 0 && args.stuck == 0 => servers.push(Server::IdleFloor),
            Some(path) => servers.push(Server::Floor(path)),
            None => {}
        }
        servers.extend(args.binaries.iter().map(|b| Server::Pistats(b)));
        for _ in 0..args.repeat {
            for server in &servers {
                let load = Load {
                    clients,
                    stuck: args.stuck,
                    churn: args.churn,
                    seconds: args.seconds,
                    deflate: args.deflate,
                };
                windows.push(runtime.block_on(run(server, &load)));
            }
        }
    }
    summary(&windows, &args.clients);
    if let Some(path) = document {
        let _ = std::fs::remove_file(path);
    }
}
