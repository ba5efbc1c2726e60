//! hawser's own HTTP/1.1 server, seen on the wire by a raw client: responses framed as hyper's
//! server frames them (`Content-Length`, chunked, none after `HEAD`, `204` and `304`, a `Date`),
//! pipelined requests answered in order, a request with a body in the middle of a connection
//! served by hyper with the rest of it, `Connection: close` honoured, an idle keep-alive
//! connection closed after the header-read timeout, on shutdown the request in flight
//! answered with `Connection: close` while idle connections close, a head sent a byte at a
//! time served, and a client that goes away cancelling its request — in clear text and over TLS
//! (where a connection hawser ends is ended with `close_notify`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use hawser::model::Policy;
use hawser::proxy::ProxyConfig;
use http::Response;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a test client reaches the proxy: in clear text, or over TLS (offering only HTTP/1.1;
/// the proxy presents its default certificate, which the client takes).
#[derive(Clone, Copy, Debug)]
enum Over {
    Tcp,
    Tls,
}

const BOTH: [Over; 2] = [Over::Tcp, Over::Tls];

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(proxy: &TestProxy, over: Over) -> Box<dyn Stream> {
    match over {
        Over::Tcp => Box::new(TcpStream::connect(proxy.addr).await.unwrap()),
        Over::Tls => Box::new(common::tls::tls_connect(proxy.tls_addr, "a.test", &[b"http/1.1"]).await),
    }
}

/// One response as it came on the wire: status, fields (names lower-cased), body decoded.
#[derive(Debug)]
struct Wire {
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Wire {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads one response off `stream` (`buffered` keeps what follows it), its body framed by
/// `Content-Length` or chunked; none when `bodiless` (after `HEAD`, `204`, `304`).
async fn read_response<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    buffered: &mut Vec<u8>,
    bodiless: bool,
) -> Option<Wire> {
    let (status, fields, length) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(length) = response.parse(buffered).unwrap() {
            let fields = response
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                .collect::<Vec<_>>();
            break (response.code.unwrap(), fields, length);
        }
        fill(stream, buffered).await?;
    };
    buffered.drain(..length);
    let mut wire = Wire { status, fields, body: Vec::new() };
    if bodiless || status == 204 || status == 304 {
        return Some(wire);
    }
    if let Some(length) = wire.field("content-length") {
        let length: usize = length.parse().unwrap();
        while buffered.len() < length {
            fill(stream, buffered).await?;
        }
        wire.body = buffered.drain(..length).collect();
        return Some(wire);
    }
    assert_eq!(wire.field("transfer-encoding"), Some("chunked"), "{wire:?}");
    loop {
        let line_end = loop {
            if let Some(end) = buffered.windows(2).position(|w| w == b"\r\n") {
                break end;
            }
            fill(stream, buffered).await?;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&buffered[..line_end]).unwrap(), 16).unwrap();
        while buffered.len() < line_end + 2 + size + 2 {
            fill(stream, buffered).await?;
        }
        wire.body.extend_from_slice(&buffered[line_end + 2..line_end + 2 + size]);
        buffered.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return Some(wire);
        }
    }
}

async fn fill<S: AsyncRead + Unpin + ?Sized>(stream: &mut S, buffered: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await.ok()?.ok()?;
    (n > 0).then(|| buffered.extend_from_slice(&chunk[..n]))
}

/// Whether the proxy closes `stream` within `within` (its end read, nothing else; over TLS the
/// end must be a `close_notify`, or the read fails).
async fn closes_within<S: AsyncRead + Unpin + ?Sized>(stream: &mut S, within: Duration) -> bool {
    let mut rest = Vec::new();
    matches!(tokio::time::timeout(within, stream.read_to_end(&mut rest)).await, Ok(Ok(0)))
}

