//! WebSocketPolicy: which policy sets an HTTPRoute rule's connections, and each policy's own
//! translation (its settings checked, its targets looked up) for `hawser check` and its status.
//!
//! A policy targets HTTPRoutes of its namespace, or one rule of one (`sectionName` = the rule's
//! `name`). For a rule, a policy naming the rule beats one naming the whole route; between two
//! with the same target the older wins (then name order) and the other is `Conflicted`
//! (GEP-713's rules for direct policy attachment).

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::super::lookup::Lookup;
use super::super::report::{Reason, Reporter};
use super::super::{Output, settings};
use super::facts::{Facts, PolicyFacts, TargetFact};
use super::{GatewaySettings, is_ours, parent_gateway};
use crate::crd::{PolicyTargetRef, WebSocketPolicy};
use crate::gateway_api::{GROUP, HttpRoute};
use crate::model::NamespacedName;
use std::collections::BTreeSet;

/// The policy that sets rule `rule` (its `name`, if any) of the HTTPRoute `namespace/route`:
/// among the usable policies targeting it, one naming the rule, else one naming the route; the
/// oldest, then the first by name.
pub fn for_rule<'a>(
    lookup: &Lookup<'a>,
    namespace: &str,
    route: &str,
    rule: Option<&str>,
) -> Option<&'a WebSocketPolicy> {
    let specificity = |target: &PolicyTargetRef| super::specificity(target.section_name.as_deref(), rule);
    lookup
        .websocket_policies(namespace)
        .iter()
        .filter(|policy| settings::usable(&policy.spec.settings))
        .filter_map(|policy| {
            let targets = policy.spec.target_refs.iter().filter(|t| is_route(t) && t.name == route);
            Some(((targets.filter_map(specificity).min()?, rank(policy)), &**policy))
        })
        .min_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, policy)| policy)
}

/// Checks `policy`'s settings and looks its targets up, reporting problems; records what its
/// status reports.
pub fn translate(
    policy: &WebSocketPolicy,
    (lookup, gateway_settings): (&Lookup<'_>, &GatewaySettings),
    reporter: &mut Reporter<'_>,
    out: &mut Output,
) {
    let namespace = policy.namespace().unwrap_or_default();
    let checked = settings::policy(&policy.spec.settings, settings::websocket_defaults(), "spec", reporter);
    let invalid = match checked {
        None => Some("a setting is invalid; the policy sets nothing (see the findings)"),
        Some(refused) if refused.refused => {
            Some("a security setting is invalid; the rules it targets answer 503 (see the findings)")
        }
        Some(_) => None,
    };
    let mut facts = PolicyFacts::default();
    for (t, target) in policy.spec.target_refs.iter().enumerate() {
        let field = format!("spec.targetRefs[{t}]");
        let route = is_route(target).then(|| lookup.http_route(&namespace, &target.name)).flatten();
        let accepted = match (route, invalid) {
            (None, _) => {
                let message =
                    format!("HTTPRoute {namespace}/{} not found; the policy sets nothing there", target.name);
                reporter.report(Reason::UnresolvedRef, field, message.clone());
                Err(("TargetNotFound", message))
            }
            (Some(_), Some(why)) => Err(("Invalid", why.to_owned())),
            (Some(route), None) if !names_a_rule(route, target) => {
                let section = target.section_name.as_deref().unwrap_or_default();
                let message = format!("HTTPRoute {namespace}/{} has no rule named {section:?}", target.name);
                reporter.report(Reason::UnresolvedRef, field, message.clone());
                Err(("TargetNotFound", message))
            }
            (Some(_), None) if !wins(policy, target, lookup, &namespace) => {
                let message = format!(
                    "an older WebSocketPolicy already targets HTTPRoute {namespace}/{}{}",
                    target.name,
                    target.section_name.as_ref().map(|s| format!(" rule {s}")).unwrap_or_default()
                );
                reporter.report(Reason::Conflict, field, message.clone());
                Err(("Conflicted", message))
            }
            (Some(_), None) => Ok(()),
        };
        let ancestors = route.map(|r| our_gateways(r, lookup, gateway_settings)).unwrap_or_default();
        let ancestors = ancestors.into_iter().collect();
        facts.targets.push(TargetFact { index: t, ancestors, accepted });
    }
    out.facts = Some(Arc::new(Facts::Policy(facts)));
}

/// Whether `policy` is the one that sets `target` (no older policy names the same target).
fn wins(policy: &WebSocketPolicy, target: &PolicyTargetRef, lookup: &Lookup<'_>, namespace: &str) -> bool {
    let same_target = |other: &PolicyTargetRef| {
        is_route(other) && other.name == target.name && other.section_name == target.section_name
    };
    lookup
        .websocket_policies(namespace)
        .iter()
        .filter(|other| {
            settings::usable(&other.spec.settings) && other.spec.target_refs.iter().any(same_target)
        })
        .all(|other| rank(policy) <= rank(other))
}

/// Whether `target`'s `sectionName` (if any) names a rule of `route`.
fn names_a_rule(route: &HttpRoute, target: &PolicyTargetRef) -> bool {
    let Some(section) = &target.section_name else { return true };
    route.spec.rules.iter().flatten().any(|rule| rule.name.as_ref() == Some(section))
}

fn is_route(target: &PolicyTargetRef) -> bool {
    target.group == GROUP && target.kind == "HTTPRoute"
}

/// Which of two policies with the same target wins: dated before undated, the older, then
/// the first by name.
fn rank(policy: &WebSocketPolicy) -> (bool, Option<Timestamp>, String) {
    let created = policy.creation_timestamp().map(|t| t.0);
    (created.is_none(), created, policy.name_any())
}

/// The Gateways of hawser's `route` names as parents, each once: a policy's ancestors there
/// (a policy reports only the ancestors its controller is responsible for).
pub fn our_gateways(
    route: &HttpRoute,
    lookup: &Lookup<'_>,
    settings: &GatewaySettings,
) -> BTreeSet<NamespacedName> {
    let namespace = route.namespace().unwrap_or_default();
    let parents = route.spec.parent_refs.iter().flatten();
    parents
        .filter_map(|parent| parent_gateway(parent, &namespace))
        .filter(|g| {
            lookup.gateway(&g.namespace, &g.name).is_some_and(|gateway| is_ours(gateway, lookup, settings))
        })
        .collect()
}
