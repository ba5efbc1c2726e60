//! HTTPRoute → candidate routes. Each parent Gateway's listeners that take the route give the
//! hosts it serves there (the intersection of host names) and the hawser listener that serves
//! it; each rule's matches become routes to the rule's weighted Services. Route names are
//! `httproute/NAMESPACE/NAME/RULE/MATCH`.
//!
//! Defaults: the Ingress ones (idle timeout 60 s, no pings), except for rules whose first
//! backend's Service port declares `appProtocol: kubernetes.io/ws` or `kubernetes.io/wss`
//! (GEP-1911) or that a WebSocketPolicy sets, which get the WebSocketRoute ones (idle timeout
//! 1 h, pings every 30 s) and the policy's settings; `kubernetes.io/wss` also means TLS to the
//! backend. No automatic HTTPS redirect: the
//! Gateway API asks for one with a `RequestRedirect` filter.

use std::sync::Arc;

use kube::ResourceExt;

use super::super::backends::{self, PortRef};
use super::super::candidate::{Candidate, Rank};
use super::super::lookup::Lookup;
use super::super::report::{Reason, Reporter};
use super::super::settings;
use super::super::{Output, values};
use super::facts::{Facts, ParentFact, RouteFacts, Why};
use super::listeners::{allows_namespace, indistinct_from, served_by, takes_http_routes};
use super::{GatewaySettings, backend_tls, filters, grants, hostnames, is_ours, parent_gateway, policy};
use crate::gateway_api::httproutes::{
    HttpRouteParentRefs, HttpRouteRules, HttpRouteRulesBackendRefs, HttpRouteRulesMatches,
    HttpRouteRulesMatchesHeadersType as HeaderType, HttpRouteRulesMatchesMethod as Method,
    HttpRouteRulesMatchesPathType as PathType, HttpRouteRulesMatchesQueryParamsType as QueryType,
};
use crate::gateway_api::{GROUP, HttpRoute};
use crate::model::{
    Backend, BackendProtocol, HeaderMatch, HostMatch, HttpsRedirect, Listeners, NamespacedName, PathMatch,
    Policy, QueryMatch, RequestRedirect, Route, Timeout,
};

/// `appProtocol` values of a Service port that mean WebSocket (GEP-1911).
const WEBSOCKET: &str = "kubernetes.io/ws";
const WEBSOCKET_TLS: &str = "kubernetes.io/wss";

/// One rule, translated once for every parent it attaches to.
#[derive(Debug)]
struct Rule {
    field: String,
    index: usize,
    matches: Vec<Match>,
    backend: Backend,
    policy: Arc<Policy>,
}

impl Rule {
    /// The rule's policy on one of hawser's listeners: a redirect that names neither scheme
    /// nor port goes to the port of the Gateway listener the request came through.
    fn policy_on(&self, listeners: Listeners, settings: &GatewaySettings) -> Arc<Policy> {
        let Some(redirect) = &self.policy.rewrites.request_redirect else { return self.policy.clone() };
        if redirect.scheme.is_some() || redirect.port.is_some() {
            return self.policy.clone();
        }
        let port = match listeners {
            Listeners::Tls => settings.ports.https,
            Listeners::Plain | Listeners::Both => settings.ports.http,
        };
        let mut policy = Policy::clone(&self.policy);
        let scheme = if listeners == Listeners::Tls { "https" } else { "http" };
        policy.rewrites.request_redirect = Some(Box::new(RequestRedirect {
            scheme: Some(scheme.to_owned()),
            port: Some(port),
            ..(**redirect).clone()
        }));
        Arc::new(policy)
    }
}

/// One `matches` entry.
#[derive(Debug)]
struct Match {
    path: PathMatch,
    headers: Vec<HeaderMatch>,
    method: Option<Box<str>>,
    query: Vec<QueryMatch>,
}