/// A backend answering by path: `/length` (a `Content-Length` body), `/chunked` (a streamed
/// body of unknown length), `/empty` (`204`), `/cached` (`304`), `/delay` (after
/// 600 ms), anything else with the method, path and body length it got.
async fn backend() -> Server {
    common::backend(|req: http::Request<hyper::body::Incoming>| async move {
        use http_body_util::BodyExt;
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let response = |status: u16, body| Response::builder().status(status).body(body).unwrap();
        match path.as_str() {
            "/length" => response(200, full_body("0123456789")),
            "/chunked" => {
                let frames =
                    futures_util::stream::iter(["ab", "", "cde", "fghij"].map(|part| {
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(part.into()))
                    }));
                response(200, http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(frames)))
            }
            "/empty" => response(204, empty_body()),
            "/cached" => response(304, empty_body()),
            "/delay" => {
                tokio::time::sleep(ms(600)).await;
                response(200, full_body("late"))
            }
            _ => response(200, full_body(format!("{method} {path} {}", body.len()))),
        }
    })
    .await
}

async fn proxy_for(backend: &Server, config: ProxyConfig) -> TestProxy {
    TestProxy::with_config(simple_table(&[backend.addr], Policy::default()), config).await
}

fn get_head(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n")
}

/// A request, whether its response has no body, its status, a framing field and the body.
type Case<'a> = (&'a str, bool, u16, (&'a str, &'a str), &'a [u8]);

