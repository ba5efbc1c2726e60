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
