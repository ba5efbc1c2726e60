//! The routing table, its virtual hosts and routes, and the one lookup every request makes.
//!
//! Precedence (Kubernetes Ingress, Gateway API): an exact host beats a wildcard, which beats the
//! catch-all; the host is chosen first and there is no fall-through to a less specific host.
//! Within a host: Exact paths beat prefixes, a longer prefix beats a shorter one, a route with
//! more header matches beats one with fewer, and then the order the builder gave wins.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::ErrorBackend;
use super::host::wildcard_suffix;
use super::{Backend, Canary, Certificate, HostMatch, HostTls, PathMatch, Policy};

/// A request header that must be present with exactly this value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: String,
    /// Exact, case-sensitive value.
    pub value: String,
}

/// One path (and optional header) match with where it goes and under what policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Stable, human-readable identity used in logs, metrics and connection budgets,
    /// for example `ingress/default/web/0`.
    pub name: Arc<str>,
    /// The request path this route takes.
    pub path: PathMatch,
    /// Further headers the request must carry (all of them).
    pub headers: Vec<HeaderMatch>,
    /// Where new connections go.
    pub backend: Backend,
    /// Timeouts, balancing and admission rules; shared by the routes of one object, which have
    /// the same policy (it is most of a route's size).
    pub policy: Arc<Policy>,
    /// A second backend that takes a share of the requests (ingress-nginx's canary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Box<Canary>>,
    /// Where requests go when `backend` has no endpoint, and which statuses it renders
    /// (ingress-nginx's `default-backend` and `custom-http-errors`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_backend: Option<Box<ErrorBackend>>,
}

impl Route {
    /// A route without header matches.
    pub fn new(name: &str, path: PathMatch, backend: Backend, policy: impl Into<Arc<Policy>>) -> Self {
        Self {
            name: name.into(),
            path,
            headers: Vec::new(),
            backend,
            policy: policy.into(),
            canary: None,
            error_backend: None,
        }
    }

    fn matches<'h>(&self, path: &str, header: &impl Fn(&str) -> Option<&'h str>) -> bool {
        self.path.matches(path) && self.headers.iter().all(|m| header(&m.name) == Some(m.value.as_str()))
    }

    fn precedence(&self) -> (u8, Reverse<usize>, Reverse<usize>, u8) {
        let (kind, length, regex_first) = self.path.precedence();
        (kind, length, Reverse(self.headers.len()), regex_first)
    }
}

/// The routes of one host pattern, kept in precedence order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VirtualHost {
    /// The hosts this virtual host answers for.
    pub host: HostMatch,
    /// Routes, most specific first.
    pub routes: Vec<Arc<Route>>,
    /// TLS for these hosts, if any Ingress or WebSocketRoute configured it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<HostTls>,
}

impl VirtualHost {
    /// Sorts the routes by precedence; ties keep the given order. No TLS.
    pub fn new(host: HostMatch, routes: Vec<Route>) -> Self {
        let mut vhost = Self { host, routes: routes.into_iter().map(Arc::new).collect(), tls: None };
        vhost.sort_routes();
        vhost
    }

    /// The same virtual host with TLS.
    pub fn with_tls(mut self, tls: HostTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The route for a request path (without query) and headers (by lower-case name).
    pub fn route<'h>(&self, path: &str, header: impl Fn(&str) -> Option<&'h str>) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(path, &header))
    }

    fn sort_routes(&mut self) {
        self.routes.sort_by_cached_key(|r| r.precedence());
    }
}

/// Every virtual host, indexed for lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RoutingTable {
    /// Shared with the build that made them, which reuses the hosts a change did not touch.
    hosts: Vec<Arc<VirtualHost>>,
    #[serde(skip)]
    exact: HashMap<String, usize>,
    #[serde(skip)]
    wildcard: HashMap<String, usize>,
    #[serde(skip)]
    any: Option<usize>,
    /// Served for SNI names no virtual host has a certificate for (`--default-ssl-certificate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    default_certificate: Option<Certificate>,
    /// Every endpoint the EndpointSlices list, ready or not. Tunnels to an endpoint that left
    /// this set are drained (1012); an unready one keeps its tunnels.
    #[serde(skip)]
    listed_endpoints: Arc<BTreeSet<SocketAddr>>,
}

impl RoutingTable {
    /// Indexes the virtual hosts. Two entries for the same host pattern are merged, the first
    /// one's routes ahead of the second's at equal precedence.
    pub fn new(hosts: impl IntoIterator<Item = impl Into<Arc<VirtualHost>>>) -> Self {
        let mut table = Self::default();
        for vhost in hosts {
            table.insert(vhost.into());
        }
        table
    }

