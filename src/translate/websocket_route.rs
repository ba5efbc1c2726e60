//! WebSocketRoute (`hawser.dev/v1alpha1`) → candidate routes and TLS claims.
//!
//! Defaults for long-lived connections: idle timeout 1 h, handshake timeout 10 s, no maximum
//! duration, round-robin. A rule with an invalid value is left out and reported; the route's
//! other rules keep working. Route names are `wsroute/NAMESPACE/NAME/RULE/MATCH`.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;

use super::affinity;
use super::backends::{self, PortRef};
use super::candidate::{Candidate, Rank};
use super::ingress::valid_host;
use super::lookup::Lookup;
use super::report::{Reason, Reporter};
use super::tls;
use super::values::{self, rebalance};
use super::{Output, TlsClaim};
use crate::crd::{
    BackendProtocolSpec, HashOn, LoadBalancingSpec, PathMatchType, RouteRule, RuleSlot, Strategy,
    WebSocketRoute,
};
use crate::model::{
    Backend, BackendProtocol, HashKey, HeaderMatch, HostMatch, LoadBalancing, NamespacedName, PathMatch,
    Policy, Route, Timeout, ValueError,
};

/// Idle timeout of a WebSocketRoute rule that sets none.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Handshake timeout of a WebSocketRoute rule that sets none.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping interval of a WebSocketRoute rule that sets none.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// What a refused rule does, for report messages.
const RULE_REFUSED: &str = "the rule answers 503 (fail closed)";

/// Adds what `route` asks for to `out`, reporting into `reporter`.
pub fn translate(
    route: &WebSocketRoute,
    snapshot: &Lookup<'_>,
    reporter: &mut Reporter<'_>,
    out: &mut Output,
) {
    let namespace = route.namespace().unwrap_or_default();
    let rank = Rank::new(reporter.object().clone(), route.creation_timestamp().map(|t| t.0), false);
    let Some(hosts) = hosts(&route.spec.hostnames, reporter) else { return };
    for (r, slot) in route.spec.rules.iter().enumerate() {
        let field = format!("spec.rules[{r}]");
        let rule = match slot {
            RuleSlot::Valid(rule) => rule,
            RuleSlot::Invalid { error, .. } => {
                reporter.report(Reason::Invalid, field, format!("{error}; the rule is left out"));
                continue;
            }
        };
        let Some(mut policy) = rule_policy(rule, &field, reporter) else { continue };
        let server_name = rule.backends.first().map(|b| backends::dns_name(&b.name, &namespace));
        policy.backend_protocol = policy.backend_protocol.with_server_name(server_name);
        if let Some(name) = &rule.backend_ca_secret {
            match tls::backend_ca(snapshot, &namespace, name) {
                Ok(ca) => policy.backend_protocol.verify_with(ca),
                Err(problem) => {
                    // Serving without the verification that was asked for would be worse.
                    let message = format!("Secret {namespace}/{name}: {problem}; {RULE_REFUSED}");
                    reporter.report(Reason::Invalid, format!("{field}.backendCASecret"), message);
                    policy.refused = true;
                }
            }
        }
        let backend = backend(rule, snapshot, &namespace, &field, reporter);
        let policy = Arc::new(policy);
        for (m, (path, headers)) in matches(rule).into_iter().enumerate() {
            let name = format!("wsroute/{namespace}/{}/{r}/{m}", route.name_any());
            let route = Route { headers, ..Route::new(&name, path, backend.clone(), policy.clone()) };
            for host in &hosts {
                out.candidates.push(Candidate {
                    rank: rank.clone(),
                    host: host.clone(),
                    route: route.clone(),
                    field: field.clone(),
                });
            }
        }
    }
    if let Some(tls) = &route.spec.tls {
        tls_claims(&tls.secret_name, &hosts, snapshot, &namespace, &rank, reporter, out);
    }
}

