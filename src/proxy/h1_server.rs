//! hawser's own HTTP/1.1 server for the common request: HTTP/1.1, no body, no expectation, in
//! clear text or over TLS (a clear-text WebSocket handshake is one too: after its `101` the
//! socket goes to the tunnel; over TLS, upgrades are hyper's, `stream.rs`).
//! Such requests are read, answered and written in the connection's own task; the first
//! request that is anything else is handed, with every byte read so far,
//! to hyper's server, which serves the rest of the connection (as the listener does with the
//! HTTP/2 preface, `prefixed.rs`). So every request with a body is framed by hyper alone, and
//! so are the `400`/`431` answers to heads that cannot be read.
//!
//! What this saves per request, against hyper's server connection: its dispatch loop and
//! codec, a fresh header-read timer (here one timer per connection, moved only when it fires),
//! the read buffer's regrowth, and header values copied out of it (here they stay views of the
//! bytes read). The response is encoded as hyper's server encodes it (`response.rs`).

mod response;
pub(super) mod spare;
mod stream;

use std::future::{Future, poll_fn};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use super::Proxy;
use super::body::ProxyBody;
use super::headers::{Client, list_has};
use super::request_body::RequestBody;
use super::service::ClientRequest;
use super::tunnel::{ClientSide, TunnelSlot};
pub(super) use stream::ClientStream;

/// The most fields a head read here may have; a head with more goes to hyper (which allows 100).
const MAX_FIELDS: usize = 64;

/// Fields a request may gain in hawser before it goes to its backend, room for which its map
/// is given from the start.
const ADDED_FIELDS: usize = 8;

/// The connection and what was read from it but not served: the rest of it, for hyper.
pub(super) struct Handoff<S> {
    pub stream: S,
    pub read: Bytes,
}

/// How a connection's requests here ended. Returned once per connection, never stored: the
/// tunnel's response is moved, not boxed (an allocation per handshake).
#[allow(clippy::large_enum_variant)]
enum Next {
    /// The connection closes.
    Close,
    /// A request hyper must serve came: every byte read from it on.
    Hyper(Bytes),
    /// A `101` to an upgrade: written, then the connection is its tunnel's (with the bytes the
    /// client sent behind its request).
    Tunnel(Response<ProxyBody>, BytesMut, Option<TunnelSlot>),
}

/// Serves the connection's simple requests until it closes (`None`) or a request comes that
/// hyper must serve (`Some`). `read` holds the bytes read so far, and the first head must be
/// whole by `first_due`. When `closing` turns true, the request in flight is answered with
/// `Connection: close`, and an idle connection closes.
pub(super) async fn serve<S: ClientStream>(
    proxy: &Arc<Proxy>,
    mut stream: S,
    first: (BytesMut, Instant),
    client: &Client,
    closing: watch::Receiver<bool>,
) -> Option<Handoff<S>> {
    let mut write = Vec::new();
    match serve_requests(proxy, &mut stream, first, client, closing, &mut write).await {
        Next::Close => {
            stream.close().await;
            None
        }
        Next::Hyper(read) => Some(Handoff { stream, read }),
        Next::Tunnel(response, read, slot) => {
            // Boxed: a connection switches once, and its task need not be sized for it.
            Box::pin(switch(stream, response, read, slot, &mut write)).await;
            None
        }
    }
}