/// Adds what `route` asks for on its parents to `out`, reporting into `reporter`.
pub fn translate(
    route: &HttpRoute,
    lookup: &Lookup<'_>,
    settings: &GatewaySettings,
    reporter: &mut Reporter<'_>,
    out: &mut Output,
) {
    let namespace = route.namespace().unwrap_or_default();
    let rank = Rank::new(reporter.object().clone(), route.creation_timestamp().map(|t| t.0), false);
    let route_hosts = route.spec.hostnames.clone().unwrap_or_default();
    let mut attachments: Vec<(Listeners, HostMatch)> = Vec::new();
    let mut facts = RouteFacts::default();
    for (p, parent) in route.spec.parent_refs.iter().flatten().enumerate() {
        let field = format!("spec.parentRefs[{p}]");
        let gateway = NamespacedName::new(parent.namespace.as_deref().unwrap_or(&namespace), &parent.name);
        let attached = match attach(parent, &namespace, &route_hosts, lookup, settings) {
            Ok(found) => {
                let mut names: Vec<String> = found.iter().map(|(name, _, _)| name.clone()).collect();
                names.dedup();
                attachments.extend(found.into_iter().map(|(_, listeners, host)| (listeners, host)));
                Ok(names)
            }
            Err(Detached::NotOurs) => continue,
            Err(detached) => {
                let message = detached.message(parent, &namespace);
                reporter.report(Reason::NotAttached, field, message.clone());
                if detached == Detached::NotFound {
                    continue;
                }
                Err((detached.reason(), message))
            }
        };
        facts.parents.push(ParentFact { index: p, gateway, attached });
    }
    attachments.sort();
    attachments.dedup();
    if attachments.is_empty() {
        out.facts = Some(Arc::new(Facts::Route(facts)));
        return;
    }
    let name = route.name_any();
    let rules = route.spec.rules.iter().flatten().enumerate();
    let rules: Vec<Rule> = rules
        .filter_map(|rule| translate_rule(rule, (&namespace, &name), lookup, reporter, &mut facts.unresolved))
        .collect();
    out.facts = Some(Arc::new(Facts::Route(facts)));
    for (listeners, host) in &attachments {
        for rule in &rules {
            for (m, matched) in rule.matches.iter().enumerate() {
                let route_name = format!("httproute/{namespace}/{name}/{}/{m}", rule.index);
                let route = Route {
                    headers: matched.headers.clone(),
                    method: matched.method.clone(),
                    query: matched.query.clone(),
                    listeners: *listeners,
                    ..Route::new(
                        &route_name,
                        matched.path.clone(),
                        rule.backend.clone(),
                        rule.policy_on(*listeners, settings),
                    )
                };
                out.candidates.push(Candidate {
                    rank: rank.clone(),
                    host: host.clone(),
                    route,
                    field: rule.field.clone(),
                });
            }
        }
    }
}

/// Why a route is not attached to a parent (Gateway API `RouteConditionReason`).
#[derive(Debug, PartialEq, Eq)]
enum Detached {
    /// Not a Gateway of hawser's classes: another controller's business.
    NotOurs,
    NotFound,
    NoMatchingParent,
    NotAllowedByListeners,
    NoMatchingListenerHostname,
}

impl Detached {
    /// The Gateway API `RouteConditionReason`.
    fn reason(&self) -> &'static str {
        match self {
            Self::NotOurs | Self::NotFound | Self::NoMatchingParent => "NoMatchingParent",
            Self::NotAllowedByListeners => "NotAllowedByListeners",
            Self::NoMatchingListenerHostname => "NoMatchingListenerHostname",
        }
    }

    fn message(&self, parent: &HttpRouteParentRefs, route_namespace: &str) -> String {
        let namespace = parent.namespace.as_deref().unwrap_or(route_namespace);
        let gateway = format!("Gateway {namespace}/{}", parent.name);
        match self {
            Self::NotOurs => format!("{gateway} is not served by hawser"),
            Self::NotFound => format!("{gateway} not found; the route is not attached to it"),
            Self::NoMatchingParent => {
                format!(
                    "{gateway} has no listener with this sectionName and port; the route is not attached to it"
                )
            }
            Self::NotAllowedByListeners => {
                format!(
                    "no listener of {gateway} allows routes from namespace {route_namespace} (NotAllowedByListeners)"
                )
            }
            Self::NoMatchingListenerHostname => {
                format!(
                    "no listener of {gateway} shares a host name with the route (NoMatchingListenerHostname)"
                )
            }
        }
    }
}