fn hosts(hostnames: &[String], reporter: &mut Reporter<'_>) -> Option<Vec<HostMatch>> {
    if let Some(bad) = hostnames.iter().find(|h| h.is_empty() || !valid_host(h)) {
        let message =
            format!("{bad:?} is not a host name or a *.wildcard of one label; the route is left out");
        reporter.report(Reason::Invalid, "spec.hostnames", message);
        return None;
    }
    Some(if hostnames.is_empty() {
        vec![HostMatch::Any]
    } else {
        hostnames.iter().map(|h| HostMatch::parse(h)).collect()
    })
}

/// The rule's matches as (path, headers); none means every path.
fn matches(rule: &RouteRule) -> Vec<(PathMatch, Vec<HeaderMatch>)> {
    if rule.matches.is_empty() {
        return vec![(PathMatch::Prefix("/".into()), Vec::new())];
    }
    rule.matches
        .iter()
        .map(|m| {
            let path = match &m.path {
                None => PathMatch::Prefix("/".into()),
                Some(p) if p.match_type == PathMatchType::Exact => PathMatch::Exact(p.value.clone()),
                Some(p) => PathMatch::Prefix(p.value.clone()),
            };
            let headers = m
                .headers
                .iter()
                .map(|h| HeaderMatch { name: h.name.to_ascii_lowercase(), value: h.value.clone() });
            (path, headers.collect())
        })
        .collect()
}

fn backend(
    rule: &RouteRule,
    snapshot: &Lookup<'_>,
    namespace: &str,
    field: &str,
    reporter: &mut Reporter<'_>,
) -> Backend {
    let groups: Vec<(u32, Vec<std::net::SocketAddr>)> = rule
        .backends
        .iter()
        .enumerate()
        .map(|(b, backend)| {
            let field = format!("{field}.backends[{b}]");
            let port = PortRef::from(&backend.port);
            let addrs =
                backends::resolve(snapshot, namespace, (&backend.name, &port), false, &field, reporter);
            (backend.weight.unwrap_or(1), addrs)
        })
        .collect();
    Backend::new(backends::weighted(&groups))
}

/// The rule's policy; `None` (reported) when a value is invalid, refused when that value is a
/// security setting.
fn rule_policy(rule: &RouteRule, field: &str, reporter: &mut Reporter<'_>) -> Option<Policy> {
    let mut policy = Policy {
        idle_timeout: Timeout::After(DEFAULT_IDLE_TIMEOUT),
        handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        ping_interval: Timeout::After(DEFAULT_PING_INTERVAL),
        ..Policy::default()
    };
    match apply_rule(rule, &mut policy) {
        Ok(()) => Some(policy),
        Err((key, message, true)) => {
            let message = format!("{message}; {RULE_REFUSED}");
            reporter.report(Reason::Invalid, format!("{field}.{key}"), message);
            Some(Policy { refused: true, ..policy })
        }
        Err((key, message, false)) => {
            let message = format!("{message}; the rule is left out");
            reporter.report(Reason::Invalid, format!("{field}.{key}"), message);
            None
        }
    }
}

