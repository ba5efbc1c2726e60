//! The data plane: listeners, the per-request service, forwarding, upgrade tunnels, balancing,
//! admission and drain. It reads the routing table through [`TableHandle`] and knows nothing of
//! Kubernetes.

mod admission;
mod affinity;
mod auth;
mod backend_tls;
mod balance;
mod body;
mod budget;
mod cors;
mod drain;
mod error;
mod error_pages;
mod extended_connect;
mod forward;
mod frames;
mod h1;
mod h1_server;
mod headers;
mod listener;
mod own_answers;
mod path;
mod pool;
mod prefixed;
mod proxy_protocol;
mod rate_limit;
mod request_body;
mod service;
mod target;
pub mod tls;
mod tunnel;
mod upgrade;
mod upkeep;

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio_util::task::TaskTracker;

pub use affinity::AffinityKey;
pub use backend_tls::unverified_client_config;
pub use budget::default_max_connections;
pub use drain::{Cause as DrainCause, Selector as DrainSelector};
pub use error::{Culprit, ProxyError};
pub use listener::serve;
pub use path::EncodedSlashes;
pub use tunnel::{CLOSE_HANDSHAKE, spliced_bytes};

use crate::handle::TableHandle;
use crate::metrics::Metrics;

/// Idle keep-alive connections kept per endpoint unless configured: ingress-nginx's default for
/// `upstream-keepalive-connections`. Fewer than the clients in flight makes every burst of
/// responses close connections that the next burst of requests opens again.
pub const DEFAULT_KEEPALIVE_CONNECTIONS: usize = 320;

