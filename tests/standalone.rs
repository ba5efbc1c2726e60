//! Standalone mode end to end with the real binary: `hawser run --manifests DIR` routes per the
//! files, picks up edits within a second without disturbing open tunnels, survives a broken
//! file, and `hawser check` / `hawser quickstart` behave as documented.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{ANY_PORTS, Process, failure_output};
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

fn ingress(host: &str, service: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web}}\nspec:\n  ingressClassName: hawser\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{name: http}}}}}}}}\n"
    )
}

const CHAT_ROUTE: &str = "apiVersion: hawser.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {name: chat}\nspec:\n  hostnames: [chat.test]\n  rules:\n  - matches: [{path: {value: /ws}}]\n    backends: [{name: a, port: http}]\n";

async fn generation(admin: SocketAddr) -> u64 {
    let (_, _, body) = get(admin, "admin", "/debug/routes").await;
    serde_json::from_slice::<serde_json::Value>(&body).unwrap()["generation"].as_u64().unwrap()
}

async fn served_by(proxy: SocketAddr, host: &str) -> Option<String> {
    let (status, _, body) = get(proxy, host, "/").await;
    (status == StatusCode::OK).then(|| seen(&body).name)
}

/// Polls until `host` is served by `name` (or not served, for `None`); returns how long it took.
async fn until_served(proxy: SocketAddr, host: &str, name: Option<&str>) -> Duration {
    let started = Instant::now();
    while served_by(proxy, host).await.as_deref() != name {
        assert!(started.elapsed() < Duration::from_secs(5), "{host} never became {name:?}");
        tokio::time::sleep(ms(10)).await;
    }
    started.elapsed()
}