/// The request loop of [`serve`]. `write` is the connection's buffer for response heads.
async fn serve_requests<S: ClientStream>(
    proxy: &Arc<Proxy>,
    stream: &mut S,
    (mut read, first_due): (BytesMut, Instant),
    client: &Client,
    mut closing: watch::Receiver<bool>,
    write: &mut Vec<u8>,
) -> Next {
    let max_head = proxy.config.max_header_bytes;
    let mut timer = HeadTimer::new(proxy.config.header_read_timeout, first_due);
    let mut closed = std::pin::pin!({
        let mut closing = closing.clone();
        async move {
            let _ = closing.wait_for(|closing| *closing).await;
        }
    });
    loop {
        // A head that comes in pieces is parsed again only once a blank line may have arrived
        // (or the buffer is full), so one sent a byte at a time costs one scan, not one per byte.
        let mut scanned = 0;
        let (mut request, asked) = loop {
            if scanned == 0 || read.len() >= max_head || may_end_head(&read, scanned) {
                match parse(&mut read, max_head, S::TUNNELS) {
                    Parsed::Request(request, asked) => break (request, asked),
                    Parsed::Other(read) => return Next::Hyper(read),
                    Parsed::Partial => {}
                }
            }
            scanned = read.len();
            let idle = read.is_empty();
            if idle {
                // Between requests no read buffer is held until the client sends again (as
                // nginx frees its header buffer on keep-alive): an idle connection keeps its
                // task, its socket and the response-head buffer (1 KiB, kept: freeing it too
                // would cost every request another allocation for a quarter of the saving).
                // The buffer waits for the thread's next reader among its spares.
                spare::give_back(std::mem::take(&mut read));
            }
            let more = async {
                if idle {
                    stream.wait_for_data().await;
                    read = spare::take();
                }
                read.reserve(spare::READ_SIZE);
                stream.read_buf(&mut read).await
            };
            tokio::select! {
                biased;
                more = more => {
                    // A client may close between requests; one that closes mid-head gets
                    // nothing either (hyper's server answers nothing then too).
                    if !matches!(more, Ok(n) if n > 0) {
                        return Next::Close;
                    }
                }
                () = poll_fn(|cx| timer.poll_expired(cx)) => {
                    tracing::debug!("no request head within the header-read timeout");
                    return Next::Close;
                }
                () = closed.as_mut() => return Next::Close,
            }
        };
        let head_request = request.method() == Method::HEAD;
        let slot = asked.upgrade.then(|| {
            let slot = TunnelSlot::default();
            request.extensions_mut().insert(slot.clone());
            slot
        });
        // Boxed, as the response's writing below: the connection's task is then as small as
        // what it keeps between requests (an idle keep-alive connection keeps only that), for
        // an allocation per request.
        let mut handling = Box::pin(proxy.clone().handle(request, client.clone()));
        let response = loop {
            if !read.is_empty() {
                break handling.as_mut().await;
            }
            // While nothing else was sent, a client that goes away cancels its request (as with
            // hyper's server, which watches the same way); what it sends meanwhile (a pipelined
            // request, a WebSocket's first frames) is kept for later.
            tokio::select! {
                biased;
                response = handling.as_mut() => break response,
                more = stream.read_buf(&mut read) => {
                    if !matches!(more, Ok(n) if n > 0) {
                        tracing::debug!("the client went away before its answer");
                        return Next::Close;
                    }
                }
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Next::Tunnel(response, read, slot);
        }
        let close = asked.close || *closing.borrow_and_update();
        let framing = response::Framing { head_request, close };
        if !Box::pin(response::write(stream, response, framing, write)).await {
            return Next::Close;
        }
        timer.start();
    }
}

/// Whether the bytes read since `scanned` (with the three before, where the blank line may
/// begin) hold one: CRLF CRLF, or LF LF, which httparse, like hyper, also takes.
fn may_end_head(read: &[u8], scanned: usize) -> bool {
    read.get(scanned.saturating_sub(3)..)
        .is_some_and(|tail| tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n"))
}

/// Writes a `101` and hands the socket, with what the client sent behind its request, to the
/// tunnel the handshake left in `slot`. The connection is the tunnel's from then on.
async fn switch<S: ClientStream>(
    mut stream: S,
    response: Response<ProxyBody>,
    mut read: BytesMut,
    slot: Option<TunnelSlot>,
    write: &mut Vec<u8>,
) {
    let tunnel = slot.and_then(|slot| slot.take());
    let framing = response::Framing { head_request: false, close: false };
    let written = response::write(&mut stream, response, framing, write).await;
    // Only a plain socket is tunnelled from here (`ClientStream::TUNNELS`).
    match (tunnel, stream.into_socket()) {
        (Some((tunnel, backend)), Some(socket)) if written => {
            // What the client sent behind its handshake, usually nothing: then the buffer is
            // the thread's again.
            let early = if read.is_empty() { Bytes::new() } else { read.split().freeze() };
            spare::give_back(read);
            tunnel.spawn(ClientSide::Socket(socket, early), backend);
        }
        (Some((tunnel, _)), _) => tunnel.incomplete(),
        (None, _) => {}
    }
}

/// The header-read timeout (hyper's `header_read_timeout`): a request head must arrive whole
/// within it from the moment the connection waits for one, idle time between requests
/// included. One timer for the whole connection: each head only notes its deadline, and the
/// timer is moved on when it fires early (arming a timer per request costs a timer-wheel
/// insert and removal each). It is polled only when it fired or was just armed: a `Sleep`
/// keeps the waker of its last poll, always this connection's task, and each poll would swap
/// that waker for an equal one.
struct HeadTimer {
    limit: Duration,
    due: Instant,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Armed (or moved) since its last poll: its waker is not registered yet.
    armed: bool,
}

impl HeadTimer {
    /// The first head is due at `due`.
    fn new(limit: Duration, due: Instant) -> Self {
        Self { limit, due, sleep: Box::pin(sleep_until(due)), armed: true }
    }

    /// A new head is awaited from now.
    fn start(&mut self) {
        self.due = Instant::now() + self.limit;
    }

    /// Ready once the current head's deadline has passed.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !(self.armed || self.sleep.is_elapsed()) {
            return Poll::Pending;
        }
        self.armed = false;
        while self.sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= self.due {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(self.due);
        }
        Poll::Pending
    }
}

/// What the bytes read so far hold.
#[derive(Debug)]
enum Parsed {
    /// A simple request, and what its client asked for beyond it.
    Request(ClientRequest, Asked),
    /// Not a whole head yet, and within the size limit.
    Partial,
    /// A head for hyper (or bytes hyper will refuse): every byte read, unconsumed.
    Other(Bytes),
}

