#!/usr/bin/env python3
"""Benchmarks hawser side by side with nginx and HAProxy (and the backend directly).

    python3 bench/run.py                 # full run (~10 min), table on stdout and in bench/results.md
    python3 bench/run.py --smoke         # about a minute: every scenario once, asserts numbers exist
    python3 bench/run.py --only wss,HTTP # the scenarios whose names contain one of these
    python3 bench/run.py --baseline OLD  # also measure the hawser binary OLD (before a change)

Every proxy gets the same single core (taskset -c 0: nginx `worker_processes 1`, HAProxy
`nbthread 1`, hawser's runtime sizes itself to its one allowed core), shared with the echo
backend (wsload's own, as lean as the load generator); the load generator has the other core to
itself. So `direct` (client → echo) is far faster than any proxy, and a proxy's cost shows in its
rate; CPU per operation is the proxy's process alone. Targets are measured interleaved (A B C D, A B C D, ...) over
several rounds and the median is reported, with ratios against the best of nginx and HAProxy from
the same run; next to each ratio, in brackets, the lowest and highest of the per-round ratios
(the run's spread). A scenario whose CPU ratio spreads by more than 0.10 gets up to
--extra-rounds more rounds. CPU time per operation comes from /proc/PID/stat of the proxy's processes over the
measurement window. Memory and reconfiguration are measured once, each on freshly started
proxies. Only loopback is used; every load loop is bounded in time.

hawser is measured twice: `hawser` as configured for the comparison (access log off, as nginx's
and HAProxy's are), and `defaults` as users run it (RUST_LOG unset: the access log on). With
--baseline, the older binary is measured both ways too (`before`, `before-defaults`).
"""

import argparse
import base64
import http.client
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROXY_CORE, CLIENT_CORE = "0", "1"
HOST = "bench.test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def ensure_tools():
    missing = [tool for tool in ("nginx", "haproxy", "wrk", "taskset", "openssl") if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx", "haproxy", "wrk", "util-linux", "openssl"],
                       check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)


def raise_file_limit():
    """Lifts the soft descriptor limit to the hard one (children inherit it); returns it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def certificate(work):
    """One ECDSA P-256 certificate for bench.test, as PEM files for all three proxies."""
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={HOST}",
                    "-addext", f"subjectAltName=DNS:{HOST}"], check=True, capture_output=True)
    return cert, key


def build_hawser(debug=False):
    """hawser as users build it (the load generator is built apart: built together, its
    dependencies would change the features hawser is built with). `debug` builds without
    optimisation, for smoke runs, whose numbers only need to exist."""
    subprocess.run(["cargo", "build", *profile(debug), "--locked", "--bin", "hawser"], cwd=ROOT, check=True)
    return ROOT / "target" / ("debug" if debug else "release") / "hawser"


def build(debug=False):
    """hawser, and the load generator and echo backend (`examples/wsload`)."""
    hawser = build_hawser(debug)
    subprocess.run(["cargo", "build", *profile(debug), "--locked", "--package", "wsload"], cwd=ROOT, check=True)
    return hawser, hawser.with_name("wsload")


def profile(debug):
    return [] if debug else ["--release"]


class Proxy:
    """A target: a process group on the proxy core, with a port and a way to read its cost."""

    def __init__(self, name, port, process, tls_port=None, reconfigure=None):
        self.name, self.port, self.process, self.tls_port = name, port, process, tls_port
        # reconfigure(n) applies configuration change n; probe(n) is then true once it is live.
        self.reconfigure = reconfigure

    def pids(self):
        pids = [self.process.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid:
                    pids.append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                pass
        return pids

    def cpu_seconds(self):
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError):
                pass
        return total / CLOCK_TICKS

    def rss_kib(self):
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def pinned(core, command, **kwargs):
    return subprocess.Popen(["taskset", "-c", core, *command], **kwargs)


def start_direct(echo_port):
    return Proxy("direct", echo_port, None)


def hawser_manifests(echo_port, generation):
    """The bench Ingress; change n rewrites its idle timeout (the route every tunnel is on) and
    adds the host gen-n.bench."""
    return f"""apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-1, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{name: http, port: {echo_port}}}]
endpoints: [{{addresses: ["127.0.0.1"]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  annotations: {{hawser.dev/idle-timeout: {3600 + generation}s, hawser.dev/ssl-redirect: "false"}}
spec:
  ingressClassName: hawser
  tls: [{{hosts: [{HOST}], secretName: bench-tls}}]
  rules:
  - host: {HOST}
    http: &paths
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: echo, port: {{name: http}}}}}}}}
  - host: gen-{generation}.bench
    http: *paths
