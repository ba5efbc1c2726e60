//! What a request names, read strictly: which host (RFC 9112 §3.2, RFC 9113 §8.3.1), which
//! request-target forms are served, and the request id that ties a client's answer to hawser's
//! log line.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Version, header};

use super::error::ProxyError;
use super::extended_connect::connect_protocol;

/// The request id header, passed to the backend and put on hawser's own error answers.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest client-supplied request id kept; a longer (or non-token) one is replaced.
const MAX_REQUEST_ID: usize = 128;

/// Refuses targets hawser does not serve: `CONNECT` (405) but RFC 8441's extended CONNECT for a
/// WebSocket, and the authority-form outside `CONNECT` (400, RFC 9112 §3.2.3).
pub fn check_form<B>(req: &Request<B>) -> Result<(), ProxyError> {
    let websocket = connect_protocol(req).is_some_and(|p| p.eq_ignore_ascii_case("websocket"));
    if req.method() == Method::CONNECT && !websocket {
        return Err(ProxyError::MethodNotAllowed);
    }
    let uri = req.uri();
    if req.version() <= Version::HTTP_11 && uri.scheme().is_none() && uri.authority().is_some() {
        return Err(ProxyError::BadRequest { reason: "authority-form target outside CONNECT" });
    }
    Ok(())
}

/// Refuses a request head larger than `limit` bytes as written in HTTP/1.1 (request line and
/// header lines with their CRLFs): hyper's own limit is on its read buffer, which lets heads
/// up to half as large again through.
pub fn check_head_size<B>(req: &Request<B>, limit: usize) -> Result<(), ProxyError> {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let request_line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize =
        req.headers().iter().map(|(name, value)| name.as_str().len() + 2 + value.len() + 2).sum();
    if request_line + fields + 2 > limit { Err(ProxyError::HeadersTooLarge) } else { Ok(()) }
}

/// The host a request is for: the target's authority when it has one (absolute-form, HTTP/2's
/// `:authority`), which wins over `Host` (RFC 9112 §3.2.2); else the one `Host` header. Two
/// `Host` headers, none on HTTP/1.1, or one that is not a host name (or IP literal) with an
/// optional port are a bad request.
pub fn request_host<B>(req: &Request<B>) -> Result<HeaderValue, ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest { reason: "more than one Host header" });
    }
    let host = match (req.uri().authority(), first) {
        (Some(authority), _) => HeaderValue::from_str(authority.as_str())
            .map_err(|_| ProxyError::BadRequest { reason: "invalid authority" })?,
        (None, Some(host)) => host.clone(),
        (None, None) if req.version() == Version::HTTP_11 => {
            return Err(ProxyError::BadRequest { reason: "HTTP/1.1 request without Host" });
        }
        (None, None) => HeaderValue::from_static(""),
    };
    if valid_host(host.as_bytes()) {
        Ok(host)
    } else {
        Err(ProxyError::BadRequest { reason: "Host is not a host name with an optional port" })
    }
}

/// `name[:port]` of hostname characters, `[v6]` literal with an optional port, or empty.
fn valid_host(host: &[u8]) -> bool {
    let (name, port) = match host.iter().rposition(|&b| b == b':') {
        Some(colon) if !host.ends_with(b"]") => (&host[..colon], Some(&host[colon + 1..])),
        _ => (host, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit));
    let name_ok = match name.strip_prefix(b"[").and_then(|n| n.strip_suffix(b"]")) {
        Some(literal) => std::str::from_utf8(literal).is_ok_and(|l| l.parse::<std::net::Ipv6Addr>().is_ok()),
        None => name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
    };
    port_ok && name_ok
}

/// The request's id: the client's (or a front proxy's) `X-Request-Id` when it is a short
/// token, else a new one (32 hex digits: a random per-process prefix and a counter).
pub fn request_id<B>(req: &Request<B>) -> HeaderValue {
    let given = req.headers().get(&REQUEST_ID).filter(|id| {
        let id = id.as_bytes();
        !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.iter().all(|&b| b.is_ascii_graphic())
    });
    if let Some(id) = given {
        return id.clone();
    }
    // The prefix's digits are written once per process, the counter's per request.
    static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        hex_digits(u64::from_le_bytes(bytes))
    });
    // Written in place, then owned by the value's bytes: one allocation per request, and
    // clones of the value (one goes to the backend) are reference counts. A value copied out
    // of a slice would be allocated again on its first clone.
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(prefix);
    id[16..].copy_from_slice(&hex_digits(COUNTER.fetch_add(1, Ordering::Relaxed)));
    HeaderValue::from_maybe_shared(Bytes::from_owner(id)).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `word` as 16 lower-case hex digits, most significant first.
