//! The status hawser wants on Gateway API objects, from the build's [`Facts`] (pure, tested):
//! its GatewayClasses `Accepted`; each served Gateway `Accepted` and `Programmed` with the
//! published addresses, and per listener `Accepted`, `Programmed`, `ResolvedRefs`,
//! `Conflicted`, its supported kinds and `attachedRoutes`; each HTTPRoute one `parents` entry
//! per Gateway of hawser's it names, with `Accepted` and `ResolvedRefs`; each WebSocketPolicy
//! one `ancestors` entry per Gateway its targets attach to, with `Accepted`. Other
//! controllers' entries are kept as they are. `lastTransitionTime` is kept while a condition's
//! status stays the same, so an unchanged status is equal to the current one and not written.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::IngressLoadBalancerIngress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::condition::condition;
use crate::crd::WebSocketPolicy;
use crate::gateway_api::{BackendTlsPolicy, GROUP, Gateway, GatewayClass, HttpRoute};
use crate::model::NamespacedName;
use crate::translate::conditions::RouteCondition;
use crate::translate::facts::{GatewayFacts, ListenerFact, PolicyFacts, RouteFacts, Why};

/// The most entries a status list of ancestors holds (the Gateway API's `maxItems`).
const MAX_ANCESTORS: usize = 16;
use crate::translate::{Facts, Kind, Level, ObjectRef, Report};

/// The status of one of hawser's GatewayClasses.
pub fn gateway_class_status(class: &GatewayClass) -> Value {
    let current = class.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let accepted = met("Accepted", "Accepted", "hawser serves Gateways of this class".into());
    json!({"conditions": [condition(&accepted, &current, class.metadata.generation)]})
}

/// The status of a served Gateway.
pub fn gateway_status(
    gateway: &Gateway,
    facts: &GatewayFacts,
    attached: &BTreeMap<String, usize>,
    addresses: &[IngressLoadBalancerIngress],
    reports: &[Report],
) -> Value {
    let generation = gateway.metadata.generation;
    let status = gateway.status.as_ref();
    let current = status.and_then(|s| s.conditions.clone()).unwrap_or_default();
    let object = ObjectRef::new(Kind::Gateway, &gateway.namespace().unwrap_or_default(), &gateway.name_any());
    let listeners: Vec<Value> = facts
        .listeners
        .iter()
        .enumerate()
        .map(|(index, fact)| {
            let previous = status
                .and_then(|s| s.listeners.as_ref())
                .and_then(|l| l.iter().find(|l| l.name == fact.name))
                .map(|l| l.conditions.clone())
                .unwrap_or_default();
            let certificate = certificate_problem(&object, index, reports);
            listener_status(
                fact,
                certificate,
                attached.get(&fact.name).copied().unwrap_or(0),
                (&previous, generation),
            )
        })
        .collect();
    let valid = facts.listeners.iter().filter(|l| l.accepted.is_ok()).count();
    let accepted = match (valid, facts.listeners.len()) {
        (v, n) if v == n => met("Accepted", "Accepted", "every listener is served".into()),
        (0, _) => unmet("Accepted", "ListenersNotValid", "no listener can be served".into()),
        _ => met(
            "Accepted",
            "ListenersNotValid",
            "some listeners cannot be served; see their conditions".into(),
        ),
    };
    let programmed = if valid == 0 {
        unmet("Programmed", "Invalid", "no listener can be served".into())
    } else {
        met("Programmed", "Programmed", "its listeners are in hawser's routing table".into())
    };
    let addresses: Vec<Value> = addresses
        .iter()
        .filter_map(|a| match (&a.ip, &a.hostname) {
            (Some(ip), _) => Some(json!({"type": "IPAddress", "value": ip})),
            (None, Some(host)) => Some(json!({"type": "Hostname", "value": host})),
            (None, None) => None,
        })
        .collect();
    json!({
        "addresses": addresses,
        "conditions": [condition(&accepted, &current, generation), condition(&programmed, &current, generation)],
        "listeners": listeners,
    })
}

/// An error the build found in listener `index`'s certificate (a Secret missing or invalid).
fn certificate_problem(gateway: &ObjectRef, index: usize, reports: &[Report]) -> Option<String> {
    let field = format!("spec.listeners[{index}].tls");
    reports
        .iter()
        .find(|r| &r.object == gateway && r.level() == Level::Error && r.field.starts_with(&field))
        .map(|r| r.message.clone())
}