/// The Gateway listeners, hawser listener and hosts `route` serves on through `parent`.
fn attach(
    parent: &HttpRouteParentRefs,
    route_namespace: &str,
    route_hosts: &[String],
    lookup: &Lookup<'_>,
    settings: &GatewaySettings,
) -> Result<Vec<(String, Listeners, HostMatch)>, Detached> {
    let name = parent_gateway(parent, route_namespace).ok_or(Detached::NotOurs)?;
    let namespace = name.namespace.as_str();
    let gateway = lookup.gateway(namespace, &name.name).ok_or(Detached::NotFound)?;
    if !is_ours(gateway, lookup, settings) {
        return Err(Detached::NotOurs);
    }
    let named: Vec<_> = gateway
        .spec
        .listeners
        .iter()
        .filter(|l| parent.section_name.as_ref().is_none_or(|s| *s == l.name))
        .filter(|l| parent.port.is_none_or(|p| p == l.port))
        .collect();
    if named.is_empty() {
        return Err(Detached::NoMatchingParent);
    }
    let served = |l: &&&_| served_by(l, settings.ports).is_ok();
    let allowed: Vec<_> = named
        .iter()
        .filter(served)
        .filter(|l| takes_http_routes(l) && allows_namespace(l, namespace, route_namespace, lookup))
        .filter(|l| indistinct_from(gateway, l, settings.ports).is_none())
        .collect();
    if allowed.is_empty() {
        return Err(Detached::NotAllowedByListeners);
    }
    let mut found = Vec::new();
    for listener in allowed {
        let Ok(serves) = served_by(listener, settings.ports) else { continue };
        let hosts = hostnames::intersect(listener.hostname.as_deref(), route_hosts);
        // Listener isolation: a host a more specific sibling listener covers is that listener's.
        let siblings = gateway
            .spec
            .listeners
            .iter()
            .filter(|l| l.name != listener.name && served_by(l, settings.ports).ok() == Some(serves));
        let sibling_hosts: Vec<Option<&str>> = siblings.map(|l| l.hostname.as_deref()).collect();
        let own = listener.hostname.as_deref();
        found.extend(
            hosts
                .into_iter()
                .filter(|host| !hostnames::claimed_by_narrower(host, own, &sibling_hosts))
                .map(|host| (listener.name.clone(), serves, host)),
        );
    }
    if found.is_empty() {
        return Err(Detached::NoMatchingListenerHostname);
    }
    Ok(found)
}

