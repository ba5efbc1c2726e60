//! A WebSocket load generator for `bench/run.py`: round-trip latency, pipelined throughput,
//! handshake rate, and idle connections held open. Every loop is bounded in time and count, and
//! only loopback addresses are meant as targets. Prints one JSON object.
//!
//! ```text
//! wsload latency    --addr 127.0.0.1:8080 --host bench.test --connections 100 --size 64 --seconds 5
//! wsload throughput --addr ... --connections 100 --size 65536 --pipeline 8 --seconds 5
//! wsload handshakes --addr ... --connections 50 --seconds 5
//! wsload hold       --addr ... --connections 2000 --seconds 30   (prints "ready" when all are open)
//! wsload echo       --addr 127.0.0.1:9000                          (the backend; prints "listening")
//! ```
//!
//! It must be far faster than any proxy it measures, or it measures itself: it runs on one
//! thread (the benchmark gives it one core), and after the handshake a connection writes
//! prepared frames (`pipeline` of them in one write) and counts the echoed bytes, with no
//! per-message frame objects or allocations. `wsload echo` is a backend built the same way.
//!
//! `--tls` speaks `wss://` (SNI = `--host`, `tls.rs`).
#![allow(clippy::unwrap_used)]

mod echo;
mod frames;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Args {
    mode: String,
    addr: SocketAddr,
    host: String,
    path: String,
    connections: usize,
    size: usize,
    pipeline: usize,
    seconds: f64,
    tls: Option<tokio_rustls::TlsConnector>,
}

fn args() -> Args {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().unwrap_or_default();
    let mut args = Args {
        mode,
        addr: "127.0.0.1:8080".parse().unwrap(),
        host: "bench.test".into(),
        path: "/ws".into(),
        connections: 1,
        size: 64,
        pipeline: 1,
        seconds: 5.0,
        tls: None,
    };
    while let Some(flag) = argv.next() {
        if flag == "--tls" {
            args.tls = Some(tls::connector());
            continue;
        }
        let value = argv.next().unwrap_or_default();
        match flag.as_str() {
            "--addr" => args.addr = value.parse().unwrap(),
            "--host" => args.host = value,
            "--path" => args.path = value,
            "--connections" => args.connections = value.parse().unwrap(),
            "--size" => args.size = value.parse().unwrap(),
            "--pipeline" => args.pipeline = value.parse().unwrap(),
            "--seconds" => args.seconds = value.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// A byte stream to the target: plain TCP or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

async fn open(args: &Args) -> Ws {
    let scheme = if args.tls.is_some() { "wss" } else { "ws" };
    let mut request = format!("{scheme}://{}{}", args.host, args.path).into_client_request().unwrap();
    request.headers_mut().insert("host", args.host.parse().unwrap());
    let stream = TcpStream::connect(args.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let stream: Box<dyn Io> = match &args.tls {
        Some(connector) => {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(args.host.clone()).unwrap();
            Box::new(connector.connect(name, stream).await.unwrap())
        }
        None => Box::new(stream),
    };
    tokio_tungstenite::client_async(request, stream).await.unwrap().0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Arc::new(args());
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let report = match args.mode.as_str() {
        "echo" => {
            let listener = tokio::net::TcpListener::bind(args.addr).await.unwrap();
            println!("listening {}", listener.local_addr().unwrap());
            echo::serve(listener).await;
            return;
        }
        "latency" | "throughput" => exchange(args.clone(), deadline).await,
        "handshakes" => handshakes(args.clone(), deadline).await,
        "hold" => hold(args.clone(), deadline).await,
        other => panic!("unknown mode {other:?}"),
    };
    println!("{report}");
}

/// Each connection keeps `pipeline` messages in flight and counts echoes; with a pipeline of 1
/// every round trip is timed.
async fn exchange(args: Arc<Args>, deadline: Instant) -> serde_json::Value {
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap()));
    let echoed = Arc::new(AtomicU64::new(0));
    let mut sockets = Vec::new();
    for _ in 0..args.connections {
        sockets.push(open(&args).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| {
            let (args, histogram, echoed) = (args.clone(), histogram.clone(), echoed.clone());
            tokio::spawn(async move {
                let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                let messages = exchange_frames(ws.into_inner(), &args, deadline, &mut local).await;
                echoed.fetch_add(messages, Ordering::Relaxed);
                histogram.lock().await.add(&local).unwrap();
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let histogram = histogram.lock().await;
    let messages = echoed.load(Ordering::Relaxed);
    serde_json::json!({
        "mode": args.mode, "connections": args.connections, "size": args.size, "pipeline": args.pipeline,
        "messages": messages, "seconds": elapsed, "messages_per_second": messages as f64 / elapsed,
        "p50_us": histogram.value_at_quantile(0.5), "p99_us": histogram.value_at_quantile(0.99),
        "p999_us": histogram.value_at_quantile(0.999),
    })
}

/// One connection's exchange after its handshake: `pipeline` prepared frames in one write, then
/// reads until all their echoes' bytes are in; each batch's round trip is recorded. Returns the
/// messages echoed.
async fn exchange_frames(
    mut io: Box<dyn Io>,
    args: &Args,
    deadline: Instant,
    latency: &mut Histogram<u64>,
) -> u64 {
    use tokio::io::AsyncWriteExt;
    let batch: Vec<u8> = frames::masked_binary(args.size).repeat(args.pipeline);
    let expected = frames::server_frame_len(args.size) * args.pipeline;
    let mut buffer = Vec::with_capacity(expected + 64 * 1024);
    let mut echoed = 0;
    while Instant::now() < deadline {
        let sent = Instant::now();
        if io.write_all(&batch).await.is_err() {
            break;
        }
        buffer.clear();
        while buffer.len() < expected {
            match tokio::time::timeout(Duration::from_secs(10), echo::read_more(&mut io, &mut buffer)).await {
                Ok(read) if read > 0 => {}
                _ => return echoed,
            }
        }
        let _ = latency.record(sent.elapsed().as_micros() as u64);
        echoed += args.pipeline as u64;
    }
    echoed
}

/// New connection + upgrade + one echo + close, `connections` at a time.
async fn handshakes(args: Arc<Args>, deadline: Instant) -> serde_json::Value {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| {
            let (args, done, failed) = (args.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut ws = open(&args).await;
                    let ok =
                        ws.send(Message::text("hi")).await.is_ok() && matches!(ws.next().await, Some(Ok(_)));
                    let _ = ws.close(None).await;
                    if ok { &done } else { &failed }.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    serde_json::json!({"mode": "handshakes", "handshakes": n, "failed": failed.load(Ordering::Relaxed), "seconds": elapsed, "handshakes_per_second": n as f64 / elapsed})
}

/// Opens `connections` idle WebSockets, says "ready", holds them until the deadline or until
/// standard input closes, then checks they are all still open.
async fn hold(args: Arc<Args>, deadline: Instant) -> serde_json::Value {
    let mut sockets = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        sockets.push(open(&args).await);
    }
    println!("ready");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = stop.clone();
    tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        watcher.store(true, Ordering::Relaxed);
    });
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut alive = 0;
    for ws in &mut sockets {
        if ws.send(Message::text("alive?")).await.is_ok()
            && matches!(tokio::time::timeout(Duration::from_secs(5), ws.next()).await, Ok(Some(Ok(_))))
        {
            alive += 1;
        }
    }
    serde_json::json!({"mode": "hold", "connections": args.connections, "alive": alive})
}