fn hex_digits(word: u64) -> [u8; 16] {
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((word >> (60 - 4 * i)) & 0xf) as usize];
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(head: &[(&str, &str)], uri: &str, version: Version) -> Request<()> {
        let mut builder = Request::get(uri).version(version);
        for (name, value) in head {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn the_host_a_request_is_for() {
        let h11 = Version::HTTP_11;
        let host = |r: Request<()>| request_host(&r).map(|h| h.to_str().unwrap_or_default().to_owned());
        let bad = |r: Request<()>| matches!(request_host(&r), Err(ProxyError::BadRequest { .. }));
        assert_eq!(host(req(&[("host", "a.test")], "/", h11)).ok().as_deref(), Some("a.test"));
        assert_eq!(host(req(&[("host", "a.test:8080")], "/", h11)).ok().as_deref(), Some("a.test:8080"));
        assert_eq!(host(req(&[("host", "[::1]:80")], "/", h11)).ok().as_deref(), Some("[::1]:80"));
        // The absolute-form's authority wins over Host.
        let absolute = req(&[("host", "b.test")], "http://a.test/x", h11);
        assert_eq!(host(absolute).ok().as_deref(), Some("a.test"));
        assert!(bad(req(&[("host", "a.test"), ("host", "b.test")], "/", h11)));
        assert!(bad(req(&[], "/", h11)));
        assert_eq!(host(req(&[], "/", Version::HTTP_10)).ok().as_deref(), Some(""));
        for invalid in
            ["2130706433/.w.test", "a.test\\x", "a?b", "a#b", "a b", "a.test:", "a.test:99999x", "u@a.test"]
        {
            assert!(bad(req(&[("host", invalid)], "/", h11)), "{invalid}");
        }
    }

    #[test]
    fn the_head_limit_is_exact() {
        // "GET / HTTP/1.1\r\n" (16) + "x-fill: " + value + "\r\n" + "\r\n" = 28 + value.
        let head = |value: usize| req(&[("x-fill", &"v".repeat(value))], "/", Version::HTTP_11);
        assert!(check_head_size(&head(100), 128).is_ok());
        assert!(check_head_size(&head(100), 127).is_err());
        assert!(matches!(check_head_size(&head(10_000), 8192), Err(ProxyError::HeadersTooLarge)));
    }

    #[test]
    fn served_request_forms() {
        let connect = Request::connect("a.test:443").body(()).expect("request");
        assert!(matches!(check_form(&connect), Err(ProxyError::MethodNotAllowed)));
        let authority_form = req(&[("host", "a.test")], "a.test:80", Version::HTTP_11);
        assert!(matches!(check_form(&authority_form), Err(ProxyError::BadRequest { .. })));
        assert!(check_form(&req(&[], "/x", Version::HTTP_11)).is_ok());
        assert!(check_form(&req(&[], "http://a.test/x", Version::HTTP_11)).is_ok());
        assert!(check_form(&req(&[], "https://a.test/x", Version::HTTP_2)).is_ok());
    }

    #[test]
    fn request_ids_are_kept_or_made() {
        let given = req(&[("x-request-id", "abc-123")], "/", Version::HTTP_11);
        assert_eq!(request_id(&given), "abc-123");
        let (a, b) =
            (request_id(&req(&[], "/", Version::HTTP_11)), request_id(&req(&[], "/", Version::HTTP_11)));
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        // The process's random prefix, then a counter, in lowercase hex.
        assert_eq!(a.as_bytes()[..16], b.as_bytes()[..16]);
        assert!(a.as_bytes().iter().all(|d| d.is_ascii_digit() || (b'a'..=b'f').contains(d)));
        let too_long = "x".repeat(200);
        assert_ne!(
            request_id(&req(&[("x-request-id", &too_long)], "/", Version::HTTP_11)),
            too_long.as_str()
        );
    }

    #[test]
    fn words_are_written_as_sixteen_hex_digits() {
        assert_eq!(&hex_digits(0x0123_4567_89ab_cdef), b"0123456789abcdef");
        assert_eq!(&hex_digits(1), b"0000000000000001");
        assert_eq!(&hex_digits(u64::MAX), b"ffffffffffffffff");
    }

    proptest::proptest! {
        #[test]
        fn any_host_header_is_answered_without_panic(host in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Ok(value) = HeaderValue::from_bytes(&host) {
                let mut request = Request::get("/").body(()).expect("request");
                request.headers_mut().insert(header::HOST, value);
                if let Ok(accepted) = request_host(&request) {
                    // Whatever passes is a host name (or IP literal) and an optional port.
                    let text = accepted.to_str().expect("ASCII");
                    proptest::prop_assert!(!text.contains(['/', '\\', '?', '#', '@', ' ']), "{}", text);
                }
            }
        }
    }
}