/// One rule's matches, backend and policy; `None` (reported) when none of its matches can be
/// served.
fn translate_rule(
    (index, rule): (usize, &HttpRouteRules),
    (namespace, route): (&str, &str),
    lookup: &Lookup<'_>,
    reporter: &mut Reporter<'_>,
    unresolved: &mut Option<Why>,
) -> Option<Rule> {
    let field = format!("spec.rules[{index}]");
    let matches = rule_matches(rule, &field, reporter);
    if matches.is_empty() {
        return None;
    }
    let refs = rule.backend_refs.as_deref().unwrap_or_default();
    let (backend, any_valid) = backend(refs, namespace, (&field, lookup), reporter, unresolved);
    let mut policy = base_policy(rule, (namespace, route), lookup);
    let mut unverifiable = false;
    match rule_backend_tls(refs, namespace, lookup) {
        Ok(Some(protocol)) => policy.backend_protocol = protocol,
        Ok(None) => {}
        Err((reason, message)) => {
            let report = format!("{message}; the rule answers 500 rather than send traffic unverified");
            reporter.report(Reason::UnresolvedRef, format!("{field}.backendRefs"), report);
            unresolved.get_or_insert((reason, message));
            unverifiable = true;
        }
    }
    if let Err((at, error)) =
        filters::apply(rule.filters.as_deref().unwrap_or_default(), &mut policy, &field, reporter)
    {
        reporter.report(Reason::Invalid, at, format!("{error}; the rule is left out"));
        return None;
    }
    // A rule with no backend it can reach (or reach as its BackendTLSPolicies ask) answers 500,
    // unless it redirects and so never reaches one (Gateway API `HTTPRouteRule.backendRefs`).
    if (!any_valid || unverifiable) && policy.rewrites.request_redirect.is_none() {
        policy.rewrites.status.get_or_insert(500);
    }
    if let Some(timeouts) = &rule.timeouts {
        let values = [("request", &timeouts.request), ("backendRequest", &timeouts.backend_request)];
        for (key, value) in values {
            let Some(value) = value else { continue };
            // `0s` turns the timeout off (Gateway API `HTTPRouteTimeouts`).
            match values::timeout(value) {
                Ok(Timeout::After(limit)) => policy.response_timeout = policy.response_timeout.min(limit),
                Ok(Timeout::Disabled) => {}
                Err(error) => {
                    let message = format!("{error}; the rule is left out");
                    reporter.report(Reason::Invalid, format!("{field}.timeouts.{key}"), message);
                    return None;
                }
            }
        }
    }
    Some(Rule { field, index, matches, backend, policy: Arc::new(policy) })
}

/// The rule's matches (none: every path). A match hawser cannot serve is reported and left out.
fn rule_matches(rule: &HttpRouteRules, field: &str, reporter: &mut Reporter<'_>) -> Vec<Match> {
    let Some(matches) = rule.matches.as_deref().filter(|m| !m.is_empty()) else {
        return vec![Match {
            path: PathMatch::Prefix("/".into()),
            headers: Vec::new(),
            method: None,
            query: Vec::new(),
        }];
    };
    let mut out = Vec::new();
    for (m, matched) in matches.iter().enumerate() {
        match one_match(matched) {
            Ok(found) => out.push(found),
            Err(message) => reporter.report(Reason::Unsupported, format!("{field}.matches[{m}]"), message),
        }
    }
    out
}

fn one_match(matched: &HttpRouteRulesMatches) -> Result<Match, String> {
    let path = match &matched.path {
        None => PathMatch::Prefix("/".into()),
        Some(path) => {
            let value = path.value.clone().unwrap_or_else(|| "/".to_owned());
            if !value.starts_with('/') {
                return Err(format!("path {value:?} does not start with /; the match is left out"));
            }
            match path.r#type {
                Some(PathType::Exact) => PathMatch::Exact(value),
                None | Some(PathType::PathPrefix) => PathMatch::Prefix(value),
                Some(PathType::Unknown) => {
                    return Err("a path type this version does not know; the match is left out".to_owned());
                }
                Some(PathType::RegularExpression) => {
                    return Err(
                        "path type RegularExpression is not supported; the match is left out".to_owned()
                    );
                }
            }
        }
    };
    let mut headers: Vec<HeaderMatch> = Vec::new();
    for header in matched.headers.iter().flatten() {
        if !matches!(header.r#type, None | Some(HeaderType::Exact)) {
            return Err("only Exact header matches are served; the match is left out".to_owned());
        }
        let name = header.name.to_ascii_lowercase();
        // Only the first entry of a name counts (Gateway API `HTTPHeaderMatch`).
        if !headers.iter().any(|h| h.name == name) {
            headers.push(HeaderMatch { name, value: header.value.clone() });
        }
    }
    let mut query: Vec<QueryMatch> = Vec::new();
    for param in matched.query_params.iter().flatten() {
        if !matches!(param.r#type, None | Some(QueryType::Exact)) {
            return Err("only Exact query parameter matches are served; the match is left out".to_owned());
        }
        if !query.iter().any(|q| q.name == param.name) {
            query.push(QueryMatch { name: param.name.clone(), value: param.value.clone() });
        }
    }
    if matched.method == Some(Method::Unknown) {
        return Err("a method this version does not know; the match is left out".to_owned());
    }
    let method = matched.method.as_ref().and_then(|m| serde_json::to_value(m).ok());
    let method = method.as_ref().and_then(|m| m.as_str()).map(Box::from);
    Ok(Match { path, headers, method, query })
}

