//! Kubernetes mode end to end: the real `hawser run` binary against a stand-in API server over
//! real HTTP (`tests/apiserver/apiserver.py`, which says what it does and does not model).
//! Objects created, changed and deleted through the API reach the traffic; status, conditions
//! and Events come back; an API-server restart never stops traffic; the Lease elects one writer.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::process::{ANY_PORTS, Process};
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The stand-in API server as a child process.
struct ApiServer {
    child: Child,
    addr: SocketAddr,
}

impl ApiServer {
    fn start(port: u16, state: &Path) -> Self {
        Self::start_with(port, state, &[])
    }

    fn start_with(port: u16, state: &Path, flags: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apiserver/apiserver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--state", state.to_str().unwrap()])
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected: {line}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn kubeconfig(dir: &Path, api: SocketAddr) -> PathBuf {
    let path = dir.join("kubeconfig");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: test, cluster: {{server: \"http://{api}\"}}}}]\n\
         users: [{{name: test, user: {{}}}}]\ncontexts: [{{name: test, context: {{cluster: test, user: test, namespace: default}}}}]\n\
         current-context: test\n"
    );
    std::fs::write(&path, config).unwrap();
    path
}

/// A call to the API server; the JSON answer.
async fn api(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let content_type = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "api")
        .header("content-type", content_type)
        .body(Full::new(body))
        .unwrap();
    let (status, _, body) = request(addr, req).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn create(addr: SocketAddr, path: &str, object: Value) {
    let (status, answer) = api(addr, "POST", path, Some(object)).await;
    assert!(status.is_success(), "POST {path}: {status} {answer}");
}

const SERVICES: &str = "/api/v1/namespaces/default/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
const INGRESSES: &str = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
const ROUTES: &str = "/apis/hawser.dev/v1alpha1/namespaces/default/websocketroutes";

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"name": "http", "port": 80}]}})
}

fn slice(service: &str, backend: SocketAddr) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-1"), "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": backend.port()}],
        "endpoints": [{"addresses": [backend.ip().to_string()], "conditions": {"ready": true}}]
    })
}

fn ingress(host: &str, service: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
        "spec": {"ingressClassName": "hawser", "rules": [{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"name": "http"}}}}
        ]}}]}
    })
}

fn ingress_class(name: &str, controller: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": name}, "spec": {"controller": controller}})
}

fn route() -> Value {
    json!({
        "apiVersion": "hawser.dev/v1alpha1", "kind": "WebSocketRoute", "metadata": {"name": "chat"},
        "spec": {"hostnames": ["chat.test"], "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/ws"}}], "backends": [{"name": "a", "port": "http"}]}]}
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_hawser(config: &Path, identity: &str) -> Process {
    start_install(config, identity, &["--election-id", "hawser-test"])
}

/// `hawser run` in cluster mode with `flags` (which must say `--election-id`).
fn start_install(config: &Path, identity: &str, flags: &[&str]) -> Process {
    let mut command = vec!["run"];
    command.extend(ANY_PORTS);
    command.extend(["--publish-status-address", "192.0.2.10", "--election-lease-duration", "3s"]);
    command.extend(flags);
    Process::start_with_env(
        &command,
        3,
        &[("KUBECONFIG", config.to_str().unwrap()), ("POD_NAME", identity), ("POD_NAMESPACE", "default")],
    )
}

