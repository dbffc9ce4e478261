//! One WebSocket client: the latest snapshot at once, then every new one; pings for
//! liveness (sent with the documents); bounded sends so a client that stops reading is
//! dropped instead of holding anything up.
//!
//! Documents bypass tungstenite: each snapshot holds its frames complete (header and payload;
//! a server's frames are unmasked), and the broadcaster in [`super::fanout`] writes those
//! shared bytes straight to every client's socket, once per snapshot for all of them. The
//! session task only reads (pongs, close, garbage) and finishes a document the broadcaster
//! could not write whole; tungstenite writes pong replies and close frames through the
//! fan-out's [`Gate`], so they never land inside a document. The ping frame the broadcaster
//! appends to a document (see [`super::fanout::Pings`]) is part of the same write.
//!
//! A client that offers `permessage-deflate` gets every document as the one compressed frame
//! the snapshot holds (see [`super::deflate`]); pings and close frames are never compressed.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use warp::http::{header, HeaderMap, Response, StatusCode};
use warp::reply::Response as Reply;
use warp::{Filter, Rejection};

use super::admission::{Full, Slot};
use super::deflate::{self, Accepted};
use super::fanout::{Gate, Member, Step};
use super::server::{PendingUpgrade, PlainStream, WasHead};
use super::{peer, refusal_response, token_accepted, AppState, Refusal};

/// How long a close handshake may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes read from a client socket at a time, allocated per connection. Clients only send
/// pongs (6 bytes) and close frames (at most 131); a longer message is still read whole, in
/// more reads. tungstenite's default (128 KiB) would cost 125 MiB at 1000 clients, 2 KiB
/// cost 2 MiB.
const READ_BUFFER: usize = 256;

/// What tungstenite may hold for writing: a close frame (at most 125 bytes of payload) or a
/// pong reply, never a document. Past this a write fails instead of growing the buffer.
const MAX_WRITE_BUFFER: usize = 4096;

type Socket<S> = WebSocketStream<Gate<S>>;

/// `payload` as one complete, final, unmasked text frame (RFC 6455 §5.2), with RSV1 set if
/// it is compressed (RFC 7692 §6). Built once per document and written as is to every client.
pub fn text_frame(payload: &[u8], compressed: bool) -> Bytes {
    let mut frame = BytesMut::with_capacity(payload.len() + 10);
    // FIN and opcode 1 (text).
    frame.put_u8(0x81 | if compressed { 0x40 } else { 0 });
    match payload.len() {
        len @ 0..=125 => frame.put_u8(len as u8),
        len @ 126..=0xffff => {
            frame.put_u8(126);
            frame.put_u16(len as u16);
        }
        len => {
            frame.put_u8(127);
            frame.put_u64(len as u64);
        }
    }
    frame.put_slice(payload);
    frame.freeze()
}

/// A WebSocket upgrade request (RFC 6455 §4.2.1): valid, or answered with why not.
pub(super) enum Handshake {
    Valid {
        key: String,
        upgrade: PendingUpgrade,
    },
    /// `426` for a version other than 13, `400` for a malformed key.
    Invalid(Reply),
}

