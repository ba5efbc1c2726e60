//! Upgrade (WebSocket) requests: admission, the handshake on a dedicated backend connection,
//! and on `101` the tunnel that joins the two upgraded connections for their whole life.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::Either;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Proxy;
use super::admission::{BudgetGuard, check_origin};
use super::body::{Lease, ProxyBody, RequestBody};
use super::drain::Subscription;
use super::error::ProxyError;
use super::extended_connect::{Handshake, to_http1_handshake, to_http2_response};
use super::forward::{Sent, send};
use super::headers::{Client, strip_hop_by_hop, upgrade_allowed};
use super::tunnel::{self, Closed, Early, Limits, Ping, WebSocketLimits};
use crate::model::Route;

/// Answers an upgrade request (an HTTP/1.1 `Upgrade` or an HTTP/2 extended CONNECT, which the
/// backend sees as the former): checks the Origin and the budgets before anything reaches the
/// backend, then relays the backend's answer. On `101` a task joins the two sides; the route's
/// `Arc` goes with it, so later table swaps cannot touch the tunnel.
pub async fn upgrade(
    proxy: &Arc<Proxy>,
    route: &Arc<Route>,
    mut req: Request<Incoming>,
    client: &Client,
    handshake: Handshake,
) -> Result<(Response<ProxyBody>, std::net::SocketAddr), ProxyError> {
    check_origin(&route.policy, req.headers())?;
    let budget = proxy.budgets.admit(route, client.ip)?;
    // Released when this returns: the tunnel, if any, is counted by its budget from then on.
    let _pending = proxy
        .handshakes
        .try_open(proxy.config.max_pending_handshakes)
        .ok_or(ProxyError::PendingHandshakes { limit: proxy.config.max_pending_handshakes })?;
    let client_side = hyper::upgrade::on(&mut req);
    let accept = (handshake == Handshake::Http2).then(|| to_http1_handshake(&mut req));
    let req = req.map(RequestBody::untracked);
    let Sent { mut response, endpoint, load, set_cookie, .. } = send(proxy, route, req, client, true).await?;
    let endpoint = endpoint.addr;
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(http::header::SET_COOKIE, cookie);
    }
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // A 2xx would tell an HTTP/2 client its tunnel is open.
        if accept.is_some() && response.status().is_success() {
            return Err(ProxyError::BadHandshake { endpoint });
        }
        strip_hop_by_hop(response.headers_mut(), false);
        let lease = Lease { connection: None, load: Some(load), request_sent: None };
        return Ok((response.map(|body| ProxyBody::backend(body, lease)), endpoint));
    }
    let switched_to = response.headers().get(http::header::UPGRADE).and_then(|v| v.to_str().ok());
    if !switched_to.is_some_and(|protocol| upgrade_allowed(protocol, &route.policy.allowed_upgrades)) {
        return Err(ProxyError::UnwantedUpgrade { endpoint });
    }
    // Only a WebSocket is tracked frame by frame; any other allowed upgrade stays a byte tunnel.
    let websocket = switched_to.is_some_and(|p| p.trim().eq_ignore_ascii_case("websocket"));
    if let Some(accept) = &accept {
        to_http2_response(&mut response, accept, endpoint)?;
    }
    let backend_side = hyper::upgrade::on(&mut response);
    // Counted and listening for drains from now on, before the client sees the 101.
    let signals = proxy.drains.subscribe(route.name.clone(), endpoint);
    let (proxy, route) = (proxy.clone(), route.clone());
    let tunnel = Tunnel { proxy, route, endpoint, budget, load, websocket, handshake, signals };
    tunnel.proxy.tunnels.clone().spawn(tunnel.run(client_side, backend_side));
    strip_hop_by_hop(response.headers_mut(), handshake == Handshake::Http1);
    Ok((response.map(|_| ProxyBody::empty()), endpoint))
}

/// Everything a live tunnel holds until it closes.
struct Tunnel {
    proxy: Arc<Proxy>,
    route: Arc<Route>,
    endpoint: std::net::SocketAddr,
    budget: BudgetGuard,
    load: super::balance::LoadGuard,
    websocket: bool,
    handshake: Handshake,
    signals: Subscription,
}

