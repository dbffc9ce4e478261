//! End-to-end tests of the real daemon on loopback: the WebSocket feed, REST API, health,
//! configuration errors, shutdown and slow-client isolation.

mod common;

use std::time::{Duration, Instant};

use common::ws::{close_code, stuck_client};
use common::{connect, eventually, http_get, next_doc, Daemon, BIN, WAIT};
use futures_util::SinkExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn num(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} is not a number in {v}"))
}

/// The value at `path`, which must be present (`doc["missing"]` would read as null and let a
/// nullable field disappear unnoticed).
fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    v.pointer(path)
        .unwrap_or_else(|| panic!("no {path} in {v}"))
}

/// A field that is present and either a number or null (a sensor the machine may lack).
fn is_num_or_null(v: &Value, path: &str) -> bool {
    let v = field(v, path);
    v.is_number() || v.is_null()
}

/// Every field of the original README's format, with its type, plus the legacy flat keys.
fn assert_document_shape(doc: &Value) {
    assert!(doc["timestamp"].as_str().unwrap().contains('T'));
    let system = &doc["system"];
    assert!(system["boot_time"].as_str().unwrap().contains('T'));
    assert!(num(doc, "/system/uptime_seconds") > 0.0);
    assert!(system["uptime_human"].as_str().unwrap().contains(':'));
    assert_eq!(system["load_average"].as_array().unwrap().len(), 3);
    assert!(system["connected_clients"].is_u64());

    let cpu = &doc["cpu"];
    let usage = num(doc, "/cpu/usage_percent");
    assert!((0.0..=100.0).contains(&usage));
    let logical = cpu["count_logical"].as_u64().unwrap() as usize;
    assert_eq!(logical, std::thread::available_parallelism().unwrap().get());
    assert!(is_num_or_null(doc, "/cpu/count_physical"));
    for key in ["current", "min", "max"] {
        assert!(
            is_num_or_null(doc, &format!("/cpu/frequency_mhz/{key}")),
            "frequency {key}"
        );
    }
    let cores = cpu["per_core_usage"].as_array().unwrap();
    assert_eq!(cores.len(), logical);
    assert!(cores
        .iter()
        .all(|c| (0.0..=100.0).contains(&c.as_f64().unwrap())));

    for key in [
        "total_gb",
        "available_gb",
        "used_gb",
        "free_gb",
        "used_percent",
        "cached_gb",
        "buffers_gb",
    ] {
        assert!(doc["memory"][key].is_number(), "memory.{key}");
    }
    for key in ["total_gb", "used_gb", "free_gb", "used_percent"] {
        assert!(doc["swap"][key].is_number(), "swap.{key}");
    }

    let disk = &doc["disk"];
    assert!(is_num_or_null(doc, "/disk/root_usage_percent"));
    for p in disk["partitions"].as_array().unwrap() {
        for key in ["device", "mountpoint", "fstype"] {
            assert!(p[key].is_string(), "partition.{key}");
        }
        for key in ["total_gb", "used_gb", "free_gb", "used_percent"] {
            assert!(p[key].is_number(), "partition.{key}");
        }
    }
    for key in ["read_count", "write_count", "read_bytes", "write_bytes"] {
        assert!(disk["io_counters"][key].is_u64(), "disk io {key}");
    }

    let net = &doc["network"];
    for key in [
        "bytes_sent",
        "bytes_recv",
        "packets_sent",
        "packets_recv",
        "errin",
        "errout",
        "dropin",
        "dropout",
    ] {
        assert!(net["io_counters"][key].is_u64(), "network io {key}");
    }
    let interfaces = net["interfaces"].as_object().unwrap();
    let lo = &interfaces["lo"];
    assert!(lo["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["address"] == "127.0.0.1" && a["family"] == "ipv4"));

    let procs = &doc["processes"];
    assert!(procs["total_count"].as_u64().unwrap() > 0);
    let top = procs["top_cpu_usage"].as_array().unwrap();
    assert!(!top.is_empty() && top.len() <= 10);
    for p in top {
        assert!(p["pid"].is_u64());
        assert!(p["name"].is_string());
        assert!(p["cpu_percent"].is_number());
        // A process that ended between the scan and the read of its memory has no figure.
        assert!(p["memory_percent"].is_number() || p["memory_percent"].is_null());
    }
    // Most listed processes are still running when their memory is read.
    let with_memory = top
        .iter()
        .filter(|p| p["memory_percent"].is_number())
        .count();
    assert!(with_memory * 2 > top.len(), "{top:?}");
    let cpu_sorted: Vec<f64> = top
        .iter()
        .map(|p| p["cpu_percent"].as_f64().unwrap())
        .collect();
    assert!(
        cpu_sorted.windows(2).all(|w| w[0] >= w[1]),
        "top list sorted by CPU"
    );

    assert!(is_num_or_null(doc, "/temperature/pi_cpu_celsius"));
    assert!(doc["temperature"]["sensors"].is_object());
    let battery = field(doc, "/battery");
    assert!(battery.is_null() || battery["percent"].is_number());

    // The Python broadcaster's first, flat format.
    for key in [
        "cpu_usage_percent",
        "ram_usage_percent",
        "disk_usage_percent",
        "temperature_celsius",
    ] {
        assert!(is_num_or_null(doc, &format!("/{key}")), "legacy {key}");
    }
    assert!(doc["connected_clients"].is_u64());
}

fn meminfo_total_gb() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = text
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kib * 1024.0 / (1u64 << 30) as f64
}

fn proc_process_count() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .ok()
                .and_then(|e| {
                    e.file_name()
                        .to_str()
                        .map(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .unwrap_or(false)
        })
        .count()
}

fn proc_uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn websocket_at_root_and_ws_sends_full_document_at_once() {
    let daemon = Daemon::start(&["--interval", "5s"]);
    for path in ["/", "/ws"] {
        let started = Instant::now();
        let mut ws = connect(&daemon.ws_url(path)).await;
        let doc = next_doc(&mut ws).await;
        // With a 5 s interval, a document within 4 s can only be the immediate one.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "first document not immediate"
        );
        assert_document_shape(&doc);
        ws.close(None).await.unwrap();
    }
}