    fn insert(&mut self, vhost: Arc<VirtualHost>) {
        let slot = match &vhost.host {
            HostMatch::Exact(host) => self.exact.get(host).copied(),
            HostMatch::Wildcard(suffix) => self.wildcard.get(suffix).copied(),
            HostMatch::Any => self.any,
        };
        if let Some(index) = slot {
            let existing = Arc::make_mut(&mut self.hosts[index]);
            existing.routes.extend(vhost.routes.iter().cloned());
            existing.sort_routes();
            existing.tls = existing.tls.take().or_else(|| vhost.tls.clone());
            return;
        }
        let index = self.hosts.len();
        match &vhost.host {
            HostMatch::Exact(host) => self.exact.insert(host.clone(), index),
            HostMatch::Wildcard(suffix) => self.wildcard.insert(suffix.clone(), index),
            HostMatch::Any => self.any.replace(index),
        };
        self.hosts.push(vhost);
    }

    /// The virtual hosts in the order they were given.
    pub fn hosts(&self) -> &[Arc<VirtualHost>] {
        &self.hosts
    }

    /// One line per route, in lookup order within each host:
    /// `host Prefix /path [name=value] -> 10.0.0.1:8080*2, … (route name)`, where `*N` is a weight
    /// other than the backend's smallest.
    pub fn summary(&self) -> Vec<String> {
        self.hosts
            .iter()
            .flat_map(|vhost| vhost.routes.iter().map(move |route| summary_line(&vhost.host, route)))
            .collect()
    }

    /// The same table knowing every endpoint the EndpointSlices list.
    pub fn with_listed_endpoints(mut self, endpoints: impl Into<Arc<BTreeSet<SocketAddr>>>) -> Self {
        self.listed_endpoints = endpoints.into();
        self
    }

    /// Every endpoint the EndpointSlices list, ready or not.
    pub fn listed_endpoints(&self) -> &BTreeSet<SocketAddr> {
        &self.listed_endpoints
    }

    /// The same table serving `certificate` when no host's certificate fits the SNI name.
    pub fn with_default_certificate(mut self, certificate: Option<Certificate>) -> Self {
        self.default_certificate = certificate;
        self
    }

    /// The route for a request. `host` must be normalized ([`super::normalize_host`]), `path`
    /// excludes the query, `header` returns a request header's value by lower-case name.
    pub fn lookup<'h>(
        &self,
        host: &str,
        path: &str,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Option<&Arc<Route>> {
        self.virtual_host(host)?.route(path, header)
    }

    /// The certificate for a TLS handshake naming `server_name` (normalized): the exact host's,
    /// else the wildcard host's, else the default certificate.
    pub fn certificate(&self, server_name: &str) -> Option<&Certificate> {
        let cert = |index: Option<&usize>| {
            index
                .and_then(|&i| self.hosts.get(i))
                .and_then(|v| v.tls.as_ref())
                .and_then(|t| t.certificate.as_ref())
        };
        cert(self.exact.get(server_name))
            .or_else(|| cert(wildcard_suffix(server_name).and_then(|suffix| self.wildcard.get(suffix))))
            .or(self.default_certificate.as_ref())
    }

    /// The virtual host a request for `host` (normalized) is served by.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let index = self
            .exact
            .get(host)
            .or_else(|| wildcard_suffix(host).and_then(|suffix| self.wildcard.get(suffix)))
            .copied()
            .or(self.any)?;
        self.hosts.get(index).map(|v| &**v)
    }
}

