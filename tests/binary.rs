//! The real `hawser` binary: `hawser echo` and `hawser run` as processes, their admin
//! endpoints, and a clean exit on SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::process::{ANY_PORTS, Process, failure_output};
use common::*;
use http::StatusCode;

#[tokio::test]
async fn echo_binary_answers_http_and_websocket() {
    let echo = Process::start(&["echo", "--addr", "127.0.0.1:0", "--name", "bin"], 1);
    let addr = echo.addr("echo");
    let (status, headers, body) = get(addr, "x.test", "/p?q=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-echo-name"], "bin");
    let seen = seen(&body);
    assert_eq!((seen.name.as_str(), seen.path.as_str(), seen.query.as_deref()), ("bin", "/p", Some("q=1")));
    let (mut ws, name) = ws_open(addr, "x.test", "/").await;
    assert_eq!(name, "bin");
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_text().unwrap().as_str(), "hi");
}

#[tokio::test]
async fn run_binary_serves_admin_endpoints_and_stops_on_sigterm() {
    let empty = tempdir();
    let args = [&["run"][..], &ANY_PORTS, &["--manifests", empty.to_str().unwrap()]].concat();
    let mut hawser = Process::start(&args, 3);
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    assert_eq!(get(admin, "admin", "/healthz").await.0, StatusCode::OK);
    eventually_async(|| async { get(admin, "admin", "/readyz").await.0 == StatusCode::OK }).await;
    let (_, _, routes) = get(admin, "admin", "/debug/routes").await;
    let routes: serde_json::Value = serde_json::from_slice(&routes).unwrap();
    assert_eq!(routes["generation"], 1);
    assert_eq!(get(proxy, "a.test", "/").await.0, StatusCode::NOT_FOUND);
    let (_, _, metrics) = get(admin, "admin", "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("hawser_table_generation 1"), "{metrics}");
    assert!(metrics.contains(r#"hawser_requests_total{route="",status="404"} 1"#), "{metrics}");
    assert_eq!(get(admin, "admin", "/nope").await.0, StatusCode::NOT_FOUND);
    assert!(hawser.terminate().success());
}

/// Nothing reads hawser's stdout: the pipe fills, the access log's writer blocks, its queue
/// fills. Requests are still answered at once; the lines that could not be queued are dropped
/// and counted.
#[tokio::test]
async fn a_stalled_stdout_never_stalls_the_proxy() {
    let empty = tempdir();
    let args = [&["run"][..], &ANY_PORTS, &["--manifests", empty.to_str().unwrap()]].concat();
    let hawser = Process::start_unread(&args, 3);
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    let mut client = http1(proxy).await;
    // More lines than a pipe (64 KiB) and the writer's queue (8,192 lines) hold.
    for _ in 0..10_000 {
        let request = http::Request::get("/").header("host", "a.test").body(Default::default()).unwrap();
        let answered = tokio::time::timeout(ms(5_000), client.send_request(request)).await;
        assert_eq!(
            answered.expect("answered without waiting for the log").unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }
    let (_, _, metrics) = get(admin, "admin", "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics);
    let dropped = metrics.lines().find_map(|l| l.strip_prefix("hawser_log_dropped_total ")).unwrap_or("0");
    assert!(dropped.parse::<u64>().unwrap() > 0, "{metrics}");
    assert!(metrics.contains(r#"hawser_requests_total{route="",status="404"} 10000"#), "{metrics}");
}

#[test]
fn bad_flags_exit_with_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_hawser"))
        .args(["run", "--trusted-proxies", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--trusted-proxies"));
}

#[test]
fn run_without_manifests_or_cluster_says_what_to_do() {
    let said = failure_output(
        Command::new(env!("CARGO_BIN_EXE_hawser"))
            .arg("run")
            .args(ANY_PORTS)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST"),
    );
    assert!(said.contains("use --manifests DIR for standalone mode"), "{said}");
}