/// What a request asks of its connection.
#[derive(Clone, Copy, Debug, Default)]
struct Asked {
    /// `Connection: close`: the connection closes after the response.
    close: bool,
    /// `Upgrade`: on a `101` the connection becomes a tunnel.
    upgrade: bool,
}

/// Where one field's name and value lie in the head.
#[derive(Clone, Copy, Default)]
struct FieldSpan {
    name: (usize, usize),
    value: (usize, usize),
}

/// Reads one request head from the front of `read`, taking it out when it is a simple request
/// (an upgrade only when the connection `tunnels` here).
fn parse(read: &mut BytesMut, max_head: usize, tunnels: bool) -> Parsed {
    // Left uninitialised: httparse writes the fields it finds (as the response's, `h1/head.rs`).
    let mut fields = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut head = httparse::Request::new(&mut []);
    let length = match head.parse_with_uninit_headers(read, &mut fields) {
        Ok(httparse::Status::Complete(length)) if length <= max_head => length,
        Ok(httparse::Status::Partial) if read.len() < max_head => return Parsed::Partial,
        // Too long, too many fields, malformed: hyper answers (400, 431).
        _ => return for_hyper(read),
    };
    let (base, limit) = (read.as_ptr() as usize, length);
    // Where a part lies in the head; `None` for one that is not a view of it (httparse gives
    // literals for some empty parts).
    let span = |part: &[u8]| {
        let start = (part.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(part.len())?;
        (end <= limit).then_some((start, end))
    };
    let (Some(method), Some(target), Some(1)) = (head.method, head.path, head.version) else {
        return for_hyper(read);
    };
    let (Some(method), Some(target)) = (span(method.as_bytes()), span(target.as_bytes())) else {
        return for_hyper(read);
    };
    let mut spans = [FieldSpan::default(); MAX_FIELDS];
    let mut asked = Asked::default();
    for (field, slot) in head.headers.iter().zip(spans.iter_mut()) {
        match Simple::of(field) {
            Simple::No => return for_hyper(read),
            Simple::Close => asked.close = true,
            Simple::Upgrade => asked.upgrade = true,
            Simple::Yes => {}
        }
        let value = if field.value.is_empty() { Some((0, 0)) } else { span(field.value) };
        let (Some(name), Some(value)) = (span(field.name.as_bytes()), value) else {
            return for_hyper(read);
        };
        *slot = FieldSpan { name, value };
    }
    // An upgrade is a GET (RFC 6455 §4.1); others with `Upgrade` are hyper's, and so are all
    // upgrades of a connection whose tunnel runs on hyper's upgraded stream (TLS).
    if asked.upgrade && (!tunnels || read[method.0..method.1] != *b"GET") {
        return for_hyper(read);
    }
    let count = head.headers.len();
    let head = read.split_to(length).freeze();
    match request(&head, method, target, &spans[..count]) {
        Some(request) => Parsed::Request(request, asked),
        // Something http's types refuse (a target `Uri` will not take, say): hyper decides.
        None => Parsed::Other([&head[..], &read.split()[..]].concat().into()),
    }
}

/// Every byte read, unconsumed, for hyper.
fn for_hyper(read: &mut BytesMut) -> Parsed {
    Parsed::Other(std::mem::take(read).freeze())
}

/// Whether a field keeps a request on this server.
enum Simple {
    Yes,
    /// `Connection: close`.
    Close,
    /// `Upgrade`.
    Upgrade,
    No,
}

impl Simple {
    fn of(field: &httparse::Header<'_>) -> Self {
        let name = field.name.as_bytes();
        let is = |other: &str| name.eq_ignore_ascii_case(other.as_bytes());
        // A body (`Content-Length`, `Transfer-Encoding`), `Expect: 100-continue`,
        // `TE: trailers`: all hyper's.
        if is("content-length") || is("transfer-encoding") || is("expect") || is("te") {
            return Self::No;
        }
        if is("upgrade") {
            return Self::Upgrade;
        }
        if is("connection") && list_has(field.value, "close") { Self::Close } else { Self::Yes }
    }
}

/// The request a head describes; its target and field values are views of `head`.
fn request(
    head: &Bytes,
    method: (usize, usize),
    target: (usize, usize),
    spans: &[FieldSpan],
) -> Option<ClientRequest> {
    let range = |(start, end): (usize, usize)| Range { start, end };
    let method = Method::from_bytes(&head[range(method)]).ok()?;
    if method == Method::CONNECT || !head[range(target)].starts_with(b"/") {
        return None; // authority- and absolute-form targets, `*`: hyper's
    }
    let uri = Uri::from_maybe_shared(head.slice(range(target))).ok()?;
    // Room for the fields hawser adds on the way to the backend (X-Request-Id, X-Forwarded-*,
    // X-Real-IP) and a route's own: the map is not grown, and rehashed, once per field added.
    let mut headers = HeaderMap::with_capacity(spans.len() + ADDED_FIELDS);
    for span in spans {
        let name = HeaderName::from_bytes(&head[range(span.name)]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(range(span.value))).ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(RequestBody::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(Box::new(request))
}

#[cfg(test)]
mod tests;
