//! Writing a response to an HTTP/1.1 client, as hyper's server writes it: the status line
//! (with the backend's own reason phrase when it had one), the fields in lower case, `Date`
//! when the response has none, the body framed by its `Content-Length` or its known size, else
//! chunked (RFC 9112 §6–7); no body after `HEAD`, `204` or `304` (RFC 9110 §6.4.1);
//! `Connection: close` when the connection closes after it (RFC 9112 §9.6). The head and the
//! first body bytes go out in one write when the body has them ready.

use std::cell::RefCell;
use std::io::{IoSlice, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use futures_util::FutureExt;
use http::{Response, StatusCode, header};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::proxy::body::ProxyBody;
use crate::proxy::headers::{HEAD_ROOM, list_has};

/// Body bytes up to this size are copied behind the head (or a chunk's size line) so that both
/// go out in one write; larger ones are written from where they are.
const COPY_LIMIT: usize = 16 * 1024;

/// What the request decided about its response's framing.
#[derive(Clone, Copy, Debug)]
pub struct Framing {
    /// The request was `HEAD`: the head says what a `GET` would get, and no body follows.
    pub head_request: bool,
    /// The connection closes after this response.
    pub close: bool,
}

/// How the body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delimit {
    None,
    Length(u64),
    Chunked,
}

/// Writes `response`; `false` when the connection must close now (it asked to, the client went
/// away, or the body failed or did not match its length). `write` is the connection's buffer,
/// kept for its capacity.
pub async fn write<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: Response<ProxyBody>,
    framing: Framing,
    write: &mut Vec<u8>,
) -> bool {
    let (parts, body) = response.into_parts();
    write.clear();
    let (delimit, close) = encode_head(&parts, &body, framing, write);
    let sent = match delimit {
        Delimit::None => flush(stream, write).await,
        Delimit::Length(length) => send_body(stream, body, write, Some(length)).await,
        Delimit::Chunked => send_body(stream, body, write, None).await,
    };
    sent && !close
}

