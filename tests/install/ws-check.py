#!/usr/bin/env python3
"""Opens a WebSocket to pistats with a plain RFC 6455 handshake and checks the first frames.

Usage: ws-check.py HOST PORT [PATH] [--deflate]

Standard library only, so it runs on a bare host: sends the upgrade request, verifies the
101 answer and Sec-WebSocket-Accept, then reads two text frames and checks that each is a
stats document (JSON with timestamp, cpu and memory). Prints a one-line summary.

With --deflate it offers permessage-deflate as browsers do (RFC 7692) and checks that the
server accepts it without context takeover and that every document arrives compressed
(RSV1 set) and inflates to a stats document on its own.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys
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


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    args = [a for a in sys.argv[3:] if a != "--deflate"]
    deflate = "--deflate" in sys.argv[3:]
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
    # Close politely: masked close frame, status 1000.
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(struct.pack("!H", 1000)))
    sock.sendall(bytes([0x88, 0x80 | 2]) + mask + body)
    sock.close()
    if stamps[0] == stamps[1]:
        raise SystemExit(f"second document repeats the first ({stamps[0]})")
    kind = "compressed" if deflate else "plain"
    print(
        f"websocket {path}: 101 with valid accept; {kind} documents at {stamps[0]} and {stamps[1]}"
        f" ({sizes[0]} and {sizes[1]} bytes on the wire)"
    )


if __name__ == "__main__":
    main()