/// Matches requests that ask for a WebSocket upgrade; anything else is rejected (and may be
/// a plain GET). A `HEAD` request is never upgraded.
pub(super) fn handshake() -> impl Filter<Extract = (Handshake,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PendingUpgrade>())
        .and(warp::ext::optional::<WasHead>())
        .and_then(
            |headers: HeaderMap, upgrade: Option<PendingUpgrade>, head: Option<WasHead>| async move {
                let has = |name: header::HeaderName, token: &str| {
                    headers.get_all(name).iter().any(|v| {
                        v.to_str().is_ok_and(|v| {
                            v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
                        })
                    })
                };
                let upgrade = match upgrade {
                    Some(upgrade)
                        if head.is_none()
                            && has(header::CONNECTION, "upgrade")
                            && has(header::UPGRADE, "websocket") =>
                    {
                        upgrade
                    }
                    _ => return Err(warp::reject::not_found()),
                };
                if !has(header::SEC_WEBSOCKET_VERSION, "13") {
                    let response = Response::builder()
                        .status(StatusCode::UPGRADE_REQUIRED)
                        .header(header::SEC_WEBSOCKET_VERSION, "13")
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(r#"{"error":"WebSocket version 13 required"}"#.into())
                        .expect("valid response");
                    return Ok(Handshake::Invalid(response));
                }
                match headers
                    .get(header::SEC_WEBSOCKET_KEY)
                    .and_then(|k| k.to_str().ok())
                    .filter(|k| valid_key(k))
                {
                    Some(key) => Ok(Handshake::Valid {
                        key: key.to_owned(),
                        upgrade,
                    }),
                    None => Ok(Handshake::Invalid(
                        refusal_response(&Refusal::BadHandshake).map(Into::into),
                    )),
                }
            },
        )
}

/// `Sec-WebSocket-Key` must be 16 random bytes in base64: 22 characters and `==`.
fn valid_key(key: &str) -> bool {
    let key = key.trim();
    key.len() == 24
        && key.ends_with("==")
        && key[..22]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        // The last character carries 2 bits of the 16th byte; the other 4 are zero.
        && b"AQgw".contains(&key.as_bytes()[21])
}

/// Checks token, origin and limits, then answers `101 Switching Protocols` and runs the
/// session once hyper hands over the connection.
pub(super) async fn upgrade(
    handshake: Handshake,
    token: Option<String>,
    state: Arc<AppState>,
    remote: Option<SocketAddr>,
    headers: HeaderMap,
) -> Reply {
    let (key, upgrade) = match handshake {
        Handshake::Valid { key, upgrade } => (key, upgrade),
        Handshake::Invalid(response) => return response,
    };
    match admit(&token, &state, remote, &headers) {
        Err(refusal) => refusal_response(&refusal).map(Into::into),
        Ok(slot) => {
            let Some(on_upgrade) = upgrade.take() else {
                return Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .body(Default::default())
                    .expect("valid response");
            };
            let config = WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER)
                .write_buffer_size(0)
                .max_write_buffer_size(MAX_WRITE_BUFFER)
                .max_message_size(Some(state.config.max_message_size))
                .max_frame_size(Some(state.config.max_message_size));
            let compression = deflate::negotiate(&headers);
            let extensions = compression.as_ref().map(|c| c.response.clone());
            let window_bits = compression.as_ref().map(|c| c.window_bits);
            let sessions = state.sessions.clone();
            sessions.spawn(async move {
                let upgraded = match on_upgrade.await {
                    Ok(upgraded) => upgraded,
                    Err(err) => {
                        tracing::debug!("upgrade of {} failed: {err}", peer(remote));
                        return;
                    }
                };
                let fanout = state.fanout.clone();
                // A plain socket is handed to the broadcaster; a TLS one is written through
                // rustls by its session.
                match upgraded.downcast::<TokioIo<PlainStream>>() {
                    Ok(parts) => {
                        // What the client sent after its request (usually nothing). Copied
                        // and let go: the bytes are a view of hyper's 8 KiB read buffer,
                        // which a session would otherwise keep for its whole life.
                        let early = parts.read_buf.to_vec();
                        drop(parts.read_buf);
                        let io = parts.io.into_inner();
                        let member = fanout.join(Some(io.as_raw_fd()), window_bits);
                        let socket = WebSocketStream::from_partially_read(
                            Gate::new(io, member.clone()),
                            early,
                            Role::Server,
                            Some(config),
                        )
                        .await;
                        session(socket, member, state, remote, slot, compression).await;
                    }
                    Err(upgraded) => {
                        let member = fanout.join(None, window_bits);
                        let socket = WebSocketStream::from_raw_socket(
                            Gate::new(TokioIo::new(upgraded), member.clone()),
                            Role::Server,
                            Some(config),
                        )
                        .await;
                        session(socket, member, state, remote, slot, compression).await;
                    }
                }
            });
            let mut response = Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "upgrade")
                .header(header::UPGRADE, "websocket")
                .header(
                    header::SEC_WEBSOCKET_ACCEPT,
                    derive_accept_key(key.as_bytes()),
                );
            if let Some(extensions) = extensions {
                response = response.header(header::SEC_WEBSOCKET_EXTENSIONS, extensions);
            }
            response.body(Default::default()).expect("valid response")
        }
    }
}

