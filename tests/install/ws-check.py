#!/usr/bin/env python3
"""Opens a WebSocket to pistats with a plain RFC 6455 handshake and checks the first frames.

Usage: ws-check.py HOST PORT [PATH] [--deflate] [--pings TIMEOUT]

Standard library only, so it runs on a bare host: sends the upgrade request, verifies the
101 answer and Sec-WebSocket-Accept, then reads two text frames and checks that each is a
stats document (JSON with timestamp, cpu and memory). Prints a one-line summary.

With --deflate it offers permessage-deflate as browsers do (RFC 7692) and checks that the
server accepts it without context takeover and that every document arrives compressed
(RSV1 set) and inflates to a stats document on its own.

With --pings TIMEOUT (for a server whose ping interval is one collection interval and whose
ping timeout is TIMEOUT seconds) it then answers every ping with a pong for a few seconds,
checking that pings keep coming and the connection stays open, then stops answering and
checks that the server closes with 1008 (policy violation) within the timeout and a few
intervals.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time
import zlib

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SystemExit(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_frame(sock):
    b0, b1 = read_exact(sock, 2)
    rsv1, opcode, masked, length = b0 & 0x40, b0 & 0x0F, b1 & 0x80, b1 & 0x7F
    if masked:
        raise SystemExit("server frames must not be masked")
    if length == 126:
        (length,) = struct.unpack("!H", read_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", read_exact(sock, 8))
    return opcode, bool(rsv1), read_exact(sock, length)


def send_masked(sock, opcode, payload):
    """A client frame: masked, as RFC 6455 §5.3 requires (control payloads are < 126 bytes)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x80 | opcode, 0x80 | len(body)]) + mask + body)


def check_pings(sock, timeout):
    """Answers pings for a while, then lets them go unanswered until the server closes."""
    answer_for = 4.0
    pings = documents = 0
    start = time.monotonic()
    while time.monotonic() - start < answer_for:
        opcode, compressed, payload = read_frame(sock)
        if opcode == 0x8:
            raise SystemExit(f"closed while answering pings: {payload!r}")
        if opcode == 0x9:
            if compressed:
                raise SystemExit("a compressed ping")
            pings += 1
            send_masked(sock, 0xA, payload)
        elif opcode == 0x1:
            documents += 1
    if pings < 2 or documents < 2:
        raise SystemExit(f"{pings} pings and {documents} documents in {answer_for:.0f} s of answering")
    # From now on nothing is answered: the first ping left unanswered starts the clock.
    first_unanswered = None
    deadline = time.monotonic() + timeout + 10
    while True:
        if time.monotonic() > deadline:
            raise SystemExit(f"no close {timeout + 10:.0f} s after pings went unanswered")
        opcode, _, payload = read_frame(sock)
        if opcode == 0x9 and first_unanswered is None:
            first_unanswered = time.monotonic()
        if opcode == 0x8:
            break
    if first_unanswered is None:
        raise SystemExit("closed before any ping went unanswered")
    waited = time.monotonic() - first_unanswered
    (code,) = struct.unpack("!H", payload[:2])
    if code != 1008:
        raise SystemExit(f"closed with {code}, expected 1008 (ping timeout)")
    if not timeout - 0.5 <= waited <= timeout + 4:
        raise SystemExit(f"closed {waited:.1f} s after the first unanswered ping, timeout {timeout} s")
    return f"{pings} pings answered in {answer_for:.0f} s; closed with 1008 {waited:.1f} s after the first unanswered one"


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    argv = sys.argv[3:]
    ping_timeout = None
    if "--pings" in argv:
        at = argv.index("--pings")
        ping_timeout = float(argv[at + 1])
        del argv[at : at + 2]
    args = [a for a in argv if a != "--deflate"]
    deflate = "--deflate" in argv
    path = args[0] if args else "/"
    offer = (
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
    )
    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{offer}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += read_exact(sock, 1)
    lines = head.decode("latin-1").split("\r\n")
    if " 101 " not in lines[0] + " ":
        raise SystemExit(f"no upgrade: {lines[0]!r}")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    if headers.get("sec-websocket-accept") != expected:
        raise SystemExit(f"bad Sec-WebSocket-Accept: {headers.get('sec-websocket-accept')!r}")
    extensions = headers.get("sec-websocket-extensions", "")
    if deflate and not (
        extensions.startswith("permessage-deflate") and "server_no_context_takeover" in extensions
    ):
        raise SystemExit(f"permessage-deflate not accepted: {extensions!r}")
    if not deflate and extensions:
        raise SystemExit(f"an extension nobody offered: {extensions!r}")
    stamps, sizes = [], []
    while len(stamps) < 2:
        opcode, compressed, payload = read_frame(sock)
        if opcode in (0x9, 0xA):  # ping/pong: not a document
            if compressed:
                raise SystemExit("a compressed control frame")
            if opcode == 0x9:
                send_masked(sock, 0xA, payload)
            continue
        if opcode != 0x1:
            raise SystemExit(f"expected a text frame, got opcode {opcode:#x}")
        if compressed != deflate:
            raise SystemExit(f"document frame with RSV1={compressed}, negotiated deflate={deflate}")
        sizes.append(len(payload))
        if compressed:
            # No context takeover: each message inflates on its own (RFC 7692 §7.2.2).
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        doc = json.loads(payload)
        for key_name in ("timestamp", "cpu", "memory", "connected_clients"):
            if key_name not in doc:
                raise SystemExit(f"document without {key_name!r}")
        stamps.append(doc["timestamp"])
    if stamps[0] == stamps[1]:
        raise SystemExit(f"second document repeats the first ({stamps[0]})")
    kind = "compressed" if deflate else "plain"
    summary = (
        f"websocket {path}: 101 with valid accept; {kind} documents at {stamps[0]} and {stamps[1]}"
        f" ({sizes[0]} and {sizes[1]} bytes on the wire)"
    )
    if ping_timeout is not None:
        summary += "; " + check_pings(sock, ping_timeout)
    else:
        # Close politely: masked close frame, status 1000.
        send_masked(sock, 0x8, struct.pack("!H", 1000))
    sock.close()
    print(summary)


if __name__ == "__main__":
    main()
