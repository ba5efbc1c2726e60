//! Upgrade (WebSocket) requests: admission, the handshake on a dedicated backend connection,
//! and on `101` the tunnel that joins the two upgraded connections for their whole life.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Proxy;
use super::admission::{BudgetGuard, check_origin};
use super::body::{Lease, ProxyBody};
use super::error::ProxyError;
use super::forward::{Sent, send};
use super::headers::{Client, strip_hop_by_hop, upgrade_allowed};
use super::tunnel::{self, CloseReason, Limits};
use crate::model::Route;

/// Answers an upgrade request: checks the Origin and the budgets before anything reaches the
/// backend, then relays the backend's answer. On `101` a task joins the two sides; the route's
/// `Arc` goes with it, so later table swaps cannot touch the tunnel.
pub async fn upgrade(
    proxy: &Arc<Proxy>,
    route: &Arc<Route>,
    mut req: Request<Incoming>,
    client: &Client,
) -> Result<(Response<ProxyBody>, std::net::SocketAddr), ProxyError> {
    check_origin(&route.policy, req.headers())?;
    let budget = proxy.budgets.admit(route, client.ip)?;
    let client_side = hyper::upgrade::on(&mut req);
    let Sent { mut response, endpoint, load, .. } = send(proxy, route, req, client, true).await?;
    let endpoint = endpoint.addr;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        strip_hop_by_hop(response.headers_mut(), false);
        let lease = Lease { connection: None, load: Some(load) };
        return Ok((response.map(|body| ProxyBody::backend(body, lease)), endpoint));
    }
    let switched_to = response.headers().get(http::header::UPGRADE).and_then(|v| v.to_str().ok());
    if !switched_to.is_some_and(|protocol| upgrade_allowed(protocol, &route.policy.allowed_upgrades)) {
        return Err(ProxyError::UnwantedUpgrade { endpoint });
    }
    let backend_side = hyper::upgrade::on(&mut response);
    let tunnel = Tunnel { proxy: proxy.clone(), route: route.clone(), endpoint, budget, load };
    proxy.tunnels.spawn(tunnel.run(client_side, backend_side));
    strip_hop_by_hop(response.headers_mut(), true);
    Ok((response.map(|_| ProxyBody::empty()), endpoint))
}

/// Everything a live tunnel holds until it closes.
struct Tunnel {
    proxy: Arc<Proxy>,
    route: Arc<Route>,
    endpoint: std::net::SocketAddr,
    budget: BudgetGuard,
    load: super::balance::LoadGuard,
}

impl Tunnel {
    async fn run(self, client: hyper::upgrade::OnUpgrade, backend: hyper::upgrade::OnUpgrade) {
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(sides) => sides,
            Err(error) => {
                tracing::debug!(route = %self.route.name, %error, "upgrade did not complete");
                self.proxy.metrics.upgrade(Some(&self.route.name), "incomplete");
                return;
            }
        };
        let metrics = &self.proxy.metrics;
        metrics.upgrade(Some(&self.route.name), "upgraded");
        let open = metrics.tunnel_opened(&self.route.name, self.endpoint);
        let policy = &self.route.policy;
        let limits = Limits { idle: policy.idle_timeout, max_duration: policy.max_connection_duration };
        let drain = self.proxy.drain.subscribe();
        let (reason, totals) = join(client, backend, limits, drain).await;
        metrics.tunnel_closed(open, &self.route.name, reason.label(), &totals);
        tracing::info!(
            target: "hawser::access",
            route = %self.route.name,
            endpoint = %self.endpoint,
            closed_by = reason.label(),
            duration_ms = totals.duration.as_millis() as u64,
            bytes_from_client = totals.client_to_backend,
            bytes_from_backend = totals.backend_to_client,
            "tunnel closed"
        );
        drop((self.budget, self.load));
    }
}

/// Runs the tunnel between two upgraded connections. Plain TCP sockets are taken back from
/// hyper and driven directly (bytes hyper had already read past the handshake are delivered
/// first); TLS on either side stays behind hyper's upgraded wrapper. Those tunnels are boxed,
/// so that their larger state does not size every plain tunnel's task.
async fn join(
    client: hyper::upgrade::Upgraded,
    backend: hyper::upgrade::Upgraded,
    limits: Limits,
    drain: tokio::sync::watch::Receiver<bool>,
) -> (CloseReason, crate::metrics::TunnelTotals) {
    type Plain = TokioIo<TcpStream>;
    let client = match client.downcast::<Plain>() {
        Ok(parts) => parts,
        Err(client) => {
            return Box::pin(tunnel::run(TokioIo::new(client), TokioIo::new(backend), limits, drain)).await;
        }
    };
    let (mut client_io, client_early) = (client.io.into_inner(), client.read_buf);
    match backend.downcast::<Plain>() {
        Ok(backend) => {
            let (mut backend_io, backend_early) = (backend.io.into_inner(), backend.read_buf);
            if deliver(&mut backend_io, client_early).await.is_err() {
                return (CloseReason::BackendError, Default::default());
            }
            if deliver(&mut client_io, backend_early).await.is_err() {
                return (CloseReason::ClientError, Default::default());
            }
            tunnel::run(client_io, backend_io, limits, drain).await
        }
        Err(backend) => {
            let mut backend = TokioIo::new(backend);
            if deliver(&mut backend, client_early).await.is_err() {
                return (CloseReason::BackendError, Default::default());
            }
            Box::pin(tunnel::run(client_io, backend, limits, drain)).await
        }
    }
}

/// Writes bytes hyper read past the handshake, then lets them go: they are a view of hyper's
/// read buffer, which must not live as long as the tunnel.
async fn deliver<W: AsyncWrite + Unpin>(to: &mut W, early: bytes::Bytes) -> std::io::Result<()> {
    if early.is_empty() { Ok(()) } else { to.write_all(&early).await }
}
