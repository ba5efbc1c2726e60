//! Gateway API → candidate routes and TLS claims: a served Gateway's HTTPS listeners claim
//! their certificates, and each HTTPRoute attached to one of its listeners becomes candidates
//! on the hosts it shares with that listener, served only by the hawser listener (plain or TLS)
//! the Gateway listener maps to. They land in the same table as Ingresses and WebSocketRoutes.
//!
//! A Gateway is served when its `gatewayClassName` names a GatewayClass whose `controllerName`
//! is `--gateway-controller-name` (`hawser.dev/gateway-controller`).

mod backend_tls;
pub mod facts;
mod filters;
mod grants;
mod hostnames;
mod http_route;
mod listeners;
mod policy;

use std::sync::Arc;

use kube::ResourceExt;

pub use backend_tls::translate as translate_backend_tls;
pub use http_route::translate as translate_route;
pub use listeners::GatewayPorts;
pub use policy::translate as translate_policy;

use super::candidate::Rank;
use super::lookup::Lookup;
use super::report::{Reason, Reporter};
use super::{Output, TlsClaim};
use crate::gateway_api::gateways::GatewayListeners;
use crate::gateway_api::httproutes::HttpRouteParentRefs;
use crate::gateway_api::{GROUP, Gateway, HttpRoute};
use crate::model::{HostMatch, Listeners, NamespacedName};
use crate::snapshot::Snapshot;
use facts::{Facts, GatewayFacts, ListenerFact, Why};

/// The GatewayClass controller name hawser answers to unless `--gateway-controller-name`
/// says otherwise.
pub const GATEWAY_CONTROLLER_NAME: &str = "hawser.dev/gateway-controller";

/// How hawser serves the Gateway API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySettings {
    /// The `controllerName` of the GatewayClasses hawser serves.
    pub controller_name: String,
    /// The ports its listeners publish.
    pub ports: GatewayPorts,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self { controller_name: GATEWAY_CONTROLLER_NAME.to_owned(), ports: GatewayPorts::default() }
    }
}

/// Whether `gateway`'s class is one of hawser's (deciding what is served; inside a translation
/// the lookup is recorded, see `is_ours`).
pub fn is_served(gateway: &Gateway, snapshot: &Snapshot, settings: &GatewaySettings) -> bool {
    snapshot
        .gateway_class(&gateway.spec.gateway_class_name)
        .is_some_and(|class| class.spec.controller_name == settings.controller_name)
}

/// Whether `route` names a Gateway hawser serves among its parents.
pub fn has_served_parent(route: &HttpRoute, snapshot: &Snapshot, settings: &GatewaySettings) -> bool {
    let namespace = route.namespace().unwrap_or_default();
    let parents = route.spec.parent_refs.iter().flatten();
    parents.filter_map(|parent| parent_gateway(parent, &namespace)).any(|gateway| {
        snapshot.gateway(&gateway.namespace, &gateway.name).is_some_and(|g| is_served(g, snapshot, settings))
    })
}

/// The Gateway a `parentRefs` entry of a route in `route_namespace` names (group and kind
/// default to `gateway.networking.k8s.io` and `Gateway`); `None`: another kind of parent.
fn parent_gateway(parent: &HttpRouteParentRefs, route_namespace: &str) -> Option<NamespacedName> {
    let kind = (parent.group.as_deref().unwrap_or(GROUP), parent.kind.as_deref().unwrap_or("Gateway"));
    (kind == (GROUP, "Gateway"))
        .then(|| NamespacedName::new(parent.namespace.as_deref().unwrap_or(route_namespace), &parent.name))
}

/// How closely a policy target with `sectionName` `target` names the section `section` (a
/// rule's name, a port's name) of its object: `0` names it, `1` names the whole object,
/// `None` names another section. The most specific policy applies (GEP-713).
fn specificity(target: Option<&str>, section: Option<&str>) -> Option<u8> {
    match (target, section) {
        (None, _) => Some(1),
        (Some(target), Some(section)) if target == section => Some(0),
        _ => None,
    }
}

fn is_ours(gateway: &Gateway, lookup: &Lookup<'_>, settings: &GatewaySettings) -> bool {
    lookup
        .gateway_class(&gateway.spec.gateway_class_name)
        .is_some_and(|class| class.spec.controller_name == settings.controller_name)
}

