//! Sending a request to an endpoint of its route: pick, connect (or reuse a pooled
//! connection), send — with hawser's own client when the request has no body, with hyper's
//! otherwise — and try another endpoint when nothing reached the first one.

use std::future::Future;
use std::net::SocketAddr;

use http::{HeaderValue, Request, Response, Uri, Version, header, uri::PathAndQuery};
use http_body::Body as _;

use super::Proxy;
use super::affinity::RequestAffinity;
use super::balance::{LoadGuard, hash_key, pick};
use super::body::BackendBody;
use super::error::ProxyError;
use super::h1;
use super::headers::{Client, join_cookies, set_forwarded, strip_hop_by_hop};
use super::pool::{Home, PoolKey, Reusable, Sender, connect, open, to_hyper};
use super::request_body::{BodyStalled, BodyTooLarge};
use super::service::ClientRequest;
use crate::model::{BackendProtocol, CanarySignals, LoadBalancing, Route};

/// Connection attempts per request beyond the endpoints it may try: stale pooled connections
/// replaced on the way.
const SPARE_ATTEMPTS: usize = 2;

/// A backend's answer and what it travelled on.
#[derive(Debug)]
pub struct Sent {
    /// The response head; its body streams on.
    pub response: Response<BackendBody>,
    /// The endpoint that answered (and whether over TLS).
    pub endpoint: PoolKey,
    /// hyper's connection, reusable once the response body has ended (hawser's own client's
    /// goes back to the pool from its response body).
    pub sender: Option<Sender>,
    /// Counts the exchange against the endpoint for least-connections.
    pub load: LoadGuard,
    /// The affinity cookie the response must set (the route has affinity and the request's
    /// cookie named no listed endpoint, or one that failed under `change_on_failure`).
    pub set_cookie: Option<HeaderValue>,
}

/// Rewrites a client request for the backend: origin-form target, HTTP/1.1, the client's
/// `Host` (from `:authority` for HTTP/2 clients), no hop-by-hop headers, X-Forwarded-*.
pub fn prepare_request<B>(req: &mut Request<B>, client: &Client, host: &HeaderValue, upgrade: bool) {
    let target = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(target);
    let from_http2 = req.version() == Version::HTTP_2;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    if from_http2 {
        join_cookies(headers);
    }
    strip_hop_by_hop(headers, upgrade);
    headers.insert(header::HOST, host.clone());
    set_forwarded(headers, client, host);
}

