//! `WebSocketRoute` (`hawser.dev/v1alpha1`, short name `wsr`): the Rust types are the single
//! source of the CRD. `hawser crd` prints it and `crds/websocketroutes.hawser.dev.yaml` is
//! generated from it (a test fails when the committed file differs).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod rule_slot;
mod settings;
mod websocket_policy;

pub use rule_slot::RuleSlot;
pub use settings::ConnectionSettings;
pub use websocket_policy::{
    AncestorRef, PolicyAncestorStatus, PolicyStatus, PolicyTargetRef, WebSocketPolicy, WebSocketPolicySpec,
};

/// Go-style durations as users write them in Kubernetes: `90s`, `1h`, `1h30m`, `500ms`, `0s`.
const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// The same, more than zero (one part has a digit other than 0): where `0s` could mean neither
/// "never" nor "at once" usefully (a handshake, a response, a ping's answer).
const POSITIVE_DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))*([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)(ms|s|m|h)([0-9]+(\.[0-9]+)?(ms|s|m|h))*$";
/// `10/s`, `600/m`, `1000/h`.
const RATE_PATTERN: &str = r"^[1-9][0-9]*/(s|m|h)$";
/// `port` is an int-or-string: its string form must be 1–65535 or a port name (IANA service
/// name shape). `string()` works on both types, unlike `type()`, which some evaluators lack.
const PORT_RULE: &str = "string(self.port).matches('^([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]|[a-z]([-a-z0-9]*[a-z0-9])?)$')";
/// A host name, or a wildcard covering exactly one label (`*.example.com`).
const HOSTNAME_PATTERN: &str = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Routes for long-lived connections: hostnames, rules of matches and weighted backends, and
/// the WebSocket policy of each rule.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hawser.dev",
    version = "v1alpha1",
    kind = "WebSocketRoute",
    plural = "websocketroutes",
    shortname = "wsr",
    namespaced,
    status = "WebSocketRouteStatus",
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".spec.hostnames"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketRouteSpec {
    /// The IngressClass whose controller serves this route. Unset: served by hawser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// Hosts this route answers for: exact names or `*.example.com` (one label). Empty: every
    /// host not claimed elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = HOSTNAME_PATTERN)))]
    pub hostnames: Vec<String>,
    /// TLS for the hostnames, from a Secret in the route's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
    /// At least one rule.
    #[schemars(length(min = 1), with = "Vec<RouteRule>")]
    pub rules: Vec<RuleSlot>,
}

/// TLS settings of a route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    /// A `kubernetes.io/tls` Secret in the route's namespace.
    #[schemars(length(min = 1))]
    pub secret_name: String,
}

/// Which requests a rule takes, where they go, and the policy of their connections.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    /// Alternatives: a request matching any one is taken. Empty: every path (`PathPrefix /`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RouteMatch>,
    /// Services that receive the connections, by weight. At least one.
    #[schemars(length(min = 1))]
    pub backends: Vec<BackendRef>,
    /// `HTTP` (default) or `HTTPS` to every backend of the rule. HTTPS sends the first backend
    /// Service's DNS name (`NAME.NAMESPACE.svc`) as SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_protocol: Option<BackendProtocolSpec>,
    /// A Secret in the route's namespace whose `ca.crt` verifies HTTPS backends (their
    /// certificate must name the Service's DNS name). Unset: backend certificates are not verified.
    #[serde(default, rename = "backendCASecret", skip_serializing_if = "Option::is_none")]
    pub backend_ca_secret: Option<String>,
    /// The policy of the rule's connections.
    #[serde(flatten)]
    pub settings: ConnectionSettings,
}

/// A request rate per client IP.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// `N/s`, `N/m` or `N/h`.
    #[schemars(regex(pattern = RATE_PATTERN))]
    pub rate: String,
    /// Requests allowed at once. Default: N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub burst: Option<u32>,
}

/// How a rule keeps a client on one endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinitySpec {
    /// A cookie hawser sets on the first response; its value names the endpoint (a keyed hash,
    /// never an address). A request carrying it goes to that endpoint while it is ready.
    pub cookie: CookieAffinitySpec,
}