/// Adds the TLS claims of a served `gateway`'s HTTPS listeners to `out`, reporting listeners
/// hawser cannot serve.
pub fn translate_gateway(
    gateway: &Gateway,
    lookup: &Lookup<'_>,
    settings: &GatewaySettings,
    reporter: &mut Reporter<'_>,
    out: &mut Output,
) {
    let rank = Rank::new(reporter.object().clone(), gateway.creation_timestamp().map(|t| t.0), false);
    let mut facts = GatewayFacts::default();
    for (l, listener) in gateway.spec.listeners.iter().enumerate() {
        let field = format!("spec.listeners[{l}]");
        let takes_http_routes = listeners::takes_http_routes(listener);
        let mut fact = ListenerFact {
            name: listener.name.clone(),
            accepted: Ok(()),
            resolved: Ok(()),
            takes_http_routes,
            conflicted: None,
        };
        let serves = listeners::served_by(listener, settings.ports);
        // Listeners that differ in nothing hawser tells apart: none of them is accepted.
        if let Some(other) = listeners::indistinct_from(gateway, listener, settings.ports) {
            let message = format!(
                "listeners {:?} and {:?} have the same port, protocol and hostname; neither takes routes",
                listener.name, other.name
            );
            reporter.report(Reason::Conflict, field.clone(), message.clone());
            fact.accepted = Err(("HostnameConflict", message.clone()));
            fact.conflicted = Some(message);
            facts.listeners.push(fact);
            continue;
        }
        match serves {
            Err(error) => {
                let message =
                    format!("listener {:?}: {error} ({}); it takes no routes", listener.name, error.reason());
                reporter.report(Reason::Unsupported, field, message.clone());
                fact.accepted = Err((error.reason(), message));
                facts.listeners.push(fact);
                continue;
            }
            Ok(Listeners::Tls) => match tls_claim(gateway, listener, (&field, &rank), lookup, reporter) {
                Ok(claim) => out.tls.push(claim),
                Err(why) => fact.resolved = Err(why),
            },
            Ok(_) => {}
        }
        if listeners::names_other_kinds(listener) {
            let message = format!(
                "listener {:?} allows route kinds hawser does not serve (it serves HTTPRoute)",
                listener.name
            );
            reporter.report(Reason::Unsupported, format!("{field}.allowedRoutes.kinds"), message.clone());
            fact.resolved = Err(("InvalidRouteKinds", message));
        }
        facts.listeners.push(fact);
    }
    out.facts = Some(Arc::new(Facts::Gateway(facts)));
}

/// The certificate an HTTPS listener serves: its first `certificateRefs` entry, a Secret in
/// the Gateway's namespace or one a ReferenceGrant shares with it.
fn tls_claim(
    gateway: &Gateway,
    listener: &GatewayListeners,
    (field, rank): (&str, &Rank),
    lookup: &Lookup<'_>,
    reporter: &mut Reporter<'_>,
) -> Result<TlsClaim, Why> {
    let field = format!("{field}.tls.certificateRefs");
    let mut fail = |reason, message: String| {
        reporter.report(reason, field.clone(), message.clone());
        Err(("InvalidCertificateRef", message))
    };
    let namespace = gateway.namespace().unwrap_or_default();
    let refs = listener.tls.as_ref().and_then(|t| t.certificate_refs.as_deref()).unwrap_or_default();
    let Some(reference) = refs.first() else {
        return fail(
            Reason::Invalid,
            format!("HTTPS listener {:?} names no certificate; it serves none", listener.name),
        );
    };
    let (group, kind) =
        (reference.group.as_deref().unwrap_or(""), reference.kind.as_deref().unwrap_or("Secret"));
    if (group, kind) != ("", "Secret") {
        return fail(
            Reason::Invalid,
            format!("{kind} ({group}) is not a certificate hawser reads (a Secret is)"),
        );
    }
    let secret_namespace = reference.namespace.clone().unwrap_or_else(|| namespace.clone());
    let from = grants::Referrer { group: GROUP, kind: "Gateway", namespace: &namespace };
    let to =
        grants::Referent { group: "", kind: "Secret", namespace: &secret_namespace, name: &reference.name };
    if !grants::permits(lookup, from, to) {
        let message = format!(
            "Secret {secret_namespace}/{} is in another namespace and no ReferenceGrant there allows it",
            reference.name
        );
        reporter.report(Reason::UnresolvedRef, field.clone(), message.clone());
        return Err(("RefNotPermitted", message));
    }
    if lookup.secret(&secret_namespace, &reference.name).is_none() {
        let message = format!(
            "Secret {secret_namespace}/{} not found; the listener serves no certificate",
            reference.name
        );
        reporter.report(Reason::UnresolvedRef, field.clone(), message.clone());
        return Err(("InvalidCertificateRef", message));
    }
    let host = listener.hostname.as_deref().map_or(HostMatch::Any, HostMatch::parse_gateway);
    let secret = NamespacedName::new(&secret_namespace, &reference.name);
    Ok(TlsClaim { rank: rank.clone(), host, secret, field })
}
