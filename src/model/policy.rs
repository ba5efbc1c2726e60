//! Per-route policy: timeouts, balancing, admission rules. Values are final (defaults applied by
//! whoever built the table); the proxy enforces them as they stand.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use super::{
    BackendCa, BasicAuth, DigestAuth, ExternalAuth, HeaderEdits, PathRewrite, RequestRedirect, Timeout,
};

/// What a route allows and how long its connections may live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Close a tunnel after this long without a byte in either direction.
    /// Default 60 s (ingress-nginx's `proxy-read-timeout`).
    pub idle_timeout: Timeout,
    /// TCP connect to one endpoint. Default 5 s (ingress-nginx's `proxy-connect-timeout`).
    #[serde(serialize_with = "duration")]
    pub connect_timeout: Duration,
    /// From the start of forwarding an upgrade until the backend's `101` (or other answer)
    /// arrived, connects and retries included. Default 60 s.
    #[serde(serialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// The same for a plain request, until its response head: long-polling transports
    /// (socket.io, SignalR) hold requests open for up to this. Default 60 s
    /// (ingress-nginx's `proxy-read-timeout`).
    #[serde(serialize_with = "duration")]
    pub response_timeout: Duration,
    /// Close a tunnel this long after the upgrade whatever it does. Default: never.
    pub max_connection_duration: Timeout,
    /// How new connections are spread over the endpoints.
    pub load_balancing: LoadBalancing,
    /// Keep a client on one endpoint with a cookie hawser issues. `None`: no affinity.
    pub affinity: Option<CookieAffinity>,
    /// Browser `Origin`s allowed to open a WebSocket (exact, or `https://*.example.com`).
    /// Empty: any. A handshake without `Origin` (not a browser) is allowed.
    pub allowed_origins: Vec<String>,
    /// Live tunnels on this route in this process. `None`: unlimited.
    pub max_connections: Option<u32>,
    /// Live tunnels on this route from one client IP. `None`: unlimited.
    pub max_connections_per_client: Option<u32>,
    /// Client addresses allowed on the route. Empty: any.
    pub source_ranges: Vec<IpNet>,
    /// Client addresses refused on the route, whatever `source_ranges` says
    /// (ingress-nginx's `denylist-source-range`).
    pub denied_ranges: Vec<IpNet>,
    /// How hawser talks to the endpoints.
    pub backend_protocol: BackendProtocol,
    /// When plain-HTTP requests are redirected to HTTPS.
    pub https_redirect: HttpsRedirect,
    /// Upgrade protocols tunnelled besides `websocket` (lower-case tokens). Default: none, so
    /// any other `Upgrade` (`h2c` above all) is forwarded as a plain HTTP/1.1 request.
    pub allowed_upgrades: Vec<String>,
    /// Ping a WebSocket side after it has sent nothing for this long. `Disabled`: no pings (the
    /// default for Ingress routes; WebSocketRoute rules ping every 30 s).
    pub ping_interval: Timeout,
    /// A pinged side that sends nothing for this long is dead. Default 30 s.
    #[serde(serialize_with = "duration")]
    pub ping_timeout: Duration,
    /// The largest WebSocket message (payload bytes of all its fragments, as on the wire)
    /// either side may send; larger closes the tunnel with 1009. `None`: unlimited.
    pub max_message_bytes: Option<u64>,
    /// Close surplus tunnels on overloaded endpoints so clients reconnect to the others.
    /// `None`: never (the default).
    pub rebalance: Option<Rebalance>,
    /// The largest request body accepted, in bytes; larger gets `413`. `None`: unlimited.
    pub max_body_bytes: Option<u64>,
    /// A client must send each part of a request body within this (`408` otherwise).
    /// `None`: `--request-body-timeout`.
    #[serde(serialize_with = "opt_duration")]
    pub request_body_timeout: Option<Duration>,
    /// Endpoints tried for one request when they refuse the connection. Default 3
    /// (ingress-nginx's `proxy-next-upstream-tries`).
    pub max_endpoints_tried: u32,
    /// Answers hawser gives instead of the backend, and what it changes on the way.
    pub rewrites: Rewrites,
    /// CORS answered by hawser (ingress-nginx's `enable-cors`). `None`: left to the backend.
    pub cors: Option<Cors>,
    /// Requests (handshakes included) per client IP, per replica. `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// HTTP Basic credentials every request must carry (ingress-nginx's `auth-type: basic`).
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// HTTP Digest credentials every request must carry (`auth-type: digest`).
    pub digest_auth: Option<Arc<DigestAuth>>,
    /// An authorisation service asked before every request (ingress-nginx's `auth-url`).
    pub external_auth: Option<Arc<ExternalAuth>>,
    /// Every request answers `503`: the route's object asks for a restriction hawser cannot
    /// enforce, or states one invalidly (fail closed). The route still claims its host and
    /// path, so no less specific route serves them instead.
    pub refused: bool,
}

