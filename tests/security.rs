//! Abuse resistance of the real daemon on loopback: access token, allowed origins, client
//! limits under a connection flood, and many live clients beside clients that never read.

mod common;

use std::time::Duration;

use common::rlimit::raise_fd_limit;
use common::ws::{stuck_client, ws_refusal};
use common::{connect, http_get, next_doc, rss_kib, Daemon, WAIT};
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

fn uptime(doc: &serde_json::Value) -> f64 {
    doc["system"]["uptime_seconds"].as_f64().expect("uptime")
}

/// Reads `n` documents and checks that none was skipped (consecutive collections are one
/// interval apart; a skipped one would leave a gap of two), unless the collector itself skipped
/// a tick because the machine was too busy, which it logs.
async fn assert_consecutive(daemon: &Daemon, ws: &mut common::Ws, n: usize, interval: f64) {
    let mut last = uptime(&next_doc(ws).await);
    for _ in 0..n {
        let now = uptime(&next_doc(ws).await);
        let collector_skipped = || daemon.log().iter().any(|l| l.contains("skipping"));
        assert!(
            now - last < interval * 1.5 || collector_skipped(),
            "a document was skipped: {last} → {now}"
        );
        last = now;
    }
}

#[tokio::test]
async fn token_guards_api_metrics_and_feed_but_not_dashboard_or_health() {
    let daemon = Daemon::start_with_config("token = \"s3cret-token\"\n", &[]);
    let addr = daemon.addr;
    for path in ["/api/v1/stats", "/api/v1/history", "/metrics"] {
        let missing = http_get(addr, path, &[]);
        assert_eq!(missing.status, 401, "{path} without token");
        assert!(missing.header("www-authenticate").is_some(), "{path}");
        let wrong = http_get(addr, path, &[("Authorization", "Bearer s3cret-tokeN")]);
        assert_eq!(wrong.status, 401, "{path} with wrong token");
        let bearer = http_get(addr, path, &[("Authorization", "Bearer s3cret-token")]);
        assert_eq!(bearer.status, 200, "{path} with bearer token");
        let query = format!(
            "{path}{}token=s3cret-token",
            if path.contains('?') { '&' } else { '?' }
        );
        assert_eq!(http_get(addr, &query, &[]).status, 200, "{query}");
    }
    assert_eq!(http_get(addr, "/healthz", &[]).status, 200);
    let page = http_get(addr, "/", &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html"), "dashboard page served openly");

    assert_eq!(ws_refusal(&daemon.ws_url("/"), &[]).await, Some(401));
    assert_eq!(
        ws_refusal(&daemon.ws_url("/ws?token=nope"), &[]).await,
        Some(401)
    );
    let mut ws = connect(&daemon.ws_url("/ws?token=s3cret-token")).await;
    assert!(next_doc(&mut ws).await["cpu"].is_object());
    assert_eq!(
        ws_refusal(
            &daemon.ws_url("/"),
            &[("Authorization", "Bearer s3cret-token")]
        )
        .await,
        None
    );
}

#[tokio::test]
async fn foreign_origins_are_refused() {
    let daemon = Daemon::start_with_config("allowed_origins = [\"https://dash.example\"]\n", &[]);
    let url = daemon.ws_url("/ws");
    assert_eq!(
        ws_refusal(&url, &[("Origin", "https://evil.example")]).await,
        Some(403)
    );
    assert_eq!(
        ws_refusal(&url, &[("Origin", "https://dash.example")]).await,
        None
    );
    let same_origin = format!("http://{}", daemon.addr);
    assert_eq!(ws_refusal(&url, &[("Origin", &same_origin)]).await, None);
    // Non-browser clients send no Origin (the Python broadcaster's clients).
    assert_eq!(ws_refusal(&url, &[]).await, None);
    // Logged when the refusal is sent: it may reach the captured log a moment after the answer.
    daemon.wait_for_log("foreign origin");
}

#[tokio::test]
async fn connection_flood_is_refused_without_harming_admitted_clients() {
    let daemon = Daemon::start_with_config(
        "max_clients = 4\nmax_clients_per_ip = 1000\n",
        &["--interval", "250ms"],
    );
    let mut admitted = Vec::new();
    for _ in 0..4 {
        admitted.push(connect(&daemon.ws_url("/ws")).await);
    }
    let url = daemon.ws_url("/ws");
    let flood = join_all((0..200).map(|_| ws_refusal(&url, &[]))).await;
    assert!(
        flood.iter().all(|r| *r == Some(503)),
        "every connection beyond the limit is refused with 503: {flood:?}"
    );
    let refused = http_get(
        daemon.addr,
        "/ws",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    );
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some());

    for ws in &mut admitted {
        assert_consecutive(&daemon, ws, 3, 0.25).await;
    }
    // A freed slot is usable again.
    drop(admitted.pop());
    let mut again = None;
    for _ in 0..50 {
        if ws_refusal(&url, &[]).await.is_none() {
            again = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        again.is_some(),
        "slot of a closed client was never released"
    );
    let metrics = daemon.get("/metrics").body;
    let refused_total: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pistats_refused_clients_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("refused counter exported");
    assert!(refused_total >= 201, "refused counter: {refused_total}");
}

#[tokio::test]
async fn per_address_limit_answers_429() {
    let daemon = Daemon::start_with_config("max_clients_per_ip = 2\n", &[]);
    let _a = connect(&daemon.ws_url("/")).await;
    let _b = connect(&daemon.ws_url("/")).await;
    assert_eq!(ws_refusal(&daemon.ws_url("/"), &[]).await, Some(429));
    // The refusal is logged; the line may land just after the client read its answer.
    daemon.wait_for_log("refused");
}

/// 1000 live clients and 10 that never read: every live client gets every document, and the
/// daemon's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_live_clients_beside_stuck_ones() {
    raise_fd_limit();
    let daemon = Daemon::start_with_config(
        "max_clients = 1100\nmax_clients_per_ip = 1100\n",
        &["--interval", "1s", "--send-timeout", "2s"],
    );
    let mut stuck = Vec::new();
    for _ in 0..10 {
        // Never read again; kept open until the test ends.
        stuck.push(stuck_client(daemon.addr).await);
    }
    let url = daemon.ws_url("/ws");
    let mut live = Vec::with_capacity(1000);
    for chunk in 0..10 {
        let batch = join_all((0..100).map(|_| connect(&url))).await;
        live.extend(batch);
        assert_eq!(live.len(), (chunk + 1) * 100);
    }
    let results = join_all(live.iter_mut().map(|ws| async move {
        let mut last = uptime(&next_doc(ws).await);
        let mut gaps = Vec::new();
        for _ in 0..4 {
            let now = uptime(&next_doc(ws).await);
            if now - last > 1.5 {
                gaps.push((last, now));
            }
            last = now;
        }
        gaps
    }))
    .await;
    let skipped: Vec<_> = results.iter().filter(|g| !g.is_empty()).collect();
    assert!(
        skipped.is_empty(),
        "{} of 1000 live clients missed documents, e.g. {:?}",
        skipped.len(),
        skipped.first()
    );
    let clients = daemon.get("/api/v1/stats").json()["connected_clients"]
        .as_u64()
        .unwrap();
    assert!(clients >= 1000, "connected_clients = {clients}");
    let rss = rss_kib(daemon.pid());
    assert!(
        rss < 96 * 1024,
        "daemon RSS {rss} KiB with 1010 clients (debug build)"
    );
}

/// Connections that send nothing, or half a request head and then nothing, are closed after
/// the header-read timeout instead of holding a socket forever (slowloris).
#[tokio::test]
async fn silent_and_slow_connections_are_cut_off() {
    let daemon = Daemon::start(&[]);
    let silent = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    slow.write_all(b"GET /api/v1/stats HTTP/1.1\r\nHost: pi\r\n")
        .await
        .unwrap();
    let limit = pistats::http::HEADER_READ_TIMEOUT + WAIT;
    for (name, mut stream) in [("silent", silent), ("slow", slow)] {
        let mut rest = Vec::new();
        let closed = timeout(limit, stream.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "{name} connection still open after {limit:?}"
        );
        assert!(
            !String::from_utf8_lossy(&rest).contains("200 OK"),
            "{name} connection was served"
        );
    }
    assert_eq!(daemon.get("/healthz").status, 200);
}
