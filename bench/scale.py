#!/usr/bin/env python3
"""The control plane at cluster scale: hawser serving 10,000 Ingresses (20,000 routes) in 100
namespaces, with 10,000 Services and EndpointSlices and 1,000 TLS Secrets, from a manifests
directory (standalone) and from the stand-in API server (Kubernetes mode).

    python3 bench/scale.py                      # both modes, 10,000 Ingresses, 40 changes each
    python3 bench/scale.py --smoke              # 300 Ingresses, 5 changes: checks it all runs
    python3 bench/scale.py --ingresses 2000 --changes 20 --mode standalone --hawser BIN

Reported per mode: start → ready (/readyz answers 200; in Kubernetes mode that includes listing
everything from the stand-in API server, a single-threaded Python process, so hawser's own CPU
time to ready is reported beside it), RSS after the first table, change → live (p50, p99, max)
over one-Ingress changes, RSS after them, and how many tables a no-op change (a rewritten file
with the same objects; a Service label) built. `--smoke` checks that it all runs and that a no-op
change builds nothing; it asserts none of the timings.

A change adds the path /vN to one Ingress; it is live when a request for /vN through the proxy no
longer gets 404 (every endpoint is a closed loopback port, so a routed request gets 502). The
probe is a new connection every 2 ms. Only loopback is used; every wait is bounded.
"""

import argparse
import base64
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (free_port, status, write_atomically, Proxy's /proc readers)

APISERVER = run.ROOT / "tests/apiserver/apiserver.py"
CLOSED_PORT = 9  # discard: nothing listens on loopback, so routed requests get 502 at once
DOMAIN = "scale.test"


def namespace_of(app, namespaces):
    return f"ns-{app % namespaces}"


def host_of(app, namespaces):
    return f"app-{app}.{namespace_of(app, namespaces)}.{DOMAIN}"


def certificates(work, namespaces, per_namespace):
    """(namespace, name, cert PEM, key PEM) for every TLS Secret: one key, a distinct wildcard
    certificate per Secret for its namespace's hosts."""
    key = work / "key.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
                   check=True, capture_output=True)
    made = []
    for n in range(namespaces):
        for s in range(per_namespace):
            namespace, cert = f"ns-{n}", work / f"cert-{n}-{s}.pem"
            subprocess.run(["openssl", "req", "-x509", "-key", str(key), "-out", str(cert), "-days", "30",
                            "-subj", f"/CN={namespace}-{s}", "-addext",
                            f"subjectAltName=DNS:*.{namespace}.{DOMAIN}"], check=True, capture_output=True)
            made.append((namespace, f"tls-{s}", cert.read_bytes(), key.read_bytes()))
    return made


def ingress(app, namespaces, secrets_per_namespace, extra_paths=()):
    host = host_of(app, namespaces)
    backend = {"service": {"name": f"app-{app}", "port": {"name": "http"}}}
    paths = [{"path": p, "pathType": "Prefix", "backend": backend} for p in ("/api", "/ws", *extra_paths)]
    spec = {"ingressClassName": "hawser", "rules": [{"host": host, "http": {"paths": paths}}]}
    if secrets_per_namespace:
        spec["tls"] = [{"hosts": [host], "secretName": f"tls-{app % secrets_per_namespace}"}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": f"app-{app}", "namespace": namespace_of(app, namespaces),
                         "annotations": {"hawser.dev/idle-timeout": "1h"}},
            "spec": spec}


def service(app, namespaces, labels=None):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"app-{app}", "namespace": namespace_of(app, namespaces), "labels": labels or {}},
            "spec": {"ports": [{"name": "http", "port": 80}]}}


def endpoint_slice(app, namespaces):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"app-{app}-1", "namespace": namespace_of(app, namespaces),
                         "labels": {"kubernetes.io/service-name": f"app-{app}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": CLOSED_PORT}],
            "endpoints": [{"addresses": [f"127.0.0.{1 + app % 200}"], "conditions": {"ready": True}}]}


def secret(namespace, name, cert, key):
    data = {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace}, "data": data}


def app_objects(app, args, extra_paths=(), labels=None):
    n, s = args.namespaces, args.secrets // args.namespaces
    return [ingress(app, n, s, extra_paths), service(app, n, labels), endpoint_slice(app, n)]


