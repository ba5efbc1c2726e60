#!/usr/bin/env python3
"""The Grafana dashboard and the alert rules against the metrics a real hawser exposes.

    HAWSER_BIN=target/debug/hawser python3 e2e/observability_test.py

What it checks:
  1. Every metric name in the dashboard's queries (charts/hawser/dashboards/hawser.json: panel
     targets and template variables) and in the PrometheusRule's expressions (rendered from the
     chart with prometheusRule.enabled=true) is a metric hawser exposes. Exposed families are
     read from the `# TYPE` lines of /metrics of two real `hawser` processes on 127.0.0.1
     ephemeral ports: one in standalone mode on a manifests directory with a TLS Secret, a
     broken Ingress and an echo backend, after an HTTP request and a WebSocket tunnel through
     it; one in Kubernetes mode against an API server address where nothing listens (for the
     watch-error counter). prometheus-client prints a family only once it has a series, hence
     the traffic. Counters are exposed as `NAME_total`; `_bucket`/`_sum`/`_count` are stripped
     from histogram names.
  2. The dashboard has a `datasource` template variable every query uses, and a panel on each
     metric the README lists; the README's metrics table names exactly the exposed families.
  3. The rules' shape, as promtool would need it: groups[].rules[] each with alert, expr, for,
     labels.severity and annotations.summary; and one alert on each of config errors, watch
     errors, certificate expiry, the 5xx ratio and abnormal tunnel closes.
  4. The new gauges carry what they claim: hawser_config_errors counts the broken Ingress, and
     hawser_certificate_expiry_timestamp_seconds{namespace,secret,host} has the served
     certificate's notAfter.

Helm and the Python packages come from e2e/chart_test.py's pinned sources (PyPI); openssl makes
the test certificate. Prints one line per check, then `N passed, M failed`; exits 1 on failure.
"""

import calendar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chart_test  # noqa: E402  (helm, pinned pip packages, the check runner)
from manifests import ECHO_SERVICE, LOCALHOST_TLS  # noqa: E402

ROOT = chart_test.ROOT
DASHBOARD = chart_test.DASHBOARD
README = ROOT / "README.md"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
DEADLINE_SECONDS = 15

# What each alert must watch: (what, the metric its expression must use, a label matcher it must have).
REQUIRED_ALERTS = [
    ("config errors present", "hawser_config_errors", None),
    ("watch errors rising", "hawser_kube_watch_errors_total", None),
    ("certificate expiring", "hawser_certificate_expiry_timestamp_seconds", None),
    ("5xx ratio by route", "hawser_requests_total", 'status=~"5.."'),
    ("tunnels closed abnormally", "hawser_tunnels_closed_total", "client_error|backend_error"),
]

