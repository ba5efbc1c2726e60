//! One request, start to finish: route lookup on one table snapshot, admission, forward or
//! upgrade, the error response, the access log line and the request metrics.
//!
//! The steps are functions returning an `async move` block rather than `async fn`s: an async
//! fn keeps its arguments twice in its future (rust-lang/rust#62958), and each step's future is
//! nested in its caller's and moved into it, so every byte saved is saved per request, at every
//! level.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::{HeaderValue, Request, Response, Version, header};

use super::Proxy;
use super::admission::check_source;
use super::auth::{Asking, Authorized};
use super::body::{Lease, ProxyBody};
use super::cors::{self, CorsAnswer};
use super::error::ProxyError;
use super::extended_connect::{Handshake, connect_protocol};
use super::forward::{Sent, prepare_request, send};
use super::headers::{Client, admit_upgrade, is_upgrade, strip_hop_by_hop};
use super::own_answers::{
    https_redirect, redirects_to_https, rewrite_request, rewrite_response, route_answer,
};
use super::path::{EncodedSlashes, normalize as normalize_path};
use super::pool::{Home, PooledConnection};
use super::request_body::RequestBody;
use super::target::{REQUEST_ID, check_form, check_head_size, request_host, request_id};
use super::upgrade::upgrade;
use crate::access_log::{self, RequestLine};
use crate::model::{RequestFacts, Route, normalize_host};

/// A client's request on its way through the steps below, and on to its backend. Boxed: every
/// step's future holds it while the request is in flight, 8 bytes instead of some 380 at each
/// level.
pub(super) type ClientRequest = Box<Request<RequestBody>>;

/// Where a request went, for the access log.
struct Outcome {
    route: Option<Arc<str>>,
    endpoint: Option<SocketAddr>,
    /// How the client asked for an upgrade the route tunnels, if it did.
    upgrade: Option<Handshake>,
    error: Option<ProxyError>,
}

impl Proxy {
    /// Answers one request. Never fails: every error becomes a response here.
    #[allow(clippy::manual_async_fn)]
    pub(super) fn handle(
        self: Arc<Self>,
        req: ClientRequest,
        client: Client,
    ) -> impl Future<Output = Response<ProxyBody>> + Send {
        async move {
            let id = request_id(&req);
            // The access log may be off: copy nothing for it then, and read no clock.
            let logged = access_log::enabled()
                .then(|| (Instant::now(), req.method().clone(), req.uri().path().to_owned()));
            let mut outcome =
                Outcome { route: None, endpoint: None, upgrade: requested_upgrade(&req), error: None };
            let mut response = match self.forward(req, &client, &id, &mut outcome).await {
                Ok((response, endpoint)) => {
                    outcome.endpoint = endpoint;
                    response
                }
                Err(error) => {
                    let mut response = error.into_response(self.config.verbose_errors).map(ProxyBody::full);
                    // Ties the client's error to the access-log line.
                    response.headers_mut().insert(&REQUEST_ID, id.clone());
                    outcome.error = Some(error);
                    response
                }
            };
            if self.config.server_header {
                response.headers_mut().entry(header::SERVER).or_insert(HeaderValue::from_static("hawser"));
            }
            let status = response.status().as_u16();
            self.metrics.request(outcome.route.as_ref(), status);
            if let Some(handshake) = outcome.upgrade.filter(|h| h.success() != status) {
                let result = outcome.error.as_ref().map_or("refused_by_backend", ProxyError::label);
                self.metrics.upgrade(outcome.route.as_ref(), result, handshake.label());
            }
            let Some((started, method, path)) = logged else { return response };
            access_log::request(RequestLine {
                client: client.ip,
                method,
                path,
                route: outcome.route,
                request_id: id,
                endpoint: outcome.endpoint,
                status,
                upgrade: outcome.upgrade.map(Handshake::label),
                error: outcome.error.map(|e| (e.to_string(), e.culprit().name())),
                duration: started.elapsed(),
            });
            response
        }
    }

