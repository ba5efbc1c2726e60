//! Upgrade (WebSocket) requests: admission, the handshake on a dedicated backend connection,
//! and on `101` the tunnel that joins the two upgraded connections for their whole life.

use std::future::Future;
use std::sync::Arc;

use http::{Response, StatusCode};

use super::Proxy;
use super::admission::check_origin;
use super::body::{BackendBody, Lease, ProxyBody};
use super::error::ProxyError;
use super::extended_connect::{Handshake, to_http1_handshake, to_http2_response};
use super::forward::{Sent, send};
use super::headers::{Client, strip_hop_by_hop, upgrade_allowed};
use super::service::ClientRequest;
use super::tunnel::{BackendSide, ClientSide, Tunnel, TunnelSlot};
use crate::model::Route;

/// Answers an upgrade request (an HTTP/1.1 `Upgrade` or an HTTP/2 extended CONNECT, which the
/// backend sees as the former): checks the Origin and the budgets before anything reaches the
/// backend, then relays the backend's answer. On `101` a task joins the two sides; the route's
/// `Arc` goes with it, so later table swaps cannot touch the tunnel.
///
/// A function returning an `async move` block, not an `async fn`, so that the request is held
/// once in the handshake's future (see `service.rs`).
#[allow(clippy::manual_async_fn)]
pub fn upgrade(
    proxy: &Arc<Proxy>,
    route: &Arc<Route>,
    mut req: ClientRequest,
    client: &Client,
    handshake: Handshake,
) -> impl Future<Output = Result<(Response<ProxyBody>, std::net::SocketAddr), ProxyError>> + Send {
    async move {
        check_origin(&route.policy, req.headers())?;
        let budget = proxy.budgets.admit(route, client.ip)?;
        // Released when this returns: the tunnel, if any, is counted by its budget from then on.
        let _pending = proxy
            .handshakes
            .try_open(proxy.config.max_pending_handshakes)
            .ok_or(ProxyError::PendingHandshakes { limit: proxy.config.max_pending_handshakes })?;
        // hawser's own HTTP/1.1 server leaves a slot for the tunnel, which it starts once it
        // wrote the 101; hyper's server hands its connection over by itself.
        let client_side = match req.extensions_mut().remove::<TunnelSlot>() {
            Some(slot) => Waiting::Slot(slot),
            None => Waiting::Hyper(hyper::upgrade::on(&mut *req)),
        };
        let accept = (handshake == Handshake::Http2).then(|| to_http1_handshake(&mut req));
        let Sent { mut response, endpoint, load, set_cookie, .. } =
            send(proxy, route, req, client, true).await?;
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
        let backend_side = match response.body_mut() {
            // In clear text hawser's own client made the exchange: the socket is the tunnel's.
            BackendBody::Own(body) => match body.take_connection() {
                Some(connection) => {
                    let (socket, early) = connection.into_tunnel();
                    BackendSide::Socket(socket, early)
                }
                None => return Err(ProxyError::UnwantedUpgrade { endpoint }),
            },
            // Over TLS, hyper's: it hands the connection over once it lets go.
            BackendBody::Hyper(_) => BackendSide::Upgrade(hyper::upgrade::on(&mut response)),
        };
        // Counted and listening for drains from now on, before the client sees the 101.
        let signals = proxy.drains.subscribe(route.name.clone(), endpoint);
        let (proxy, route) = (proxy.clone(), route.clone());
        let tunnel = Tunnel { proxy, route, budget, load, websocket, handshake, signals };
        match client_side {
            Waiting::Slot(slot) => slot.put(tunnel, backend_side),
            Waiting::Hyper(upgrade) => tunnel.spawn(ClientSide::Upgrade(upgrade), backend_side),
        }
        strip_hop_by_hop(response.headers_mut(), handshake == Handshake::Http1);
        Ok((response.map(|_| ProxyBody::empty()), endpoint))
    }
}

/// Where the client's side of a tunnel will come from.
enum Waiting {
    /// hawser's own HTTP/1.1 server: it takes the tunnel from the slot after the `101`.
    Slot(TunnelSlot),
    /// hyper's server, once it wrote the `101`.
    Hyper(hyper::upgrade::OnUpgrade),
}