def write_app(root, app, args, extra_paths=(), labels=None):
    """One file per application, as a GitOps repository would hold it (JSON is YAML)."""
    text = "\n---\n".join(json.dumps(o) for o in app_objects(app, args, extra_paths, labels))
    run.write_atomically(root / f"app-{app}.yaml", text + "\n")


def wait_until(check, timeout):
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit("timed out")
        time.sleep(0.002)
    return time.monotonic() - started


def metric(admin, name):
    connection = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def start(hawser, extra, env=None):
    port, admin = run.free_port(), run.free_port()
    command = [str(hawser), "run", *extra, "--http-addr", f"127.0.0.1:{port}", "--https-addr",
               f"127.0.0.1:{run.free_port()}", "--admin-addr", f"127.0.0.1:{admin}"]
    started = time.monotonic()
    process = subprocess.Popen(command, env={**os.environ, "RUST_LOG": "warn", **(env or {})},
                               stdout=subprocess.DEVNULL)
    proxy = run.Proxy("hawser", port, process)
    ready = wait_until(lambda: run.status(admin, "admin", "/readyz") == 200, 300)
    return proxy, admin, started + ready


def measure_changes(proxy, change, args):
    """Applies `args.changes` one-Ingress changes; seconds from each write to live."""
    timings = []
    for n in range(args.changes):
        app = (n * 7919) % args.ingresses
        host, path = change(app, n)
        timings.append(wait_until(lambda: run.status(proxy.port, host, path) != 404, 30))
        time.sleep(0.05)
    return timings


def measure_no_op(admin, no_op):
    """Tables built by a change that touches nothing routing-relevant."""
    before = metric(admin, "hawser_table_builds_total")
    no_op()
    time.sleep(1.5)
    after = metric(admin, "hawser_table_builds_total")
    return None if before is None or after is None else after - before


def summary(mode, ready, rss_first, rss_after, timings, no_op_builds):
    ms = sorted(t * 1000 for t in timings)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    ready_s, cpu_s = ready
    return {"mode": mode, "ready_s": ready_s, "cpu_s": cpu_s, "rss_first_mib": rss_first / 1024,
            "rss_after_mib": rss_after / 1024, "p50_ms": statistics.median(ms), "p99_ms": p99, "max_ms": ms[-1],
            "no_op_builds": no_op_builds}


def standalone(hawser, work, secrets, args):
    root = work / "manifests"
    root.mkdir()
    for app in range(args.ingresses):
        write_app(root, app, args)
    (root / "secrets.yaml").write_text("\n---\n".join(json.dumps(secret(*s)) for s in secrets) + "\n")
    began = time.monotonic()
    proxy, admin, ready_at = start(hawser, ["--manifests", str(root)])
    ready = (ready_at - began, proxy.cpu_seconds())
    time.sleep(1)
    rss_first = proxy.rss_kib()

    def change(app, n):
        write_app(root, app, args, extra_paths=(f"/v{n}",))
        return host_of(app, args.namespaces), f"/v{n}"

    try:
        timings = measure_changes(proxy, change, args)
        time.sleep(1)
        rss_after = proxy.rss_kib()
        no_op = measure_no_op(admin, lambda: write_app(root, args.ingresses - 1, args))
        return summary("standalone", ready, rss_first, rss_after, timings, no_op)
    finally:
        proxy.stop()


class Api:
    """A keep-alive JSON client of the stand-in API server."""

    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None):
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        self.connection.request(method, path, body=json.dumps(body) if body is not None else None,
                                headers={"Content-Type": content_type})
        answer = self.connection.getresponse()
        data = answer.read()
        if answer.status >= 300 and answer.status != 409:
            raise SystemExit(f"{method} {path}: {answer.status} {data[:200]!r}")
        return data


