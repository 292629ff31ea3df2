"""Interop peer: Python's `websockets` as a permessage-deflate client of murmur.

Usage: python3 python_deflate.py ws://127.0.0.1:PORT
For each offer, echoes text and binary messages of several sizes (compressed both ways) and
prints one JSON line: the extension the server agreed to per offer. With server_max_window_bits=8
the client inflates with a true 256-byte window (zlib wbits -8), so a distance beyond it fails.
"""
import asyncio
import json
import os
import sys

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

OFFERS = {
    "default": dict(),
    "no_context_takeover": dict(server_no_context_takeover=True, client_no_context_takeover=True),
    # client_max_window_bits=8 is left out: Python's zlib refuses to compress raw DEFLATE with an 8-bit window.
    "window_8": dict(server_max_window_bits=8, client_max_window_bits=9),
    "window_12": dict(server_max_window_bits=12),
}


async def one(url, params):
    factory = ClientPerMessageDeflateFactory(compress_settings={"memLevel": 5}, **params)
    async with websockets.connect(url, max_size=32 * 1024 * 1024, extensions=[factory], compression=None) as ws:
        agreed = [repr(e) for e in ws.extensions]
        for size in (0, 100, 1000, 70000, 1 << 20):
            text = (json.dumps({"seq": size, "text": "the deploy went fine "}) * (size // 40 + 1))[:size]
            await ws.send(text)
            assert await ws.recv() == text, f"text {size}"
            data = os.urandom(size // 2) + bytes(size - size // 2)
            await ws.send(data)
            assert await ws.recv() == data, f"binary {size}"
        await ws.send(["frag", "mented ", "text " * 40])
        assert await ws.recv() == "fragmented " + "text " * 40
        return agreed


async def main(url):
    out = {}
    for name, params in OFFERS.items():
        out[name] = await one(url, params)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
