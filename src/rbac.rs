//! Every Kubernetes API call hawser makes, as the RBAC rules it needs. `hawser rbac` prints them
//! as JSON; the Helm chart must grant all of them, in the right scope (`e2e/chart_test.py`
//! checks). Keep this list in step with
//! `source/cluster.rs` (list/watch), `status/writer.rs` (status patches, Events) and
//! `status/lease.rs` (the Lease). The CRD probe uses discovery, which needs no rule. The
//! published Service is read directly in hawser's own namespace, which may lie outside
//! `--watch-namespace`.

use serde::Serialize;

/// Where a rule must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Scope {
    /// Cluster-wide, or in `--watch-namespace` when set (cluster-scoped kinds: always cluster-wide).
    #[serde(rename = "cluster")]
    Cluster,
    /// Only in hawser's own namespace.
    #[serde(rename = "release-namespace")]
    ReleaseNamespace,
}

/// One resource and the verbs used on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// API group (`""` for core).
    pub api_group: &'static str,
    /// Resource, or `resource/subresource`.
    pub resource: &'static str,
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Where.
    pub scope: Scope,
}

const READ: &[&str] = &["get", "list", "watch"];
const GATEWAY: &str = crate::gateway_api::GROUP;
const WRITE_STATUS: &[&str] = &["get", "patch", "update"];

/// The rules, in a stable order.
pub const RULES: &[Rule] = &[
    Rule { api_group: "networking.k8s.io", resource: "ingresses", verbs: READ, scope: Scope::Cluster },
    Rule {
        api_group: "networking.k8s.io",
        resource: "ingresses/status",
        verbs: WRITE_STATUS,
        scope: Scope::Cluster,
    },
    Rule { api_group: "networking.k8s.io", resource: "ingressclasses", verbs: READ, scope: Scope::Cluster },
    Rule { api_group: "hawser.dev", resource: "websocketroutes", verbs: READ, scope: Scope::Cluster },
    Rule {
        api_group: "hawser.dev",
        resource: "websocketroutes/status",
        verbs: WRITE_STATUS,
        scope: Scope::Cluster,
    },
    Rule { api_group: "hawser.dev", resource: "websocketpolicies", verbs: READ, scope: Scope::Cluster },
    Rule {
        api_group: "hawser.dev",
        resource: "websocketpolicies/status",
        verbs: WRITE_STATUS,
        scope: Scope::Cluster,
    },
    Rule { api_group: GATEWAY, resource: "gatewayclasses", verbs: READ, scope: Scope::Cluster },
    Rule {
        api_group: GATEWAY,
        resource: "gatewayclasses/status",
        verbs: WRITE_STATUS,
        scope: Scope::Cluster,
    },
    Rule { api_group: GATEWAY, resource: "gateways", verbs: READ, scope: Scope::Cluster },
    Rule { api_group: GATEWAY, resource: "gateways/status", verbs: WRITE_STATUS, scope: Scope::Cluster },
    Rule { api_group: GATEWAY, resource: "httproutes", verbs: READ, scope: Scope::Cluster },
    Rule { api_group: GATEWAY, resource: "httproutes/status", verbs: WRITE_STATUS, scope: Scope::Cluster },
    Rule { api_group: GATEWAY, resource: "referencegrants", verbs: READ, scope: Scope::Cluster },
    Rule { api_group: GATEWAY, resource: "backendtlspolicies", verbs: READ, scope: Scope::Cluster },
    Rule {
        api_group: GATEWAY,
        resource: "backendtlspolicies/status",
        verbs: WRITE_STATUS,
        scope: Scope::Cluster,
    },
    // The CA bundles BackendTLSPolicies name (watched only while that CRD is served).
    Rule { api_group: "", resource: "configmaps", verbs: READ, scope: Scope::Cluster },
    // Their labels decide which routes a Gateway listener's `allowedRoutes` selector takes.
    Rule { api_group: "", resource: "namespaces", verbs: READ, scope: Scope::Cluster },
    Rule { api_group: "", resource: "services", verbs: READ, scope: Scope::Cluster },
    Rule { api_group: "discovery.k8s.io", resource: "endpointslices", verbs: READ, scope: Scope::Cluster },
    Rule { api_group: "", resource: "secrets", verbs: READ, scope: Scope::Cluster },
    Rule {
        api_group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        scope: Scope::Cluster,
    },
    Rule {
        api_group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        scope: Scope::ReleaseNamespace,
    },
    Rule { api_group: "", resource: "services", verbs: &["get"], scope: Scope::ReleaseNamespace },
];

/// The rules as pretty JSON.
pub fn json() -> String {
    serde_json::to_string_pretty(RULES).unwrap_or_default() + "\n"
}
