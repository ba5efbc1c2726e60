//! HTTP/2 abuse on the clear-text listener, written frame by frame: a rapid-reset flood
//! (CVE-2023-44487) and a CONTINUATION flood (CVE-2024-27316 class) each end their own
//! connection with GOAWAY (or a close), while a well-behaved client beside them is served.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hawser::model::Policy;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut bytes = vec![length[1], length[2], length[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// `GET http://a.test/` in HPACK: static entries for :method, :scheme and :path, and
/// :authority as a literal without indexing (RFC 7541 §6.2.2).
fn get_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 6];
    block.extend_from_slice(b"a.test");
    block
}

/// Writes `frames` after the preface and an empty SETTINGS, then reads until the server sends
/// GOAWAY or closes. True when it did so within 10 s.
async fn ended_by_server(addr: SocketAddr, frames: Vec<u8>) -> bool {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut opening = PREFACE.to_vec();
    opening.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&opening).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Written while reading, as an attacker would: the server may stop reading at any point.
    let flood = tokio::spawn(async move {
        for chunk in frames.chunks(16 * 1024) {
            if writer.write_all(chunk).await.is_err() {
                return;
            }
        }
    });
    let verdict = tokio::time::timeout(Duration::from_secs(10), async {
        let mut head = [0u8; 9];
        loop {
            if reader.read_exact(&mut head).await.is_err() {
                return true; // closed (or reset) by the server
            }
            let length = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; length];
            if reader.read_exact(&mut payload).await.is_err() {
                return true;
            }
            if head[3] == GOAWAY {
                return true;
            }
        }
    })
    .await
    .unwrap_or(false);
    flood.abort();
    verdict
}

/// A well-behaved client keeps getting answers while `abuse` runs.
async fn others_are_served_during(proxy: &TestProxy, abuse: impl std::future::Future<Output = bool>) {
    let addr = proxy.addr;
    let bystander = tokio::spawn(async move {
        for _ in 0..20 {
            assert_eq!(get(addr, "a.test", "/").await.0, StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(abuse.await, "the abusive connection was not ended");
    bystander.await.unwrap();
    assert_eq!(get(addr, "a.test", "/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_rapid_reset_flood_gets_goaway() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    let mut frames = Vec::new();
    for stream in (1..20_000u32).step_by(2) {
        frames.extend(frame(HEADERS, END_STREAM | END_HEADERS, stream, &get_block()));
        frames.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes())); // CANCEL
    }
    others_are_served_during(&proxy, ended_by_server(proxy.addr, frames)).await;
}

#[tokio::test]
async fn a_continuation_flood_gets_goaway() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    // One header block that never ends: a HEADERS without END_HEADERS, then 4 MiB of
    // CONTINUATION frames repeating a literal header field, none with END_HEADERS.
    let mut field = vec![0x00, 5];
    field.extend_from_slice(b"x-pad");
    field.push(100);
    field.extend_from_slice(&[b'p'; 100]);
    let mut frames = frame(HEADERS, END_STREAM, 1, &get_block());
    let piece: Vec<u8> = field.iter().copied().cycle().take(1024).collect();
    for _ in 0..4096 {
        frames.extend(frame(CONTINUATION, 0, 1, &piece));
    }
    others_are_served_during(&proxy, ended_by_server(proxy.addr, frames)).await;
}
