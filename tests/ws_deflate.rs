//! `permessage-deflate` on the feed (RFC 7692), against the real daemon: a client that offers
//! it gets every document as a compressed frame that inflates to the very bytes a plain
//! client gets; plain clients (tungstenite has no deflate support) and malformed offers get
//! the plain feed; pings and close frames are never compressed; a compressed message from a
//! client ends the connection with a close code, not a crash; documents and control frames
//! never interleave. Python's `websockets` is the real third-party client that negotiates the
//! extension.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Daemon, WAIT};
use flate2::{Decompress, FlushDecompress};

/// One frame from the server.
#[derive(Debug)]
struct Frame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// A WebSocket client on a plain socket, so the test sees the frames' header bits.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The handshake answer's head, lower-cased.
    head: String,
}

impl Raw {
    /// Upgrades `/ws` with `extensions` as `Sec-WebSocket-Extensions` headers (one each).
    fn connect(addr: SocketAddr, extensions: &[&str]) -> Raw {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for e in extensions {
            request.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            head: String::new(),
        };
        let end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            raw.fill();
        };
        raw.head = String::from_utf8_lossy(&raw.buf[..end]).to_ascii_lowercase();
        raw.buf.drain(..end);
        assert!(raw.head.starts_with("http/1.1 101"), "{}", raw.head);
        raw
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk).expect("read (timed out?)");
        assert!(n > 0, "connection closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The `Sec-WebSocket-Extensions` answer, if any.
    fn extensions(&self) -> Option<&str> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix("sec-websocket-extensions:"))
            .map(str::trim)
    }

    fn frame(&mut self) -> Frame {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(b1 & 0x80, 0, "server frames are not masked");
                let (header, len) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
                    }
                    127 if self.buf.len() >= 10 => (
                        10,
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (2, n as usize),
                };
                if header != usize::MAX && self.buf.len() >= header + len {
                    let frame = Frame {
                        fin: b0 & 0x80 != 0,
                        rsv1: b0 & 0x40 != 0,
                        opcode: b0 & 0x0f,
                        payload: self.buf[header..header + len].to_vec(),
                    };
                    self.buf.drain(..header + len);
                    return frame;
                }
            }
            self.fill();
        }
    }

    /// The next data frame (pings are answered).
    fn data(&mut self) -> Frame {
        loop {
            let frame = self.frame();
            match frame.opcode {
                0x9 => self.send(0x8a, false, &frame.payload),
                0x0..=0x2 => return frame,
                0x8 => panic!("closed: {:?}", close_code(&frame)),
                _ => {}
            }
        }
    }

    /// Sends one masked frame (`b0`: FIN and opcode), with RSV1 if `rsv1`.
    fn send(&mut self, b0: u8, rsv1: bool, payload: &[u8]) {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![b0 | if rsv1 { 0x40 } else { 0 }, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    /// Reads until a close frame, returns it.
    fn close_frame(&mut self) -> Frame {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let frame = self.frame();
            if frame.opcode == 0x8 {
                return frame;
            }
        }
        panic!("no close frame");
    }
}

fn close_code(frame: &Frame) -> (u16, String) {
    (
        u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
        String::from_utf8_lossy(&frame.payload[2..]).into_owned(),
    )
}

/// RFC 7692 §7.2.2: append `00 00 FF FF` and inflate.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut inflater = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 22);
    inflater
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("valid raw DEFLATE");
    assert_eq!(inflater.total_in() as usize, input.len(), "all input used");
    out
}

fn document(bytes: &[u8]) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_slice(bytes).expect("a JSON document");
    assert!(doc["cpu"]["usage_percent"].is_number(), "{doc}");
    doc
}

const ACCEPTED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn compressed_clients_get_the_same_documents_in_less_than_half_the_bytes() {
    let daemon = Daemon::start(&[]);
    // Chromium's and Firefox's offer.
    let mut deflated = Raw::connect(daemon.addr, &["permessage-deflate; client_max_window_bits"]);
    let mut second = Raw::connect(daemon.addr, &["permessage-deflate"]);
    let mut plain = Raw::connect(daemon.addr, &[]);
    assert_eq!(deflated.extensions(), Some(ACCEPTED));
    assert_eq!(plain.extensions(), None);

    let mut compressed_docs = Vec::new();
    let mut plain_docs = Vec::new();
    for _ in 0..3 {
        let frame = deflated.data();
        assert!(frame.rsv1 && frame.fin && frame.opcode == 0x1, "{frame:?}");
        let json = inflate(&frame.payload);
        document(&json);
        // Compressed once: the other compressed client gets the same bytes for that tick.
        let other = second.data();
        assert!(other.rsv1);
        compressed_docs.push((frame.payload.len(), json, other.payload, frame.payload));

        let frame = plain.data();
        assert!(!frame.rsv1 && frame.fin && frame.opcode == 0x1, "{frame:?}");
        document(&frame.payload);
        plain_docs.push(frame.payload);
    }
    // The three clients connected within one tick and read the same three documents (the
    // latest at once, then two new ones): byte for byte the same once inflated.
    let mut same = 0;
    for (size, json, other, payload) in &compressed_docs {
        if plain_docs.contains(json) {
            same += 1;
            assert!(
                size * 2 < json.len(),
                "{size} compressed bytes for {} plain",
                json.len()
            );
        }
        if inflate(other) == *json {
            assert_eq!(other, payload, "the same tick compressed the same way");
        }
    }
    assert!(
        same >= 2,
        "only {same} of 3 documents matched the plain feed"
    );
}

