"""A real WebSocket client for tests/ws_deflate.rs: Python's websockets library.

Usage: ws_client.py URL COUNT

Opens two connections at once, one that offers permessage-deflate (the library's default, as
in browsers) and one that offers no extension, reads COUNT text messages on each, and prints
one JSON object: each connection's Sec-WebSocket-Extensions answer and messages.
"""

import asyncio
import json
import sys

import websockets


def extensions(ws):
    # websockets < 14 (Debian 12 ships 10.4) and the newer client name the answer differently.
    headers = getattr(ws, "response_headers", None)
    if headers is None:
        headers = ws.response.headers
    return headers.get("Sec-WebSocket-Extensions")


async def read(url, count, compression):
    async with websockets.connect(url, compression=compression, max_size=2**22) as ws:
        messages = []
        while len(messages) < count:
            message = await asyncio.wait_for(ws.recv(), timeout=10)
            if isinstance(message, str):
                messages.append(message)
        return {"extensions": extensions(ws), "messages": messages}


async def main(url, count):
    deflate, plain = await asyncio.gather(
        read(url, count, "deflate"), read(url, count, None)
    )
    print(json.dumps({"deflate": deflate, "plain": plain}))


asyncio.run(main(sys.argv[1], int(sys.argv[2])))