/// Encodes the status line and fields into `out`; returns the body's delimitation and whether
/// the connection closes after it.
fn encode_head(
    parts: &http::response::Parts,
    body: &ProxyBody,
    framing: Framing,
    out: &mut Vec<u8>,
) -> (Delimit, bool) {
    let status = parts.status;
    // Room for most heads at once: a new connection's buffer would grow several times (a kept
    // one has it already, and this costs a comparison).
    out.reserve(HEAD_ROOM);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match parts.extensions.get::<hyper::ext::ReasonPhrase>() {
        Some(reason) => out.extend_from_slice(reason.as_bytes()),
        // A reason must be written: many parsers expect one (hyper writes the same).
        None => out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    // A `101`'s connection is a tunnel's after the head: no framing, no `Connection: close`.
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let bodiless = framing.head_request
        || switching
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut length = None;
    let mut close = framing.close && !switching;
    let mut said_close = false;
    let mut dated = false;
    for (name, value) in &parts.headers {
        match *name {
            // Framing is this hop's (RFC 9112 §6.1): chosen below.
            header::TRANSFER_ENCODING => continue,
            // None on a 204 or a 101 (RFC 9110 §8.6); once is enough.
            header::CONTENT_LENGTH if length.is_some() || switching || status == StatusCode::NO_CONTENT => {
                continue;
            }
            header::CONTENT_LENGTH => match value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) {
                Some(declared) => length = Some(declared),
                None => continue,
            },
            // A 101's connection is the tunnel's whatever a route's header edit says.
            header::CONNECTION => said_close |= list_has(value.as_bytes(), "close"),
            header::DATE => dated = true,
            _ => {}
        }
        field(out, name.as_str(), value.as_bytes());
    }
    let exact = body.size_hint().exact();
    let delimit = if bodiless {
        // A HEAD's answer says what a GET would get (hawser's own answers know their length).
        if let (true, None, Some(exact @ 1..)) = (framing.head_request, length, exact) {
            let _ = write!(out, "content-length: {exact}\r\n");
        }
        Delimit::None
    } else if let Some(length) = length {
        Delimit::Length(length)
    } else if let Some(exact) = exact {
        let _ = write!(out, "content-length: {exact}\r\n");
        Delimit::Length(exact)
    } else {
        field(out, "transfer-encoding", b"chunked");
        Delimit::Chunked
    };
    close |= said_close && !switching;
    if close && !said_close {
        field(out, "connection", b"close");
    }
    if !dated {
        with_date(|date| field(out, "date", date));
    }
    out.extend_from_slice(b"\r\n");
    (delimit, close)
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Streams `body` behind the head in `out`: `length` bytes exactly, or chunked when `None`.
/// Bytes the body has ready are gathered into one write.
async fn send_body<S: AsyncWrite + Unpin>(
    stream: &mut S,
    body: ProxyBody,
    out: &mut Vec<u8>,
    length: Option<u64>,
) -> bool {
    let mut body = std::pin::pin!(body);
    let mut left = length;
    loop {
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                // What is written so far goes out before the body is waited for.
                if !flush(stream, out).await {
                    return false;
                }
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue, // trailers: hyper sends them only to a client that asked (`TE`)
            },
            Some(Err(error)) => {
                tracing::debug!(%error, "the response body failed; closing the client connection");
                return false;
            }
        };
        if data.is_empty() {
            continue;
        }
        match &mut left {
            Some(left) => match left.checked_sub(data.len() as u64) {
                Some(rest) => *left = rest,
                None => {
                    // What the length allows goes out; the rest is cut, and so is the connection.
                    tracing::debug!("the response body is longer than its Content-Length; closing");
                    let allowed = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    let _ = append(stream, out, data.slice(..allowed)).await && flush(stream, out).await;
                    return false;
                }
            },
            // A chunk's size line (RFC 9112 §7.1).
            None => {
                let _ = write!(out, "{:x}\r\n", data.len());
            }
        }
        if !append(stream, out, data).await {
            return false;
        }
        if length.is_none() {
            out.extend_from_slice(b"\r\n");
        }
    }
    match left {
        // A body shorter than its length: the client must see the connection end.
        Some(left) if left > 0 => {
            let _ = flush(stream, out).await;
            tracing::debug!(left, "the response body ended before its Content-Length; closing");
            return false;
        }
        Some(_) => {}
        None => out.extend_from_slice(b"0\r\n\r\n"),
    }
    flush(stream, out).await
}

/// Puts `data` behind what `out` holds: copied when small, else both written now.
async fn append<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut Vec<u8>, mut data: Bytes) -> bool {
    if out.len() + data.len() <= COPY_LIMIT {
        out.extend_from_slice(&data);
        return true;
    }
    let mut head = &out[..];
    while !head.is_empty() || data.has_remaining() {
        let slices = [IoSlice::new(head), IoSlice::new(&data)];
        match stream.write_vectored(&slices).await {
            Ok(0) | Err(_) => return false,
            Ok(mut n) => {
                let from_head = n.min(head.len());
                head = &head[from_head..];
                n -= from_head;
                data.advance(n);
            }
        }
    }
    out.clear();
    true
}

/// Writes what `out` holds and flushes the stream (a TLS stream may hold records back until
/// then; a socket holds nothing).
async fn flush<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut Vec<u8>) -> bool {
    let written = stream.write_all(out).await.is_ok() && stream.flush().await.is_ok();
    out.clear();
    written
}

/// Runs `f` with the current `Date` value (RFC 9110 §6.6.1), formatted once a second.
fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    DATE.with_borrow_mut(|(at, value)| {
        if *at != second {
            *at = second;
            *value = httpdate::fmt_http_date(now);
        }
        f(value.as_bytes())
    })
}

#[cfg(test)]
mod tests;
