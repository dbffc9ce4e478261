//! One WebSocket client: the latest snapshot at once, then every new one; pings for
//! liveness; bounded sends so a client that stops reading is dropped instead of holding
//! anything up (each client has its own task and reads the hub's watch channel, so there is
//! no queue to fill and nobody to wait for).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{interval_at, sleep, timeout, Instant};
use warp::http::HeaderMap;
use warp::ws::{Message, WebSocket, Ws};
use warp::Reply;

use super::admission::{Full, Slot};
use super::{peer, AppState, Refusal};

/// How long a close handshake may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Close codes (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;
const UNSUPPORTED_DATA: u16 = 1003;
const POLICY_VIOLATION: u16 = 1008;

/// Checks origin and limits, then upgrades.
pub(super) async fn upgrade(
    ws: Ws,
    state: Arc<AppState>,
    remote: Option<SocketAddr>,
    headers: HeaderMap,
) -> Result<impl Reply, warp::Rejection> {
    if !origin_allowed(&state.config.allowed_origins, &headers) {
        tracing::warn!("refused WebSocket from {}: foreign origin", peer(remote));
        return Err(warp::reject::custom(Refusal::ForeignOrigin));
    }
    let slot = state
        .admission
        .admit(remote.map(|a| a.ip()))
        .map_err(|full| {
            tracing::warn!(
                "refused WebSocket from {}: {full:?} limit reached",
                peer(remote)
            );
            warp::reject::custom(match full {
                Full::Server => Refusal::TooManyClients,
                Full::Address => Refusal::TooManyFromAddress,
            })
        })?;
    let max = state.config.max_message_size;
    Ok(ws
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session(socket, state, remote, slot)))
}

/// Same-origin pages, non-browser clients (no `Origin`) and listed origins are allowed; an
/// empty list allows everything (the seed's behaviour).
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = headers.get("origin").and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
        || (origin_host.is_some() && origin_host == host)
}

async fn session(socket: WebSocket, state: Arc<AppState>, remote: Option<SocketAddr>, slot: Slot) {
    let who = peer(remote);
    tracing::info!(
        "client connected: {who} ({} connected)",
        state.hub.clients()
    );
    let reason = serve_client(socket, &state).await;
    drop(slot);
    tracing::info!(
        "client disconnected: {who} ({reason}; {} connected)",
        state.hub.clients()
    );
}

/// Runs the client until it leaves or must go; returns why it ended, for the log.
async fn serve_client(socket: WebSocket, state: &AppState) -> &'static str {
    let config = &state.config;
    let (mut tx, mut rx) = socket.split();
    let mut snapshots = state.hub.subscribe();
    let send_timeout = config.send_timeout;

    // A new client gets the latest snapshot at once.
    let first = snapshots
        .borrow_and_update()
        .as_ref()
        .map(|s| s.frame.clone());
    if let Some(frame) = first {
        match timeout(send_timeout, tx.send(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return "send failed",
            Err(_) => return slow(state),
        }
    }

    let mut pings = interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    let pong_deadline = sleep(Duration::MAX / 4);
    tokio::pin!(pong_deadline);
    let mut awaiting_pong = false;

    let (code, reason) = loop {
        tokio::select! {
            _ = state.listener_closed.cancelled() => break (GOING_AWAY, "server going away"),
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break (GOING_AWAY, "server going away");
                }
                let frame = snapshots.borrow_and_update().as_ref().map(|s| s.frame.clone());
                let Some(frame) = frame else { continue };
                match timeout(send_timeout, tx.send(frame)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return "send failed",
                    Err(_) => return slow(state),
                }
            }
            _ = pings.tick() => {
                if !awaiting_pong {
                    awaiting_pong = true;
                    pong_deadline.as_mut().reset(Instant::now() + config.ping_timeout);
                }
                match timeout(send_timeout, tx.send(Message::ping(Vec::new()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return "send failed",
                    Err(_) => return slow(state),
                }
            }
            _ = &mut pong_deadline, if awaiting_pong => return "ping timeout",
            incoming = rx.next() => match incoming {
                None => return "closed by client",
                Some(Err(err)) => {
                    tracing::debug!("WebSocket read error: {err}");
                    break (POLICY_VIOLATION, "protocol error or message too large");
                }
                Some(Ok(message)) => {
                    if message.is_pong() {
                        awaiting_pong = false;
                    } else if message.is_close() {
                        // tungstenite answers the close frame itself; flush that answer.
                        let _ = timeout(CLOSE_TIMEOUT, tx.flush()).await;
                        return "closed by client";
                    } else if message.is_binary() {
                        break (UNSUPPORTED_DATA, "binary messages are not accepted");
                    } else if message.is_text() {
                        // Old clients may send text; the feed is one-way, so ignore it.
                        tracing::debug!("ignoring {}-byte text message", message.as_bytes().len());
                    }
                }
            },
        }
    };
    let close = Message::close_with(code, reason);
    let _ = timeout(CLOSE_TIMEOUT, async {
        tx.send(close).await?;
        tx.close().await
    })
    .await;
    reason
}

fn slow(state: &AppState) -> &'static str {
    state
        .hub
        .counters
        .dropped_slow_clients
        .fetch_add(1, Ordering::Relaxed);
    "dropped: not reading (send timed out)"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", host.parse().unwrap());
        if let Some(o) = origin {
            h.insert("origin", o.parse().unwrap());
        }
        h
    }

    #[test]
    fn origin_rules() {
        let allowed = vec!["https://grafana.example".to_owned()];
        assert!(origin_allowed(
            &[],
            &headers(Some("http://evil.example"), "pi:8765")
        ));
        assert!(origin_allowed(&allowed, &headers(None, "pi:8765")));
        assert!(origin_allowed(
            &allowed,
            &headers(Some("http://pi:8765"), "pi:8765")
        ));
        assert!(origin_allowed(
            &allowed,
            &headers(Some("https://grafana.example"), "pi:8765")
        ));
        assert!(!origin_allowed(
            &allowed,
            &headers(Some("http://evil.example"), "pi:8765")
        ));
    }
}