impl Policy {
    /// Whether requests must pass an authentication check (basic, digest or `auth-url`).
    pub fn authenticates(&self) -> bool {
        self.basic_auth.is_some() || self.digest_auth.is_some() || self.external_auth.is_some()
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            idle_timeout: Timeout::After(Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(60),
            response_timeout: Duration::from_secs(60),
            max_connection_duration: Timeout::Disabled,
            load_balancing: LoadBalancing::RoundRobin,
            affinity: None,
            allowed_origins: Vec::new(),
            max_connections: None,
            max_connections_per_client: None,
            source_ranges: Vec::new(),
            denied_ranges: Vec::new(),
            backend_protocol: BackendProtocol::Http,
            https_redirect: HttpsRedirect::IfTls,
            allowed_upgrades: Vec::new(),
            ping_interval: Timeout::Disabled,
            ping_timeout: Duration::from_secs(30),
            max_message_bytes: None,
            rebalance: None,
            max_body_bytes: None,
            request_body_timeout: None,
            max_endpoints_tried: 3,
            rewrites: Rewrites::default(),
            cors: None,
            rate_limit: None,
            basic_auth: None,
            digest_auth: None,
            external_auth: None,
            refused: false,
        }
    }
}

/// What hawser answers itself, or changes in a request, before the backend sees it
/// (ingress-nginx's redirect and header annotations).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rewrites {
    /// Every request is answered with this redirect instead of being proxied.
    pub redirect: Option<Redirect>,
    /// A request for `/` is redirected (`302`) to this path.
    pub app_root: Option<String>,
    /// The `Host` the backend is sent. `None`: the client's.
    pub upstream_host: Option<String>,
    /// `X-Forwarded-Prefix` sent to the backend.
    pub forwarded_prefix: Option<String>,
    /// The path the backend is sent, made from the route's regular expression and its capture
    /// groups (`$1`…`$9`; ingress-nginx's `rewrite-target`).
    pub rewrite_target: Option<String>,
    /// Every request is answered with this status instead of being proxied (`500` for a Gateway
    /// API rule whose backends are all invalid, or with a filter hawser cannot apply).
    pub status: Option<u16>,
    /// A redirect built from each request (Gateway API `RequestRedirect`).
    pub request_redirect: Option<Box<RequestRedirect>>,
    /// The path the backend is sent (Gateway API `URLRewrite`).
    pub path: Option<PathRewrite>,
    /// Changes to the request headers the backend is sent (`RequestHeaderModifier`).
    pub request_headers: Option<Box<HeaderEdits>>,
    /// Changes to the response headers the client is sent (`ResponseHeaderModifier`).
    pub response_headers: Option<Box<HeaderEdits>>,
}

/// The CORS headers of a route (the `Access-Control-*` values, as sent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cors {
    /// Origins allowed: exact, `https://*.example.com`, or `*`.
    pub allow_origins: Vec<String>,
    /// `Access-Control-Allow-Methods`.
    pub allow_methods: String,
    /// `Access-Control-Allow-Headers`.
    pub allow_headers: String,
    /// `Access-Control-Expose-Headers`; empty: not sent.
    pub expose_headers: String,
    /// `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// `Access-Control-Max-Age` of preflight answers, in seconds.
    pub max_age: u64,
}

impl Default for Cors {
    /// ingress-nginx's defaults.
    fn default() -> Self {
        Self {
            allow_origins: vec!["*".to_owned()],
            allow_methods: "GET, PUT, POST, DELETE, PATCH, OPTIONS".to_owned(),
            allow_headers: "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization".to_owned(),
            expose_headers: String::new(),
            allow_credentials: true,
            max_age: 1_728_000,
        }
    }
}

/// Request rates allowed per client IP on a route (ingress-nginx's `limit-rps`, `limit-rpm`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RateLimit {
    /// Each must have room for a request.
    pub rates: Vec<Rate>,
    /// Clients never limited (`limit-whitelist`).
    pub exempt: Vec<IpNet>,
}

impl Eq for RateLimit {}

/// One rate: a bucket of `burst` requests refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rate {
    /// Requests a second on average.
    pub per_second: f64,
    /// Requests allowed at once.
    pub burst: f64,
    /// Counts upgrade handshakes only (`hawser.dev/handshake-rate-limit`); plain requests pass.
    pub upgrades_only: bool,
}

impl Rate {
    /// `count` requests per `period`, `burst` at once.
    pub fn new(count: f64, period: std::time::Duration, burst: f64, upgrades_only: bool) -> Self {
        Self { per_second: count / period.as_secs_f64(), burst, upgrades_only }
    }
}

/// A redirect hawser answers with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Redirect {
    /// A 3xx status.
    pub status: u16,
    /// The `Location`.
    pub location: String,
}

/// When and how fast a route's tunnels are spread again over its endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rebalance {
    /// An endpoint holding more than this times the mean of the route's tunnels per endpoint
    /// is overloaded. Default 1.25.
    pub max_skew: f64,
    /// At most this many tunnels of the route are closed per second. Default 5.
    pub closes_per_second: u32,
}

