#!/usr/bin/env python3
"""Memory per pending WebSocket handshake: each proxy (started as bench/run.py starts it, on one
core) forwards N upgrade requests to a backend that accepts and reads them but never answers,
so every handshake waits for its 101. Reported: the proxy's RSS growth divided by N.

    python3 bench/pending_handshakes.py [--handshakes 2000] [--baseline OLD_HAWSER]

This is what a slow or stuck backend, or a handshake flood, costs before `--max-pending-handshakes`
refuses more. Only loopback is used; the run is bounded (60 s per proxy at most).
"""

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the side-by-side benchmark's proxies and helpers)

SILENT_BACKEND = """
import asyncio, sys
async def silent(reader, writer):
    while await reader.read(65536):
        pass
async def main():
    server = await asyncio.start_server(silent, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: " + run.HOST.encode() + b"\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")


async def pending(port, count):
    """Opens `count` handshakes through `port`; returns their writers (kept open)."""
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HANDSHAKE)
        await writer.drain()
        writers.append(writer)
    return writers


def measure(proxy, handshakes):
    async def go():
        warm = await pending(proxy.port, 50)
        await asyncio.sleep(1)
        before = proxy.rss_kib()
        held = await pending(proxy.port, handshakes)
        await asyncio.sleep(2)
        after = proxy.rss_kib()
        for writer in warm + held:
            writer.close()
        return (after - before) / handshakes
    return asyncio.run(asyncio.wait_for(go(), 60))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--baseline", help="another hawser binary, measured as `before`")
    args = parser.parse_args()
    run.raise_file_limit()
    hawser = run.build_hawser()
    silent_port = run.free_port()
    backend = run.pinned(run.CLIENT_CORE, [sys.executable, "-c", SILENT_BACKEND, str(silent_port)],
                         stdout=subprocess.PIPE, text=True)
    backend.stdout.readline()
    starters = [
        ("hawser", lambda work, cert, key: run.start_hawser(hawser, silent_port, work, cert, key)),
        ("nginx", lambda work, cert, key: run.start_nginx(silent_port, work, cert, key)),
        ("haproxy", lambda work, cert, key: run.start_haproxy(silent_port, work, cert, key, args.handshakes + 100)),
    ]
    if args.baseline:
        starters.append(("before", lambda work, cert, key: run.start_hawser(
            Path(args.baseline), silent_port, work, cert, key, name="before")))
    results = {}
    try:
        for name, start in starters:
            with tempfile.TemporaryDirectory() as work:
                work = Path(work)
                cert, key = run.certificate(work)
                proxy = start(work, cert, key)
                try:
                    results[name] = measure(proxy, args.handshakes)
                finally:
                    proxy.stop()
            time.sleep(1)
    finally:
        backend.kill()
    best = min(results["nginx"], results["haproxy"])
    print(f"KiB per pending handshake ({args.handshakes} pending, {time.strftime('%Y-%m-%d')}):")
    for name, kib in results.items():
        print(f"  {name:8} {kib:6.1f}   ÷ best of nginx/HAProxy: {kib / best:.2f}")


if __name__ == "__main__":
    main()