fn admit(
    token: &Option<String>,
    state: &AppState,
    remote: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<Slot, Refusal> {
    let who = peer(remote);
    let refused = |refusal: Refusal, why: &str| {
        if state.client_log.allow() {
            client_event!(warn, remote, "refused WebSocket from {who}: {why}");
        }
        refusal
    };
    if !token_accepted(&state.config, token.as_deref()) {
        return Err(refused(Refusal::Unauthorized, "missing or wrong token"));
    }
    if !origin_allowed(&state.config.allowed_origins, headers) {
        return Err(refused(Refusal::ForeignOrigin, "foreign origin"));
    }
    state
        .admission
        .admit(remote.map(|a| a.ip()))
        .map_err(|full| match full {
            Full::Server => refused(Refusal::TooManyClients, "client limit reached"),
            Full::Address => refused(
                Refusal::TooManyFromAddress,
                "per-address client limit reached",
            ),
        })
}

/// Same-origin pages, non-browser clients (no `Origin`) and listed origins are allowed; an
/// empty list allows everything (as the Python broadcaster did).
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

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    socket: Socket<S>,
    member: Arc<Member>,
    state: Arc<AppState>,
    remote: Option<SocketAddr>,
    slot: Slot,
    compression: Option<Accepted>,
) {
    let who = peer(remote);
    if state.client_log.allow() {
        client_event!(
            info,
            remote,
            "client connected: {who} ({} connected)",
            state.hub.clients()
        );
    }
    let reason = serve_client(socket, &member, &state, compression).await;
    drop(member);
    drop(slot);
    if state.client_log.allow() {
        client_event!(
            info,
            remote,
            "client disconnected: {who} ({reason}; {} connected)",
            state.hub.clients()
        );
    }
}

/// Runs the client until it leaves or must go; returns why it ended, for the log.
async fn serve_client<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: Socket<S>,
    member: &Member,
    state: &AppState,
    compression: Option<Accepted>,
) -> &'static str {
    // A new client gets the latest snapshot at once (the member starts with it missed).
    // Pings go out with the documents, and the broadcaster times out an unanswered one
    // (see `fanout`): the session keeps no timer.
    let mut caught_up = catch_up(&mut socket, member, state).await;

    // Made once: a new one per loop turn would join and leave the token's waiter list on
    // every wake-up.
    let closed = state.listener_closed.cancelled();
    tokio::pin!(closed);

    // The branches' futures are dropped before a handler runs, so a handler has the socket
    // to itself.
    let (code, reason) = loop {
        match caught_up {
            Err(why) => return why,
            Ok(CaughtUp::PingTimeout) => break (CloseCode::Policy, "ping timeout"),
            Ok(CaughtUp::Idle) => {}
        }
        tokio::select! {
            _ = &mut closed => break (CloseCode::Away, "server going away"),
            // The broadcaster left a document to finish or to send, its write failed, or a
            // ping went unanswered.
            _ = member.woken() => {
                caught_up = catch_up(&mut socket, member, state).await;
            }
            incoming = socket.next() => match incoming {
                None => return "closed by client",
                Some(Err(WsError::Utf8(_))) => {
                    break (CloseCode::Invalid, "text message is not valid UTF-8");
                }
                // RSV1 marks a compressed message; the feed takes none (see `deflate`).
                Some(Err(WsError::Protocol(ProtocolError::NonZeroReservedBits))) => {
                    break if compression.is_some() {
                        (CloseCode::Unsupported, "compressed messages are not accepted")
                    } else {
                        (CloseCode::Protocol, "reserved bits set without an extension")
                    };
                }
                Some(Err(err)) => {
                    tracing::debug!("WebSocket read error: {err}");
                    break (CloseCode::Policy, "protocol error or message too large");
                }
                Some(Ok(message)) => match message {
                    Message::Pong(_) => member.ponged(),
                    Message::Close(_) => {
                        // tungstenite answers the close frame itself; flush that answer.
                        let _ = timeout(CLOSE_TIMEOUT, socket.flush()).await;
                        return "closed by client";
                    }
                    Message::Binary(_) => {
                        break (CloseCode::Unsupported, "binary messages are not accepted");
                    }
                    Message::Text(text) => {
                        // Old clients may send text; the feed is one-way, so ignore it.
                        tracing::debug!("ignoring {}-byte text message", text.len());
                    }
                    Message::Ping(_) | Message::Frame(_) => {}
                },
            },
        }
    };
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = timeout(CLOSE_TIMEOUT, async {
        socket.send(close).await?;
        SinkExt::close(&mut socket).await
    })
    .await;
    reason
}