#[tokio::test]
async fn values_agree_with_proc() {
    let daemon = Daemon::start(&[]);
    let mut ws = connect(&daemon.ws_url("/")).await;
    let doc = next_doc(&mut ws).await;
    let total = num(&doc, "/memory/total_gb");
    assert!(
        (total - meminfo_total_gb()).abs() < 0.011,
        "memory total {total}"
    );
    let count = doc["processes"]["total_count"].as_u64().unwrap() as f64;
    let actual = proc_process_count() as f64;
    assert!(
        (count - actual).abs() <= actual * 0.2 + 5.0,
        "process count {count} vs {actual}"
    );
    let uptime = num(&doc, "/system/uptime_seconds");
    assert!((uptime - proc_uptime()).abs() < 5.0, "uptime {uptime}");
    assert_eq!(
        num(&doc, "/cpu_usage_percent"),
        num(&doc, "/cpu/usage_percent")
    );
    assert_eq!(
        num(&doc, "/ram_usage_percent"),
        num(&doc, "/memory/used_percent")
    );
    // The first document predates this client; the next one counts it.
    let doc = next_doc(&mut ws).await;
    assert_eq!(doc["connected_clients"], 1);
    assert_eq!(doc["system"]["connected_clients"], 1);
}

#[tokio::test]
async fn documents_follow_the_interval_without_drift() {
    let daemon = Daemon::start(&["--interval", "250ms"]);
    let mut ws = connect(&daemon.ws_url("/ws")).await;
    let _ = next_doc(&mut ws).await;
    let mut uptimes = Vec::new();
    for _ in 0..9 {
        let doc = next_doc(&mut ws).await;
        uptimes.push(num(&doc, "/system/uptime_seconds"));
        // Rates exist from the second document on.
        assert!(doc["network"]["rates"]["recv_bytes_per_sec"].is_number());
        assert!(doc["disk"]["io_rates"].is_object() || doc["disk"]["io_counters"].is_null());
    }
    // Ticks follow absolute deadlines: each gap is a whole number of 250 ms intervals (more
    // than one where a busy machine made the collector skip a tick), and the span, on the
    // daemon's own clock (uptime, 10 ms resolution), is that many intervals. Sleeping 250 ms
    // after each collection instead would add the collection time to every gap.
    let intervals: f64 = uptimes
        .windows(2)
        .map(|w| ((w[1] - w[0]) / 0.25).round().max(1.0))
        .sum();
    let span = uptimes.last().unwrap() - uptimes.first().unwrap();
    assert!(
        (span - intervals * 0.25).abs() <= 0.1,
        "8 gaps took {span} s, {intervals} intervals: {uptimes:?}"
    );
}