#[tokio::test]
async fn responses_are_framed_as_hyper_frames_them() {
    for over in BOTH {
        let backend = backend().await;
        let proxy = proxy_for(&backend, ProxyConfig::default()).await;
        let mut stream = connect(&proxy, over).await;
        let mut buffered = Vec::new();
        let cases: &[Case] = &[
            ("GET /length", false, 200, ("content-length", "10"), b"0123456789"),
            ("GET /chunked", false, 200, ("transfer-encoding", "chunked"), b"abcdefghij"),
            ("HEAD /length", true, 200, ("content-length", "10"), b""),
            ("GET /empty", false, 204, ("date", ""), b""),
            ("GET /cached", false, 304, ("date", ""), b""),
            ("GET /other", false, 200, ("content-length", "12"), b"GET /other 0"),
        ];
        for (request, bodiless, status, (field, value), body) in cases {
            let (method, path) = request.split_once(' ').unwrap();
            let head = format!("{method} {path} HTTP/1.1\r\nHost: a.test\r\n\r\n");
            stream.write_all(head.as_bytes()).await.unwrap();
            let wire = read_response(&mut stream, &mut buffered, *bodiless).await.unwrap();
            assert_eq!(wire.status, *status, "{over:?} {request}: {wire:?}");
            if !value.is_empty() {
                assert_eq!(wire.field(field), Some(*value), "{request}: {wire:?}");
            }
            assert_eq!(wire.body, *body, "{request}");
            assert!(wire.field("date").is_some(), "{request}: no Date: {wire:?}");
            if *status == 204 || *status == 304 {
                assert_eq!(wire.field("content-length"), None, "{request}: {wire:?}");
            }
            assert_eq!(wire.fields.iter().filter(|(n, _)| n == "date").count(), 1, "{request}: {wire:?}");
        }
        // Every answer came whole on one connection: nothing stray is left behind them.
        tokio::time::sleep(ms(100)).await;
        stream.write_all(get_head("/last").as_bytes()).await.unwrap();
        let wire = read_response(&mut stream, &mut buffered, false).await.unwrap();
        assert_eq!(wire.body, b"GET /last 0");
        assert!(buffered.is_empty(), "{:?}", String::from_utf8_lossy(&buffered));
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_one_with_a_body_goes_to_hyper_with_the_rest() {
    for over in BOTH {
        let backend = backend().await;
        let proxy = proxy_for(&backend, ProxyConfig::default()).await;
        let mut stream = connect(&proxy, over).await;
        let pipelined = [
            get_head("/1"),
            get_head("/2"),
            "POST /3 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello".to_owned(),
            get_head("/4"),
            "DELETE /5 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".to_owned(),
        ]
        .concat();
        stream.write_all(pipelined.as_bytes()).await.unwrap();
        let mut buffered = Vec::new();
        for expected in ["GET /1 0", "GET /2 0", "POST /3 5", "GET /4 0", "DELETE /5 0"] {
            let wire = read_response(&mut stream, &mut buffered, false).await.unwrap();
            assert_eq!(String::from_utf8_lossy(&wire.body), expected, "{wire:?}");
            if expected.starts_with("DELETE") {
                assert_eq!(wire.field("connection"), Some("close"), "{wire:?}");
            }
        }
        assert!(
            closes_within(&mut stream, Duration::from_secs(2)).await,
            "{over:?}: open after Connection: close"
        );
    }
}

#[tokio::test]
async fn connection_close_is_answered_with_it_and_the_connection_ends() {
    for over in BOTH {
        let backend = backend().await;
        let proxy = proxy_for(&backend, ProxyConfig::default()).await;
        let mut stream = connect(&proxy, over).await;
        stream
            .write_all(b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, close\r\n\r\n")
            .await
            .unwrap();
        let wire = read_response(&mut stream, &mut Vec::new(), false).await.unwrap();
        assert_eq!(wire.status, 200);
        assert_eq!(wire.field("connection"), Some("close"), "{over:?}: {wire:?}");
        assert!(closes_within(&mut stream, Duration::from_secs(2)).await, "{over:?}");
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lives_one_header_read_timeout() {
    for over in BOTH {
        let backend = backend().await;
        let config = ProxyConfig { header_read_timeout: ms(400), ..ProxyConfig::default() };
        let proxy = proxy_for(&backend, config).await;
        let mut stream = connect(&proxy, over).await;
        let mut buffered = Vec::new();
        // Requests closer together than the timeout keep the connection, however long it lives.
        for n in 0..4 {
            tokio::time::sleep(ms(250 * n.min(1))).await;
            stream.write_all(get_head(&format!("/{n}")).as_bytes()).await.unwrap();
            assert_eq!(read_response(&mut stream, &mut buffered, false).await.unwrap().status, 200);
        }
        let idle = Instant::now();
        assert!(closes_within(&mut stream, Duration::from_secs(3)).await, "{over:?}: still open");
        let lived = idle.elapsed();
        assert!(
            lived >= ms(350) && lived < ms(650),
            "closed {lived:?} after the last answer, not one timeout"
        );
    }
}

#[tokio::test]
async fn on_shutdown_the_request_in_flight_is_answered_with_close_and_idle_connections_end() {
    for over in BOTH {
        let backend = backend().await;
        let proxy = proxy_for(&backend, ProxyConfig::default()).await;
        let mut busy = connect(&proxy, over).await;
        let mut idle = connect(&proxy, over).await;
        idle.write_all(get_head("/idle").as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut idle, &mut Vec::new(), false).await.unwrap().status, 200);
        busy.write_all(get_head("/delay").as_bytes()).await.unwrap();
        tokio::time::sleep(ms(100)).await;
        drop(proxy); // stops the listeners: in-flight requests have a 1 s grace
        assert!(
            closes_within(&mut idle, Duration::from_millis(500)).await,
            "{over:?}: an idle connection stayed open"
        );
        let wire = read_response(&mut busy, &mut Vec::new(), false).await.unwrap();
        assert_eq!((wire.status, wire.body.as_slice()), (200, &b"late"[..]));
        assert_eq!(wire.field("connection"), Some("close"), "{over:?}: {wire:?}");
        assert!(closes_within(&mut busy, Duration::from_secs(1)).await, "{over:?}");
    }
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_served() {
    let backend = backend().await;
    let proxy = proxy_for(&backend, ProxyConfig::default()).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let head = "GET /slowly HTTP/1.1\r\nHost: a.test\r\nX-Filler: 0123456789\r\n\r\n";
    for byte in head.as_bytes() {
        stream.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(ms(1)).await;
    }
    let wire = read_response(&mut stream, &mut Vec::new(), false).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&wire.body), "GET /slowly 0");
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_request() {
    for over in BOTH {
        // A backend that reads a request, never answers, and reports when its connection closes.
        let (closed, mut backend_saw_close) = tokio::sync::mpsc::unbounded_channel();
        let silent = raw_backend(move |mut stream: TcpStream| {
            let closed = closed.clone();
            async move {
                let mut sink = [0u8; 4096];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                let _ = closed.send(());
            }
        })
        .await;
        let proxy = proxy_for(&silent, ProxyConfig::default()).await;
        let mut stream = connect(&proxy, over).await;
        stream.write_all(get_head("/never").as_bytes()).await.unwrap();
        tokio::time::sleep(ms(200)).await;
        drop(stream);
        let cancelled = tokio::time::timeout(Duration::from_secs(2), backend_saw_close.recv()).await;
        assert!(cancelled.is_ok(), "{over:?}: the backend exchange outlived its client");
    }
}