    /// Routes a request on one table snapshot and forwards it (a redirect answers without an
    /// endpoint). The path is normalised first, so the backend is sent what was matched.
    #[allow(clippy::manual_async_fn)]
    fn forward(
        self: &Arc<Self>,
        mut req: ClientRequest,
        client: &Client,
        id: &HeaderValue,
        outcome: &mut Outcome,
    ) -> impl Future<Output = Result<(Response<ProxyBody>, Option<SocketAddr>), ProxyError>> + Send {
        async move {
            check_form(&req)?;
            check_head_size(&req, self.config.max_header_bytes)?;
            req.headers_mut().insert(&REQUEST_ID, id.clone());
            let host = request_host(&req)?;
            normalize_request_path(&mut req, self.config.encoded_slashes)?;
            let table = self.table.load();
            let name = normalize_host(host.to_str().unwrap_or_default());
            let vhost = table.virtual_host(&name).ok_or(ProxyError::NoRoute)?;
            let headers = req.headers();
            let facts = RequestFacts {
                path: req.uri().path(),
                query: req.uri().query(),
                // An RFC 8441 WebSocket is the HTTP/1.1 handshake's GET, whatever its CONNECT says.
                method: if outcome.upgrade == Some(Handshake::Http2) { "GET" } else { req.method().as_str() },
                tls: client.scheme == "https",
                header: |name: &str| headers.get(name).and_then(|v| v.to_str().ok()),
            };
            let route = vhost.route(&facts).ok_or(ProxyError::NoRoute)?.clone();
            outcome.route = Some(route.name.clone());
            if client.scheme == "http" && redirects_to_https(&route, vhost) {
                return Ok((https_redirect(&name, req.uri()), None));
            }
            if let Some(answer) = route_answer(&route, req.uri(), (client.scheme, &name)) {
                return Ok((answer, None));
            }
            // The Gateway API's share of a rule's invalid backends gets 500 (`HTTPRouteRule`).
            if route.backend.fails_now() {
                return Err(ProxyError::InvalidBackend { route: route.name.to_string() });
            }
            let cors_origin = match cors::answer(route.policy.cors.as_ref(), req.method(), req.headers()) {
                Some(CorsAnswer::Preflight(answer)) if !route.policy.refused => return Ok((answer, None)),
                Some(CorsAnswer::Decorate(origin)) => Some(origin),
                _ => None,
            };
            self.admit(&route, client, outcome.upgrade.is_some())?;
            let mut authorized = Authorized::default();
            if route.policy.authenticates() {
                let asking = Asking {
                    method: req.method(),
                    headers: req.headers(),
                    request_uri: req.uri().path_and_query().map_or("/", |p| p.as_str()),
                    host: host.to_str().unwrap_or_default(),
                    client,
                };
                // Boxed: most routes ask nobody, and every request's future would carry its state.
                authorized = Box::pin(self.auth.check(&route, &asking)).await?;
            }
            // Only what the route tunnels is upgraded; the rest (h2c above all) goes on as plain HTTP.
            outcome.upgrade = outcome.upgrade.filter(|handshake| match handshake {
                Handshake::Http1 => admit_upgrade(req.headers_mut(), &route.policy.allowed_upgrades),
                Handshake::Http2 => true,
            });
            prepare_request(&mut req, client, &host, outcome.upgrade.is_some());
            rewrite_request(&route, &mut req);
            authorized.decorate_request(req.headers_mut());
            let (mut response, endpoint) = self.dispatch(&route, req, client, outcome.upgrade).await?;
            authorized.decorate_response(response.status(), response.headers_mut());
            rewrite_response(&route, &mut response);
            if let (Some(cors), Some(origin)) = (&route.policy.cors, cors_origin) {
                cors::decorate(cors, &origin, response.headers_mut());
            }
            Ok((response, Some(endpoint)))
        }
    }

    /// The route's admission rules, in nginx's order: a refused route, the rate limit, then
    /// the source ranges (authentication comes after all of them).
    fn admit(&self, route: &Route, client: &Client, upgrade: bool) -> Result<(), ProxyError> {
        if route.policy.refused {
            return Err(ProxyError::Refused);
        }
        if let Some(limit) = &route.policy.rate_limit
            && !self.rates.admit(&route.name, limit, client.ip, upgrade)
        {
            return Err(ProxyError::RateLimited { status: self.config.rate_limited_status });
        }
        check_source(&route.policy, client.ip)
    }

    #[allow(clippy::manual_async_fn)]
    fn dispatch(
        self: &Arc<Self>,
        route: &Arc<Route>,
        req: ClientRequest,
        client: &Client,
        handshake: Option<Handshake>,
    ) -> impl Future<Output = Result<(Response<ProxyBody>, SocketAddr), ProxyError>> + Send {
        async move {
            let Some(handshake) = handshake else {
                return match &route.error_backend {
                    // Boxed: only these routes pay for the error page's state.
                    Some(errors) => Box::pin(self.with_error_pages(route, errors, req, client)).await,
                    None => self.plain(route, req, client).await,
                };
            };
            let timeout = route.policy.handshake_timeout;
            let exchange = upgrade(self, route, req, client, handshake);
            tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or(Err(ProxyError::HandshakeTimeout { timeout }))
        }
    }

