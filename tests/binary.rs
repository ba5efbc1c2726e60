//! The real `hawser` binary: `hawser echo` and `hawser run` as processes, their admin
//! endpoints, and a clean exit on SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use http::StatusCode;

/// A child process killed on drop, with the addresses it logged as `listening`.
struct Process {
    child: Child,
    listening: Vec<(String, SocketAddr)>,
}

impl Process {
    fn start(args: &[&str], listeners: usize) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hawser"))
            .args(args)
            .arg("--log-format=json")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut listening = Vec::new();
        while listening.len() < listeners {
            let line = lines.next().expect("exited before listening").unwrap();
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            if event["message"] == "listening" {
                let addr = event["addr"].as_str().unwrap().parse().unwrap();
                listening.push((event["listener"].as_str().unwrap().to_owned(), addr));
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, listening }
    }

    fn addr(&self, listener: &str) -> SocketAddr {
        self.listening.iter().find(|(name, _)| name == listener).unwrap().1
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("hawser did not exit within 5 s of SIGTERM");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let mut hawser = Process::start(&["run", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"], 2);
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    assert_eq!(get(admin, "admin", "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(admin, "admin", "/readyz").await.0, StatusCode::OK);
    let (status, _, routes) = get(admin, "admin", "/debug/routes").await;
    assert_eq!(status, StatusCode::OK);
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

#[test]
fn bad_flags_exit_with_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_hawser"))
        .args(["run", "--trusted-proxies", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--trusted-proxies"));
}