/// How a [`catch_up`] ended, short of a failed send.
enum CaughtUp {
    /// Nothing is pending.
    Idle,
    /// The client left a ping unanswered for `ping_timeout`.
    PingTimeout,
}

/// Does what the broadcaster left for the session: finishes a document it wrote in part,
/// sends the latest snapshot if one was missed while the session was writing, until
/// nothing is pending, or learns that a ping went unanswered. Flushing writes the remainder
/// first (see [`Gate`]); the socket's write deadline bounds it, so a client that stopped
/// reading is dropped here.
async fn catch_up<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut Socket<S>,
    member: &Member,
    state: &AppState,
) -> Result<CaughtUp, &'static str> {
    loop {
        let latest = state.hub.latest();
        match member.next_step(latest.as_deref()) {
            Step::Idle => return Ok(CaughtUp::Idle),
            Step::PingTimeout => return Ok(CaughtUp::PingTimeout),
            Step::Failed => return Err("send failed"),
            Step::Flush => socket
                .flush()
                .await
                .map_err(|err| send_failed(state, &err))?,
        }
    }
}

/// Why a send failed: the socket's write deadline (`send_timeout`, see `server`) means the
/// client stopped reading. That deadline is what bounds every send, so a send needs no timer
/// of its own: a document that the socket takes at once costs no timer at all.
fn send_failed(state: &AppState, err: &WsError) -> &'static str {
    match err {
        WsError::Io(io) => io_failed(state, io),
        _ => "send failed",
    }
}

fn io_failed(state: &AppState, err: &std::io::Error) -> &'static str {
    match err.kind() {
        std::io::ErrorKind::TimedOut => slow(state),
        _ => "send failed",
    }
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

    /// The prebuilt frame is byte for byte what tungstenite would write, at each of the three
    /// length encodings and their edges, plain and compressed.
    #[test]
    fn text_frames_match_tungstenite() {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        for len in [0, 1, 125, 126, 127, 4600, 0xffff, 0x10000, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            for compressed in [false, true] {
                let mut frame = Frame::message(payload.clone(), OpCode::Data(Data::Text), true);
                frame.header_mut().rsv1 = compressed;
                let mut expected = Vec::new();
                frame.format(&mut expected).unwrap();
                assert_eq!(
                    text_frame(&payload, compressed)[..],
                    expected[..],
                    "{len} bytes, compressed {compressed}"
                );
            }
        }
    }

    #[test]
    fn websocket_keys_are_checked() {
        assert!(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(valid_key("AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!valid_key("not a key"));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25j!Q=="));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZQ==dGhl"));
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