"""


def hawser_secret(cert, key):
    encode = lambda path: base64.b64encode(path.read_bytes()).decode()
    return f"""apiVersion: v1
kind: Secret
metadata: {{name: bench-tls}}
type: kubernetes.io/tls
data: {{tls.crt: {encode(cert)}, tls.key: {encode(key)}}}
"""


def write_atomically(path, text):
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def hawser_env(defaults):
    """The environment of a hawser under test: RUST_LOG as users leave it (unset: the access log
    on), or `warn` (the access log off)."""
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    return env if defaults else {**env, "RUST_LOG": "warn"}


def start_hawser(hawser, echo_port, work, cert, key, name="hawser", defaults=False):
    """hawser as configured for the comparison (its access log off, as nginx's and HAProxy's), or
    with `defaults` as users run it: the access log on (written to /dev/null, so no reader
    process competes for the proxy's core)."""
    manifests = work / "hawser"
    manifests.mkdir()
    (manifests / "tls.yaml").write_text(hawser_secret(cert, key))
    write_atomically(manifests / "bench.yaml", hawser_manifests(echo_port, 0))
    port, tls_port = free_port(), free_port()
    process = pinned(PROXY_CORE, [str(hawser), "run", "--manifests", str(manifests), "--http-addr", f"127.0.0.1:{port}",
                                  "--https-addr", f"127.0.0.1:{tls_port}", "--admin-addr", f"127.0.0.1:{free_port()}"],
                     env=hawser_env(defaults), stdout=subprocess.DEVNULL)
    wait_port(port)
    time.sleep(0.3)

    def reconfigure(n):
        write_atomically(manifests / "bench.yaml", hawser_manifests(echo_port, n))
        return lambda: status(port, f"gen-{n}.bench", "/") == 200

    return Proxy(name, port, process, tls_port, reconfigure)


def status(port, host, path):
    """The status of one GET on a new connection (0 when it fails)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path, headers={"Host": host})
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def nginx_conf(work, port, tls_port, echo_port, cert, key, generation):
    """worker_processes 1; change n adds `location = /gen/n` (a reload, as ingress-nginx does)."""
    probes = "".join(f"    location = /gen/{n} {{ return 204; }}\n" for n in range(1, generation + 1))
    return f"""worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  upstream echo {{ server 127.0.0.1:{echo_port}; keepalive 320; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    listen 127.0.0.1:{tls_port} ssl backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
{probes}    location / {{
      proxy_pass http://echo;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
    }}
  }}
}}
"""


def start_nginx(echo_port, work, cert, key):
    port, tls_port = free_port(), free_port()
    conf = work / "nginx.conf"
    conf.write_text(nginx_conf(work, port, tls_port, echo_port, cert, key, 0))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = pinned(PROXY_CORE, [nginx, "-c", str(conf), "-e", str(work / "nginx-error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)

    def reconfigure(n):
        conf.write_text(nginx_conf(work, port, tls_port, echo_port, cert, key, n))
        subprocess.run([nginx, "-c", str(conf), "-e", str(work / "nginx-error.log"), "-s", "reload"], check=True, capture_output=True)
        return lambda: status(port, HOST, f"/gen/{n}") == 204

    return Proxy("nginx", port, process, tls_port, reconfigure)


def start_haproxy(echo_port, work, cert, key, max_tunnels):
    port, tls_port = free_port(), free_port()
    combined = work / "combined.pem"
    combined.write_text(cert.read_text() + key.read_text())
    conf = work / "haproxy.cfg"
    conf.write_text(f"""global
  nbthread 1
  # Two descriptors per proxied connection, within the descriptor limit.
  maxconn {max_tunnels + 50}
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend bench
  bind 127.0.0.1:{port}
  bind 127.0.0.1:{tls_port} ssl crt {combined}
  default_backend echo
backend echo
  server echo 127.0.0.1:{echo_port}
