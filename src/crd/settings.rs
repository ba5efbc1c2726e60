//! The policy of a rule's connections (timeouts, balancing, admission, WebSocket limits): one
//! type, flattened into a WebSocketRoute rule and a WebSocketPolicy, so both read the same
//! fields with the same defaults and checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    DURATION_PATTERN, LoadBalancingSpec, POSITIVE_DURATION_PATTERN, RateLimitSpec, RebalanceSpec,
    SessionAffinitySpec,
};

/// Timeouts, balancing, admission rules and WebSocket limits of a rule's connections.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSettings {
    /// Close a connection after this long without a byte in either direction. Default `1h`;
    /// `0s` never closes an idle connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub idle_timeout: Option<String>,
    /// Connect plus the backend's `101` (or other answer) must take no longer. Default `10s`; more than
    /// `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = POSITIVE_DURATION_PATTERN))]
    pub handshake_timeout: Option<String>,
    /// A plain request (not an upgrade) must get its response head within this, connects and
    /// retries included. Long-polling transports (socket.io, SignalR) hold requests open up to
    /// their ping interval. Default `60s`; more than `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = POSITIVE_DURATION_PATTERN))]
    pub response_timeout: Option<String>,
    /// Close a connection this long after it opened, busy or not. Default `0s`: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_connection_duration: Option<String>,
    /// How new connections are spread over the endpoints. Default `RoundRobin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancingSpec>,
    /// Browser Origins allowed to connect (`https://app.example.com`, `https://*.example.com`,
    /// `*`). Empty: any. Protects against cross-site WebSocket hijacking.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Client CIDRs allowed to connect. Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ranges: Vec<String>,
    /// Open connections allowed on this rule, per hawser replica; more get 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<u32>,
    /// Open connections allowed per client IP on this rule, per replica; more get 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections_per_client: Option<u32>,
    /// Ping a side of a WebSocket after it has sent nothing for this long; a side that then
    /// answers nothing within `pingTimeout` is dead and the other side gets 1001. Pings keep
    /// cloud load balancers from cutting quiet connections. Default `30s`; `0s` turns them off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub ping_interval: Option<String>,
    /// How long a pinged side has to answer. Default `30s`; more than `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = POSITIVE_DURATION_PATTERN))]
    pub ping_timeout: Option<String>,
    /// The largest WebSocket message (all its fragments, as on the wire) either side may send;
    /// a larger one closes the connection with 1009 to the sender. Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_message_bytes: Option<u64>,
    /// Spread connections again after endpoints join: tunnels on an endpoint holding more than
    /// `maxSkew` times the mean are closed with 1012, at most `closesPerSecond`, until the spread
    /// is within the skew. Default: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RebalanceSpec>,
    /// `Upgrade` protocols tunnelled besides `websocket` (tokens such as `foo` or `foo/2`).
    /// Default: none; any other upgrade is forwarded as a plain request. `h2c` is never
    /// tunnelled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_upgrades: Vec<String>,
    /// Keep each client on one endpoint with a cookie hawser issues: what socket.io, SignalR and
    /// SockJS need when their clients start with HTTP long-polling. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinitySpec>,
    /// Requests on this rule (handshakes included) per client IP, per hawser replica; past it
    /// `503` (or `429` with `--rate-limited-status 429`). Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// The same for WebSocket handshakes only: it stops one client's reconnect loop without
    /// counting its long-polling requests. Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_rate_limit: Option<RateLimitSpec>,
}
