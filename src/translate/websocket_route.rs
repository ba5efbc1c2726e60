//! WebSocketRoute (`hawser.dev/v1alpha1`) → candidate routes and TLS claims.
//!
//! Each rule's settings become its policy ([`settings`]: the defaults for long-lived
//! connections, then the values checked). A rule with an invalid value is left out and
//! reported; the route's other rules keep working. Route names are
//! `wsroute/NAMESPACE/NAME/RULE/MATCH`.

use std::sync::Arc;

use kube::ResourceExt;

use super::backends::{self, PortRef};
use super::candidate::{Candidate, Rank};
use super::ingress::valid_host;
use super::lookup::Lookup;
use super::report::{Reason, Reporter};
use super::settings::{self, RULE_REFUSED};
use super::tls;
use super::{Output, TlsClaim};
use crate::crd::{BackendProtocolSpec, PathMatchType, RouteRule, RuleSlot, WebSocketRoute};
use crate::model::{
    Backend, BackendProtocol, HeaderMatch, HostMatch, NamespacedName, PathMatch, Policy, Route,
};

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

/// The rule's policy: the WebSocketRoute defaults, its backend protocol, then its settings
/// ([`settings::policy`]).
fn rule_policy(rule: &RouteRule, field: &str, reporter: &mut Reporter<'_>) -> Option<Policy> {
    let mut base = settings::websocket_defaults();
    if rule.backend_protocol == Some(BackendProtocolSpec::Https) {
        base.backend_protocol = BackendProtocol::HTTPS;
    }
    settings::policy(&rule.settings, base, field, reporter)
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
