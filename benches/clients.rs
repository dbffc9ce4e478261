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

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use common::{invoked_by_cargo_bench, raise_fd_limit};

struct Args {
    clients: Vec<usize>,
    seconds: u64,
    stuck: usize,
    churn: usize,
    burst: Option<usize>,
    /// This build first, then any `--binary` given.
    binaries: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        clients: vec![0, 500, 1000],
        seconds: 30,
        stuck: 0,
        churn: 0,
        burst: None,
        binaries: vec![env!("CARGO_BIN_EXE_pistats").to_owned()],
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

/// A feed client that records the time between documents until it is aborted.
async fn feed_client(
    url: String,
    arrivals: Arc<Mutex<Vec<Duration>>>,
) -> tokio::task::JoinHandle<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let mut last: Option<Instant> = None;
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(_) = msg {
                let now = Instant::now();
                if let Some(prev) = last {
                    arrivals.lock().unwrap().push(now - prev);
                }
                last = Some(now);
            }
        }
    })
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
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(&config)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pistats");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("daemon listening");
    (child, addr, config)
}

/// RSS before, at the peak of, and after a burst of `n` WebSocket clients.
async fn burst(n: usize) {
    let (mut child, addr, config) = start_daemon(env!("CARGO_BIN_EXE_pistats"), n + 100);
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, before, fds_before) = proc_usage(pid);
    let url = format!("ws://{addr}/ws");
    let arrivals: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut tasks = Vec::with_capacity(n);
    let mut peak = before;
    let started = Instant::now();
    while tasks.len() < n {
        let batch = (n - tasks.len()).min(250);
        let connected = futures_util::future::join_all(
            (0..batch).map(|_| feed_client(url.clone(), arrivals.clone())),
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

async fn run(binary: &str, clients: usize, stuck: usize, churn: usize, seconds: u64) {
    let (mut child, addr, config) = start_daemon(binary, 4096);
    let pid = child.id();
    let arrivals: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let url = format!("ws://{addr}/ws");
    let mut tasks = std::collections::VecDeque::new();
    for _ in 0..clients {
        tasks.push_back(feed_client(url.clone(), arrivals.clone()).await);
    }
    let mut stuck_sockets = Vec::new();
    for _ in 0..stuck {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes()).await.unwrap();
        stuck_sockets.push(s);
    }
    // Let connection set-up settle, then measure a steady window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    arrivals.lock().unwrap().clear();
    let (cpu0, rss0, fds0) = proc_usage(pid);
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
            tasks.push_back(feed_client(url.clone(), arrivals.clone()).await);
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
    println!("{binary} (load average {load_at_start} → {})", load1());
    let mut gaps = arrivals.lock().unwrap().clone();
    gaps.sort();
    let p = |q: f64| {
        gaps.get(((gaps.len().max(1) - 1) as f64 * q) as usize)
            .map_or("—".to_owned(), |d| format!("{:.3}s", d.as_secs_f64()))
    };
    println!(
        "{clients:>5} clients {stuck:>3} stuck {churned:>6} churned | daemon CPU {:>6.3}% of one core | RSS {:>5.1} → {:>5.1} MiB (max {:.1}) | fds {fds0} → {fds} | inter-arrival p50 {} p99 {} max {} ({} samples)",
        (cpu1 - cpu0) / window * 100.0,
        rss0 as f64 / 1024.0,
        rss as f64 / 1024.0,
        max_rss as f64 / 1024.0,
        p(0.5),
        p(0.99),
        p(1.0),
        gaps.len()
    );
    if churn > 0 {
        let mib: Vec<String> = timeline
            .iter()
            .map(|kib| format!("{:.1}", *kib as f64 / 1024.0))
            .collect();
        println!("      RSS every {sample_every} s (MiB): {}", mib.join(" "));
    }
    for t in tasks {
        t.abort();
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&config);
}

fn main() {
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
        "pistats load benchmark: {} s windows at the default 1 s interval",
        args.seconds
    );
    for &clients in &args.clients {
        for binary in &args.binaries {
            runtime.block_on(run(binary, clients, args.stuck, args.churn, args.seconds));
        }
    }
}
