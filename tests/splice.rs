//! Zero-copy's limits, through the proxy with real WebSocket clients: no more than 32 pipes are
//! ever open, tunnels past the cap copy their payload intact, and where splice(2) is refused
//! (a seccomp profile, as container runtimes apply) tunnels copy too, the one that met the
//! refusal included.
//!
//! One test, two parts in order: the refusal is remembered process-wide (tunnels stop trying),
//! so it must come after the part that needs splicing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hawser::model::Policy;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// hawser's cap on pipes open at once (DESIGN.md, "Zero-copy tunnels"): two descriptors each.
const MAX_PIPES: usize = 32;
/// Large enough that a backend which does not read leaves bytes stuck in the tunnel's pipe.
const MESSAGE: usize = 4 * 1024 * 1024;

#[test]
fn pipes_are_capped_and_a_refused_splice_falls_back_to_copying() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(pipes_are_capped());
    // splice(2) refused from here on, in a thread of its own (a seccomp filter binds the thread
    // that installs it and the threads it starts).
    std::thread::spawn(|| {
        refuse_splice();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(refused_splice_copies());
    })
    .join()
    .unwrap();
}

/// More tunnels move large messages than there may be pipes, towards backends that read
/// nothing until told: every pipe the cap allows fills and stays held, the rest copy. Then the
/// backends read, and every message arrives whole.
async fn pipes_are_capped() {
    let tunnels = MAX_PIPES + 8;
    let (go, ready) = watch::channel(false);
    let backend = raw_backend(move |stream: TcpStream| {
        let mut ready = ready.clone();
        async move {
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            ready.wait_for(|go| *go).await.unwrap();
            let message = ws.next().await.unwrap().unwrap().into_data();
            let intact = message == payload();
            ws.send(Message::text(if intact { "intact" } else { "damaged" })).await.unwrap();
        }
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let before = open_pipes();
    let mut clients = Vec::new();
    for _ in 0..tunnels {
        let (mut ws, _) = ws_open(proxy.addr, "big.test", "/").await;
        clients.push(tokio::spawn(async move {
            ws.send(Message::binary(payload())).await.unwrap();
            let answer = tokio::time::timeout(Duration::from_secs(30), ws.next()).await;
            answer.expect("no answer in time").unwrap().unwrap()
        }));
    }
    // Every pipe the cap allows is taken and held (its tunnel's backend reads nothing)...
    eventually("all the pipes the cap allows", || (open_pipes() - before == MAX_PIPES).then_some(())).await;
    // ...and no more: the other tunnels copy.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(open_pipes() - before, MAX_PIPES, "more pipes than the cap");
    go.send(true).unwrap();
    for client in clients {
        assert_eq!(client.await.unwrap(), Message::text("intact"));
    }
}

/// With splice(2) refused, large messages through a plain-TCP tunnel still round-trip whole,
/// on the tunnel that met the refusal and after it, and nothing is counted as spliced.
async fn refused_splice_copies() {
    let echo = echo("ws").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    let spliced = spliced_bytes(&proxy);
    let (mut ws, _) = ws_open(proxy.addr, "big.test", "/").await;
    for _ in 0..2 {
        ws.send(Message::binary(payload())).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), ws.next()).await;
        assert_eq!(answer.expect("no echo in time").unwrap().unwrap().into_data(), payload());
    }
    assert_eq!(spliced_bytes(&proxy), spliced, "splice(2) was refused, yet bytes were spliced");
}

/// The large message every client sends (the same bytes each time, allocated once).
fn payload() -> Bytes {
    static PAYLOAD: std::sync::LazyLock<Bytes> =
        std::sync::LazyLock::new(|| (0..MESSAGE).map(|i| (i % 251) as u8).collect());
    PAYLOAD.clone()
}

/// Pipes open in this process: one per pipe, counting read ends.
fn open_pipes() -> usize {
    let descriptors = std::fs::read_dir("/proc/self/fd").unwrap();
    let targets = descriptors.filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok());
    targets.filter(|target| target.to_string_lossy().starts_with("pipe:")).count() / 2
}

/// Makes splice(2) fail with `EPERM` in this thread and the threads it starts, as a container
/// runtime's seccomp profile can.
fn refuse_splice() {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
    let rules = BTreeMap::from([(libc::SYS_splice, vec![])]);
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
            .unwrap();
    let program = BpfProgram::try_from(filter).unwrap();
    seccompiler::apply_filter(&program).unwrap();
}