#[test]
fn plain_tungstenite_clients_are_unaffected() {
    let daemon = Daemon::start(&[]);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (mut ws, response) = tokio_tungstenite::connect_async(daemon.ws_url("/ws"))
            .await
            .expect("handshake");
        assert!(response.headers().get("sec-websocket-extensions").is_none());
        // tungstenite refuses frames with RSV1 set: documents arriving prove they are plain.
        for _ in 0..2 {
            let doc = common::ws::next_doc(&mut ws).await;
            assert!(doc["cpu"]["usage_percent"].is_number());
        }
    });
}

#[test]
fn malformed_or_unknown_offers_get_the_plain_feed() {
    let daemon = Daemon::start(&[]);
    for offer in [
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; server_no_context_takeover=yes",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; unknown_parameter",
        "permessage-deflate; server_max_window_bits=\"12",
        "x-webkit-deflate-frame",
        ";;;,,,===",
        &format!("permessage-deflate{}", "; x".repeat(1500)),
    ] {
        let mut client = Raw::connect(daemon.addr, &[offer]);
        assert_eq!(client.extensions(), None, "{offer:?}");
        let frame = client.data();
        assert!(!frame.rsv1, "{offer:?}");
        document(&frame.payload);
    }
    // A malformed offer followed by a good one: the good one is taken.
    let mut client = Raw::connect(
        daemon.addr,
        &["permessage-deflate; bogus", "permessage-deflate"],
    );
    assert_eq!(client.extensions(), Some(ACCEPTED));
    assert!(client.data().rsv1);
    // The daemon is still serving everyone.
    assert_eq!(daemon.get("/healthz").status, 200);
}

#[test]
fn a_small_server_window_gets_documents_that_fit_it() {
    let daemon = Daemon::start(&[]);
    // 2^8 bytes: no document fits, so they go uncompressed (RSV1 clear), which the
    // extension allows message by message.
    let mut small = Raw::connect(
        daemon.addr,
        &["permessage-deflate; server_max_window_bits=8"],
    );
    assert_eq!(
        small.extensions(),
        Some(format!("{ACCEPTED}; server_max_window_bits=8").as_str())
    );
    let frame = small.data();
    assert!(!frame.rsv1);
    document(&frame.payload);
    // 2^15 bytes: documents fit and are compressed.
    let mut large = Raw::connect(
        daemon.addr,
        &["permessage-deflate; server_max_window_bits=15; client_max_window_bits=15"],
    );
    assert_eq!(
        large.extensions(),
        Some(format!("{ACCEPTED}; server_max_window_bits=15").as_str())
    );
    let frame = large.data();
    assert!(frame.rsv1);
    document(&inflate(&frame.payload));
}

#[test]
fn pings_and_close_frames_are_never_compressed() {
    let daemon = Daemon::start_with_config("ping_interval = 1\n", &[]);
    let mut client = Raw::connect(daemon.addr, &["permessage-deflate"]);
    assert_eq!(client.extensions(), Some(ACCEPTED));
    let deadline = Instant::now() + WAIT;
    let ping = loop {
        assert!(Instant::now() < deadline, "no ping");
        let frame = client.frame();
        if frame.opcode == 0x9 {
            break frame;
        }
        assert!(frame.rsv1, "documents are compressed");
    };
    assert!(!ping.rsv1);
    client.send(0x8a, false, &ping.payload);
    // The client closes; the server's answer is a plain close frame.
    client.send(0x88, false, &1000u16.to_be_bytes());
    let close = client.close_frame();
    assert!(!close.rsv1);
}