/// The rule's endpoints (each valid Service reference's ready addresses with its weight), and
/// whether any reference is valid (names a Service hawser may use, which exists).
/// The first reference that does not resolve is noted in `unresolved` (for status).
fn backend(
    refs: &[HttpRouteRulesBackendRefs],
    namespace: &str,
    (field, lookup): (&str, &Lookup<'_>),
    reporter: &mut Reporter<'_>,
    unresolved: &mut Option<Why>,
) -> (Backend, bool) {
    let mut groups = Vec::new();
    // The weight of the invalid references: their share of the requests gets 500.
    let mut failing = 0u32;
    for (b, reference) in refs.iter().enumerate() {
        let field = format!("{field}.backendRefs[{b}]");
        if reference.filters.as_ref().is_some_and(|f| !f.is_empty()) {
            let message = "filters on a backendRef are not served; the rule's filters are";
            reporter.report(Reason::Unsupported, format!("{field}.filters"), message);
        }
        let weight = u32::try_from(reference.weight.unwrap_or(1)).unwrap_or(0);
        let found = service_ref(reference, namespace, lookup).and_then(|(service_namespace, port)| {
            match lookup.service(service_namespace, &reference.name) {
                Some(_) => Ok((service_namespace, port)),
                None => {
                    let message =
                        format!("Service {service_namespace}/{} not found (BackendNotFound)", reference.name);
                    Err((Reason::UnresolvedRef, "BackendNotFound", message))
                }
            }
        });
        match found {
            Ok((service_namespace, port)) => {
                let service = (reference.name.as_str(), &PortRef::Number(port));
                let addrs = backends::resolve(lookup, service_namespace, service, false, &field, reporter);
                groups.push((weight, addrs));
            }
            Err((reason, why, message)) => {
                failing = failing.saturating_add(backends::weight_units(weight));
                unresolved.get_or_insert((why, message.clone()));
                reporter.report(reason, field, format!("{message}; its share of the requests gets 500"));
            }
        }
    }
    let any_valid = !groups.is_empty();
    (Backend::new(backends::weighted(&groups)).with_failing(failing), any_valid)
}

/// The namespace and port of a reference to a Service, or why it cannot be followed.
fn service_ref<'r>(
    reference: &'r HttpRouteRulesBackendRefs,
    namespace: &'r str,
    lookup: &Lookup<'_>,
) -> Result<(&'r str, i32), (Reason, &'static str, String)> {
    let (group, kind) =
        (reference.group.as_deref().unwrap_or(""), reference.kind.as_deref().unwrap_or("Service"));
    if (group, kind) != ("", "Service") {
        let message = format!("{kind} ({group:?}) is not a backend kind hawser serves (InvalidKind)");
        return Err((Reason::UnresolvedRef, "InvalidKind", message));
    }
    let service_namespace = reference.namespace.as_deref().unwrap_or(namespace);
    let from = grants::Referrer { group: GROUP, kind: "HTTPRoute", namespace };
    let to =
        grants::Referent { group: "", kind: "Service", namespace: service_namespace, name: &reference.name };
    if !grants::permits(lookup, from, to) {
        let message = format!(
            "Service {service_namespace}/{} is in another namespace and no ReferenceGrant there allows it (RefNotPermitted)",
            reference.name
        );
        return Err((Reason::UnresolvedRef, "RefNotPermitted", message));
    }
    let port = reference
        .port
        .ok_or_else(|| (Reason::Invalid, "UnsupportedValue", "a Service backend needs a port".to_owned()))?;
    Ok((service_namespace, port))
}