/// The affinity cookie's name and attributes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CookieAffinitySpec {
    /// Default `hawser-affinity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"))]
    pub name: Option<String>,
    /// The cookie's `Path`. Default: the rule's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[!-:<-~]*$"))]
    pub path: Option<String>,
    /// The cookie's `Max-Age` (a duration such as `48h`). Default: a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = POSITIVE_DURATION_PATTERN))]
    pub max_age: Option<String>,
    /// The cookie's `SameSite`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSiteSpec>,
    /// `Secure` on every response; without it, on HTTPS responses only. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// When the cookie's endpoint is listed but refuses the connection, point the cookie at the
    /// endpoint that took the request. Default false: the next request tries it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_on_failure: Option<bool>,
}

/// A cookie's `SameSite` attribute.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SameSiteSpec {
    /// Same-site requests only.
    Strict,
    /// Also top-level cross-site navigations.
    Lax,
    /// Every request (browsers require `Secure` with it).
    None,
}

/// When and how fast a rule's WebSockets are spread again over its endpoints.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceSpec {
    /// An endpoint holding more than this times the mean number of tunnels is overloaded.
    /// Default 1.25; at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0))]
    pub max_skew: Option<f64>,
    /// At most this many tunnels are closed per second. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub closes_per_second: Option<u32>,
}

/// Protocol between hawser and a rule's backends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackendProtocolSpec {
    /// Plain HTTP/1.1.
    #[serde(rename = "HTTP")]
    Http,
    /// HTTP/1.1 over TLS.
    #[serde(rename = "HTTPS")]
    Https,
}

/// One alternative of a rule: a path and exact header values.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// The request path. Default `PathPrefix /`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatchSpec>,
    /// Headers that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatchSpec>,
}

/// A path match, as in the Gateway API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathMatchSpec {
    /// `PathPrefix` (whole segments) or `Exact`.
    #[serde(rename = "type", default)]
    pub match_type: PathMatchType,
    /// Starts with `/`.
    #[schemars(regex(pattern = r"^/"))]
    pub value: String,
}

/// How a path is compared.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PathMatchType {
    /// `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
    #[default]
    PathPrefix,
    /// The whole path.
    Exact,
}

/// A header that must carry exactly this value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct HeaderMatchSpec {
    /// Header name (case-insensitive).
    #[schemars(length(min = 1))]
    pub name: String,
    /// Exact value.
    pub value: String,
}

/// A Service in the route's namespace and the port to reach it on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(PORT_RULE).message("port must be a port name or a number from 1 to 65535"))]
pub struct BackendRef {
    /// Service name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Service port: its number or its name.
    pub port: IntOrString,
    /// Relative share of new connections. Default 1; 0 takes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub weight: Option<u32>,
}

/// Load-balancing strategy of a rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "self.strategy != 'ConsistentHash' || has(self.hashOn)"
).message("ConsistentHash needs hashOn"))]
pub struct LoadBalancingSpec {
    /// `RoundRobin`, `LeastConnections` or `ConsistentHash`.
    pub strategy: Strategy,
    /// What `ConsistentHash` hashes: exactly one of its fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
}

/// Load-balancing strategies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Strategy {
    /// Weighted round-robin.
    RoundRobin,
    /// Fewest open connections per unit of weight.
    LeastConnections,
    /// The same key reaches the same endpoint (rendezvous hashing).
    ConsistentHash,
}

/// The request property a consistent hash uses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "[has(self.header), has(self.cookie), has(self.query), has(self.sourceIP) && self.sourceIP].filter(x, x).size() == 1"
).message("set exactly one of header, cookie, query, sourceIP"))]
pub struct HashOn {
    /// A request header name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A cookie name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// A query parameter name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The client IP address.
    #[serde(default, rename = "sourceIP", skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<bool>,
}

/// What hawser did with the route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketRouteStatus {
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (the route is valid and serving) and `ResolvedRefs` (its Services, ports and
    /// Secret exist).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The WebSocketRoute CRD as YAML, exactly as committed in
/// `crds/websocketroutes.hawser.dev.yaml`.
pub fn crd_yaml() -> String {
    generated(WebSocketRoute::crd(), "src/crd/mod.rs")
}

/// The WebSocketPolicy CRD as YAML, exactly as committed in
/// `crds/websocketpolicies.hawser.dev.yaml`.
pub fn policy_crd_yaml() -> String {
    generated(WebSocketPolicy::crd(), "src/crd/websocket_policy.rs")
}

fn generated(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    source: &str,
) -> String {
    let yaml = serde_yaml_ng::to_string(&crd).unwrap_or_else(|e| format!("# {e}\n"));
    format!("# Generated by `hawser crd` from {source}. Do not edit.\n---\n{yaml}")
}
