#!/usr/bin/env python3
"""A real browser through hawser: headless Chromium opens a page that talks to an echo backend
over ws:// and wss:// through the real `hawser` binary in standalone mode, and the page's verdict
is read over the DevTools protocol.

    python3 e2e/browser.py [--hawser target/debug/hawser] [--chromium chromium]

Needs: chromium (Debian package), openssl, Python `websockets`. Only loopback is used.
Prints `1 passed, 0 failed` (or `0 passed, 1 failed`) and exits 0 on success.
"""

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets

from manifests import ECHO_SERVICE, LOCALHOST_TLS  # e2e/manifests.py, beside this script
from processes import free_port, wait_for_port

DEADLINE_SECONDS = 30

PAGE = """<!doctype html><meta charset="utf-8"><title>running</title>
<script>
function roundTrip(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => reject("timeout " + url), 10000);
    ws.onopen = () => ws.send("hello over " + url);
    ws.onmessage = (event) => { clearTimeout(timer); ws.close(1000, "done"); resolve(event.data); };
    ws.onerror = () => { clearTimeout(timer); reject("error " + url); };
  });
}
Promise.all([roundTrip("ws://127.0.0.1:HTTP_PORT/ws"), roundTrip("wss://localhost:HTTPS_PORT/ws")])
  .then((echoes) => { document.title = "PASS " + echoes.join(" | "); })
  .catch((why) => { document.title = "FAIL " + why; });
</script>"""

MANIFESTS = ECHO_SERVICE + LOCALHOST_TLS + """apiVersion: hawser.dev/v1alpha1
kind: WebSocketRoute
metadata: {name: plain}
spec:
  rules:
  - matches: [{path: {value: /ws}}]
    backends: [{name: echo, port: http}]
---
apiVersion: hawser.dev/v1alpha1
kind: WebSocketRoute
metadata: {name: secure}
spec:
  hostnames: [localhost]
  tls: {secretName: localhost-tls}
  rules:
  - matches: [{path: {value: /ws}}]
    backends: [{name: echo, port: http}]
"""






def certificate(workdir):
    key, crt = workdir / "tls.key", workdir / "tls.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True)
    return crt.read_text(), key.read_text()


def devtools_url(chromium):
    """The DevTools address Chromium prints on stderr at start."""
    deadline = time.time() + DEADLINE_SECONDS
    while time.time() < deadline:
        line = chromium.stderr.readline()
        if not line:
            raise SystemExit("chromium exited before DevTools was listening")
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            return match.group(1)
    raise SystemExit("no DevTools address from chromium")


async def page_title(browser_ws):
    """Polls the page's title over the DevTools protocol until the page decides."""
    port = re.search(r"ws://[^:]+:(\d+)/", browser_ws).group(1)
    deadline = time.time() + DEADLINE_SECONDS
    while time.time() < deadline:
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        pages = [t for t in targets if t.get("type") == "page" and "webSocketDebuggerUrl" in t]
        if pages:
            async with websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as cdp:
                for n in range(1, 10_000):
                    await cdp.send(json.dumps({"id": n, "method": "Runtime.evaluate", "params": {"expression": "document.title"}}))
                    while True:
                        reply = json.loads(await cdp.recv())
                        if reply.get("id") == n:
                            break
                    title = reply.get("result", {}).get("result", {}).get("value", "")
                    if title.startswith(("PASS", "FAIL")) or time.time() > deadline:
                        return title
                    await asyncio.sleep(0.1)
        await asyncio.sleep(0.1)
    return "FAIL no verdict within the deadline"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hawser", default="target/debug/hawser")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hawser-browser-"))
    processes = []
    try:
        crt, key = certificate(workdir)
        echo_port, http_port, https_port, admin_port = (free_port() for _ in range(4))
        manifests = workdir / "manifests"
        manifests.mkdir()
        (manifests / "routes.yaml").write_text(
            MANIFESTS.replace("ECHO_PORT", str(echo_port)).replace("CERT", json.dumps(crt)).replace("KEY", json.dumps(key)))
        page = workdir / "page.html"
        page.write_text(PAGE.replace("HTTP_PORT", str(http_port)).replace("HTTPS_PORT", str(https_port)))

        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        echo = subprocess.Popen([args.hawser, "echo", "--addr", f"127.0.0.1:{echo_port}"], **quiet)
        processes.append(echo)
        hawser = subprocess.Popen([args.hawser, "run", "--manifests", str(manifests),
                                   "--http-addr", f"127.0.0.1:{http_port}", "--https-addr", f"127.0.0.1:{https_port}",
                                   "--admin-addr", f"127.0.0.1:{admin_port}"], **quiet)
        processes.append(hawser)
        for port, process in ((echo_port, echo), (http_port, hawser), (https_port, hawser)):
            wait_for_port(port, process)
        urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz")

        chromium = subprocess.Popen(
            [args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--ignore-certificate-errors", f"--user-data-dir={workdir / 'profile'}", "--remote-debugging-port=0",
             page.as_uri()],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        processes.append(chromium)
        title = asyncio.run(page_title(devtools_url(chromium)))
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"browser: {title}")
    passed = title.startswith("PASS")
    print("1 passed, 0 failed" if passed else "0 passed, 1 failed")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
