//! WebSockets over HTTP/2 (RFC 8441). A client's extended CONNECT (`:method CONNECT`,
//! `:protocol websocket`) becomes an RFC 6455 HTTP/1.1 handshake to the backend, so backends
//! need nothing new; the backend's `101` becomes the stream's `200`, and the tunnel then joins
//! the HTTP/2 stream and the backend connection like any other (the frames inside are RFC
//! 6455's either way, RFC 8441 §5).

use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::ext::Protocol;
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};

use super::error::ProxyError;

/// How a client asked for its WebSocket (or other upgrade).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// HTTP/1.1 `Upgrade` (RFC 6455 §4).
    Http1,
    /// HTTP/2 extended CONNECT (RFC 8441 §4).
    Http2,
}

impl Handshake {
    /// The `protocol` label of metrics and the access log.
    pub fn label(self) -> &'static str {
        match self {
            Self::Http1 => "h1",
            Self::Http2 => "h2",
        }
    }

    /// The status that tells the client its tunnel is open.
    pub fn success(self) -> StatusCode {
        match self {
            Self::Http1 => StatusCode::SWITCHING_PROTOCOLS,
            Self::Http2 => StatusCode::OK,
        }
    }
}

/// The extended CONNECT's `:protocol`, if `req` is one (hyper passes it only when the
/// listener offered `SETTINGS_ENABLE_CONNECT_PROTOCOL`).
pub fn connect_protocol<B>(req: &Request<B>) -> Option<&str> {
    (req.method() == Method::CONNECT)
        .then(|| req.extensions().get::<Protocol>())
        .flatten()
        .map(Protocol::as_str)
}

/// Rewrites an extended CONNECT, already in HTTP/1.1 form, into the RFC 6455 §4.1 opening
/// handshake: `GET`, `Upgrade: websocket`, a fresh `Sec-WebSocket-Key`. The client's
/// `Sec-WebSocket-Protocol`, `-Extensions` and `Origin` go on as they came. Returns the
/// `Sec-WebSocket-Accept` the backend must answer with.
pub fn to_http1_handshake<B>(req: &mut Request<B>) -> String {
    *req.method_mut() = Method::GET;
    req.extensions_mut().remove::<Protocol>();
    let key = generate_key();
    let accept = derive_accept_key(key.as_bytes());
    let headers = req.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.entry(SEC_WEBSOCKET_VERSION).or_insert(HeaderValue::from_static("13"));
    if let Ok(key) = HeaderValue::from_str(&key) {
        headers.insert(SEC_WEBSOCKET_KEY, key);
    }
    accept
}

/// Turns the backend's `101` into the stream's `200` (RFC 8441 §5): the chosen subprotocol and
/// extensions stay; `Upgrade`, `Connection` and `Sec-WebSocket-Accept` belong to HTTP/1.1. A
/// `101` with the wrong accept value did not speak RFC 6455 to this handshake: `502`.
pub fn to_http2_response<B>(
    response: &mut Response<B>,
    accept: &str,
    endpoint: std::net::SocketAddr,
) -> Result<(), ProxyError> {
    let answered = response.headers().get(SEC_WEBSOCKET_ACCEPT).map(HeaderValue::as_bytes);
    if answered != Some(accept.as_bytes()) {
        return Err(ProxyError::BadHandshake { endpoint });
    }
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    for name in [UPGRADE, CONNECTION, SEC_WEBSOCKET_ACCEPT] {
        headers.remove(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_becomes_an_rfc_6455_handshake_and_its_101_a_200() {
        let mut req = Request::connect("https://a.test/chat").body(()).expect("request");
        req.extensions_mut().insert(Protocol::from_static("websocket"));
        req.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
        assert_eq!(connect_protocol(&req), Some("websocket"));
        let accept = to_http1_handshake(&mut req);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(connect_protocol(&req), None);
        let key = req.headers()[SEC_WEBSOCKET_KEY].to_str().expect("ascii");
        assert_eq!(derive_accept_key(key.as_bytes()), accept);
        assert_eq!(req.headers()[SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(req.headers()["sec-websocket-protocol"], "chat");

        let endpoint = ([127, 0, 0, 1], 1).into();
        let switching = |accept: &str| {
            Response::builder()
                .status(101)
                .header(UPGRADE, "websocket")
                .header(CONNECTION, "upgrade")
                .header(SEC_WEBSOCKET_ACCEPT, accept)
                .header("sec-websocket-protocol", "chat")
                .body(())
                .expect("response")
        };
        let mut good = switching(&accept);
        to_http2_response(&mut good, &accept, endpoint).expect("accepted");
        assert_eq!(good.status(), StatusCode::OK);
        assert!(!good.headers().contains_key(UPGRADE) && !good.headers().contains_key(SEC_WEBSOCKET_ACCEPT));
        assert_eq!(good.headers()["sec-websocket-protocol"], "chat");
        let mut wrong = switching("bm90IHRoZSBhY2NlcHQ=");
        assert!(matches!(
            to_http2_response(&mut wrong, &accept, endpoint),
            Err(ProxyError::BadHandshake { .. })
        ));
    }

    #[test]
    fn plain_connect_has_no_protocol() {
        let req = Request::connect("a.test:443").body(()).expect("request");
        assert_eq!(connect_protocol(&req), None);
        let get = Request::get("/").body(()).expect("request");
        assert_eq!(connect_protocol(&get), None);
    }
}
