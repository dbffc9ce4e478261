//! WebSocket clients of the feed: real tungstenite clients that read documents and close
//! frames, handshakes that are expected to be refused, and raw clients that never read.

use std::net::SocketAddr;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{http, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::WAIT;

pub type Ws = WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects a WebSocket client, failing the test on refusal or after [`WAIT`].
pub async fn connect(url: &str) -> Ws {
    let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .expect("WebSocket handshake");
    ws
}

/// Next text frame as JSON (pings are answered by tungstenite itself).
pub async fn next_doc<S>(ws: &mut WebSocketStream<S>) -> serde_json::Value
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let msg = timeout(WAIT, ws.next())
            .await
            .expect("no document in time")
            .expect("stream ended")
            .expect("read error");
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).expect("document is JSON");
        }
    }
}

/// Reads until a close frame arrives, at most [`WAIT`] in all, and returns its code. Fails
/// if the connection ends without one, or if documents keep coming.
pub async fn close_code<S>(ws: &mut WebSocketStream<S>) -> u16
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("the connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("no close frame in time");
    u16::from(frame.expect("close frame with a code").code)
}

/// The first document collected after the interface connected. A client gets the latest
/// document at once, which may be from the tick before the change.
pub async fn doc_after_change<S>(ws: &mut WebSocketStream<S>) -> serde_json::Value
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = next_doc(ws).await;
    if first["connectivity"]["connected"] == true {
        return first;
    }
    next_doc(ws).await
}

/// Status of a refused WebSocket handshake, or `None` if it was accepted.
pub async fn ws_refusal(url: &str, headers: &[(&str, &str)]) -> Option<u16> {
    let mut request = url.into_client_request().unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            v.parse().expect("header value"),
        );
    }
    match timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake timed out")
    {
        Ok(_) => None,
        Err(WsError::Http(response)) => Some(response.status().as_u16()),
        Err(other) => panic!("unexpected handshake error: {other}"),
    }
}

/// A client that completes the WebSocket handshake with a 4 KiB receive buffer and is never
/// read again by the test: the daemon's sends to it soon block.
pub async fn stuck_client(addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    stream
}