fn listener_status(
    fact: &ListenerFact,
    certificate: Option<String>,
    attached: usize,
    (previous, generation): (&[Condition], Option<i64>),
) -> Value {
    let accepted = match &fact.accepted {
        Ok(()) => met("Accepted", "Accepted", "the listener is served".into()),
        Err((reason, message)) => unmet("Accepted", reason, message.clone()),
    };
    let programmed = match &fact.accepted {
        Ok(()) => met("Programmed", "Programmed", "the listener is in hawser's routing table".into()),
        Err((_, message)) => unmet("Programmed", "Invalid", message.clone()),
    };
    let resolved: Result<(), Why> = match (&fact.resolved, certificate) {
        (Err(why), _) => Err(why.clone()),
        (Ok(()), Some(message)) => Err(("InvalidCertificateRef", message)),
        (Ok(()), None) => Ok(()),
    };
    let kinds =
        if fact.takes_http_routes { json!([{"group": GROUP, "kind": "HTTPRoute"}]) } else { json!([]) };
    let resolved = match resolved {
        Ok(()) => met("ResolvedRefs", "ResolvedRefs", "every reference resolved".into()),
        Err((reason, message)) => unmet("ResolvedRefs", reason, message),
    };
    let conflicted = match &fact.conflicted {
        None => unmet("Conflicted", "NoConflicts", "no conflict".into()),
        Some(message) => met("Conflicted", "HostnameConflict", message.clone()),
    };
    let conditions: Vec<Condition> = [accepted, programmed, resolved, conflicted]
        .iter()
        .map(|c| condition(c, previous, generation))
        .collect();
    json!({"name": fact.name, "supportedKinds": kinds, "attachedRoutes": attached, "conditions": conditions})
}

/// How many routes attached to each listener, by Gateway, from every route's facts.
pub fn attached_routes(
    facts: &BTreeMap<ObjectRef, std::sync::Arc<Facts>>,
) -> BTreeMap<NamespacedName, BTreeMap<String, usize>> {
    let mut counts: BTreeMap<NamespacedName, BTreeMap<String, usize>> = BTreeMap::new();
    for route in facts.values() {
        let Facts::Route(route) = &**route else { continue };
        for parent in &route.parents {
            for listener in parent.attached.iter().flatten() {
                *counts.entry(parent.gateway.clone()).or_default().entry(listener.clone()).or_default() += 1;
            }
        }
    }
    counts
}

/// The `status.ancestors` of a WebSocketPolicy: per target, one entry per Gateway its route
/// names (the target itself when it was not found), and other controllers' entries as they
/// are.
pub fn policy_ancestors(policy: &WebSocketPolicy, facts: &PolicyFacts, controller: &str) -> Value {
    let generation = policy.metadata.generation;
    let namespace = policy.namespace().unwrap_or_default();
    let list = Entries::new(policy.status.as_ref().map(|s| &s.ancestors), "ancestorRef", controller);
    // One entry per ancestor: accepted when the policy takes effect on any target under it.
    let mut verdicts: BTreeMap<String, (Value, &Result<(), Why>)> = BTreeMap::new();
    for fact in &facts.targets {
        let Some(target) = policy.spec.target_refs.get(fact.index) else { continue };
        let references: Vec<Value> = if fact.ancestors.is_empty() {
            vec![
                json!({"group": target.group, "kind": target.kind, "namespace": namespace, "name": target.name}),
            ]
        } else {
            fact.ancestors.iter().map(gateway_reference).collect()
        };
        for reference in references {
            let verdict = verdicts.entry(reference.to_string()).or_insert((reference, &fact.accepted));
            if fact.accepted.is_ok() {
                verdict.1 = &fact.accepted;
            }
        }
    }
    let mut ancestors = list.foreign();
    let room = MAX_ANCESTORS.saturating_sub(ancestors.len());
    for (reference, verdict) in verdicts.into_values().take(room) {
        let accepted = match verdict {
            Ok(()) => met("Accepted", "Accepted", "the policy sets its target's connections".into()),
            Err((reason, message)) => unmet("Accepted", reason, message.clone()),
        };
        let conditions = vec![condition(&accepted, &list.previous(&reference), generation)];
        ancestors.push(list.entry(reference, conditions));
    }
    json!({"ancestors": ancestors})
}