#[test]
fn a_compressed_message_from_a_client_ends_its_connection_with_a_close_code() {
    let daemon = Daemon::start(&[]);
    // Negotiated: the feed takes no messages, compressed ones are refused with 1003.
    let mut client = Raw::connect(daemon.addr, &["permessage-deflate"]);
    client.data();
    // "Hello" compressed (RFC 7692 §7.2.3.1).
    client.send(0x81, true, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    let close = client.close_frame();
    assert!(!close.rsv1);
    assert_eq!(
        close_code(&close),
        (1003, "compressed messages are not accepted".to_owned())
    );
    // Not negotiated: RSV1 is a protocol error (1002).
    let mut plain = Raw::connect(daemon.addr, &[]);
    plain.data();
    plain.send(0x81, true, b"garbage");
    assert_eq!(close_code(&plain.close_frame()).0, 1002);
    // Everyone else is still served.
    let mut other = Raw::connect(daemon.addr, &["permessage-deflate"]);
    assert!(other.data().rsv1);
}

/// The Python interpreter with `websockets`: Debian's, which tests/ws-setup.sh provides.
fn python_with_websockets() -> &'static str {
    let python = "/usr/bin/python3";
    let ok = std::process::Command::new(python)
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "this test needs Python's websockets: run `bash tests/ws-setup.sh` (scripts/test.sh \
         does), or leave out --include-ignored"
    );
    python
}

#[test]
#[ignore = "needs python3-websockets: tests/ws-setup.sh"]
fn python_websockets_negotiates_deflate_and_reads_the_same_documents() {
    let python = python_with_websockets();
    let daemon = Daemon::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ws_client.py");
    let started = Instant::now();
    let output = std::process::Command::new(python)
        .args([script, &daemon.ws_url("/ws"), "4"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let extensions = result["deflate"]["extensions"].as_str().unwrap_or_default();
    assert!(
        extensions.starts_with("permessage-deflate"),
        "negotiated: {extensions:?}"
    );
    assert!(result["plain"]["extensions"].is_null());
    let texts = |which: &str| -> Vec<String> {
        result[which]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect()
    };
    let (deflated, plain) = (texts("deflate"), texts("plain"));
    assert_eq!(deflated.len(), 4);
    for text in &deflated {
        document(text.as_bytes());
    }
    let same = deflated.iter().filter(|t| plain.contains(t)).count();
    assert!(
        same >= 3,
        "only {same} of 4 documents matched the plain feed"
    );
}

/// Documents are written to the socket as prebuilt frames, beside tungstenite's own pings and
/// pong replies: a client that pings hard while documents flow (and answers the server's pings)
/// gets only whole frames, every document intact, and a pong for its last ping.
#[test]
fn client_pings_and_documents_never_interleave() {
    let daemon = Daemon::start_with_config("ping_interval = 1\n", &[]);
    for extensions in [&[][..], &["permessage-deflate"][..]] {
        let mut client = Raw::connect(daemon.addr, extensions);
        let compressed = !extensions.is_empty();
        let mut sent = 0u64;
        let mut pongs = Vec::new();
        let mut documents = 0;
        // A burst of pings at the start and after each document, while the next is due.
        let mut burst = true;
        let ping = |id: u64| {
            let mut payload = id.to_be_bytes().to_vec();
            payload.resize(120, b'p');
            payload
        };
        let deadline = Instant::now() + WAIT * 2;
        while documents < 3 || pongs.last() != Some(&sent) {
            assert!(
                Instant::now() < deadline,
                "{documents} documents, pongs {pongs:?}"
            );
            if burst {
                burst = false;
                for _ in 0..50 {
                    sent += 1;
                    client.send(0x89, false, &ping(sent));
                }
            }
            let frame = client.frame();
            assert!(frame.fin, "{frame:?}");
            match frame.opcode {
                0x1 => {
                    assert_eq!(frame.rsv1, compressed);
                    if compressed {
                        document(&inflate(&frame.payload));
                    } else {
                        document(&frame.payload);
                    }
                    documents += 1;
                    burst = documents < 3;
                }
                0x9 => client.send(0x8a, false, &frame.payload),
                0xa => {
                    assert!(!frame.rsv1);
                    assert_eq!(frame.payload.len(), 120, "{frame:?}");
                    let id = u64::from_be_bytes(frame.payload[..8].try_into().unwrap());
                    assert!(frame.payload[8..].iter().all(|&b| b == b'p'), "{frame:?}");
                    // tungstenite answers the latest ping it has read, so some are skipped.
                    assert!(id <= sent && pongs.last().is_none_or(|&last| last < id));
                    pongs.push(id);
                }
                other => panic!("unexpected opcode {other:#x}: {frame:?}"),
            }
        }
        assert!(!pongs.is_empty());
    }
}