fn summary_line(host: &HostMatch, route: &Route) -> String {
    let path = match &route.path {
        PathMatch::Exact(path) => format!("Exact {path}"),
        PathMatch::Prefix(path) => format!("Prefix {path}"),
        PathMatch::Regex(regex) => format!("Regex {}", regex.source()),
    };
    let headers: String = route.headers.iter().map(|h| format!(" [{}={}]", h.name, h.value)).collect();
    let endpoints = route.backend.endpoints();
    let unit = endpoints.iter().map(|e| e.weight).min().unwrap_or(1).max(1);
    let targets: Vec<String> = endpoints
        .iter()
        .map(
            |e| if e.weight == unit { e.addr.to_string() } else { format!("{}*{}", e.addr, e.weight / unit) },
        )
        .collect();
    let targets = match () {
        _ if route.policy.refused => "(refused: 503)".to_owned(),
        _ if targets.is_empty() => "(no ready endpoint)".to_owned(),
        _ => targets.join(", "),
    };
    format!("{host} {path}{headers} -> {targets} ({})", route.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    fn route(name: &str, path: PathMatch) -> Route {
        let endpoint = Endpoint { addr: ([127, 0, 0, 1], 1).into(), weight: 1 };
        Route::new(name, path, Backend::new(vec![endpoint]), Policy::default())
    }

    fn prefix(name: &str, path: &str) -> Route {
        route(name, PathMatch::Prefix(path.into()))
    }

    fn exact(name: &str, path: &str) -> Route {
        route(name, PathMatch::Exact(path.into()))
    }

    fn with_header(mut route: Route, name: &str, value: &str) -> Route {
        route.headers.push(HeaderMatch { name: name.into(), value: value.into() });
        route
    }

    fn vhost(host: &str, routes: Vec<Route>) -> VirtualHost {
        VirtualHost::new(HostMatch::parse(host), routes)
    }

    fn find<'t>(
        table: &'t RoutingTable,
        host: &str,
        path: &str,
        headers: &[(&str, &'t str)],
    ) -> Option<&'t str> {
        let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        table.lookup(host, path, header).map(|r| &*r.name)
    }

    #[test]
    fn host_precedence() {
        let table = RoutingTable::new(vec![
            vhost("*", vec![prefix("any", "/")]),
            vhost("*.a.com", vec![prefix("wild", "/")]),
            vhost("x.a.com", vec![prefix("exact", "/")]),
        ]);
        let cases = [
            ("x.a.com", Some("exact")),
            ("y.a.com", Some("wild")),
            ("a.com", Some("any")),
            ("z.y.a.com", Some("any")),
            ("other.org", Some("any")),
            ("", Some("any")),
        ];
        for (host, want) in cases {
            assert_eq!(find(&table, host, "/", &[]), want, "host {host}");
        }
    }

    #[test]
    fn no_fall_through_to_a_less_specific_host() {
        let table = RoutingTable::new(vec![
            vhost("a.com", vec![prefix("api", "/api")]),
            vhost("*", vec![prefix("any", "/")]),
        ]);
        assert_eq!(find(&table, "a.com", "/web", &[]), None);
        assert_eq!(find(&table, "b.com", "/web", &[]), Some("any"));
    }

    #[test]
    fn no_catch_all_means_unknown_hosts_miss() {
        let table = RoutingTable::new(vec![vhost("a.com", vec![prefix("root", "/")])]);
        assert_eq!(find(&table, "b.com", "/", &[]), None);
        assert_eq!(find(&RoutingTable::default(), "a.com", "/", &[]), None);
    }

    #[test]
    fn path_precedence_within_a_host() {
        let table = RoutingTable::new(vec![vhost(
            "a.com",
            vec![
                prefix("root", "/"),
                prefix("foo", "/foo"),
                prefix("foo-bar", "/foo/bar"),
                exact("foo-exact", "/foo"),
                prefix("aaa-bb", "/aaa/bb"),
                prefix("aaa-bbb", "/aaa/bbb"),
            ],
        )]);
        let cases = [
            ("/", "root"),
            ("/foo", "foo-exact"),
            ("/foo/", "foo"),
            ("/foobar", "root"),
            ("/foo/bar", "foo-bar"),
            ("/foo/bar/baz", "foo-bar"),
            ("/foo/barn", "foo"),
            ("/aaa/bbb", "aaa-bbb"),
            ("/aaa/bb", "aaa-bb"),
            ("/aaa/bbbb", "root"),
            ("/aaa/bbb/c", "aaa-bbb"),
        ];
        for (path, want) in cases {
            assert_eq!(find(&table, "a.com", path, &[]), Some(want), "path {path}");
        }
    }

    #[test]
    fn header_matches_refine_and_take_precedence_at_equal_paths() {
        let table = RoutingTable::new(vec![vhost(
            "a.com",
            vec![
                prefix("plain", "/ws"),
                with_header(prefix("acme", "/ws"), "x-tenant", "acme"),
                with_header(with_header(prefix("acme-beta", "/ws"), "x-tenant", "acme"), "x-beta", "1"),
            ],
        )]);
        assert_eq!(find(&table, "a.com", "/ws", &[]), Some("plain"));
        assert_eq!(find(&table, "a.com", "/ws", &[("x-tenant", "acme")]), Some("acme"));
        assert_eq!(find(&table, "a.com", "/ws", &[("x-tenant", "ACME")]), Some("plain"));
        assert_eq!(find(&table, "a.com", "/ws", &[("x-tenant", "acme"), ("x-beta", "1")]), Some("acme-beta"));
    }

    #[test]
    fn ties_keep_the_given_order_and_same_hosts_merge() {
        let table = RoutingTable::new(vec![
            vhost("a.com", vec![prefix("first", "/x")]),
            vhost("A.com", vec![prefix("second", "/x"), prefix("longer", "/x/y")]),
        ]);
        assert_eq!(table.hosts().len(), 1);
        assert_eq!(find(&table, "a.com", "/x", &[]), Some("first"));
        assert_eq!(find(&table, "a.com", "/x/y", &[]), Some("longer"));
    }

    #[test]
    fn equal_inputs_give_equal_tables() {
        let build = || RoutingTable::new(vec![vhost("a.com", vec![prefix("r", "/")])]);
        assert_eq!(build(), build());
        let other = RoutingTable::new(vec![vhost("a.com", vec![prefix("r", "/b")])]);
        assert_ne!(build(), other);
    }
}
