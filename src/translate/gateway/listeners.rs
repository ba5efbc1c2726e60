//! A Gateway's listeners as hawser serves them. hawser has one plain-HTTP and one TLS listener,
//! shared by every Gateway of its GatewayClasses: a Gateway listener is served by the one its
//! protocol and port map to (`--gateway-http-port`, `--gateway-https-port`: the ports the
//! Service in front of hawser publishes, 80 and 443 by default). Which routes a listener takes
//! is its `allowedRoutes` (namespaces `Same`, `All` or `Selector`; kinds).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::core::{Selector, SelectorExt};

use super::super::lookup::Lookup;
use crate::gateway_api::gateways::{
    GatewayListeners, GatewayListenersAllowedRoutesKinds,
    GatewayListenersAllowedRoutesNamespacesFrom as From, GatewayListenersAllowedRoutesNamespacesSelector,
    GatewayListenersAllowedRoutesNamespacesSelectorMatchExpressions as Expression, GatewayListenersTlsMode,
};
use crate::gateway_api::{GROUP, Gateway};
use crate::model::Listeners;

/// The label Kubernetes puts on every Namespace with its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The Gateway ports hawser's listeners publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayPorts {
    /// Served by the plain-HTTP listener.
    pub http: u16,
    /// Served by the TLS listener.
    pub https: u16,
}

impl Default for GatewayPorts {
    fn default() -> Self {
        Self { http: 80, https: 443 }
    }
}

/// Why a Gateway listener is not served, with its Gateway API reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListenerError {
    #[error("protocol {0} is not served (HTTP and HTTPS are)")]
    UnsupportedProtocol(String),
    #[error("{protocol} on port {port} is not served: hawser's {protocol} listener publishes port {served}")]
    PortUnavailable { protocol: &'static str, port: i32, served: u16 },
    #[error("TLS mode Passthrough (or one this version does not know) is not served; Terminate is")]
    Passthrough,
}

impl ListenerError {
    /// The listener condition reason (Gateway API `ListenerConditionReason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedProtocol(_) | Self::Passthrough => "UnsupportedProtocol",
            Self::PortUnavailable { .. } => "PortUnavailable",
        }
    }
}

/// Which of hawser's listeners serves `listener`.
pub fn served_by(listener: &GatewayListeners, ports: GatewayPorts) -> Result<Listeners, ListenerError> {
    let (protocol, served, serves) = match listener.protocol.as_str() {
        "HTTP" => ("HTTP", ports.http, Listeners::Plain),
        "HTTPS" => ("HTTPS", ports.https, Listeners::Tls),
        other => return Err(ListenerError::UnsupportedProtocol(other.to_owned())),
    };
    if listener.port != i32::from(served) {
        return Err(ListenerError::PortUnavailable { protocol, port: listener.port, served });
    }
    let mode = listener.tls.as_ref().and_then(|t| t.mode.as_ref());
    if !matches!(mode, None | Some(GatewayListenersTlsMode::Terminate)) {
        return Err(ListenerError::Passthrough);
    }
    Ok(serves)
}

/// Another listener of `gateway` on the same hawser listener with the same hostname, if any
/// (Gateway API: indistinct listeners are all refused, none picked as the winner).
pub fn indistinct_from<'g>(
    gateway: &'g Gateway,
    listener: &GatewayListeners,
    ports: GatewayPorts,
) -> Option<&'g GatewayListeners> {
    let serves = served_by(listener, ports).ok()?;
    gateway.spec.listeners.iter().find(|other| {
        other.name != listener.name
            && other.hostname == listener.hostname
            && served_by(other, ports).ok() == Some(serves)
    })
}

/// Whether `listener` takes HTTPRoutes at all (its `allowedRoutes.kinds`, by default the
/// protocol's route kinds).
pub fn takes_http_routes(listener: &GatewayListeners) -> bool {
    let kinds = allowed_kinds(listener);
    kinds.is_empty() || kinds.iter().any(is_http_route)
}

/// Whether `allowedRoutes.kinds` names a kind hawser does not serve (`InvalidRouteKinds`).
pub fn names_other_kinds(listener: &GatewayListeners) -> bool {
    allowed_kinds(listener).iter().any(|k| !is_http_route(k))
}

fn allowed_kinds(listener: &GatewayListeners) -> &[GatewayListenersAllowedRoutesKinds] {
    listener.allowed_routes.as_ref().and_then(|a| a.kinds.as_deref()).unwrap_or_default()
}

fn is_http_route(kind: &GatewayListenersAllowedRoutesKinds) -> bool {
    kind.kind == "HTTPRoute" && kind.group.as_deref().unwrap_or(GROUP) == GROUP
}

/// Whether `listener` of a Gateway in `gateway_namespace` takes routes from `route_namespace`.
/// Without Namespace objects (a manifests directory may have none), a namespace has only the
/// `kubernetes.io/metadata.name` label Kubernetes gives every namespace.
pub fn allows_namespace(
    listener: &GatewayListeners,
    gateway_namespace: &str,
    route_namespace: &str,
    lookup: &Lookup<'_>,
) -> bool {
    let namespaces = listener.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_ref()) {
        None | Some(From::Same) => gateway_namespace == route_namespace,
        Some(From::All) => true,
        // A value this version does not know admits nothing.
        Some(From::Unknown) => false,
        Some(From::Selector) => {
            let Some(selector) = namespaces.and_then(|n| n.selector.as_ref()).and_then(selector) else {
                return false;
            };
            let mut labels =
                lookup.namespace(route_namespace).and_then(|n| n.metadata.labels.clone()).unwrap_or_default();
            labels.entry(NAMESPACE_NAME_LABEL.to_owned()).or_insert_with(|| route_namespace.to_owned());
            selector.matches(&labels)
        }
    }
}

/// The selector, `None` when it does not parse (it then selects nothing).
fn selector(spec: &GatewayListenersAllowedRoutesNamespacesSelector) -> Option<Selector> {
    let requirement = |e: &Expression| LabelSelectorRequirement {
        key: e.key.clone(),
        operator: e.operator.clone(),
        values: e.values.clone(),
    };
    let labels: Option<BTreeMap<String, String>> = spec.match_labels.clone();
    let expressions = spec.match_expressions.as_ref().map(|e| e.iter().map(requirement).collect());
    Selector::try_from(LabelSelector { match_labels: labels, match_expressions: expressions }).ok()
}