async fn served_by(proxy: SocketAddr, host: &str) -> Option<String> {
    let (status, _, body) = get(proxy, host, "/").await;
    (status == StatusCode::OK).then(|| seen(&body).name)
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(ms(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_objects_drive_traffic_and_status() {
    let (a, b) = (echo("a").await, echo("b").await);
    let dir = tempdir();
    let port = free_port();
    let mut apiserver = ApiServer::start(port, &dir.join("state.json"));
    let api_addr = apiserver.addr;
    create(api_addr, SERVICES, service("a")).await;
    create(api_addr, SLICES, slice("a", a.addr)).await;
    create(api_addr, INGRESSES, ingress("a.test", "a")).await;
    let hawser = start_hawser(&kubeconfig(&dir, api_addr), "hawser-1");
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    until("ready", || async { get(admin, "admin", "/readyz").await.0 == StatusCode::OK }).await;
    assert_eq!(served_by(proxy, "a.test").await.as_deref(), Some("a"));

    // A change through the API is live; a WebSocketRoute appears.
    create(api_addr, SERVICES, service("b")).await;
    create(api_addr, SLICES, slice("b", b.addr)).await;
    let patch = json!({"spec": {"rules": [{"host": "a.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "b", "port": {"name": "http"}}}}]}}]}});
    api(api_addr, "PATCH", &format!("{INGRESSES}/web"), Some(patch)).await;
    until("the Ingress change", || async { served_by(proxy, "a.test").await.as_deref() == Some("b") }).await;
    create(api_addr, ROUTES, route()).await;
    until("the WebSocketRoute", || async { ws_connect(proxy, "chat.test", "/ws", &[]).await.is_ok() }).await;
    let (mut tunnel, _) = ws_open(proxy, "chat.test", "/ws").await;

    // Basic auth from an Opaque Secret (`kubectl create secret generic --from-file=auth`).
    // `foo:bar`, written by `openssl passwd -apr1`.
    let htpasswd = "Zm9vOiRhcHIxJFRoeHFjTUhkJHcveFNRQ2VySUVERjllS2lSc3p2WjEK";
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "users"}, "type": "Opaque", "data": {"auth": htpasswd}});
    create(api_addr, "/api/v1/namespaces/default/secrets", secret).await;
    let mut admin_ingress = ingress("admin.test", "a");
    admin_ingress["metadata"] = json!({"name": "admin", "annotations": {
        "nginx.ingress.kubernetes.io/auth-type": "basic", "nginx.ingress.kubernetes.io/auth-secret": "users"}});
    create(api_addr, INGRESSES, admin_ingress).await;
    until("basic auth", || async { get(proxy, "admin.test", "/").await.0 == StatusCode::UNAUTHORIZED }).await;
    let authorized = http::Request::get("/")
        .header("host", "admin.test")
        .header("authorization", "Basic Zm9vOmJhcg==")
        .body(http_body_util::Full::default())
        .unwrap();
    assert_eq!(request(proxy, authorized).await.0, StatusCode::OK);
    // `hawser migrate` reads the same cluster.
    let config = kubeconfig(&dir, api_addr);
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_hawser"))
        .args(["migrate", "--cluster", "--kubeconfig", config.to_str().unwrap(), "--from-class", "hawser"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&migrate.stdout);
    assert_eq!(migrate.status.code(), Some(0), "{said}");
    assert!(said.contains("Ingress default/admin: behaves the same"), "{said}");

    // Status where users look.
    until("the Ingress address", || async {
        let (_, ingress) = api(api_addr, "GET", &format!("{INGRESSES}/web"), None).await;
        ingress["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.0.2.10"
    })
    .await;
    until("the route's conditions", || async {
        let (_, route) = api(api_addr, "GET", &format!("{ROUTES}/chat"), None).await;
        let conditions = route["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|c| c["type"] == "Accepted" && c["status"] == "True")
            && route["status"]["observedGeneration"] == route["metadata"]["generation"]
    })
    .await;

    // A bad annotation becomes a Warning Event; the route keeps serving.
    let bad = json!({"metadata": {"annotations": {"hawser.dev/idle-timeout": "soon"}}});
    api(api_addr, "PATCH", &format!("{INGRESSES}/web"), Some(bad)).await;
    until("a Warning Event", || async {
        let (_, events) =
            api(api_addr, "GET", "/apis/events.k8s.io/v1/namespaces/default/events", None).await;
        events["items"].as_array().is_some_and(|items| {
            items.iter().any(|e| {
                e["type"] == "Warning"
                    && e["regarding"]["name"] == "web"
                    && e["note"].as_str().unwrap_or("").contains("idle-timeout")
            })
        })
    })
    .await;
    assert_eq!(served_by(proxy, "a.test").await.as_deref(), Some("b"));

    // The API server goes away and comes back: traffic never stops, and hawser resyncs.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, failures) = (stop.clone(), failures.clone());
        tokio::spawn(async move {
            let mut requests = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if served_by(proxy, "a.test").await.is_none() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                requests += 1;
                tokio::time::sleep(ms(20)).await;
            }
            requests
        })
    };
    apiserver.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let apiserver = ApiServer::start(port, &dir.join("state.json"));
    api(
        apiserver.addr,
        "PATCH",
        &format!("{SLICES}/b-1"),
        Some(json!({"ports": [{"name": "http", "port": a.addr.port()}]})),
    )
    .await;
    until("the change made after the restart", || async {
        served_by(proxy, "a.test").await.as_deref() == Some("a")
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let requests = load.await.unwrap();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed while the API server was away ({requests} sent)"
    );
    tunnel.send(Message::text("still open")).await.unwrap();
    assert_eq!(tunnel.next().await.unwrap().unwrap(), Message::text("still open"));

    // Deleting the Ingress removes its routes.
    api(apiserver.addr, "DELETE", &format!("{INGRESSES}/web"), None).await;
    until("the deletion", || async { get(proxy, "a.test", "/").await.0 == StatusCode::NOT_FOUND }).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_writes_and_another_takes_over() {
    let dir = tempdir();
    let apiserver = ApiServer::start(free_port(), &dir.join("state.json"));
    let config = kubeconfig(&dir, apiserver.addr);
    let mut first = start_hawser(&config, "hawser-1");
    let second = start_hawser(&config, "hawser-2");
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/hawser-test";
    let holder = || async {
        api(apiserver.addr, "GET", lease_path, None).await.1["spec"]["holderIdentity"]
            .as_str()
            .map(str::to_owned)
    };
    until("a leader", || async { holder().await.is_some() }).await;
    let leader = holder().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        holder().await.as_deref(),
        Some(leader.as_str()),
        "leadership must be stable while the leader lives"
    );
    // A bad Ingress: Events come from the leader only.
    create(apiserver.addr, INGRESSES, {
        let mut bad = ingress("x.test", "missing");
        bad["metadata"]["annotations"] = json!({"hawser.dev/idle-timeout": "soon"});
        bad
    })
    .await;
    until("an Event", || async {
        let (_, events) =
            api(apiserver.addr, "GET", "/apis/events.k8s.io/v1/namespaces/default/events", None).await;
        events["items"].as_array().is_some_and(|items| !items.is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, events) =
        api(apiserver.addr, "GET", "/apis/events.k8s.io/v1/namespaces/default/events", None).await;
    let instances: std::collections::BTreeSet<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reportingInstance"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(instances.into_iter().collect::<Vec<_>>(), vec![leader.clone()], "only the leader writes");
    // The leader dies; the other takes over within the lease duration (3 s) plus a renewal.
    let survivor = if leader == "hawser-1" { "hawser-2" } else { "hawser-1" };
    if leader == "hawser-1" {
        first.kill()
    } else {
        drop(second)
    };
    let started = Instant::now();
    until("the takeover", || async { holder().await.as_deref() == Some(survivor) }).await;
    assert!(started.elapsed() < Duration::from_secs(8), "takeover took {:?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_installs_with_their_own_controller_names_serve_disjoint_classes() {
    let a = echo("a").await;
    let dir = tempdir();
    let apiserver = ApiServer::start(free_port(), &dir.join("state.json"));
    let api_addr = apiserver.addr;
    create(api_addr, SERVICES, service("a")).await;
    create(api_addr, SLICES, slice("a", a.addr)).await;
    let classes = "/apis/networking.k8s.io/v1/ingressclasses";
    create(api_addr, classes, ingress_class("public", "hawser.dev/ingress-controller")).await;
    create(api_addr, classes, ingress_class("internal", "example.com/internal")).await;
    let named = |name: &str, host: &str, class: &str| {
        let mut object = ingress(host, "a");
        object["metadata"]["name"] = json!(name);
        object["spec"]["ingressClassName"] = json!(class);
        object
    };
    create(api_addr, INGRESSES, named("public", "public.test", "public")).await;
    create(api_addr, INGRESSES, named("private", "private.test", "internal")).await;
    let config = kubeconfig(&dir, api_addr);
    let public =
        start_install(&config, "hawser-public", &["--ingress-class", "public", "--election-id", "public"]);
    let internal = start_install(
        &config,
        "hawser-internal",
        &[
            "--controller-name",
            "example.com/internal",
            "--ingress-class",
            "internal",
            "--election-id",
            "internal",
        ],
    );
    let (public, internal) = (public.addr("proxy"), internal.addr("proxy"));
    until("each install serves its own class", || async {
        served_by(public, "public.test").await.is_some()
            && served_by(internal, "private.test").await.is_some()
    })
    .await;
    assert_eq!(get(public, "private.test", "/").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(internal, "public.test", "/").await.0, StatusCode::NOT_FOUND);
}

/// A CA bundle in an `Opaque` Secret (what `kubectl create secret generic --from-file=ca.crt`
/// makes) verifies an HTTPS backend in Kubernetes mode; replaced by another CA's bundle, the
/// same backend is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opaque_ca_secret_verifies_https_backends() {
    let (ca, signed) = common::tls::ca_and_leaf(&["web.default.svc"]);
    let (other_ca, _) = common::tls::ca_and_leaf(&["web.default.svc"]);
    let backend = common::tls::tls_backend(signed).await;
    let dir = tempdir();
    let apiserver = ApiServer::start(free_port(), &dir.join("state.json"));
    let api_addr = apiserver.addr;
    create(api_addr, SERVICES, service("web")).await;
    create(api_addr, SLICES, slice("web", backend.addr)).await;
    let ca_secret = |pem: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "backend-ca"}, "type": "Opaque",
               "stringData": {"ca.crt": pem}})
    };
    create(api_addr, "/api/v1/namespaces/default/secrets", ca_secret(&ca)).await;
    let mut verified = ingress("https.test", "web");
    verified["metadata"]["annotations"] =
        json!({"hawser.dev/backend-protocol": "HTTPS", "hawser.dev/backend-ca-secret": "backend-ca"});
    create(api_addr, INGRESSES, verified).await;
    let hawser = start_hawser(&kubeconfig(&dir, api_addr), "hawser-1");
    let proxy = hawser.addr("proxy");
    until("the backend, verified", || async {
        let (status, _, body) = get(proxy, "https.test", "/").await;
        status == StatusCode::OK && body == "web.default.svc"
    })
    .await;
    let replaced = ca_secret(&other_ca);
    let (status, answer) =
        api(api_addr, "PUT", "/api/v1/namespaces/default/secrets/backend-ca", Some(replaced)).await;
    assert!(status.is_success(), "PUT: {status} {answer}");
    until("the backend, refused", || async {
        get(proxy, "https.test", "/").await.0 == StatusCode::BAD_GATEWAY
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_routes_follow_their_crd_being_installed_and_removed() {
    let a = echo("a").await;
    let dir = tempdir();
    let apiserver = ApiServer::start_with(free_port(), &dir.join("state.json"), &["--no-crd"]);
    let api_addr = apiserver.addr;
    create(api_addr, SERVICES, service("a")).await;
    create(api_addr, SLICES, slice("a", a.addr)).await;
    let config = kubeconfig(&dir, api_addr);
    let flags = ["--election-id", "hawser-test", "--crd-probe-interval", "200ms"];
    let hawser = start_install(&config, "hawser-1", &flags);
    let proxy = hawser.addr("proxy");
    let status = || async move { get(proxy, "chat.test", "/ws").await.0 };
    assert_eq!(status().await, StatusCode::NOT_FOUND, "no CRD, no WebSocketRoutes");
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let crd: Value = serde_yaml_ng::from_str(&hawser::crd::crd_yaml()).unwrap();
    create(api_addr, crds, crd).await;
    create(api_addr, ROUTES, route()).await;
    until("the route is served once its CRD is installed", || async { status().await == StatusCode::OK })
        .await;
    let (deleted, answer) =
        api(api_addr, "DELETE", &format!("{crds}/websocketroutes.hawser.dev"), None).await;
    assert!(deleted.is_success(), "{answer}");
    until("the route leaves with its CRD", || async { status().await == StatusCode::NOT_FOUND }).await;
}

/// The Gateway API CRDs hawser reads, as shipped in `crds/gateway-api/`.
fn gateway_api_crds() -> Vec<Value> {
    ["gatewayclasses", "gateways", "httproutes", "referencegrants", "backendtlspolicies"]
        .iter()
        .map(|kind| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("crds/gateway-api/{kind}.yaml"));
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        })
        .collect()
}

const GATEWAYS: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways";
const HTTP_ROUTES: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes";
const POLICIES: &str = "/apis/hawser.dev/v1alpha1/namespaces/default/websocketpolicies";

fn condition<'v>(conditions: &'v Value, type_: &str) -> (&'v str, &'v str) {
    let found = conditions.as_array().and_then(|c| c.iter().find(|c| c["type"] == type_));
    let field = |name: &str| found.and_then(|c| c[name].as_str()).unwrap_or("");
    (field("status"), field("reason"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_objects_are_served_and_get_their_status() {
    let a = echo("a").await;
    let dir = tempdir();
    let apiserver = ApiServer::start(free_port(), &dir.join("state.json"));
    let api_addr = apiserver.addr;
    create(api_addr, SERVICES, service("a")).await;
    create(api_addr, SLICES, slice("a", a.addr)).await;
    let policy_crd: Value = serde_yaml_ng::from_str(&hawser::crd::policy_crd_yaml()).unwrap();
    for crd in gateway_api_crds().into_iter().chain([policy_crd]) {
        create(api_addr, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).await;
    }
    let class = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "hawser"},
        "spec": {"controllerName": "hawser.dev/gateway-controller"}});
    create(api_addr, "/apis/gateway.networking.k8s.io/v1/gatewayclasses", class).await;
    let gateway = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
        "spec": {"gatewayClassName": "hawser", "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {"name": "elsewhere", "port": 8080, "protocol": "HTTP"}]}});
    create(api_addr, GATEWAYS, gateway).await;
    let http_route = |name: &str, section: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name}, "spec": {"parentRefs": [{"name": "gw", "sectionName": section}], "hostnames": ["gw.test"],
        "rules": [{"backendRefs": [{"name": "a", "port": 80}]}]}})
    };
    create(api_addr, HTTP_ROUTES, http_route("web", "http")).await;
    create(api_addr, HTTP_ROUTES, http_route("lost", "nope")).await;
    let policy = json!({"apiVersion": "hawser.dev/v1alpha1", "kind": "WebSocketPolicy", "metadata": {"name": "ws"},
        "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "web"},
                                {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "gone"}],
                 "idleTimeout": "2h"}});
    create(api_addr, POLICIES, policy).await;

    let config = kubeconfig(&dir, api_addr);
    let hawser = start_hawser(&config, "hawser-1");
    let proxy = hawser.addr("proxy");
    until("the HTTPRoute is served", || async { served_by(proxy, "gw.test").await.as_deref() == Some("a") })
        .await;

    let status = |path: String| async move { api(api_addr, "GET", &path, None).await.1["status"].clone() };
    until("the status is written", || async {
        status(format!("{HTTP_ROUTES}/lost")).await["parents"].as_array().is_some_and(|p| !p.is_empty())
            && status(format!("{POLICIES}/ws")).await["ancestors"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let class = status("/apis/gateway.networking.k8s.io/v1/gatewayclasses/hawser".into()).await;
    assert_eq!(condition(&class["conditions"], "Accepted"), ("True", "Accepted"));

    let gateway = status(format!("{GATEWAYS}/gw")).await;
    assert_eq!(condition(&gateway["conditions"], "Accepted"), ("True", "ListenersNotValid"));
    assert_eq!(condition(&gateway["conditions"], "Programmed"), ("True", "Programmed"));
    assert_eq!(gateway["addresses"], json!([{"type": "IPAddress", "value": "192.0.2.10"}]));
    let listeners = gateway["listeners"].as_array().unwrap();
    assert_eq!(listeners[0]["name"], "http");
    assert_eq!(listeners[0]["attachedRoutes"], 1);
    assert_eq!(
        listeners[0]["supportedKinds"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}])
    );
    assert_eq!(condition(&listeners[0]["conditions"], "ResolvedRefs"), ("True", "ResolvedRefs"));
    assert_eq!(condition(&listeners[1]["conditions"], "Accepted"), ("False", "PortUnavailable"));

    let web = status(format!("{HTTP_ROUTES}/web")).await;
    let parent = &web["parents"][0];
    assert_eq!(parent["controllerName"], "hawser.dev/gateway-controller");
    assert_eq!(
        parent["parentRef"],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default", "name": "gw", "sectionName": "http"})
    );
    assert_eq!(condition(&parent["conditions"], "Accepted"), ("True", "Accepted"));
    assert_eq!(condition(&parent["conditions"], "ResolvedRefs"), ("True", "ResolvedRefs"));
    let lost = status(format!("{HTTP_ROUTES}/lost")).await;
    assert_eq!(condition(&lost["parents"][0]["conditions"], "Accepted"), ("False", "NoMatchingParent"));

    let policy = status(format!("{POLICIES}/ws")).await;
    let ancestors = policy["ancestors"].as_array().unwrap();
    assert_eq!(
        ancestors[0]["ancestorRef"],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default", "name": "gw"})
    );
    assert_eq!(condition(&ancestors[0]["conditions"], "Accepted"), ("True", "Accepted"));
    assert_eq!(ancestors[1]["ancestorRef"]["name"], "gone");
    assert_eq!(condition(&ancestors[1]["conditions"], "Accepted"), ("False", "TargetNotFound"));

    // A BackendTLSPolicy for the route's Service whose CA bundle does not exist: the route
    // answers 500 rather than send traffic unverified, and the policy says why.
    let backend_tls = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy", "metadata": {"name": "a-tls"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "a"}],
                 "validation": {"hostname": "a.internal", "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "missing"}]}}});
    create(api_addr, "/apis/gateway.networking.k8s.io/v1/namespaces/default/backendtlspolicies", backend_tls)
        .await;
    until("the route refuses to send unverified", || async {
        get(proxy, "gw.test", "/").await.0 == StatusCode::INTERNAL_SERVER_ERROR
    })
    .await;
    let tls_status = || async {
        api(
            api_addr,
            "GET",
            "/apis/gateway.networking.k8s.io/v1/namespaces/default/backendtlspolicies/a-tls",
            None,
        )
        .await
        .1["status"]
            .clone()
    };
    until("the BackendTLSPolicy's status is written", || async {
        tls_status().await["ancestors"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let ancestor = &tls_status().await["ancestors"][0];
    assert_eq!(ancestor["ancestorRef"]["name"], "gw");
    assert_eq!(condition(&ancestor["conditions"], "ResolvedRefs"), ("False", "InvalidCACertificateRef"));
    assert_eq!(condition(&ancestor["conditions"], "Accepted"), ("False", "NoValidCACertificate"));

    // The Gateway goes: its routes are no longer served, and lose hawser's entries.
    let (deleted, answer) = api(api_addr, "DELETE", &format!("{GATEWAYS}/gw"), None).await;
    assert!(deleted.is_success(), "{answer}");
    until("hawser's entry leaves the route it no longer serves", || async {
        status(format!("{HTTP_ROUTES}/web")).await["parents"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    assert_eq!(get(proxy, "gw.test", "/").await.0, StatusCode::NOT_FOUND);
}