MANIFESTS = ECHO_SERVICE + LOCALHOST_TLS + """apiVersion: hawser.dev/v1alpha1
kind: WebSocketRoute
metadata: {name: chat}
spec:
  rules:
  - matches: [{path: {value: /ws}}]
    backends: [{name: echo, port: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: hawser
  tls: [{hosts: [localhost], secretName: localhost-tls}]
  rules:
  - host: localhost
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: echo, port: {name: http}}}}]
---
# An error finding: the Service does not exist.
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: broken}
spec:
  ingressClassName: hawser
  rules:
  - host: broken.example
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: missing, port: {number: 80}}}}]
"""

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: "http://127.0.0.1:PORT"}}]
users: [{name: nobody, user: {}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]
current-context: nowhere
"""


# ---------------------------------------------------------------------------------------------
# PromQL names


def metric_names(expr: str) -> set[str]:
    """The `hawser_` metric names an expression uses (string literals left out)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    return set(re.findall(r"(?<![A-Za-z0-9_:])hawser_[A-Za-z0-9_:]*", without_strings))


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable, rows' nested panels included."""
    found = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append((f"panel {panel.get('title')!r}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            if query:
                found.append((f"variable {variable.get('name')}", query))
    return found


def rule_queries(rule_docs: list[dict]) -> list[tuple[str, str]]:
    return [(f"alert {rule.get('alert') or rule.get('record')}", rule.get("expr", ""))
            for doc in rule_docs for group in doc["spec"]["groups"] for rule in group.get("rules", [])]


# ---------------------------------------------------------------------------------------------
# Exposition


def families(text: str) -> dict[str, str]:
    """{family: type} from the `# TYPE` lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def samples(text: str) -> list[tuple[str, dict, float]]:
    found = []
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if match and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            found.append((match.group(1), labels, float(match.group(3))))
    return found


def exposed_as(name: str, kinds: dict[str, str]) -> bool:
    """Whether PromQL's `name` is a series of an exposed family."""
    if kinds.get(name) in ("gauge", "unknown", "untyped"):
        return True
    if name.endswith("_total") and kinds.get(name.removesuffix("_total")) == "counter":
        return True
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and kinds.get(name.removesuffix(suffix)) in ("histogram", "summary"):
            return True
    return kinds.get(name) in ("histogram", "summary")


def display_name(family: str, kind: str) -> str:
    """How the README (and PromQL) names a family: counters with `_total`."""
    return f"{family}_total" if kind == "counter" else family


def check_names(queries: list[tuple[str, str]], kinds: dict[str, str]) -> list[str]:
    problems = []
    if not queries:
        return ["no queries found"]
    for where, expr in queries:
        for name in sorted(metric_names(expr)):
            if not exposed_as(name, kinds):
                problems.append(f"{where}: {name} is not exposed by hawser")
    return problems


# ---------------------------------------------------------------------------------------------
# Running hawser


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nothing listens on now (all held open while choosing, so
    the kernel cannot hand out one twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class PortTaken(RuntimeError):
    """A process could not bind a chosen port: something else took it after it was chosen."""


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = Path(process.stderr_path).read_text(errors="replace")
            error = PortTaken if "Address already in use" in log else RuntimeError
            tail = "\n".join(log.split("Stack backtrace:")[0].strip().splitlines()[-5:])
            raise error(f"{' '.join(process.args[:2])} exited with {process.returncode}:\n{tail}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def get(url: str, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metrics_until(admin: int, ready, what: str) -> str:
    """/metrics once `ready(text)` holds."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        text = get(f"http://127.0.0.1:{admin}/metrics")[1]
        if ready(text):
            return text
        if time.monotonic() > deadline:
            raise RuntimeError(f"/metrics never showed {what}:\n{text}")
        time.sleep(0.1)


def websocket_round_trip(port: int) -> None:
    """An RFC 6455 handshake, one masked text frame echoed back, then the client closes."""
    with websocket_open(port) as conn:
        payload, mask = b"hello", b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        conn.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        echoed = b""
        while len(echoed) < 2 + len(payload):
            chunk = conn.recv(4096)
            if not chunk:
                break
            echoed += chunk
        if echoed[2:2 + len(payload)] != payload:
            raise RuntimeError(f"the echo answered {echoed!r}")


def websocket_open(port: int) -> socket.socket:
    """A WebSocket through hawser, handshake done."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            raise RuntimeError(f"the upgrade got no 101: {head!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"the upgrade got {head.splitlines()[0]!r}")
    return conn


def close_code(conn: socket.socket) -> int:
    """The code of the close frame hawser sends next (server frames are unmasked)."""
    frame = b""
    while len(frame) < 4:
        chunk = conn.recv(4096)
        if not chunk:
            raise RuntimeError(f"no close frame, got {frame!r}")
        frame += chunk
    if frame[0] != 0x88:
        raise RuntimeError(f"not a close frame: {frame!r}")
    return int.from_bytes(frame[2:4], "big")


def websocket_protocol_error(port: int) -> None:
    """An unmasked client frame breaks RFC 6455 §5.1: hawser answers 1002."""
    with websocket_open(port) as conn:
        conn.sendall(bytes([0x81, 0x02]) + b"hi")
        if (code := close_code(conn)) != 1002:
            raise RuntimeError(f"an unmasked frame got close code {code}, not 1002")


def websocket_drained(port: int, admin: int) -> None:
    """POST /drain on the route: the tunnel gets 1012."""
    with websocket_open(port) as conn:
        request = urllib.request.Request(
            f"http://127.0.0.1:{admin}/drain?route=wsroute/default/chat/0/0&window=0s", method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            if json.loads(answer.read()).get("draining") != 1:
                raise RuntimeError("the admin drain found no tunnel")
        if (code := close_code(conn)) != 1012:
            raise RuntimeError(f"the drained tunnel got close code {code}, not 1012")


def certificate(workdir: Path) -> tuple[str, str, float]:
    """A self-signed certificate for localhost, valid two days: (PEM, key PEM, notAfter)."""
    key, crt = workdir / "tls.key", workdir / "tls.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True)
    end = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(crt)],
                         check=True, capture_output=True, text=True).stdout.strip()
    not_after = calendar.timegm(time.strptime(end.removeprefix("notAfter="), "%b %d %H:%M:%S %Y GMT"))
    return crt.read_text(), key.read_text(), float(not_after)


class Processes:
    """Processes started here, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.running: list[subprocess.Popen] = []

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        """Starts `args`; its stderr goes to a file named after it, for the error when it fails."""
        stderr_path = self.logs / f"process-{len(self.running)}.stderr"
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=stderr,
                                       env={**os.environ, **(env or {})})
        process.stderr_path = stderr_path
        self.running.append(process)
        return process

    def __enter__(self):
        return self

    def __exit__(self, *_):
        for process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def expositions(hawser: str, workdir: Path) -> tuple[str, str, float]:
    """/metrics of a standalone hawser after traffic, and of a Kubernetes-mode hawser whose API
    server does not answer; and the test certificate's notAfter."""
    crt, key, not_after = certificate(workdir)
    ports = free_ports(8)
    echo_port, http_port, https_port, admin_port = ports[:4]
    kube_http, kube_https, kube_admin, nowhere = ports[4:]
    manifests = workdir / "manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "all.yaml").write_text(
        MANIFESTS.replace("ECHO_PORT", str(echo_port)).replace("CERT", json.dumps(crt)).replace("KEY", json.dumps(key)))
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.replace("PORT", str(nowhere)))
    with Processes(workdir) as processes:
        echo = processes.start(hawser, "echo", "--addr", f"127.0.0.1:{echo_port}")
        standalone = processes.start(
            hawser, "run", "--manifests", str(manifests), "--http-addr", f"127.0.0.1:{http_port}",
            "--https-addr", f"127.0.0.1:{https_port}", "--admin-addr", f"127.0.0.1:{admin_port}")
        cluster = processes.start(
            hawser, "run", "--http-addr", f"127.0.0.1:{kube_http}", "--https-addr", f"127.0.0.1:{kube_https}",
            "--admin-addr", f"127.0.0.1:{kube_admin}", env={"KUBECONFIG": str(kubeconfig)})
        for port, process in ((echo_port, echo), (http_port, standalone), (admin_port, standalone),
                              (kube_admin, cluster)):
            wait_for_port(port, process)
        metrics_until(admin_port, lambda t: re.search(r"^hawser_table_generation [1-9]", t, re.M), "a table")
        get(f"http://127.0.0.1:{http_port}/", host="nothing.example")  # 404, no route
        get(f"http://127.0.0.1:{http_port}/ws")  # a plain request on the WebSocketRoute
        websocket_round_trip(http_port)
        websocket_protocol_error(http_port)
        websocket_drained(http_port, admin_port)
        standalone_text = metrics_until(
            admin_port,
            lambda t: all(f"# TYPE {family} counter" in t for family in (
                "hawser_websocket_protocol_errors", "hawser_drained")),
            "a closed tunnel, a protocol error and a drain")
        cluster_text = metrics_until(
            kube_admin, lambda t: "hawser_kube_watch_errors_total{" in t, "a watch error")
    return standalone_text, cluster_text, not_after


# ---------------------------------------------------------------------------------------------
# Checks


def check_datasource_variable(dashboard: dict) -> list[str]:
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    source = variables.get("datasource")
    if not source or source.get("type") != "datasource" or source.get("query") != "prometheus":
        return ["no template variable `datasource` of type datasource, query prometheus"]
    problems = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            continue
        uids = {(panel.get("datasource") or {}).get("uid")}
        uids |= {(t.get("datasource") or {}).get("uid") for t in panel.get("targets", [])}
        if uids != {"${datasource}"}:
            problems.append(f"panel {panel.get('title')!r} uses data sources {sorted(map(str, uids))}")
    return problems


def readme_metrics() -> set[str]:
    section = README.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(hawser_[a-z0-9_]+)`", section, re.M))


def check_dashboard_coverage(dashboard: dict) -> list[str]:
    used = set()
    for _, expr in dashboard_queries(dashboard):
        for name in metric_names(expr):
            used.add(name)
            used.update(name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s))
    wanted = readme_metrics() - {"hawser_tunnel_bytes_total"}  # bytes: in the README, not a panel
    return [f"no panel queries {name}" for name in sorted(wanted - used)]


def check_readme(kinds: dict[str, str]) -> list[str]:
    exposed = {display_name(f, k) for f, k in kinds.items() if f.startswith("hawser_")}
    listed = readme_metrics()
    return ([f"exposed but not in the README's metrics table: {n}" for n in sorted(exposed - listed)]
            + [f"in the README's metrics table but not exposed: {n}" for n in sorted(listed - exposed)])


def check_rule_shape(rule_docs: list[dict]) -> list[str]:
    if len(rule_docs) != 1:
        return [f"{len(rule_docs)} PrometheusRules rendered, expected 1"]
    spec = rule_docs[0].get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("groups"), list) or not spec["groups"]:
        return ["spec.groups is not a non-empty list"]
    problems = []
    for g, group in enumerate(spec["groups"]):
        if not isinstance(group.get("name"), str) or not group["name"]:
            problems.append(f"groups[{g}] has no name")
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            problems.append(f"groups[{g}].rules is not a non-empty list")
            continue
        for r, rule in enumerate(rules):
            where = f"groups[{g}].rules[{r}] ({rule.get('alert')})"
            for key in ("alert", "expr", "for"):
                if not isinstance(rule.get(key), str) or not rule[key].strip():
                    problems.append(f"{where}: no {key}")
            if isinstance(rule.get("for"), str) and not re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", rule["for"]):
                problems.append(f"{where}: for {rule['for']!r} is not a Prometheus duration")
            if not (rule.get("labels") or {}).get("severity"):
                problems.append(f"{where}: no labels.severity")
            if not (rule.get("annotations") or {}).get("summary"):
                problems.append(f"{where}: no annotations.summary")
            expr = rule.get("expr") or ""
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                problems.append(f"{where}: unbalanced brackets in {expr!r}")
            unknown = set(rule) - {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            if unknown:
                problems.append(f"{where}: unknown keys {sorted(unknown)}")
    return problems


def check_required_alerts(rule_docs: list[dict]) -> list[str]:
    queries = rule_queries(rule_docs)
    problems = []
    for what, metric, matcher in REQUIRED_ALERTS:
        if not any(metric in metric_names(expr) and (matcher is None or matcher in expr) for _, expr in queries):
            problems.append(f"no alert on {what} ({metric}{' with ' + matcher if matcher else ''})")
    return problems


def check_config_errors(text: str) -> list[str]:
    values = [v for name, _, v in samples(text) if name == "hawser_config_errors"]
    return [] if values == [1.0] else [f"hawser_config_errors {values}, expected [1.0] (the broken Ingress)"]


def check_certificate_series(text: str, not_after: float) -> list[str]:
    series = [(labels, v) for name, labels, v in samples(text)
              if name == "hawser_certificate_expiry_timestamp_seconds"]
    wanted = {"namespace": "default", "secret": "localhost-tls", "host": "localhost"}
    if [labels for labels, _ in series] != [wanted]:
        return [f"series {series}, expected one with {wanted}"]
    value = series[0][1]
    return [] if abs(value - not_after) <= 1 else [f"value {value}, the certificate's notAfter is {not_after}"]


def main() -> int:
    hawser = os.environ.get("HAWSER_BIN")
    if not hawser:
        print("set HAWSER_BIN to a hawser binary (e.g. target/debug/hawser)")
        return 2
    chart_test.ensure_pip_packages()
    helm = chart_test.Helm(chart_test.ensure_helm())
    results = chart_test.Results()

    dashboard = json.loads(DASHBOARD.read_text())
    rules = chart_test.find(helm.render("prometheusRule.enabled=true"), "PrometheusRule")
    with tempfile.TemporaryDirectory(prefix="hawser-observability-") as tmp:
        try:
            try:
                standalone, cluster, not_after = expositions(hawser, Path(tmp))
            except PortTaken as taken:  # another process on the machine took a chosen port
                print(f"     once more on other ports: {taken}")
                standalone, cluster, not_after = expositions(hawser, Path(tmp))
        except Exception as error:
            results.check("run hawser and read /metrics", lambda: [f"{type(error).__name__}: {error}"])
            print(f"{results.passed} passed, {results.failed} failed")
            return 1
    kinds = {**families(cluster), **families(standalone)}
    print(f"     hawser exposes {len(kinds)} families: {', '.join(sorted(kinds))}")

    results.check("dashboard: a `datasource` variable that every panel uses",
                  lambda: check_datasource_variable(dashboard))
    results.check("dashboard: every metric it queries is exposed by hawser",
                  lambda: check_names(dashboard_queries(dashboard), kinds))
    results.check("dashboard: a panel on every metric in the README (but tunnel bytes)",
                  lambda: check_dashboard_coverage(dashboard))
    results.check("PrometheusRule: the rules' shape (groups[].rules[]: alert, expr, for, severity, summary)",
                  lambda: check_rule_shape(rules))
    results.check("PrometheusRule: every metric its alerts query is exposed by hawser",
                  lambda: check_names(rule_queries(rules), kinds))
    results.check("PrometheusRule: alerts on config errors, watch errors, certificates, 5xx ratio, abnormal closes",
                  lambda: check_required_alerts(rules))
    results.check("README's metrics table names exactly the exposed families", lambda: check_readme(kinds))
    results.check("hawser_config_errors counts the broken Ingress", lambda: check_config_errors(standalone))
    results.check("hawser_certificate_expiry_timestamp_seconds has the served certificate's notAfter",
                  lambda: check_certificate_series(standalone, not_after))
    print(f"{results.passed} passed, {results.failed} failed")
    return 0 if results.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
