#!/usr/bin/env python3
"""WebSockets over HTTP/2 (RFC 8441) in real browsers: headless Chromium and Firefox load a page
through the real `hawser` binary over https (ALPN h2), and the page opens `wss://` to the same
origin, which the browser sends as an extended CONNECT on the connection it already has. The
page reports its verdict (and the protocol it was loaded with) to its own backend through
hawser; hawser's /metrics must then count the browser's WebSocket with `protocol="h2"`.

    python3 e2e/browser_h2.py [--hawser target/debug/hawser] [--browsers chromium,firefox]

Needs: chromium and firefox-esr (Debian packages), certutil (libnss3-tools) to give Firefox's
profile the test CA, openssl. Only loopback is used. Exits 0 when every browser passed.
"""

import argparse
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from processes import free_port, stop, wait_for_port  # e2e/processes.py, beside this script
from manifests import ECHO_SERVICE, LOCALHOST_TLS, service

DEADLINE_SECONDS = 40

PAGE = """<!doctype html><meta charset="utf-8"><title>h2 websocket</title>
<script>
function verdict(text) {
  fetch("/verdict?" + encodeURIComponent(text));
}
const loadedWith = performance.getEntriesByType("navigation")[0].nextHopProtocol;
const ws = new WebSocket("wss://" + location.host + "/ws");
const timer = setTimeout(() => verdict("FAIL timeout, page over " + loadedWith), 15000);
ws.onopen = () => ws.send("hello over RFC 8441");
ws.onmessage = (event) => {
  clearTimeout(timer);
  ws.close(1000, "done");
  verdict("PASS page over " + loadedWith + ", echo: " + event.data);
};
ws.onerror = () => { clearTimeout(timer); verdict("FAIL websocket error, page over " + loadedWith); };
</script>"""

MANIFESTS = ECHO_SERVICE + LOCALHOST_TLS + service("page", "PAGE_PORT") + """apiVersion: hawser.dev/v1alpha1
kind: WebSocketRoute
metadata: {name: site}
spec:
  hostnames: [localhost]
  tls: {secretName: localhost-tls}
  rules:
  - matches: [{path: {value: /ws}}]
    backends: [{name: echo, port: http}]
  - backends: [{name: page, port: http}]
"""

# The route of the page's WebSocket rule, as hawser names it in metrics.
WS_ROUTE = "wsroute/default/site/0/0"


class PageServer(http.server.ThreadingHTTPServer):
    """Serves the page at / and collects the verdicts pages send to /verdict."""

    def __init__(self, port):
        self.verdicts = []
        self.arrived = threading.Condition()
        super().__init__(("127.0.0.1", port), PageHandler)

    def wait_for_verdict(self, count, deadline):
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.verdicts) >= count, timeout=max(0, deadline - time.time()))
            return self.verdicts[count - 1] if len(self.verdicts) >= count else None


class PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/verdict?"):
            with self.server.arrived:
                self.server.verdicts.append(urllib.parse.unquote(self.path.split("?", 1)[1]))
                self.server.arrived.notify_all()
            body = b"noted"
        else:
            body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def h2_upgrades(admin_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics").read().decode()
    pattern = re.escape(f'hawser_upgrades_total{{route="{WS_ROUTE}",reason="upgraded",protocol="h2"}} ') + r"(\d+)"
    match = re.search(pattern, text)
    return int(match.group(1)) if match else 0


def certificates(workdir):
    """A test CA and a localhost leaf it signed (Firefox refuses a CA certificate as a server's
    own, so the self-signed one of e2e/browser.py will not do). Returns (leaf, key) PEM."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=workdir)

    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=hawser test CA")
    openssl("req", *curve, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=localhost")
    (workdir / "leaf.ext").write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "tls.crt", "-days", "2", "-extfile", "leaf.ext")
    return (workdir / "tls.crt").read_text(), (workdir / "tls.key").read_text()


def chromium_command(binary, workdir, url):
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--ignore-certificate-errors", f"--user-data-dir={workdir / 'chromium-profile'}", url]


def firefox_command(binary, workdir, url, ca_path):
    """Firefox with a fresh profile that trusts the test CA (its own NSS database)."""
    profile = workdir / "firefox-profile"
    profile.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{profile}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-n", "hawser-test", "-t", "CT,,", "-i", str(ca_path), "-d", f"sql:{profile}"],
                   check=True, capture_output=True)
    prefs = {
        "browser.shell.checkDefaultBrowser": False,
        "browser.startup.homepage_override.mstone": "ignore",
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.reportingpolicy.firstRun": False,
        "app.update.disabledForTesting": True,
        "network.http.http3.enable": False,
        "network.http.http2.websockets": True,
    }
    (profile / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items()))
    return [binary, "--headless", "--no-remote", "--profile", str(profile), url]




def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hawser", default="target/debug/hawser")
    parser.add_argument("--browsers", default="chromium,firefox")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--firefox", default=shutil.which("firefox-esr") or shutil.which("firefox") or "firefox-esr")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hawser-browser-h2-"))
    processes, results = [], []
    page_server = None
    try:
        crt, key = certificates(workdir)
        echo_port, page_port, http_port, https_port, admin_port = (free_port() for _ in range(5))
        page_server = PageServer(page_port)
        threading.Thread(target=page_server.serve_forever, daemon=True).start()
        manifests = workdir / "manifests"
        manifests.mkdir()
        (manifests / "routes.yaml").write_text(
            MANIFESTS.replace("ECHO_PORT", str(echo_port)).replace("PAGE_PORT", str(page_port))
            .replace("CERT", json.dumps(crt)).replace("KEY", json.dumps(key)))
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        echo = subprocess.Popen([args.hawser, "echo", "--addr", f"127.0.0.1:{echo_port}"], **quiet)
        processes.append(echo)
        hawser = subprocess.Popen([args.hawser, "run", "--manifests", str(manifests),
                                   "--http-addr", f"127.0.0.1:{http_port}", "--https-addr", f"127.0.0.1:{https_port}",
                                   "--admin-addr", f"127.0.0.1:{admin_port}"],
                                  env={"HAWSER_SHUTDOWN_DELAY": "0s", "PATH": "/usr/bin:/bin"}, **quiet)
        processes.append(hawser)
        for port, process in ((echo_port, echo), (https_port, hawser)):
            wait_for_port(port, process)
        urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz")

        url = f"https://localhost:{https_port}/"
        for count, name in enumerate(args.browsers.split(","), start=1):
            before = h2_upgrades(admin_port)
            command = (chromium_command(args.chromium, workdir, url) if name == "chromium"
                       else firefox_command(args.firefox, workdir, url, workdir / "ca.crt"))
            browser = subprocess.Popen(command, **({} if os.environ.get("HAWSER_E2E_VERBOSE") else quiet))
            verdict = page_server.wait_for_verdict(count, time.time() + DEADLINE_SECONDS) or "FAIL no verdict"
            upgraded = h2_upgrades(admin_port) - before
            stop(browser)
            passed = verdict.startswith("PASS page over h2") and upgraded >= 1
            results.append(passed)
            print(f"{'ok  ' if passed else 'FAIL'} {name}: {verdict}; WebSockets upgraded with protocol=\"h2\": {upgraded}")
    finally:
        for process in reversed(processes):
            stop(process)
        if page_server:
            page_server.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