/// A map whose keys hawser chose itself (endpoint addresses, its own serial numbers), looked up
/// per request or tunnel: hashed with foldhash, several times cheaper than the standard
/// library's SipHash for such small keys. Keys a client can choose (its address, in budgets
/// and rate limits) stay in maps with SipHash, which resists chosen collisions.
type OwnKeyMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Listener-level settings (per-route settings live in the table's `Policy`).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Largest request head accepted (HTTP/1 read buffer, HTTP/2 header list); larger → 431.
    /// At least 8 KiB. Default 32 KiB.
    pub max_header_bytes: usize,
    /// A client must send a whole request head within this time. Default 30 s.
    pub header_read_timeout: Duration,
    /// Peers whose X-Forwarded-* headers are kept and extended. Default: none.
    pub trusted_proxies: Vec<IpNet>,
    /// How long an idle keep-alive connection to an endpoint is kept. Default 60 s.
    pub pool_idle_timeout: Duration,
    /// Idle keep-alive connections kept per endpoint. Default
    /// [`DEFAULT_KEEPALIVE_CONNECTIONS`].
    pub pool_max_idle_per_endpoint: usize,
    /// Expect a PROXY protocol header within this time on every connection. Default: off.
    pub proxy_protocol: Option<Duration>,
    /// What `%2F`, `%5C` and `\` in a request path get. Default: 400.
    pub encoded_slashes: EncodedSlashes,
    /// Add `Server: hawser` to responses that carry no `Server`. Default: on.
    pub server_header: bool,
    /// Error bodies name the failure's details (addresses, objects). Default: off.
    pub verbose_errors: bool,
    /// Client connections (tunnels included) served at once; more are closed at accept.
    /// Default: what the open-files limit allows with a reserve ([`default_max_connections`]).
    pub max_connections: usize,
    /// The secret affinity cookies are keyed with. Default: random, for this process only.
    pub affinity_key: AffinityKey,
    /// Offer WebSockets over HTTP/2 (RFC 8441 extended CONNECT). Default: on.
    pub extended_connect: bool,
    /// A client must send each part of a request body within this. Default 60 s (nginx's
    /// `client_body_timeout`).
    pub request_body_timeout: Duration,
    /// Upgrade handshakes waiting for their backend at once; more get `503`. Default 4096.
    pub max_pending_handshakes: usize,
    /// What a client over its route's rate limit gets: `503` (ingress-nginx's default) or `429`.
    pub rate_limited_status: http::StatusCode,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            header_read_timeout: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_endpoint: DEFAULT_KEEPALIVE_CONNECTIONS,
            proxy_protocol: None,
            encoded_slashes: EncodedSlashes::Reject,
            server_header: true,
            verbose_errors: false,
            max_connections: budget::default_max_connections(),
            affinity_key: AffinityKey::random(),
            extended_connect: true,
            request_body_timeout: Duration::from_secs(60),
            max_pending_handshakes: 4096,
            rate_limited_status: http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// State shared by every connection of every listener.
#[derive(Debug)]
pub struct Proxy {
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
    config: ProxyConfig,
    loads: balance::EndpointLoads,
    budgets: Arc<admission::ConnectionBudgets>,
    pool: Arc<pool::BackendPool>,
    backend_tls: backend_tls::BackendTls,
    tunnels: TaskTracker,
    /// Client connections open now (not counting tunnels, which `tunnels` counts).
    connections: budget::ConnectionCount,
    /// Upgrade handshakes waiting for their backend now.
    handshakes: budget::ConnectionCount,
    /// Request rates per route and client.
    rates: rate_limit::RateLimiter,
    /// Graceful drain orders for live tunnels, and their census.
    drains: Arc<drain::Drains>,
    /// Basic-auth checks and authorisation subrequests.
    auth: auth::Authenticator,
}

impl Proxy {
    /// A proxy serving whatever `table` holds. Call within a tokio runtime.
    pub fn new(table: Arc<TableHandle>, metrics: Arc<Metrics>, config: ProxyConfig) -> Arc<Self> {
        let pool = pool::BackendPool::new(config.pool_max_idle_per_endpoint, config.pool_idle_timeout);
        let proxy = Arc::new(Self {
            table,
            metrics,
            config,
            loads: balance::EndpointLoads::default(),
            budgets: Arc::default(),
            pool: Arc::new(pool),
            backend_tls: backend_tls::BackendTls::default(),
            tunnels: TaskTracker::new(),
            connections: budget::ConnectionCount::default(),
            handshakes: budget::ConnectionCount::default(),
            rates: rate_limit::RateLimiter::default(),
            drains: Arc::default(),
            auth: auth::Authenticator::default(),
        });
        // Endpoints gone and rebalancing are noticed from the table; the task ends with the proxy.
        tokio::spawn(upkeep::run(Arc::downgrade(&proxy)));
        proxy
    }

    /// Live upgraded connections.
    pub fn open_tunnels(&self) -> usize {
        self.tunnels.len()
    }

    /// Upgrade handshakes waiting for their backend now.
    pub fn pending_handshakes(&self) -> usize {
        self.handshakes.get()
    }

    /// Shutdown: every tunnel gets a close frame (1001), the closes spread evenly over
    /// `window`, each with its bounded close handshake. Returns when they are all closed or at
    /// `deadline`, whichever comes first; the process then exits, closing what is left. Call
    /// after the listeners have stopped accepting.
    pub async fn drain_tunnels(&self, window: Duration, deadline: tokio::time::Instant) {
        self.tunnels.close();
        self.drain(DrainCause::Shutdown, DrainSelector::All, window);
        if tokio::time::timeout_at(deadline, self.tunnels.wait()).await.is_err() {
            tracing::info!(open = self.tunnels.len(), "shutdown grace over, closing the remaining tunnels");
        }
    }

    /// Orders the tunnels `selector` names to close gracefully (a close frame, spread over
    /// `window`). Returns how many were open.
    pub fn drain(&self, cause: DrainCause, selector: DrainSelector, window: Duration) -> u64 {
        let open = self.drains.count(&selector);
        if open > 0 {
            self.drains.order(cause, selector, window, None);
        }
        open
    }
}