fn gateway_reference(gateway: &NamespacedName) -> Value {
    json!({"group": GROUP, "kind": "Gateway", "namespace": gateway.namespace, "name": gateway.name})
}

/// The `status.parents` of an HTTPRoute: one entry per Gateway of hawser's it names, and
/// every other controller's entries as they are.
pub fn route_parents(route: &HttpRoute, facts: &RouteFacts, controller: &str) -> Value {
    let generation = route.metadata.generation;
    let namespace = route.namespace().unwrap_or_default();
    let list = Entries::new(route.status.as_ref().map(|s| &s.parents), "parentRef", controller);
    let spec_parents = route.spec.parent_refs.as_deref().unwrap_or_default();
    let mut parents = list.foreign();
    for fact in &facts.parents {
        let Some(spec) = spec_parents.get(fact.index) else { continue };
        let mut reference = json!({
            "group": spec.group.as_deref().unwrap_or(GROUP),
            "kind": spec.kind.as_deref().unwrap_or("Gateway"),
            "namespace": spec.namespace.as_deref().unwrap_or(&namespace),
            "name": spec.name,
        });
        if let Some(section) = &spec.section_name {
            reference["sectionName"] = json!(section);
        }
        if let Some(port) = spec.port {
            reference["port"] = json!(port);
        }
        let accepted = match &fact.attached {
            Ok(_) => met("Accepted", "Accepted", "the route is attached".into()),
            Err((reason, message)) => unmet("Accepted", reason, message.clone()),
        };
        let resolved = match &facts.unresolved {
            None => met("ResolvedRefs", "ResolvedRefs", "every backend reference resolved".into()),
            Some((reason, message)) => unmet("ResolvedRefs", reason, message.clone()),
        };
        let previous = list.previous(&reference);
        let conditions = [accepted, resolved].iter().map(|c| condition(c, &previous, generation)).collect();
        parents.push(list.entry(reference, conditions));
    }
    json!({"parents": parents})
}

/// The `status.ancestors` of a BackendTLSPolicy: one entry per Gateway of the routes that send to
/// its Services, with `Accepted` and `ResolvedRefs` (its CA bundle), other controllers' kept.
pub fn backend_tls_ancestors(
    policy: &BackendTlsPolicy,
    facts: &PolicyFacts,
    controller: &str,
) -> Option<Value> {
    let generation = policy.metadata.generation;
    let list = Entries::new(policy.status.as_ref().map(|s| &s.ancestors), "ancestorRef", controller);
    let mut ancestors = list.foreign();
    let room = MAX_ANCESTORS.saturating_sub(ancestors.len());
    let ours: Vec<&NamespacedName> = facts.targets.iter().flat_map(|f| &f.ancestors).take(room).collect();
    // A policy none of hawser's routes uses, with no entry of hawser's: not hawser's to write.
    if ours.is_empty() && ancestors.len() == list.current.len() {
        return None;
    }
    for fact in &facts.targets {
        // A CA reference that does not resolve fails both: the policy has no valid CA either
        // (Gateway API `BackendTLSPolicyReason`).
        let (accepted, resolved) = match &fact.accepted {
            Ok(()) => (
                met("Accepted", "Accepted", "hawser applies the policy".into()),
                met("ResolvedRefs", "ResolvedRefs", "the CA bundle was found and read".into()),
            ),
            Err((reason @ ("InvalidKind" | "InvalidCACertificateRef"), message)) => (
                unmet("Accepted", "NoValidCACertificate", message.clone()),
                unmet("ResolvedRefs", reason, message.clone()),
            ),
            Err((reason, message)) => (
                unmet("Accepted", reason, message.clone()),
                met("ResolvedRefs", "ResolvedRefs", "no reference to resolve".into()),
            ),
        };
        for gateway in fact.ancestors.iter().filter(|g| ours.contains(g)) {
            let reference = gateway_reference(gateway);
            let previous = list.previous(&reference);
            let conditions =
                [&accepted, &resolved].iter().map(|c| condition(c, &previous, generation)).collect();
            ancestors.push(list.entry(reference, conditions));
        }
    }
    Some(json!({"ancestors": ancestors}))
}