def collection(o):
    group = o["apiVersion"]
    plural = {"Ingress": "ingresses", "Service": "services", "EndpointSlice": "endpointslices",
              "Secret": "secrets", "Namespace": "namespaces"}[o["kind"]]
    base = "/api/v1" if group == "v1" else f"/apis/{group}"
    namespace = o["metadata"].get("namespace")
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def cluster(hawser, work, secrets, args):
    api_port = run.free_port()
    server = subprocess.Popen([sys.executable, str(APISERVER), "--port", str(api_port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        server.stdout.readline()
        api = Api(api_port)
        for n in range(args.namespaces):
            api.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": f"ns-{n}"}})
        for s in secrets:
            o = secret(*s)
            api.call("POST", collection(o), o)
        for app in range(args.ingresses):
            for o in app_objects(app, args):
                api.call("POST", collection(o), o)
        config = work / "kubeconfig"
        config.write_text(f"apiVersion: v1\nkind: Config\nclusters: [{{name: s, cluster: {{server: \"http://127.0.0.1:{api_port}\"}}}}]\n"
                          "users: [{name: s, user: {}}]\ncontexts: [{name: s, context: {cluster: s, user: s}}]\n"
                          "current-context: s\n")
        env = {"KUBECONFIG": str(config), "POD_NAME": "hawser-scale", "POD_NAMESPACE": "default"}
        began = time.monotonic()
        proxy, admin, ready_at = start(hawser, ["--publish-status-address", "192.0.2.1"], env)
        ready = (ready_at - began, proxy.cpu_seconds())
        time.sleep(1)
        rss_first = proxy.rss_kib()

        def change(app, n):
            o = ingress(app, args.namespaces, args.secrets // args.namespaces, (f"/v{n}",))
            api.call("PATCH", f"{collection(o)}/{o['metadata']['name']}", {"spec": o["spec"]})
            return host_of(app, args.namespaces), f"/v{n}"

        try:
            timings = measure_changes(proxy, change, args)
            time.sleep(1)
            rss_after = proxy.rss_kib()
            o = service(args.ingresses - 1, args.namespaces)
            no_op = measure_no_op(admin, lambda: api.call("PATCH", f"{collection(o)}/{o['metadata']['name']}",
                                                          {"metadata": {"labels": {"touched": "yes"}}}))
            return summary("cluster", ready, rss_first, rss_after, timings, no_op)
        finally:
            proxy.stop()
    finally:
        server.terminate()
        server.wait(timeout=10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingresses", type=int, default=10000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--mode", choices=["both", "standalone", "cluster"], default="both")
    parser.add_argument("--hawser", help="the binary to measure (default: a release build of this tree)")
    parser.add_argument("--smoke", action="store_true", help="a small set, to check that it all runs")
    parser.add_argument("--debug", action="store_true", help="an unoptimised build (with --smoke: CI)")
    args = parser.parse_args()
    if args.smoke:
        args.ingresses, args.namespaces, args.secrets, args.changes = 300, 10, 20, 5
    hawser = Path(args.hawser) if args.hawser else run.build_hawser(args.debug)
    with tempfile.TemporaryDirectory(prefix="hawser-scale-") as work:
        work = Path(work)
        secrets = certificates(work, args.namespaces, args.secrets // args.namespaces)
        results = []
        if args.mode in ("both", "standalone"):
            results.append(standalone(hawser, work, secrets, args))
        if args.mode in ("both", "cluster"):
            results.append(cluster(hawser, work, secrets, args))
    print(f"{args.ingresses} Ingresses ({2 * args.ingresses} routes), {args.namespaces} namespaces, "
          f"{args.secrets} TLS Secrets, {args.changes} changes; {time.strftime('%Y-%m-%d')}")
    print("| mode | start → ready | hawser CPU to ready | RSS first table | RSS after changes | change → live p50 | p99 | max | tables built by a no-op change |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        builds = "?" if r["no_op_builds"] is None else f"{r['no_op_builds']:.0f}"
        print(f"| {r['mode']} | {r['ready_s']:.2f} s | {r['cpu_s']:.2f} s | {r['rss_first_mib']:.0f} MiB | "
              f"{r['rss_after_mib']:.0f} MiB | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | {r['max_ms']:.0f} ms | {builds} |")
    if args.smoke:
        rebuilt = [r["mode"] for r in results if r["no_op_builds"] != 0]
        if rebuilt:
            raise SystemExit(f"a no-op change built a table (or no hawser_table_builds_total) in {rebuilt}")


if __name__ == "__main__":
    main()