/// A rule value that cannot be honoured: the field, the message, and whether the rule must be
/// refused (a security setting: fail closed) rather than left out.
type RuleError = (&'static str, ValueError, bool);

fn apply_rule(rule: &RouteRule, policy: &mut Policy) -> Result<(), RuleError> {
    let at = |key: &'static str| move |error: ValueError| (key, error, false);
    let fail_closed = |key: &'static str| move |error: ValueError| (key, error, true);
    if let Some(v) = &rule.idle_timeout {
        policy.idle_timeout = values::timeout(v).map_err(at("idleTimeout"))?;
    }
    if let Some(v) = &rule.handshake_timeout {
        policy.handshake_timeout = values::bounded_timeout(v).map_err(at("handshakeTimeout"))?;
    }
    if let Some(v) = &rule.response_timeout {
        policy.response_timeout = values::bounded_timeout(v).map_err(at("responseTimeout"))?;
    }
    if let Some(v) = &rule.max_connection_duration {
        policy.max_connection_duration = values::timeout(v).map_err(at("maxConnectionDuration"))?;
    }
    if let Some(v) = &rule.ping_interval {
        policy.ping_interval = values::timeout(v).map_err(at("pingInterval"))?;
    }
    if let Some(v) = &rule.ping_timeout {
        policy.ping_timeout = values::bounded_timeout(v).map_err(at("pingTimeout"))?;
    }
    policy.max_message_bytes = rule.max_message_bytes.filter(|&n| n > 0);
    if let Some(spec) = &rule.rebalance {
        policy.rebalance = Some(rebalance(spec.max_skew, spec.closes_per_second).map_err(at("rebalance"))?);
    }
    if let Some(spec) = &rule.session_affinity {
        policy.affinity = Some(affinity::route(spec).map_err(at("sessionAffinity"))?);
    }
    if let Some(lb) = &rule.load_balancing {
        policy.load_balancing = load_balancing(lb).map_err(at("loadBalancing"))?;
    }
    policy.allowed_origins = values::origins(rule.allowed_origins.iter().map(String::as_str))
        .map_err(fail_closed("allowedOrigins"))?;
    policy.source_ranges =
        values::cidrs(rule.source_ranges.iter().map(String::as_str)).map_err(fail_closed("sourceRanges"))?;
    policy.allowed_upgrades = values::upgrade_protocols(rule.allowed_upgrades.iter().map(String::as_str))
        .map_err(at("allowedUpgrades"))?;
    if rule.backend_protocol == Some(BackendProtocolSpec::Https) {
        policy.backend_protocol = BackendProtocol::HTTPS;
    }
    policy.max_connections = rule.max_connections.filter(|&n| n > 0);
    policy.max_connections_per_client = rule.max_connections_per_client.filter(|&n| n > 0);
    let rates =
        [("rateLimit", &rule.rate_limit, false), ("handshakeRateLimit", &rule.handshake_rate_limit, true)];
    for (key, spec, upgrades_only) in rates {
        if let Some(spec) = spec {
            let rate = values::hawser_rate(&spec.rate, spec.burst, upgrades_only).map_err(at(key))?;
            super::requests::add_rate(policy, rate);
        }
    }
    Ok(())
}

fn load_balancing(spec: &LoadBalancingSpec) -> Result<LoadBalancing, ValueError> {
    match spec.strategy {
        Strategy::RoundRobin => Ok(LoadBalancing::RoundRobin),
        Strategy::LeastConnections => Ok(LoadBalancing::LeastConnections),
        Strategy::ConsistentHash => {
            spec.hash_on.as_ref().and_then(hash_key).map(LoadBalancing::ConsistentHash).ok_or(
                ValueError::Incomplete(
                    "ConsistentHash needs hashOn with exactly one of header, cookie, query, sourceIP",
                ),
            )
        }
    }
}

fn hash_key(on: &HashOn) -> Option<HashKey> {
    let keys: Vec<HashKey> = [
        on.header.as_ref().map(|h| HashKey::Header(h.to_ascii_lowercase())),
        on.cookie.clone().map(HashKey::Cookie),
        on.query.clone().map(HashKey::Query),
        (on.source_ip == Some(true)).then_some(HashKey::SourceIp),
    ]
    .into_iter()
    .flatten()
    .collect();
    match <[HashKey; 1]>::try_from(keys) {
        Ok([key]) => Some(key),
        Err(_) => None,
    }
}

fn tls_claims(
    secret: &str,
    hosts: &[HostMatch],
    snapshot: &Lookup<'_>,
    namespace: &str,
    rank: &Rank,
    reporter: &mut Reporter<'_>,
    out: &mut Output,
) {
    let field = "spec.tls.secretName";
    if snapshot.secret(namespace, secret).is_none() {
        let message = format!(
            "Secret {namespace}/{secret} not found; HTTPS for these hosts uses the default certificate"
        );
        reporter.report(Reason::UnresolvedRef, field, message);
    }
    if hosts.contains(&HostMatch::Any) {
        reporter.report(
            Reason::Invalid,
            field,
            "TLS needs hostnames: a route for every host cannot pick a certificate",
        );
    }
    for host in hosts.iter().filter(|h| **h != HostMatch::Any) {
        let claim = TlsClaim {
            rank: rank.clone(),
            host: host.clone(),
            secret: NamespacedName::new(namespace, secret),
            field: field.into(),
        };
        out.tls.push(claim);
    }
}
