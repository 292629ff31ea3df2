"""Interop peer: Python's `websockets` (Debian's python3-websockets) as a client of murmur.

Usage: python3 python_client.py ws://127.0.0.1:PORT
Prints one JSON line with what it observed; exits non-zero on any mismatch.
"""
import asyncio
import json
import os
import sys

import websockets


async def main(url: str) -> None:
    results = {}
    async with websockets.connect(url, max_size=32 * 1024 * 1024, compression=None) as ws:
        for size in (0, 1, 125, 126, 65535, 65536, 1 << 20):
            payload = os.urandom(size)
            await ws.send(payload)
            echoed = await ws.recv()
            assert isinstance(echoed, bytes) and echoed == payload, f"binary {size}"
            text = "ü€😀" * (size // 9)
            await ws.send(text)
            echoed = await ws.recv()
            assert echoed == text, f"text {size}"
        results["sizes"] = "ok"
        # A fragmented message: websockets sends an iterable as fragments.
        await ws.send(["frag", "mented ", "text"])
        assert await ws.recv() == "fragmented text"
        results["fragmented"] = "ok"
        pong = await ws.ping(b"py")
        await asyncio.wait_for(pong, 5)
        results["ping"] = "ok"
        await ws.close(code=4002, reason="python says bye")
        results["close_code"] = ws.close_code
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