#[tokio::test]
async fn history_and_health_endpoints() {
    let daemon = Daemon::start(&["--interval", "250ms"]);
    let points = eventually(WAIT, || {
        let history = daemon.get("/api/v1/history?seconds=60").json();
        let points = history["points"].as_array().unwrap().clone();
        (points.len() >= 4).then_some((history, points))
    });
    let (history, points) = points.expect("history fills up");
    assert_eq!(history["interval_ms"], 250);
    let times: Vec<u64> = points.iter().map(|p| p["t"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "points oldest first");
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(points[0]["per_core"].as_array().unwrap().len(), cores);
    assert!(points[0]["cpu"].is_number() && points[0]["mem"].is_number());
    let short = daemon.get("/api/v1/history?seconds=0").json();
    assert!(short["points"].as_array().unwrap().len() <= 1);
    assert_eq!(daemon.get("/api/v1/history?seconds=abc").status, 400);

    let health = daemon.get("/healthz");
    assert_eq!(health.status, 200);
    let body = health.json();
    assert_eq!(body["status"], "ok");
    assert!(body["snapshot_age_ms"].as_u64().unwrap() < 2000);

    let stats = daemon.get("/api/v1/stats");
    assert_eq!(stats.status, 200);
    assert_eq!(
        stats.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_document_shape(&stats.json());
}

/// Nobody watches, so ticks repeat the last full collection's processes; a REST or
/// `/metrics` reader still gets a document whose processes were scanned on its own tick.
#[test]
fn rest_readers_of_an_unwatched_daemon_get_fresh_processes() {
    let daemon = Daemon::start(&["--interval", "250ms"]);
    for round in 0..3 {
        // Several unwatched ticks since the last full one.
        std::thread::sleep(Duration::from_millis(1200));
        let doc = daemon.get("/api/v1/stats").json();
        assert_eq!(
            doc["processes"]["scanned_at"], doc["timestamp"],
            "round {round}: processes scanned on the document's own tick"
        );
        assert!(doc["processes"]["total_count"].as_u64().unwrap() > 0);
    }
    let metrics = daemon.get("/metrics");
    assert_eq!(metrics.status, 200);
    let after = daemon.get("/api/v1/stats").json();
    assert_eq!(after["processes"]["scanned_at"], after["timestamp"]);
}

#[tokio::test]
async fn static_files_and_path_traversal() {
    let daemon = Daemon::start(&[]);
    let index = daemon.get("/");
    assert_eq!(index.status, 200);
    assert!(index.body.to_lowercase().contains("<html") || index.body.contains("pistats"));
    assert!(index.header("content-security-policy").is_some());
    // Every dashboard file is revalidated, so an upgrade never mixes old and new modules.
    for (path, file, content_type) in [
        ("/", "index.html", "text/html"),
        ("/app.js", "app.js", "text/javascript"),
        ("/style.css", "style.css", "text/css"),
    ] {
        let response = daemon.get(path);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.body,
            std::fs::read_to_string(format!("assets/{file}")).unwrap(),
            "{path} serves {file}"
        );
        let served_type = response.header("content-type").unwrap_or_default();
        assert!(
            served_type.starts_with(content_type),
            "{path}: {served_type}"
        );
        assert_eq!(
            response.header("cache-control").as_deref(),
            Some("no-cache"),
            "{path}"
        );
    }
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/assets/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/nonexistent.js",
    ] {
        let response = daemon.get(path);
        assert_eq!(response.status, 404, "{path}: {}", response.body);
        assert!(!response.body.contains("[package]") && !response.body.contains("root:"));
    }
}

#[test]
fn bad_config_exits_78_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "port = 8765\nintervall = \"1s\"\n").unwrap();
    for args in [
        vec!["--config", path.to_str().unwrap()],
        vec!["check-config", path.to_str().unwrap()],
    ] {
        let out = std::process::Command::new(BIN)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("intervall"), "{err}");
    }
    let missing = std::process::Command::new(BIN)
        .args(["--config", "/nonexistent/pistats.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/pistats.toml"));

    std::fs::write(&path, "interval = \"2s\"\nserve = \"while-connected\"\n").unwrap();
    let ok = std::process::Command::new(BIN)
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
}