/// Sends `req` to an endpoint of `route`. `fresh` asks for a new connection (upgrades own theirs).
/// An endpoint that refuses the connection is skipped and another one tried; a pooled
/// connection that turns out closed is replaced. Once the request was sent it is not retried,
/// but for an idempotent one without a body whose kept-alive connection the backend closed
/// without a byte of answer (RFC 9112 §9.3.1).
///
/// A function returning an `async move` block, not an `async fn`: every request's future holds
/// this one, and an async fn would keep `req` twice in it (rust-lang/rust#62958).
#[allow(clippy::manual_async_fn)]
pub fn send(
    proxy: &Proxy,
    route: &Route,
    mut req: ClientRequest,
    client: &Client,
    fresh: bool,
) -> impl Future<Output = Result<Sent, ProxyError>> + Send {
    async move {
        let tls = match &route.policy.backend_protocol {
            BackendProtocol::Https { server_name, ca } => {
                Some((&proxy.backend_tls, server_name.as_deref(), ca.as_ref()))
            }
            BackendProtocol::Http => None,
        };
        let hash = match &route.policy.load_balancing {
            LoadBalancing::ConsistentHash(key) => hash_key(key, req.headers(), req.uri(), client.ip),
            _ => None,
        };
        let backend = match &route.canary {
            Some(canary) if canary.takes(&Signals(req.headers())) => &canary.backend,
            _ => &route.backend,
        };
        let affinity =
            RequestAffinity::of(route, backend, &proxy.config.affinity_key, req.headers(), client.scheme);
        // hawser's own client takes what it can: clear text, no request body (an upgrade's
        // handshake has none as a rule; one that has goes through hyper's, which sends it).
        let own = tls.is_none() && req.body().is_end_stream();
        let mut failed: Vec<SocketAddr> = Vec::new();
        let mut last_error = None;
        // The route's `proxy-next-upstream-tries` (3 unless set), never more than it has endpoints.
        let endpoints_tried = usize::try_from(route.policy.max_endpoints_tried)
            .unwrap_or(usize::MAX)
            .min(backend.endpoints().len())
            .max(1);
        for _ in 0..endpoints_tried + SPARE_ATTEMPTS {
            let endpoint = affinity
                .as_ref()
                .and_then(|a| a.preferred(&failed))
                .or_else(|| pick(backend, &route.policy.load_balancing, hash, &proxy.loads, &failed));
            let Some(endpoint) = endpoint else { break };
            let addr = endpoint.addr;
            let pool_key = PoolKey::new(addr, tls);
            let pooled = if fresh { None } else { proxy.pool.checkout(pool_key).await };
            let reused = pooled.is_some();
            let opened = match pooled {
                Some(Reusable::Own(connection)) if own => Ok(Via::Own(connection)),
                Some(Reusable::Own(connection)) => {
                    to_hyper(connection.into_socket(), addr).await.map(Via::Hyper)
                }
                Some(Reusable::Hyper(sender)) => Ok(Via::Hyper(sender)),
                None if own => {
                    // An upgrade's connection is its own: it never goes back to the pool.
                    let home = (!fresh).then(|| Home::new(proxy.pool.clone(), pool_key));
                    open(addr, route.policy.connect_timeout)
                        .await
                        .map(|io| Via::Own(h1::Connection::new(io, home)))
                }
                // Boxed: the connect and TLS handshake state would otherwise stay in every request's
                // future (and every pending handshake's) while it waits for its response.
                None => Box::pin(connect(addr, route.policy.connect_timeout, tls)).await.map(Via::Hyper),
            };
            let via = match opened {
                Ok(via) => via,
                Err(error) => {
                    tracing::debug!(route = %route.name, %error, "endpoint failed, trying another");
                    failed.push(addr);
                    last_error = Some(error);
                    if failed.len() >= endpoints_tried {
                        break;
                    }
                    continue;
                }
            };
            let load = proxy.loads.acquire(addr);
            let set_cookie = || affinity.as_ref().and_then(|a| a.cookie_for(addr));
            let (response, sender) = match via {
                Via::Own(mut connection) => match connection.send(&mut req).await {
                    Ok(head) => {
                        let body = h1::ResponseBody::new(connection, &head);
                        (head.response.map(|()| BackendBody::Own(body)), None)
                    }
                    // The backend closed a kept-alive connection as the request reached it.
                    Err(error) if reused && error.is_closed_unanswered() && req.method().is_idempotent() => {
                        last_error = Some(ProxyError::Backend { endpoint: addr, source: error.into() });
                        continue;
                    }
                    Err(error) => return Err(ProxyError::Backend { endpoint: addr, source: error.into() }),
                },
                Via::Hyper(mut sender) => match sender.try_send_request(*req).await {
                    Ok(response) => (response.map(BackendBody::Hyper), Some(sender)),
                    Err(mut error) => match error.take_message() {
                        Some(unsent) if reused => {
                            *req = unsent;
                            continue;
                        }
                        _ => return Err(backend_error(addr, error.into_error())),
                    },
                },
            };
            let set_cookie = set_cookie();
            return Ok(Sent { response, endpoint: pool_key, sender, load, set_cookie });
        }
        Err(last_error.unwrap_or_else(|| ProxyError::NoEndpoint { route: route.name.to_string() }))
    }
}

/// The connection a request goes out on.
enum Via {
    /// hyper's client, its connection driven by a task of its own.
    Hyper(Sender),
    /// hawser's own client (`h1.rs`).
    Own(Box<h1::Connection>),
}

/// A failed exchange: the client's stalled body (`408`), or the backend's failure.
fn backend_error(endpoint: SocketAddr, error: hyper::Error) -> ProxyError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = cause {
        if let Some(stalled) = current.downcast_ref::<BodyStalled>() {
            return ProxyError::RequestBodyTimeout { timeout: stalled.0 };
        }
        if let Some(too_large) = current.downcast_ref::<BodyTooLarge>() {
            return ProxyError::PayloadTooLarge { limit: too_large.0 };
        }
        cause = current.source();
    }
    ProxyError::Backend { endpoint, source: error.into() }
}

/// What a canary reads of a request: its headers and cookies.
struct Signals<'h>(&'h http::HeaderMap);

impl CanarySignals for Signals<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        super::balance::cookie(self.0, name)
    }
}
