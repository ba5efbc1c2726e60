//! The heads of [`super`]'s exchanges: the request head written to the backend, the response
//! head read back (parsed with `httparse`), and how long the response body is (RFC 9112 §6.3).

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};

use super::Error;
use crate::proxy::headers::{HEAD_ROOM, list_has};

/// Header fields a response head may carry (hyper's limit too).
const MAX_HEADERS: usize = 100;

/// Fields hawser may add to a backend's response on its way to the client.
const ADDED_FIELDS: usize = 4;

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes: `Content-Length`, or none at all (a `HEAD`, `204`, `304`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the backend closes: the connection ends with the body.
    UntilClose,
}

/// A response head taken off the read buffer.
#[derive(Debug)]
pub struct Head {
    pub response: Response<()>,
    pub framing: Framing,
    /// The connection may carry another exchange after this one's body.
    pub keep_alive: bool,
}

/// Appends `req`'s head to `out` as HTTP/1.1: the origin-form target and every header field
/// but `Transfer-Encoding` (only requests without a body come this way). A method that defines
/// a meaning for content gets `Content-Length: 0` when the client sent no length (RFC 9110
/// §8.6), so the backend does not wait for a body.
pub fn write_request<B>(req: &Request<B>, out: &mut Vec<u8>) {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    // Room for most heads at once: a new connection's buffer would grow several times (a kept
    // one has it already, and this costs a comparison).
    out.reserve(HEAD_ROOM);
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if expects_content(req.method()) && !req.headers().contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn expects_content(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// Takes a complete response head off the front of `buf`: `Ok(None)` when more bytes are
/// needed. Interim `1xx` responses are dropped on the way (RFC 9110 §15.2: a client must accept
/// them; hyper's server cannot pass them on). Header values stay views of the bytes read.
/// The response's fields go into `recycled`'s storage, emptied (the request's map, whose
/// exchange is answered then): a map is allocated per exchange, not two.
pub fn take_response(
    buf: &mut BytesMut,
    method: &Method,
    recycled: &mut HeaderMap,
) -> Result<Option<Head>, Error> {
    loop {
        let Some((len, status, version, reason, fields)) = parse(buf)? else { return Ok(None) };
        let head = buf.split_to(len).freeze();
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            continue;
        }
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        let headers = response.headers_mut();
        *headers = std::mem::take(recycled);
        headers.clear();
        // Room for what hawser may add on the way to the client (`Server`, an affinity cookie,
        // CORS fields): the map is not grown, and rehashed, for them.
        headers.reserve(fields.len() + ADDED_FIELDS);
        for (name, value) in &fields {
            let name =
                HeaderName::from_bytes(&head[name.clone()]).map_err(|_| Error::Malformed("header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(value.clone()))
                .map_err(|_| Error::Malformed("header value"))?;
            headers.append(name, value);
        }
        if let Some(reason) =
            reason.filter(|r| status.canonical_reason().map(str::as_bytes) != Some(&head[r.clone()]))
        {
            // Kept as the backend wrote it, as hyper's client does; hyper's server writes it back.
            if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(head.slice(reason)) {
                response.extensions_mut().insert(reason);
            }
        }
        let framing = framing(method, status, response.headers())?;
        // What follows a `101` is another protocol's (RFC 9110 §15.2.2): no body, no reuse.
        let keep_alive = status != StatusCode::SWITCHING_PROTOCOLS
            && framing != Framing::UntilClose
            && version == Version::HTTP_11
            && !has_token(response.headers(), header::CONNECTION, "close");
        return Ok(Some(Head { response, framing, keep_alive }));
    }
}

/// The head's length, status, version, reason phrase and fields (as ranges of `buf`), once
/// `buf` holds all of it.
type Parsed = (usize, StatusCode, Version, Option<Range<usize>>, Vec<(Range<usize>, Range<usize>)>);

fn parse(buf: &[u8]) -> Result<Option<Parsed>, Error> {
    // Left uninitialised: httparse writes the fields it finds (filling 100 empty ones first
    // cost some 400 instructions per response).
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut response, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::Malformed("more than 100 header fields")),
        Err(_) => return Err(Error::Malformed("response head")),
    };
    let status = response.code.and_then(|code| StatusCode::from_u16(code).ok());
    let status = status.ok_or(Error::Malformed("status code"))?;
    let version = if response.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    // Where a part lies in `buf`. An empty part may not point into it: httparse gives a
    // literal "" for a status line without a reason, or with one of bytes over 0x7f.
    let range = |part: &[u8]| {
        let start = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
        let end = start.checked_add(part.len()).filter(|&end| end <= buf.len())?;
        Some(start..end)
    };
    let reason = response.reason.filter(|r| !r.is_empty()).and_then(|r| range(r.as_bytes()));
    let fields = response
        .headers
        .iter()
        .map(|f| Some((range(f.name.as_bytes())?, range(f.value).unwrap_or(0..0))))
        .collect::<Option<_>>()
        .ok_or(Error::Malformed("header field"))?;
    Ok(Some((len, status, version, reason, fields)))
}

/// RFC 9112 §6.3, strictly: a body whose length is in doubt is an error, never a guess, since a
/// wrong guess would hand the rest of this body to the next request on the connection as its
/// response. Like nginx, a response with both `Transfer-Encoding` and `Content-Length`, or with
/// a transfer coding other than `chunked`, is refused.
fn framing(method: &Method, status: StatusCode, headers: &HeaderMap) -> Result<Framing, Error> {
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // Its connection is handed over whole (`ResponseBody::into_connection`), never read here.
        return Ok(Framing::UntilClose);
    }
    if method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Length(0));
    }
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(coding) = codings.next() {
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(Error::Malformed("both Transfer-Encoding and Content-Length"));
        }
        if codings.next().is_some() || !coding.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(Error::Malformed("a transfer coding other than chunked"));
        }
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        // A list of one repeated value is allowed (RFC 9110 §8.6); anything else is not.
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            let parsed = (!part.is_empty() && part.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or(Error::Malformed("Content-Length"))?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(Error::Malformed("differing Content-Length values"));
            }
            length = Some(parsed);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Whether a comma-separated header field lists `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| list_has(value.as_bytes(), token))
}

/// A body's trailer section, parsed (RFC 9112 §7.1.2): `Ok(None)` until it is all in `buf`.
pub fn take_trailers(buf: &mut BytesMut) -> Result<Option<HeaderMap>, Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (len, trailers) = match httparse::parse_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete((len, fields))) => {
            let mut trailers = HeaderMap::with_capacity(fields.len());
            for field in fields.iter() {
                let name = HeaderName::from_bytes(field.name.as_bytes());
                let value = HeaderValue::from_bytes(field.value);
                if let (Ok(name), Ok(value)) = (name, value) {
                    trailers.append(name, value);
                }
            }
            (len, trailers)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Error::Malformed("trailer section")),
    };
    buf.advance(len);
    Ok(Some(trailers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(bytes: &str, method: Method) -> Result<Option<Head>, Error> {
        take_response(&mut BytesMut::from(bytes), &method, &mut HeaderMap::new())
    }

    #[test]
    fn framing_follows_rfc_9112() {
        use Framing::*;
        // A head, the request's method, and its framing and keep-alive (`None`: incomplete).
        type Case<'a> = (&'a str, Method, Option<(Framing, bool)>);
        let cases: &[Case] = &[
            ("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Method::GET, Some((Length(5), true))),
            ("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n", Method::GET, Some((Length(5), true))),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
                Method::GET,
                Some((Length(5), true)),
            ),
            ("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", Method::GET, Some((Chunked, true))),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked \r\n\r\n", Method::GET, Some((Chunked, true))),
            ("HTTP/1.1 200 OK\r\n\r\n", Method::GET, Some((UntilClose, false))),
            ("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD, Some((Length(0), true))),
            ("HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n", Method::GET, Some((Length(0), true))),
            ("HTTP/1.1 304 Not Modified\r\n\r\n", Method::GET, Some((Length(0), true))),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n",
                Method::GET,
                Some((Length(5), false)),
            ),
            (
                "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n",
                Method::GET,
                Some((Length(0), false)),
            ),
            ("HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n", Method::GET, Some((Length(5), false))),
            (
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n",
                Method::GET,
                Some((Length(1), true)),
            ),
            ("HTTP/1.1 200 OK\r\ncontent-len", Method::GET, None),
            ("HTTP/1.1 200\r\ncontent-length: 0\r\n\r\n", Method::GET, Some((Length(0), true))),
            (
                "HTTP/1.1 404 Non trouv\u{e9}\r\ncontent-length: 0\r\nx-empty:\r\n\r\n",
                Method::GET,
                Some((Length(0), true)),
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
                Method::GET,
                Some((UntilClose, false)),
            ),
        ];
        for (head, method, expected) in cases {
            let got = take(head, method.clone()).unwrap_or_else(|e| panic!("{head:?}: {e}"));
            assert_eq!(got.map(|h| (h.framing, h.keep_alive)), *expected, "{head:?}");
        }
    }

    #[test]
    fn a_body_length_in_doubt_is_refused() {
        let refused = [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            "SSH-2.0-OpenSSH_9.2\r\n\r\n",
        ];
        for head in refused {
            assert!(take(head, Method::GET).is_err(), "{head:?} was accepted");
        }
    }

    #[test]
    fn the_head_is_taken_and_the_body_left() {
        let mut buf =
            BytesMut::from("HTTP/1.1 404 Gone Fishing\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 3\r\n\r\nabc");
        let head = take_response(&mut buf, &Method::GET, &mut HeaderMap::new())
            .ok()
            .flatten()
            .expect("a complete head");
        assert_eq!(&buf[..], b"abc");
        let response = head.response;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let values: Vec<_> = response.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        let reason = response.extensions().get::<hyper::ext::ReasonPhrase>().expect("the reason kept");
        assert_eq!(reason.as_bytes(), b"Gone Fishing");
    }

    #[test]
    fn a_response_may_have_a_hundred_fields_and_no_more() {
        let head = |fields: usize| {
            let fields: String = (0..fields).map(|i| format!("x-{i}: {i}\r\n")).collect();
            format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n{fields}\r\n")
        };
        let full = take(&head(99), Method::GET).ok().flatten().expect("100 fields");
        assert_eq!(full.response.headers().len(), 100);
        assert_eq!(full.response.headers()["x-98"], "98");
        assert!(matches!(take(&head(100), Method::GET), Err(Error::Malformed(_))), "101 fields");
    }

    #[test]
    fn the_response_takes_the_request_maps_room_not_its_fields() {
        let mut request = HeaderMap::with_capacity(16);
        request.insert(header::HOST, HeaderValue::from_static("example.com"));
        request.insert("x-request-id", HeaderValue::from_static("abc"));
        let room = request.capacity();
        // Not whole yet: the request keeps its fields, for another connection if need be.
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-len");
        assert!(matches!(take_response(&mut buf, &Method::GET, &mut request), Ok(None)));
        assert_eq!(request.len(), 2);
        buf.extend_from_slice(b"gth: 0\r\nx-a: 1\r\n\r\n");
        let head = take_response(&mut buf, &Method::GET, &mut request).ok().flatten().expect("a head");
        let fields: Vec<_> = head.response.headers().keys().map(HeaderName::as_str).collect();
        assert_eq!(fields, ["content-length", "x-a"]);
        assert_eq!(head.response.headers().capacity(), room, "the same storage");
        assert!(request.is_empty());
    }

    #[test]
    fn request_heads_are_origin_form_http_1_1() {
        let req = Request::post("http://ignored/up?x=1")
            .header("host", "example.com")
            .header("transfer-encoding", "chunked")
            .header("x-b", "2")
            .body(())
            .expect("a request");
        let mut out = Vec::new();
        write_request(&req, &mut out);
        let expected = "POST /up?x=1 HTTP/1.1\r\nhost: example.com\r\nx-b: 2\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(String::from_utf8_lossy(&out), expected);
        let get = Request::get("/").header("host", "h").body(()).expect("a request");
        out.clear();
        write_request(&get, &mut out);
        assert_eq!(String::from_utf8_lossy(&out), "GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    }

    #[test]
    fn trailers_are_parsed_once_complete() {
        let mut buf = BytesMut::from("x-sum: 1\r\n");
        assert!(matches!(take_trailers(&mut buf), Ok(None)));
        buf.extend_from_slice(b"\r\nrest");
        let trailers = take_trailers(&mut buf).ok().flatten().expect("trailers");
        assert_eq!(trailers.get("x-sum").map(HeaderValue::as_bytes), Some(&b"1"[..]));
        assert_eq!(&buf[..], b"rest");
    }
}
