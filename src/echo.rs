//! `hawser echo`: a backend for tests and demos. WebSocket connections get every message
//! echoed back (text, binary, any size; pings answered; the peer's close code and reason
//! returned); any other request gets JSON describing what it looked like on arrival.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;

use crate::accept::accept_until;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// Response header naming the echo that answered (on every response, the `101` included).
pub const ECHO_NAME: http::HeaderName = http::HeaderName::from_static("x-echo-name");

/// What the echo saw of a plain HTTP request.
#[derive(Debug, Serialize, Deserialize)]
pub struct SeenRequest {
    /// The echo's `--name`, to tell backends apart.
    pub name: String,
    /// Request method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// `Host` header.
    pub host: Option<String>,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Headers (names lower-case; repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// Length of the request body.
    pub body_bytes: usize,
    /// Sequence number of the TCP connection the request came on (1 for the first accepted),
    /// so a client can tell whether connections are reused.
    pub connection: u64,
}

/// Serves echo requests on `listener` until `stop` completes.
pub async fn serve(listener: TcpListener, name: &str, stop: impl Future<Output = ()>) {
    let name: Arc<str> = name.into();
    let mut connections = 0u64;
    accept_until(listener, "echo", stop, |stream, _| {
        let _ = stream.set_nodelay(true);
        connections += 1;
        let (name, connection) = (name.clone(), connections);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let name = name.clone();
                async move {
                    let mut response = respond(req, &name, connection).await;
                    if let Ok(value) = HeaderValue::from_str(&name) {
                        response.headers_mut().insert(ECHO_NAME, value);
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
                tracing::debug!(%error, "echo connection ended with an error");
            }
        });
    })
    .await;
}

async fn respond(req: Request<Incoming>, name: &str, connection: u64) -> Response<Full<Bytes>> {
    if let Some(key) = websocket_key(&req) {
        return accept_websocket(req, &key);
    }
    let (parts, body) = req.into_parts();
    let body_bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes().len(),
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    let mut headers = BTreeMap::<String, String>::new();
    for (header_name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(header_name.to_string())
            .and_modify(|v| *v = format!("{v}, {value}"))
            .or_insert(value.into());
    }
    let seen = SeenRequest {
        name: name.to_owned(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        host: headers.get("host").cloned().or_else(|| parts.uri.authority().map(|a| a.to_string())),
        version: format!("{:?}", parts.version),
        headers,
        body_bytes,
        connection,
    };
    let json = serde_json::to_vec(&seen).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(json)));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn websocket_key(req: &Request<Incoming>) -> Option<HeaderValue> {
    let headers = req.headers();
    let wants_websocket =
        headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    wants_websocket.then(|| headers.get(header::SEC_WEBSOCKET_KEY).cloned()).flatten()
}

/// Answers the RFC 6455 §4.2.2 handshake (choosing the first offered subprotocol) and echoes
/// on the upgraded connection.
fn accept_websocket(mut req: Request<Incoming>, key: &HeaderValue) -> Response<Full<Bytes>> {
    let mut response = status(StatusCode::SWITCHING_PROTOCOLS);
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    let offered = req.headers().get(header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok());
    if let Some(first) = offered.and_then(|list| list.split(',').map(str::trim).find(|p| !p.is_empty()))
        && let Ok(value) = HeaderValue::from_str(first)
    {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => echo_messages(upgraded).await,
            Err(error) => tracing::debug!(%error, "echo upgrade failed"),
        }
    });
    response
}

async fn echo_messages(upgraded: hyper::upgrade::Upgraded) {
    let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    while let Some(Ok(message)) = socket.next().await {
        if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
            break;
        }
    }
}

fn status(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