impl Tunnel {
    /// The tunnel's task. An async block rather than an async fn, so that `self` is stored once
    /// in every idle tunnel's task, not twice (rust-lang/rust#62958).
    #[allow(clippy::manual_async_fn)]
    fn run(
        self,
        client: hyper::upgrade::OnUpgrade,
        backend: hyper::upgrade::OnUpgrade,
    ) -> impl Future<Output = ()> + Send {
        async move {
            let (client, backend) = match tokio::try_join!(client, backend) {
                Ok(sides) => sides,
                Err(error) => {
                    tracing::debug!(route = %self.route.name, %error, "upgrade did not complete");
                    let protocol = self.handshake.label();
                    self.proxy.metrics.upgrade(Some(&self.route.name), "incomplete", protocol);
                    return;
                }
            };
            let metrics = &self.proxy.metrics;
            let protocol = self.handshake.label();
            metrics.upgrade(Some(&self.route.name), "upgraded", protocol);
            let open = metrics.tunnel_opened(&self.route.name, self.endpoint);
            let closed = join(client, backend, self.limits(), self.signals).await;
            metrics.tunnel_closed(open, &self.route.name, &closed, protocol);
            log_closed(&self.route.name, self.endpoint, protocol, &closed);
            drop((self.budget, self.load));
        }
    }

    fn limits(&self) -> Limits {
        let policy = &self.route.policy;
        let websocket = self.websocket.then(|| WebSocketLimits {
            ping: policy
                .ping_interval
                .duration()
                .map(|interval| Ping { interval, timeout: policy.ping_timeout }),
            max_message: policy.max_message_bytes,
        });
        Limits {
            idle: policy.idle_timeout.duration(),
            max_duration: policy.max_connection_duration.duration(),
            websocket,
        }
    }
}

/// The tunnel's access-log line: how it ended, the first close frame, what it carried.
fn log_closed(route: &str, endpoint: std::net::SocketAddr, protocol: &str, closed: &Closed) {
    let close = closed.websocket.as_ref().and_then(|w| w.close.as_ref());
    let messages = closed.websocket.as_ref().map(|w| w.messages);
    tracing::info!(
        target: "hawser::access",
        route,
        %endpoint,
        protocol,
        closed_by = closed.reason.label(),
        close_code = close.and_then(|c| c.code),
        close_reason = close.map(|c| c.reason.as_str()),
        close_initiator = close.map(|c| c.by.label()),
        duration_ms = closed.totals.duration.as_millis() as u64,
        bytes_from_client = closed.totals.client_to_backend,
        bytes_from_backend = closed.totals.backend_to_client,
        messages_from_client = messages.map(|m| m.0),
        messages_from_backend = messages.map(|m| m.1),
        "tunnel closed"
    );
}

/// Runs the tunnel between two upgraded connections. Plain TCP sockets are taken back from
/// hyper and driven directly (bytes hyper had already read past the handshake go first,
/// through the frame tracker like the rest); TLS on either side stays behind hyper's upgraded
/// wrapper. Those tunnels are boxed, so that their larger state does not size every plain
/// tunnel's task.
fn join(
    client: hyper::upgrade::Upgraded,
    backend: hyper::upgrade::Upgraded,
    limits: Limits,
    signals: Subscription,
) -> Either<impl Future<Output = Closed>, Pin<Box<dyn Future<Output = Closed> + Send>>> {
    type Plain = TokioIo<TcpStream>;
    let client = match client.downcast::<Plain>() {
        Ok(parts) => parts,
        Err(client) => {
            let (client, backend) = (TokioIo::new(client), TokioIo::new(backend));
            return Either::Right(Box::pin(tunnel::run(client, backend, limits, signals, Early::default())));
        }
    };
    let client_io = client.io.into_inner();
    match backend.downcast::<Plain>() {
        Ok(backend) => {
            let early = Early { from_client: client.read_buf, from_backend: backend.read_buf };
            Either::Left(tunnel::run(client_io, backend.io.into_inner(), limits, signals, early))
        }
        Err(backend) => {
            let early = Early { from_client: client.read_buf, from_backend: bytes::Bytes::new() };
            Either::Right(Box::pin(tunnel::run(client_io, TokioIo::new(backend), limits, signals, early)))
        }
    }
}