fn write(dir: &Path, file: &str, content: &str) {
    std::fs::write(dir.join(file), content).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_served_and_edits_go_live_without_touching_tunnels() {
    let (a, b) = (echo("a").await, echo("b").await);
    let dir = tempdir();
    write(&dir, "services.yaml", &format!("{}---\n{}", service_yaml("a", a.addr), service_yaml("b", b.addr)));
    write(&dir, "ingress.yaml", &ingress("a.test", "a"));
    std::fs::create_dir_all(dir.join("routes")).unwrap();
    write(&dir.join("routes"), "chat.yml", CHAT_ROUTE);
    let hawser =
        Process::start(&[&["run"][..], &ANY_PORTS, &["--manifests", dir.to_str().unwrap()]].concat(), 3);
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    eventually_async(|| async { get(admin, "admin", "/readyz").await.0 == StatusCode::OK }).await;
    assert_eq!(served_by(proxy, "a.test").await.as_deref(), Some("a"));
    assert_eq!(get(proxy, "other.test", "/").await.0, StatusCode::NOT_FOUND);

    let (mut tunnel, name) = ws_open(proxy, "chat.test", "/ws").await;
    assert_eq!(name, "a");

    // Point the Ingress at b: live within a second, the tunnel untouched.
    write(&dir, "ingress.yaml", &ingress("a.test", "b"));
    let latency = until_served(proxy, "a.test", Some("b")).await;
    assert!(latency < Duration::from_secs(1), "the edit took {latency:?} to go live");
    tunnel.send(Message::text("still here")).await.unwrap();
    assert_eq!(tunnel.next().await.unwrap().unwrap(), Message::text("still here"));

    // A broken file is reported and its last good content stays in effect.
    let before = generation(admin).await;
    write(&dir, "ingress.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nspec: [broken");
    tokio::time::sleep(ms(1500)).await;
    assert_eq!(served_by(proxy, "a.test").await.as_deref(), Some("b"));
    assert_eq!(generation(admin).await, before, "a broken file must not change the table");
    let check =
        Command::new(env!("CARGO_BIN_EXE_hawser")).args(["check", dir.to_str().unwrap()]).output().unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("ingress.yaml"),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // New files add routes; removing a file removes its routes.
    write(&dir, "more.yaml", &ingress("more.test", "a").replace("name: web", "name: more"));
    until_served(proxy, "more.test", Some("a")).await;
    std::fs::remove_file(dir.join("ingress.yaml")).unwrap();
    until_served(proxy, "a.test", None).await;
    tunnel.send(Message::text("after all that")).await.unwrap();
    assert_eq!(tunnel.next().await.unwrap().unwrap(), Message::text("after all that"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_prints_the_table_and_fails_on_errors() {
    let dir = tempdir();
    write(
        &dir,
        "good.yaml",
        &format!("{}---\n{}", service_yaml("a", "127.0.0.1:9".parse().unwrap()), ingress("a.test", "a")),
    );
    let run =
        |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_hawser")).arg("check").args(args).output().unwrap();
    let good = run(&[dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{text}");
    assert!(text.contains("a.test Prefix / -> 127.0.0.1:9 (ingress/default/web/0/0)"), "{text}");
    assert!(text.contains("0 errors, 0 warnings"), "{text}");

    write(&dir, "bad.yaml", &ingress("b.test", "missing").replace("name: web", "name: bad"));
    let bad = run(&[dir.to_str().unwrap(), "--output", "json"]);
    assert_eq!(bad.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    let errors: Vec<&serde_json::Value> =
        json["reports"].as_array().unwrap().iter().filter(|r| r["level"] == "Error").collect();
    assert_eq!(errors.len(), 1, "{json}");
    assert_eq!(errors[0]["reason"], "UnresolvedRef");
    assert!(errors[0]["message"].as_str().unwrap().contains("Service default/missing not found"));
    assert!(json["table"]["hosts"].as_array().unwrap().len() == 2, "the bad Ingress still routes (to 503)");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_accepts_the_quickstart_and_rejects_a_missing_directory() {
    let quickstart =
        Command::new(env!("CARGO_BIN_EXE_hawser")).args(["check", "examples/quickstart"]).output().unwrap();
    assert!(quickstart.status.success(), "{}", String::from_utf8_lossy(&quickstart.stdout));
    let missing =
        Command::new(env!("CARGO_BIN_EXE_hawser")).args(["check", "/nonexistent/hawser"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stdout).contains("cannot read the directory"));
}

#[tokio::test]
async fn quickstart_serves_http_and_websocket_on_either_runtime() {
    // One worker runs the single-threaded runtime, more the work-stealing one.
    for workers in ["1", "2"] {
        let args = [&["quickstart"][..], &ANY_PORTS].concat();
        let mut hawser = Process::start_with_env(&args, 5, &[("HAWSER_WORKERS", workers)]);
        let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
        eventually_async(|| async { get(admin, "admin", "/readyz").await.0 == StatusCode::OK }).await;
        let (status, _, body) = get(proxy, "localhost", "/hello").await;
        assert_eq!(status, StatusCode::OK);
        assert!(seen(&body).name.starts_with("echo-"));
        let (mut ws, _) = ws_open(proxy, "localhost", "/ws").await;
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
        assert!(hawser.terminate().success(), "workers={workers}");
    }
}

#[test]
fn run_with_a_missing_manifests_directory_fails_clearly() {
    let said = failure_output(
        Command::new(env!("CARGO_BIN_EXE_hawser"))
            .arg("run")
            .args(ANY_PORTS)
            .args(["--manifests", "/nonexistent/hawser"]),
    );
    assert!(said.contains("/nonexistent/hawser"), "{said}");
}

/// The Gateway `gw` (class `hawser`) with its `http` listener and, from change `n`, one more.
fn gateway(n: usize) -> String {
    let extra = match n % 3 {
        0 => String::new(),
        1 => format!("  - {{name: extra, port: 80, protocol: HTTP, hostname: extra-{n}.test}}\n"),
        _ => format!("  - {{name: extra, port: 80, protocol: HTTP, hostname: \"*.extra-{n}.test\"}}\n"),
    };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: hawser}}\nspec: {{controllerName: hawser.dev/gateway-controller}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  gatewayClassName: hawser\n  listeners:\n\
         \x20 - {{name: http, port: 80, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}\n{extra}"
    )
}

/// The HTTPRoute the tunnels use, with a second rule that changes with `n`.
fn chat_http_route(n: usize) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: chat}}\nspec:\n  parentRefs: [{{name: gw, sectionName: http}}]\n  hostnames: [ws.test]\n  rules:\n\
         \x20 - matches: [{{path: {{type: PathPrefix, value: /ws}}}}]\n    backendRefs: [{{name: a, port: 80}}]\n\
         \x20 - matches: [{{path: {{type: PathPrefix, value: /other-{}}}}}]\n    backendRefs: [{{name: b, port: 80}}]\n",
        n % 4
    )
}

/// Objects that have nothing to do with the tunnels: a route in another namespace, a
/// ReferenceGrant, and a route whose path marks change `n` (so every change has a table to wait for).
fn unrelated(n: usize) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: elsewhere, namespace: team-{}}}\nspec:\n  parentRefs: [{{name: gw, namespace: default}}]\n  hostnames: [team.test]\n  rules: [{{backendRefs: [{{name: b, namespace: default, port: 80}}]}}]\n---\n\
         apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: to-b}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: team-{}}}]\n  to: [{{group: \"\", kind: Service, name: b}}]\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: marker}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [marker.test]\n  rules: [{{matches: [{{path: {{type: Exact, value: /change-{n}}}}}], backendRefs: [{{name: b, port: 80}}]}}]\n",
        n % 2,
        n % 2
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_gateway_api_changes_close_no_tunnel() {
    const TUNNELS: usize = 50;
    const CHANGES: usize = 100;
    let (a, b) = (echo("a").await, echo("b").await);
    let dir = tempdir();
    write(&dir, "services.yaml", &format!("{}---\n{}", service_yaml("a", a.addr), service_yaml("b", b.addr)));
    write(&dir, "gateway.yaml", &gateway(0));
    write(&dir, "chat.yaml", &chat_http_route(0));
    write(&dir, "unrelated.yaml", &unrelated(0));
    let hawser =
        Process::start(&[&["run"][..], &ANY_PORTS, &["--manifests", dir.to_str().unwrap()]].concat(), 3);
    let proxy = hawser.addr("proxy");
    eventually_async(|| async { get(proxy, "marker.test", "/change-0").await.0 == StatusCode::OK }).await;
    let mut tunnels = Vec::with_capacity(TUNNELS);
    for _ in 0..TUNNELS {
        let (ws, name) = ws_open(proxy, "ws.test", "/ws").await;
        assert_eq!(name, "a");
        tunnels.push(ws);
    }
    for n in 1..=CHANGES {
        let file = ["gateway.yaml", "chat.yaml", "unrelated.yaml"][n % 3];
        let content = [gateway(n), chat_http_route(n), String::new()][n % 3].clone();
        if !content.is_empty() {
            write(&dir, file, &content);
        }
        write(&dir, "unrelated.yaml", &unrelated(n));
        let marker = format!("/change-{n}");
        eventually_async(|| async { get(proxy, "marker.test", &marker).await.0 == StatusCode::OK }).await;
        // Every tenth change, every tunnel still echoes.
        if n % 10 == 0 {
            for (i, ws) in tunnels.iter_mut().enumerate() {
                let text = format!("{n}:{i}");
                ws.send(Message::text(text.clone())).await.unwrap();
                let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                assert!(
                    matches!(&echoed, Ok(Some(Ok(Message::Text(back)))) if back.as_str() == text),
                    "tunnel {i} after change {n}: {echoed:?}"
                );
            }
        }
    }
    for mut ws in tunnels {
        ws.close(None).await.unwrap();
        assert!(matches!(ws.next().await, Some(Ok(Message::Close(_)))), "a clean close after the changes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_policy_sets_an_http_routes_websockets() {
    let a = echo("a").await;
    let dir = tempdir();
    write(&dir, "services.yaml", &service_yaml("a", a.addr));
    write(&dir, "gateway.yaml", &gateway(0));
    write(
        &dir,
        "chat.yaml",
        &chat_http_route(0).replace("  rules:\n  - matches", "  rules:\n  - name: ws\n    matches"),
    );
    let policy = "apiVersion: hawser.dev/v1alpha1\nkind: WebSocketPolicy\nmetadata: {name: chat}\nspec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat, sectionName: ws}]\n  allowedOrigins: [\"https://ok.test\"]\n  maxMessageBytes: 16\n";
    write(&dir, "policy.yaml", policy);
    let hawser =
        Process::start(&[&["run"][..], &ANY_PORTS, &["--manifests", dir.to_str().unwrap()]].concat(), 3);
    let proxy = hawser.addr("proxy");
    eventually_async(|| async { get(proxy, "ws.test", "/ws").await.0 == StatusCode::OK }).await;

    let refused = ws_refused(proxy, "ws.test", "/ws", &[("origin", "https://evil.test")]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "the policy's Origin allow-list");
    let (mut ws, _) = ws_connect(proxy, "ws.test", "/ws", &[("origin", "https://ok.test")]).await.unwrap();
    ws.send(Message::text("small")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("small"));
    ws.send(Message::text("x".repeat(100))).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = ws.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(1009), "the policy's message limit");

    // Without the policy, the route is the Ingress-like default: any Origin, no limit.
    std::fs::remove_file(dir.join("policy.yaml")).unwrap();
    eventually_async(|| async {
        ws_connect(proxy, "ws.test", "/ws", &[("origin", "https://evil.test")]).await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_share_of_an_invalid_backend_gets_500() {
    let a = echo("a").await;
    let dir = tempdir();
    write(&dir, "services.yaml", &service_yaml("a", a.addr));
    write(&dir, "gateway.yaml", &gateway(0));
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: half}\nspec:\n  parentRefs: [{name: gw}]\n  hostnames: [half.test]\n  rules: [{backendRefs: [{name: a, port: 80, weight: 3}, {name: missing, port: 80, weight: 1}]}]\n";
    write(&dir, "route.yaml", route);
    let hawser =
        Process::start(&[&["run"][..], &ANY_PORTS, &["--manifests", dir.to_str().unwrap()]].concat(), 3);
    let proxy = hawser.addr("proxy");
    eventually_async(|| async { get(proxy, "half.test", "/").await.0 != StatusCode::NOT_FOUND }).await;
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..40 {
        *statuses.entry(get(proxy, "half.test", "/").await.0.as_u16()).or_insert(0) += 1;
    }
    assert_eq!(statuses, [(200, 30), (500, 10)].into_iter().collect(), "weights 3 and 1");
}