#[test]
fn snapshot_prints_one_document() {
    let out = std::process::Command::new(BIN)
        .args(["--config", "/dev/null", "snapshot"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).expect("snapshot is JSON");
    assert_document_shape(&doc);
    assert_eq!(doc["connected_clients"], 0);
}

#[tokio::test]
async fn sigterm_sends_close_frames_and_exits_zero() {
    let mut daemon = Daemon::start(&[]);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = connect(&daemon.ws_url("/")).await;
        next_doc(&mut ws).await;
        clients.push(ws);
    }
    daemon.signal("TERM");
    for mut ws in clients {
        assert_eq!(close_code(&mut ws).await, u16::from(CloseCode::Away));
    }
    let status = daemon
        .wait_exit(Duration::from_secs(5))
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    daemon.wait_for_log("SIGTERM received");
}

/// A client that connects and never reads must not delay anyone else, and is dropped once
/// its socket stops taking data.
#[tokio::test]
async fn stuck_clients_do_not_delay_live_ones() {
    let daemon = Daemon::start(&["--interval", "250ms", "--send-timeout", "1s"]);
    let mut stuck = Vec::new();
    for _ in 0..5 {
        stuck.push(stuck_client(daemon.addr).await); // never read again
    }
    let mut live = connect(&daemon.ws_url("/ws")).await;
    let mut last = num(&next_doc(&mut live).await, "/system/uptime_seconds");
    let mut dropped = false;
    for _ in 0..120 {
        let doc = next_doc(&mut live).await;
        let uptime = num(&doc, "/system/uptime_seconds");
        // Every tick arrives: no gap of a missed document (unless the collector itself
        // skipped a tick on a busy machine, which it logs).
        assert!(
            uptime - last < 0.45 || daemon.log().iter().any(|l| l.contains("skipping")),
            "live client missed ticks: {last} → {uptime}"
        );
        last = uptime;
        if doc["connected_clients"].as_u64() == Some(1) {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "stuck clients were never dropped");
    let metrics = daemon.get("/metrics").body;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("pistats_dropped_slow_clients_total"))
        .expect("dropped counter exported");
    assert!(line.ends_with(" 5"), "{line}");
    daemon.wait_for_log("not reading");
}

/// A client whose socket buffer fills (it stops reading for a while, as a phone app in the
/// background does) reads whole frames again once it resumes: the end of a document that did
/// not fit is finished before any ping or newer document, the client is not dropped within
/// the write deadline, and another client gets every document meanwhile.
#[tokio::test]
async fn a_client_that_pauses_reading_resumes_with_whole_frames() {
    let daemon = Daemon::start(&[
        "--interval",
        "250ms",
        "--send-timeout",
        "20s",
        "--ping-interval",
        "1s",
    ]);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(daemon.addr).await.unwrap();
    let (mut paused, _) = tokio_tungstenite::client_async(daemon.ws_url("/ws"), stream)
        .await
        .expect("WebSocket handshake");
    let mut live = connect(&daemon.ws_url("/ws")).await;
    let mut paused_last = num(&next_doc(&mut paused).await, "/system/uptime_seconds");

    // `paused` is not read for 12 s: 48 documents of about 4.7 KB, more than its 4 KiB
    // receive buffer and the daemon's 64 KiB send buffer hold.
    let mut last = num(&next_doc(&mut live).await, "/system/uptime_seconds");
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let uptime = num(&next_doc(&mut live).await, "/system/uptime_seconds");
        assert!(
            uptime - last < 0.45 || daemon.log().iter().any(|l| l.contains("skipping")),
            "live client missed ticks while another was paused: {last} → {uptime}"
        );
        last = uptime;
    }

    // Every frame `paused` now reads is a complete JSON document (`next_doc` fails on
    // anything else), in order, until it has caught up with `live`; documents the full
    // socket could not take were skipped.
    let mut skipped = false;
    for _ in 0..100 {
        if paused_last >= last {
            break;
        }
        let uptime = num(&next_doc(&mut paused).await, "/system/uptime_seconds");
        assert!(
            uptime > paused_last,
            "out of order: {paused_last} → {uptime}"
        );
        skipped |= uptime - paused_last > 0.45;
        paused_last = uptime;
    }
    assert!(paused_last >= last, "the paused client never caught up");
    assert!(
        skipped,
        "the pause never filled the socket: nothing was skipped"
    );
    let metrics = daemon.get("/metrics").body;
    let dropped = metrics
        .lines()
        .find(|l| l.starts_with("pistats_dropped_slow_clients_total"))
        .expect("dropped counter exported");
    assert!(dropped.ends_with(" 0"), "{dropped}");
    let clients = daemon.get("/api/v1/stats").json()["connected_clients"].as_u64();
    assert_eq!(clients, Some(2));
}