/// The `status.parents` of an HTTPRoute hawser no longer serves, when it still shows entries of
/// hawser's: the other controllers' entries alone. `None`: nothing of hawser's to take back.
pub fn stale_route_parents(route: &HttpRoute, controller: &str) -> Option<Value> {
    let list = Entries::new(route.status.as_ref().map(|s| &s.parents), "parentRef", controller);
    let foreign = list.foreign();
    (foreign.len() < list.current.len()).then(|| json!({"parents": foreign}))
}

/// A status list of entries by controller (an HTTPRoute's `parents`, a policy's `ancestors`),
/// as it is now.
struct Entries<'c> {
    current: Vec<Value>,
    /// `parentRef` or `ancestorRef`.
    reference_key: &'static str,
    controller: &'c str,
}

impl<'c> Entries<'c> {
    fn new<T: serde::Serialize>(
        current: Option<&Vec<T>>,
        reference_key: &'static str,
        controller: &'c str,
    ) -> Self {
        let current = current.into_iter().flatten().filter_map(|e| serde_json::to_value(e).ok()).collect();
        Self { current, reference_key, controller }
    }

    fn ours(&self, entry: &Value) -> bool {
        entry["controllerName"] == self.controller
    }

    /// Other controllers' entries, as they are.
    fn foreign(&self) -> Vec<Value> {
        self.current.iter().filter(|e| !self.ours(e)).cloned().collect()
    }

    /// The conditions of hawser's entry for `reference` now (none: no such entry).
    fn previous(&self, reference: &Value) -> Vec<Condition> {
        let ours = self.current.iter().find(|e| self.ours(e) && e[self.reference_key] == *reference);
        ours.and_then(|e| serde_json::from_value(e["conditions"].clone()).ok()).unwrap_or_default()
    }

    /// Hawser's entry for `reference`.
    fn entry(&self, reference: Value, conditions: Vec<Condition>) -> Value {
        json!({self.reference_key: reference, "controllerName": self.controller, "conditions": conditions})
    }
}

fn met(type_: &'static str, reason: &'static str, message: String) -> RouteCondition {
    RouteCondition { type_, status: "True", reason, message }
}

fn unmet(type_: &'static str, reason: &'static str, message: String) -> RouteCondition {
    RouteCondition { type_, status: "False", reason, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::facts::ParentFact;

    fn route(status: Value) -> HttpRoute {
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "apps", "generation": 3},
            "spec": {"parentRefs": [{"name": "gw", "namespace": "infra"}, {"name": "theirs"}]},
            "status": status,
        }))
        .expect("an HTTPRoute")
    }

    #[test]
    fn route_status_keeps_other_controllers_entries_and_is_stable() {
        let theirs =
            json!({"parentRef": {"name": "theirs"}, "controllerName": "example.com/other", "conditions": []});
        let facts = RouteFacts {
            parents: vec![ParentFact {
                index: 0,
                gateway: NamespacedName::new("infra", "gw"),
                attached: Ok(vec!["http".into()]),
            }],
            unresolved: None,
        };
        let first = route_parents(
            &route(json!({"parents": [theirs.clone()]})),
            &facts,
            "hawser.dev/gateway-controller",
        );
        let parents = first["parents"].as_array().expect("parents");
        assert_eq!(parents[0], theirs, "another controller's entry, untouched");
        assert_eq!(parents[1]["parentRef"]["name"], "gw");
        assert_eq!(parents[1]["conditions"][0]["observedGeneration"], 3);
        // Written back, the same facts want exactly what is there: no write, no new transition.
        let again = route_parents(&route(first.clone()), &facts, "hawser.dev/gateway-controller");
        assert_eq!(again, first);
        // No longer served: hawser's entry goes, the other controller's stays.
        let stale = stale_route_parents(&route(first), "hawser.dev/gateway-controller");
        assert_eq!(stale, Some(json!({"parents": [theirs.clone()]})));
        assert_eq!(
            stale_route_parents(&route(json!({"parents": [theirs]})), "hawser.dev/gateway-controller"),
            None
        );
    }
}