/// TLS to the rule's backends, as the BackendTLSPolicies of their Services (or ports) ask.
/// hawser speaks one protocol per rule: backends (those it may use) that need different TLS,
/// or a policy it cannot honour, make the rule unverifiable (`Err`).
fn rule_backend_tls(
    refs: &[HttpRouteRulesBackendRefs],
    namespace: &str,
    lookup: &Lookup<'_>,
) -> Result<Option<BackendProtocol>, Why> {
    let mut chosen: Option<Option<BackendProtocol>> = None;
    for reference in refs {
        let Ok((service_namespace, _)) = service_ref(reference, namespace, lookup) else { continue };
        let port_name = service_port(reference, service_namespace, lookup).and_then(|p| p.name.clone());
        let protocol =
            backend_tls::protocol(lookup, service_namespace, &reference.name, port_name.as_deref())?;
        match &chosen {
            None => chosen = Some(protocol),
            Some(earlier) if *earlier == protocol => {}
            Some(_) => {
                let message = "the rule's backends need different TLS (BackendTLSPolicy); hawser speaks one protocol per rule".to_owned();
                return Err(("UnsupportedValue", message));
            }
        }
    }
    Ok(chosen.flatten())
}

/// The port of the Service `reference` names (in `namespace`, its own).
fn service_port<'a>(
    reference: &HttpRouteRulesBackendRefs,
    namespace: &str,
    lookup: &Lookup<'a>,
) -> Option<&'a k8s_openapi::api::core::v1::ServicePort> {
    let service = lookup.service(namespace, &reference.name)?;
    service.spec.as_ref()?.ports.as_ref()?.iter().find(|p| Some(p.port) == reference.port)
}

/// The `appProtocol` of the Service port `reference` names.
fn app_protocol(
    reference: &HttpRouteRulesBackendRefs,
    namespace: &str,
    lookup: &Lookup<'_>,
) -> Option<String> {
    let namespace = reference.namespace.as_deref().unwrap_or(namespace);
    service_port(reference, namespace, lookup)?.app_protocol.clone()
}

/// The rule's policy before its filters and timeouts: the Ingress defaults, or the
/// WebSocketRoute ones when its first backend's port says WebSocket (`kubernetes.io/ws`, or
/// `kubernetes.io/wss`: TLS to the backend too) or a WebSocketPolicy sets it, with that
/// policy's settings. Never an automatic HTTPS redirect.
fn base_policy(rule: &HttpRouteRules, (namespace, route): (&str, &str), lookup: &Lookup<'_>) -> Policy {
    let first = rule.backend_refs.as_deref().unwrap_or_default().first();
    let protocol = first.and_then(|r| app_protocol(r, namespace, lookup));
    let websocket = matches!(protocol.as_deref(), Some(WEBSOCKET | WEBSOCKET_TLS));
    let set_by = policy::for_rule(lookup, namespace, route, rule.name.as_deref());
    let mut base =
        if websocket || set_by.is_some() { settings::websocket_defaults() } else { Policy::default() };
    base.https_redirect = HttpsRedirect::Never;
    if protocol.as_deref() == Some(WEBSOCKET_TLS) {
        let server_name =
            first.map(|r| backends::dns_name(&r.name, r.namespace.as_deref().unwrap_or(namespace)));
        base.backend_protocol = BackendProtocol::HTTPS.with_server_name(server_name);
    }
    match set_by {
        // `for_rule` picks only usable settings.
        Some(policy) => settings::applied_quietly(&policy.spec.settings, base.clone()).unwrap_or(base),
        None => base,
    }
}