#[tokio::test]
async fn garbage_frames_close_only_that_client() {
    let daemon = Daemon::start(&["--interval", "250ms"]);
    let mut bystander = connect(&daemon.ws_url("/")).await;
    next_doc(&mut bystander).await;

    // Binary data: the feed is text-only.
    let mut binary = connect(&daemon.ws_url("/")).await;
    binary
        .send(Message::Binary(vec![0xde, 0xad].into()))
        .await
        .unwrap();
    // Larger than max_message_size.
    let mut oversized = connect(&daemon.ws_url("/")).await;
    oversized
        .send(Message::Text("x".repeat(64 * 1024).into()))
        .await
        .unwrap();
    // Text is tolerated (old clients may send some).
    let mut chatty = connect(&daemon.ws_url("/")).await;
    chatty.send(Message::Text("hello".into())).await.unwrap();

    for (name, ws, expected) in [
        ("binary", &mut binary, CloseCode::Unsupported),
        ("oversized", &mut oversized, CloseCode::Policy),
    ] {
        assert_eq!(close_code(ws).await, u16::from(expected), "{name}");
    }
    // Raw garbage that is not even a WebSocket frame.
    let mut raw = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    raw.write_all(b"\xff\xfe\x00garbage\r\n\r\n").await.unwrap();

    next_doc(&mut chatty).await;
    for _ in 0..3 {
        next_doc(&mut bystander).await;
    }
    assert_eq!(daemon.get("/healthz").status, 200);
}

/// The harness's HTTP client reads both body framings a server may choose: the daemon's
/// sized bodies, and chunked ones (Prometheus's API uses them), here from a scripted server.
#[test]
fn http_get_helper_reads_sized_and_chunked_bodies() {
    let daemon = Daemon::start(&[]);
    let response = http_get(daemon.addr, "/api/v1/history", &[]);
    assert_eq!(response.status, 200);
    let length: usize = response
        .header("content-length")
        .expect("a sized body")
        .parse()
        .unwrap();
    assert_eq!(response.body.len(), length);
    assert!(response.json()["points"].is_array());

    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let serve = std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let (mut stream, _) = server.accept().unwrap();
        let mut request = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while request.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  7\r\n{\"a\": [\r\n12\r\n1, 2, 3, 4, 5, 6]}\r\n0\r\n\r\n",
            )
            .unwrap();
    });
    let chunked = http_get(addr, "/", &[]);
    serve.join().unwrap();
    assert_eq!(chunked.body, r#"{"a": [1, 2, 3, 4, 5, 6]}"#);
    assert_eq!(chunked.json()["a"].as_array().unwrap().len(), 6);
}

/// A system bus that is missing, or that drops pistats during the handshake (as dbus-daemon
/// does for a systemd `DynamicUser=`), is logged in words that say what to check, and the
/// daemon follows the interface through the kernel instead.
#[test]
fn an_unusable_system_bus_is_explained_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:path={}", dir.path().join("none").display());
    let daemon = Daemon::start_with_env("", &[], &[("DBUS_SYSTEM_BUS_ADDRESS", missing.as_ref())]);
    daemon.wait_for_log("no system bus to connect to, is dbus running?");
    daemon.wait_for_log("through the kernel");
    drop(daemon);

    // A bus socket that accepts and hangs up at once, before any authentication.
    let path = dir.path().join("refusing");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let refuser = std::thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            drop(stream);
        }
    });
    let refusing = format!("unix:path={}", path.display());
    let daemon = Daemon::start_with_env("", &[], &[("DBUS_SYSTEM_BUS_ADDRESS", refusing.as_ref())]);
    daemon.wait_for_log("the system bus refused pistats");
    daemon.wait_for_log("DynamicUser=yes");
    refuser.join().unwrap();
}