    /// A plain request, on a pooled connection. Its response head must come within the route's
    /// response timeout; while the client is still sending the body, the request body timeout
    /// guards it instead, so a long upload is not cut for taking long.
    #[allow(clippy::manual_async_fn)]
    pub(super) fn plain(
        self: &Arc<Self>,
        route: &Arc<Route>,
        req: ClientRequest,
        client: &Client,
    ) -> impl Future<Output = Result<(Response<ProxyBody>, SocketAddr), ProxyError>> + Send {
        async move {
            let limit = route.policy.max_body_bytes;
            if let Some(limit) =
                limit.filter(|&limit| declared_length(&req).is_some_and(|length| length > limit))
            {
                return Err(ProxyError::PayloadTooLarge { limit });
            }
            let body_timeout = route.policy.request_body_timeout.unwrap_or(self.config.request_body_timeout);
            let mut req = req;
            let request_sent = req.body_mut().guard(body_timeout, limit);
            self.exchange(route, req, request_sent, client).await
        }
    }

    /// Sends a plain request and takes its response head; `request_sent` turns true once the
    /// body went out whole (absent for a request without one).
    #[allow(clippy::manual_async_fn)]
    pub(super) fn exchange(
        self: &Arc<Self>,
        route: &Arc<Route>,
        req: ClientRequest,
        request_sent: Option<Arc<std::sync::atomic::AtomicBool>>,
        client: &Client,
    ) -> impl Future<Output = Result<(Response<ProxyBody>, SocketAddr), ProxyError>> + Send {
        async move {
            let timeout = route.policy.response_timeout;
            let mut exchange = std::pin::pin!(send(self, route, req, client, false));
            let uploading = || request_sent.as_ref().is_some_and(|sent| !sent.load(Ordering::Acquire));
            let Sent { response, endpoint, sender, load, set_cookie, .. } = loop {
                match tokio::time::timeout(timeout, exchange.as_mut()).await {
                    Ok(sent) => break sent?,
                    Err(_) if uploading() => continue,
                    Err(_) => return Err(ProxyError::HandshakeTimeout { timeout }),
                }
            };
            if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                // A 101 to a request that asked for no upgrade hawser tunnels (a stripped h2c).
                return Err(ProxyError::UnwantedUpgrade { endpoint: endpoint.addr });
            }
            let connection =
                sender.map(|sender| PooledConnection::new(Home::new(self.pool.clone(), endpoint), sender));
            let endpoint = endpoint.addr;
            let lease = Lease { connection, load: Some(load), request_sent };
            let mut response = response.map(|body| ProxyBody::backend(body, lease));
            strip_hop_by_hop(response.headers_mut(), false);
            if let Some(cookie) = set_cookie {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            Ok((response, endpoint))
        }
    }
}

/// How the client asks for an upgrade, if it does: HTTP/1.1 `Upgrade`, or an RFC 8441 CONNECT.
fn requested_upgrade<B>(req: &Request<B>) -> Option<Handshake> {
    if req.version() == Version::HTTP_11 && is_upgrade(req.headers()) {
        return Some(Handshake::Http1);
    }
    connect_protocol(req).is_some_and(|p| p.eq_ignore_ascii_case("websocket")).then_some(Handshake::Http2)
}

/// The body length a request declares (`Content-Length`), if it does.
fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Replaces the request's path with its normalised form (see `path.rs`), keeping the query.
fn normalize_request_path<B>(req: &mut Request<B>, slashes: EncodedSlashes) -> Result<(), ProxyError> {
    let normalized = match normalize_path(req.uri().path(), slashes)? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(path) => path,
    };
    let target = match req.uri().query() {
        Some(query) => format!("{normalized}?{query}"),
        None => normalized,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query =
        Some(target.parse().map_err(|_| ProxyError::BadRequest { reason: "invalid request target" })?);
    *req.uri_mut() = http::Uri::from_parts(parts)
        .map_err(|_| ProxyError::BadRequest { reason: "invalid request target" })?;
    Ok(())
}