impl Default for Rebalance {
    fn default() -> Self {
        Self { max_skew: 1.25, closes_per_second: 5 }
    }
}

impl Eq for Rebalance {}

/// Endpoint selection for new connections and requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "strategy", content = "on")]
pub enum LoadBalancing {
    /// Weighted round-robin (smooth: weights interleave rather than burst).
    #[default]
    RoundRobin,
    /// The endpoint with the fewest live connections relative to its weight. Counts include
    /// open tunnels and in-flight requests, and survive table swaps.
    LeastConnections,
    /// Rendezvous hashing on a request property: the same key reaches the same endpoint while
    /// the endpoint set is unchanged, and only keys of removed endpoints move when it changes.
    /// Requests without the key fall back to round-robin.
    ConsistentHash(HashKey),
}

/// The request property a consistent hash is computed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name")]
pub enum HashKey {
    /// A request header (lower-case name).
    Header(String),
    /// A cookie by name.
    Cookie(String),
    /// A query parameter by name.
    Query(String),
    /// The client IP address.
    SourceIp,
}

/// Session affinity by a cookie hawser issues (ingress-nginx's `affinity: cookie`). A request
/// without a valid cookie is balanced by the route's strategy and its response sets the cookie,
/// whose value names the chosen endpoint opaquely; a request with it goes to that endpoint
/// while the endpoint is listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CookieAffinity {
    /// The cookie's name.
    pub name: String,
    /// Its `Path`. `None`: the route's path.
    pub path: Option<String>,
    /// Its `Domain`. `None`: none (the request's host only).
    pub domain: Option<String>,
    /// Its `Max-Age`. `None`: a session cookie.
    #[serde(serialize_with = "opt_duration")]
    pub max_age: Option<Duration>,
    /// Its `Expires`, this long after the response. `None`: none.
    #[serde(serialize_with = "opt_duration")]
    pub expires: Option<Duration>,
    /// Its `SameSite`. `None`: none.
    pub same_site: Option<SameSite>,
    /// Leave out `SameSite=None` for the browsers that reject it (ingress-nginx's
    /// `session-cookie-conditional-samesite-none`).
    pub same_site_none_if_supported: bool,
    /// `Secure` always; without it, `Secure` only on HTTPS requests.
    pub secure: bool,
    /// When the cookie's endpoint is listed but refuses the connection, point the cookie at the
    /// endpoint that took the request instead of keeping it.
    pub change_on_failure: bool,
}

impl CookieAffinity {
    /// A cookie of this name with ingress-nginx's default attributes.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            path: None,
            domain: None,
            max_age: None,
            expires: None,
            same_site: None,
            same_site_none_if_supported: false,
            secure: false,
            change_on_failure: false,
        }
    }
}

/// A cookie's `SameSite` attribute (RFC 6265bis §5.4.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Also on top-level cross-site navigations.
    Lax,
    /// On every request; browsers require `Secure` with it.
    None,
}

/// When a plain-HTTP request gets `308 Permanent Redirect` to `https://`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum HttpsRedirect {
    /// When the host has TLS configured (ingress-nginx's `ssl-redirect: "true"`, the default).
    #[default]
    IfTls,
    /// Never (`ssl-redirect: "false"`).
    Never,
    /// Always, even without TLS here (`force-ssl-redirect`: TLS ends in front of hawser).
    Always,
}

/// Protocol between hawser and the endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub enum BackendProtocol {
    /// Plain HTTP/1.1.
    #[default]
    Http,
    /// HTTP/1.1 over TLS.
    Https {
        /// Sent as SNI and, with `ca`, required in the backend's certificate: the Service's
        /// DNS name. `None`: no SNI.
        server_name: Option<String>,
        /// Verify the backend's certificate against these CAs. `None`: not verified
        /// (ingress-nginx's default for cluster-internal traffic); signatures still are.
        ca: Option<BackendCa>,
    },
}

impl BackendProtocol {
    /// HTTPS without SNI or verification, until the translation knows the Service and the CA.
    pub const HTTPS: Self = Self::Https { server_name: None, ca: None };

    /// HTTPS sends `name` as SNI and requires it in a verified certificate; HTTP has no use
    /// for it.
    pub fn with_server_name(&self, name: Option<String>) -> Self {
        match self {
            Self::Https { ca, .. } => Self::Https { server_name: name, ca: ca.clone() },
            Self::Http => Self::Http,
        }
    }

    /// HTTPS verifies the backend against `ca`; HTTP has nothing to verify.
    pub fn verify_with(&mut self, ca: BackendCa) {
        if let Self::Https { ca: verified_by, .. } = self {
            *verified_by = Some(ca);
        }
    }
}

fn duration<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*value))
}

fn opt_duration<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => duration(value, serializer),
        None => serializer.serialize_none(),
    }
}