""")
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    process = pinned(PROXY_CORE, [haproxy, "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return Proxy("haproxy", port, process, tls_port)


def wsload(tool, target, mode, seconds, tls=False, **options):
    port = target.tls_port if tls else target.port
    command = [str(tool), mode, "--addr", f"127.0.0.1:{port}", "--seconds", str(seconds)] + (["--tls"] if tls else [])
    for key, value in options.items():
        command += [f"--{key}", str(value)]
    out = subprocess.run(["taskset", "-c", CLIENT_CORE, *command], capture_output=True, text=True, timeout=seconds + 120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measured(target, run):
    """Runs `run()` and returns (its result, the proxy's CPU seconds meanwhile)."""
    before = target.cpu_seconds() if target.process else 0
    result = run()
    after = target.cpu_seconds() if target.process else 0
    return result, after - before


def scenario_exchange(tool, target, seconds, connections, size, pipeline, tls=False):
    result, cpu = measured(target, lambda: wsload(tool, target, "latency" if pipeline == 1 else "throughput", seconds, tls,
                                                   connections=connections, size=size, pipeline=pipeline))
    messages = max(result["messages"], 1)
    return {"msg/s": result["messages_per_second"], "p50 µs": result["p50_us"], "p99 µs": result["p99_us"],
            "p99.9 µs": result["p999_us"], "CPU µs/msg": cpu * 1e6 / messages}


def scenario_handshakes(tool, target, seconds, connections, tls=False):
    result, cpu = measured(target, lambda: wsload(tool, target, "handshakes", seconds, tls, connections=connections))
    n = max(result["handshakes"], 1)
    return {"handshakes/s": result["handshakes_per_second"], "CPU µs/handshake": cpu * 1e6 / n, "failed": result["failed"]}


def hold(tool, target, connections, hold_seconds, while_held=None, tls=False):
    """Holds `connections` idle WebSockets through `target`, runs `while_held()` meanwhile, then
    checks every one still echoes. Memory per tunnel from the proxy's RSS before and after."""
    before = target.rss_kib()
    command = ["taskset", "-c", CLIENT_CORE, str(tool), "hold", "--addr", f"127.0.0.1:{target.tls_port if tls else target.port}",
               "--connections", str(connections), "--seconds", str(hold_seconds)] + (["--tls"] if tls else [])
    holder = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = holder.stdout.readline()
    if line.strip() != "ready":
        raise SystemExit(f"hold failed against {target.name}: {line!r}")
    time.sleep(0.5)
    during = target.rss_kib()
    extra = while_held() if while_held else {}
    after = target.rss_kib()
    holder.stdin.close()
    result = json.loads(holder.stdout.read().strip().splitlines()[-1])
    holder.wait(timeout=60)
    return {"KiB/idle conn": (during - before) / connections, "tunnels dropped": connections - result["alive"],
            "RSS growth MiB": (after - during) / 1024, **extra}


def scenario_idle(tool, target, connections, hold_seconds, tls=False):
    if target.process is None:
        return None
    return {"KiB/idle conn": hold(tool, target, connections, hold_seconds, tls=tls)["KiB/idle conn"]}


def scenario_idle_http(target, connections):
    """Memory per idle kept-alive HTTP/1.1 client connection: each sends one GET, reads its
    answer and stays open; RSS growth ÷ connections (as many a busy site holds between clicks)."""
    if target.process is None:
        return None
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    before = target.rss_kib()
    held = []
    try:
        for _ in range(connections):
            client = socket.create_connection(("127.0.0.1", target.port), timeout=10)
            held.append(client)
            client.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer:
                more = client.recv(4096)
                if not more:
                    raise SystemExit(f"{target.name} closed a kept-alive connection")
                answer += more
        time.sleep(0.5)
        return {"KiB/idle conn": (target.rss_kib() - before) / connections}
    finally:
        for client in held:
            client.close()


def scenario_reconfigure(tool, target, connections, changes):
    """`changes` configuration changes while `connections` tunnels are open: how long each took
    to go live (file written or reload sent → a probe sees it), and how many tunnels died."""
    if target.reconfigure is None:
        return None

    def change_repeatedly():
        took = []
        for n in range(1, changes + 1):
            started = time.perf_counter()
            live = target.reconfigure(n)
            while not live():
                if time.perf_counter() - started > 30:
                    raise SystemExit(f"change {n} never went live on {target.name}")
            took.append((time.perf_counter() - started) * 1000)
        took.sort()
        return {"change→live p50 ms": statistics.median(took), "change→live p99 ms": took[min(len(took) - 1, int(len(took) * 0.99))]}

    result = hold(tool, target, connections, 600, change_repeatedly)
    return {key: result[key] for key in ("tunnels dropped", "change→live p50 ms", "change→live p99 ms", "RSS growth MiB")}


def scenario_http(target, seconds):
    wrk = shutil.which("wrk") or "/usr/bin/wrk"
    def run():
        out = subprocess.run(["taskset", "-c", CLIENT_CORE, wrk, "-t1", "-c100", f"-d{seconds}s", "-H", "Host: bench.test",
                              f"http://127.0.0.1:{target.port}/"], capture_output=True, text=True, timeout=seconds + 60, check=True)
        return out.stdout
    text, cpu = measured(target, run)
    rate = float(next(l.split()[1] for l in text.splitlines() if l.startswith("Requests/sec:")))
    total = rate * seconds
    return {"req/s": rate, "CPU µs/req": cpu * 1e6 / max(total, 1)}


def scenarios(args):
    s = args.seconds
    c = 1000 if not args.smoke else 20
    return [
        ("latency 1 conn 64 B", lambda tool, t: scenario_exchange(tool, t, s, 1, 64, 1)),
        ("latency 100 conns 64 B", lambda tool, t: scenario_exchange(tool, t, s, 100 if not args.smoke else 5, 64, 1)),
        (f"latency {c} conns 64 B", lambda tool, t: scenario_exchange(tool, t, s, c, 64, 1)),
        ("throughput 100 conns 64 B ×8", lambda tool, t: scenario_exchange(tool, t, s, 100 if not args.smoke else 5, 64, 8)),
        ("throughput 100 conns 64 KiB ×2", lambda tool, t: scenario_exchange(tool, t, s, 100 if not args.smoke else 5, 65536, 2)),
        ("handshakes 50 concurrent", lambda tool, t: scenario_handshakes(tool, t, s, 50 if not args.smoke else 2)),
        ("HTTP GET (wrk, 100 conns)", lambda tool, t: scenario_http(t, max(1, int(s)))),
        ("wss latency 1 conn 64 B", lambda tool, t: tls_only(t, lambda: scenario_exchange(tool, t, s, 1, 64, 1, tls=True))),
        ("wss latency 100 conns 64 B", lambda tool, t: tls_only(t, lambda: scenario_exchange(tool, t, s, 100 if not args.smoke else 5, 64, 1, tls=True))),
        (f"wss latency {c} conns 64 B", lambda tool, t: tls_only(t, lambda: scenario_exchange(tool, t, s, c, 64, 1, tls=True))),
        ("wss handshakes 50 concurrent", lambda tool, t: tls_only(t, lambda: scenario_handshakes(tool, t, s, 50 if not args.smoke else 2, tls=True))),
    ]


def tls_only(target, run):
    """wss scenarios need a TLS listener; the echo backend (direct) has none."""
    return run() if target.tls_port else None


def large_scenarios(args):
    """Run once, after the rounds: the most tunnels the descriptor limit allows, and reconfiguring under them."""
    n, changes = args.tunnels, args.changes
    return [
        (f"idle WebSockets ×{args.idle}", lambda tool, t: scenario_idle(tool, t, args.idle, 300)),
        (f"idle WebSockets ×{n}", lambda tool, t: scenario_idle(tool, t, n, 300)),
        (f"idle wss WebSockets ×{args.idle}", lambda tool, t: scenario_idle(tool, t, args.idle, 300, tls=True)),
        (f"idle HTTP keep-alive ×{args.idle}", lambda tool, t: scenario_idle_http(t, args.idle)),
        (f"{changes} changes under {n} tunnels", lambda tool, t: scenario_reconfigure(tool, t, n, changes)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--extra-rounds", type=int, default=2,
                        help=f"more rounds, at most, for scenarios whose CPU ratio spreads by more than {WIDE_SPREAD}")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--idle", type=int, default=2000, help="idle WebSockets to hold (≤ ~9,900 with a 20,000 fd limit)")
    parser.add_argument("--smoke", action="store_true", help="one short round: checks every scenario yields numbers")
    parser.add_argument("--debug", action="store_true", help="unoptimised builds (with --smoke: CI, where only the numbers' existence counts)")
    parser.add_argument("--tunnels", type=int, help="tunnels for the large scenarios (default: as many as the descriptor limit allows, ≤ 9,900)")
    parser.add_argument("--changes", type=int, default=100, help="configuration changes under load")
    parser.add_argument("--only", help="comma-separated texts: run only the scenarios whose names contain one")
    parser.add_argument("--output", default=str(ROOT / "bench/results.md"))
    parser.add_argument("--baseline", help="another hawser binary (e.g. built before a change), measured as `before` in the same rounds")
    args = parser.parse_args()
    limit = raise_file_limit()
    if args.tunnels is None:
        # A proxied tunnel takes two descriptors in the proxy; keep some for listeners and files.
        args.tunnels = min(9900, (limit - 150) // 2)
    if args.smoke:
        args.rounds, args.seconds, args.idle, args.tunnels, args.changes = 1, 0.5, 50, 60, 3
        args.extra_rounds = 0
    ensure_tools()
    hawser, tool = build(args.debug)
    work = Path(tempfile.mkdtemp(prefix="hawser-bench-"))
    cert, key = certificate(work)
    echo_port = free_port()
    # The backend is wsload's own echo: a WebSocket and HTTP echo as lean as the load generator,
    # so that neither limits what a proxy in front of them can show.
    # On the proxies' core: the load generator has the other core to itself, so `direct` (client →
    # echo) runs far faster than any proxy can, and a proxy's cost shows in its rate.
    echo = pinned(PROXY_CORE, [str(tool), "echo", "--addr", f"127.0.0.1:{echo_port}"], stdout=subprocess.DEVNULL)
    wait_port(echo_port)
    def hawser_starter(binary, name, defaults=False):
        return lambda: start_hawser(binary, echo_port, Path(tempfile.mkdtemp(dir=work)), cert, key, name, defaults)

    starters = [
        lambda: start_direct(echo_port),
        hawser_starter(hawser, "hawser"),
        lambda: start_nginx(echo_port, Path(tempfile.mkdtemp(dir=work)), cert, key),
        lambda: start_haproxy(echo_port, Path(tempfile.mkdtemp(dir=work)), cert, key, args.tunnels),
        hawser_starter(hawser, "defaults", defaults=True),
    ]
    if args.baseline:
        baseline = Path(args.baseline).resolve()
        starters.append(hawser_starter(baseline, "before"))
        starters.append(hawser_starter(baseline, "before-defaults", defaults=True))
    targets = []
    try:
        targets = [start() for start in starters]
        results = {}
        selected = lambda name: not args.only or any(part in name for part in args.only.split(","))

        def play(label, scenario_list):
            for name, run in scenario_list:
                if not selected(name):
                    continue
                for index, target in enumerate(targets):
                    if label == "once" and target.process:
                        # Memory is measured from a fresh process: allocators keep what earlier
                        # scenarios freed, and growth on top of that would read as zero.
                        target.stop()
                        target = targets[index] = starters[index]()
                    outcome = run(tool, target)
                    if outcome is None:
                        continue
                    results.setdefault(name, {}).setdefault(target.name, []).append(outcome)
                    print(f"round {label} {name:32} {target.name:8} {json.dumps(outcome)}", file=sys.stderr, flush=True)

        for round_number in range(args.rounds):
            play(round_number + 1, scenarios(args))
        for extra in range(args.extra_rounds):
            # Where rounds disagree, more of them: the median then rests on more than noise.
            wide = [(name, run) for name, run in scenarios(args) if name in results and cpu_spread(results[name]) > WIDE_SPREAD]
            if not wide:
                break
            play(f"extra {extra + 1}", wide)
        play("once", large_scenarios(args))
        table = report(results, targets, args)
    finally:
        for target in targets:
            if target.process:
                target.stop()
        echo.terminate()
        shutil.rmtree(work, ignore_errors=True)
    print(table)
    if not args.smoke:
        Path(args.output).write_text(table)
    missing = [f"{s}/{t}" for s, by in results.items() for t, runs in by.items() for r in runs for k, v in r.items() if v != v and k != "KiB/idle conn"]
    checks = len(results)
    print(f"bench: {checks} passed, {1 if missing else 0} failed" if not missing else f"missing numbers: {missing}")
    return 1 if missing else 0


# A CPU ratio whose rounds differ by more than this gets more rounds.
WIDE_SPREAD = 0.10


def round_ratios(by_target, key, name="hawser"):
    """`name` ÷ the better of nginx and HAProxy, round by round (rounds pair up by position)."""
    better = max if key in HIGHER_IS_BETTER else min
    ratios = []
    for i, run in enumerate(by_target.get(name, [])):
        anchor_runs = [by_target.get(n, []) for n in ("nginx", "haproxy")]
        anchors = [runs[i][key] for runs in anchor_runs if i < len(runs) and runs[i].get(key) == runs[i].get(key)]
        value = run.get(key, float("nan"))
        best = better(anchors) if anchors else 0
        if best and value == value:
            ratios.append(value / best)
    return ratios


def cpu_spread(by_target):
    """How far apart the rounds put hawser's CPU ratio (0 with fewer than two rounds)."""
    keys = [key for key in next(iter(by_target.values()))[0] if key.startswith("CPU")]
    ratios = [round_ratios(by_target, key) for key in keys]
    return max((max(r) - min(r) for r in ratios if len(r) > 1), default=0.0)


def with_spread(ratio, ratios):
    """A ratio and, when rounds disagree at all, their lowest and highest: "1.05 (0.98–1.12)"."""
    text = fmt(ratio, 2)
    if len(ratios) > 1:
        text += f" ({fmt(min(ratios), 2)}–{fmt(max(ratios), 2)})"
    return text


def median(runs, key):
    values = [r[key] for r in runs if key in r and r[key] == r[key]]
    return statistics.median(values) if values else float("nan")


# Which direction is better for each figure.
HIGHER_IS_BETTER = {"msg/s", "handshakes/s", "req/s"}


def report(results, targets, args):
    names = [t.name for t in targets]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} with `python3 bench/run.py --rounds {args.rounds} --seconds {args.seconds}`: "
        f"{os.cpu_count()} cores, proxies and the echo backend on core {PROXY_CORE}, the load generator on core {CLIENT_CORE}. "
        f"{version('nginx')}; {version('haproxy')}. Medians of {args.rounds} interleaved rounds (up to "
        f"{args.rounds + args.extra_rounds} where the CPU ratio spread by more than {WIDE_SPREAD}); "
        "the ratio columns are hawser ÷ the better of nginx and HAProxy (higher is better for rates, lower for the rest), "
        "with the lowest and highest of the per-round ratios in brackets.",
        "",
        "| scenario | figure | " + " | ".join(names) + " | hawser ÷ best anchor | defaults ÷ best anchor |" + (" hawser ÷ before | defaults ÷ before-defaults |" if "before" in names else ""),
        "|---|---|" + "---|" * len(names) + "---|---|" + ("---|---|" if "before" in names else ""),
    ]
    headroom = []
    for scenario, by_target in results.items():
        keys = [k for k in next(iter(by_target.values()))[0] if k not in ("failed", "alive")]
        for key in keys:
            values = {name: median(by_target.get(name, []), key) for name in names}
            anchors = [values[n] for n in ("nginx", "haproxy") if values.get(n) == values.get(n)]
            best = (max if key in HIGHER_IS_BETTER else min)(anchors) if anchors else float("nan")
            ratio = values["hawser"] / best if best and best == best else float("nan")
            cells = " | ".join(fmt(values[n]) for n in names)
            flag = ""
            if key in HIGHER_IS_BETTER and values.get("direct", 0) == values.get("direct", 0) and values.get("direct", 0) < max(values[n] for n in names if n != "direct"):
                flag = " (client-bound: direct is not the fastest)"
            with_defaults = values["defaults"] / best if best and best == best else float("nan")
            spread, spread_defaults = round_ratios(by_target, key), round_ratios(by_target, key, "defaults")
            line = f"| {scenario} | {key} | {cells} | {with_spread(ratio, spread)}{flag} | {with_spread(with_defaults, spread_defaults)} |"
            if "before" in names:
                for now, then in (("hawser", "before"), ("defaults", "before-defaults")):
                    line += f" {fmt(values[now] / values[then] if values[then] else float('nan'), 3)} |"
            lines.append(line)
            if key in HIGHER_IS_BETTER and values.get("direct", 0) == values.get("direct", 0):
                proxies = [values[n] for n in names if n != "direct" and values[n] == values[n]]
                if proxies and values["direct"] and max(proxies):
                    headroom.append(f"{scenario} {values['direct'] / max(proxies):.1f}×")
    if headroom:
        lines += ["", "`direct` ÷ the fastest proxy (the load generator's headroom; below about 2.5× a rate "
                      "says more about the client than the proxy): " + "; ".join(headroom) + "."]
    return "\n".join(lines) + "\n"


def fmt(value, digits=None):
    if value != value:
        return "–"
    if digits is not None:
        return f"{value:.{digits}f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def version(tool):
    binary = shutil.which(tool) or f"/usr/sbin/{tool}"
    out = subprocess.run([binary, "-v"], capture_output=True, text=True)
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else tool


if __name__ == "__main__":
    sys.exit(main())
