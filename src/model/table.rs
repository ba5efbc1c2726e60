//! The routing table, its virtual hosts and routes, and the one lookup every request makes.
//!
//! Precedence (Kubernetes Ingress, Gateway API): an exact host beats a wildcard, which beats the
//! catch-all; the host is chosen first and there is no fall-through to a less specific host.
//! Within a host: Exact paths beat prefixes, a longer prefix beats a shorter one, a route that
//! names a method beats one that does not, more header matches beat fewer, more query parameter
//! matches beat fewer, and then the order the builder gave wins (Gateway API's HTTPRoute rules).

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

/// A query parameter that must be present with exactly this value (its first occurrence,
/// percent-decoded; Gateway API `queryParams`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct QueryMatch {
    /// Case-sensitive name.
    pub name: String,
    /// Exact, case-sensitive value.
    pub value: String,
}

/// Which of hawser's listeners serve a route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Listeners {
    /// Plain HTTP and HTTPS alike (Ingress, WebSocketRoute).
    #[default]
    Both,
    /// Only the plain-HTTP listener (a Gateway `HTTP` listener).
    Plain,
    /// Only the TLS listener (a Gateway `HTTPS` listener).
    Tls,
}

impl Listeners {
    /// Whether the TLS listener (`tls`) or the plain one serves these routes.
    pub fn serve(self, tls: bool) -> bool {
        match self {
            Self::Both => true,
            Self::Plain => !tls,
            Self::Tls => tls,
        }
    }
}

/// What routes match a request by. `header` returns a request header's value by lower-case
/// name.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'r, H> {
    /// The normalised path, without query.
    pub path: &'r str,
    /// The raw query string, if any.
    pub query: Option<&'r str>,
    /// The method, as sent.
    pub method: &'r str,
    /// Whether it came over the TLS listener.
    pub tls: bool,
    /// Header lookup.
    pub header: H,
}

impl<'r, H> RequestFacts<'r, H> {
    /// The first value of query parameter `name`, percent-decoded.
    fn query_param(&self, name: &str) -> Option<std::borrow::Cow<'r, str>> {
        let query = self.query?;
        form_urlencoded::parse(query.as_bytes()).find(|(n, _)| n == name).map(|(_, v)| v)
    }
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
    /// The request method it takes (upper-case), if it takes only one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Box<str>>,
    /// Query parameters the request must carry (all of them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<QueryMatch>,
    /// The listeners that serve it.
    pub listeners: Listeners,
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
            method: None,
            query: Vec::new(),
            listeners: Listeners::Both,
            backend,
            policy: policy.into(),
            canary: None,
            error_backend: None,
        }
    }

    fn matches<'h>(&self, request: &RequestFacts<'_, impl Fn(&str) -> Option<&'h str>>) -> bool {
        self.listeners.serve(request.tls)
            && self.path.matches(request.path)
            && self.method.as_deref().is_none_or(|m| m == request.method)
            && self.headers.iter().all(|m| (request.header)(&m.name) == Some(m.value.as_str()))
            && self.query.iter().all(|m| request.query_param(&m.name).is_some_and(|v| v == m.value))
    }

    fn precedence(&self) -> (u8, Reverse<usize>, bool, Reverse<usize>, Reverse<usize>, u8) {
        let (kind, length, regex_first) = self.path.precedence();
        let any_method = self.method.is_none();
        (kind, length, any_method, Reverse(self.headers.len()), Reverse(self.query.len()), regex_first)
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

    /// The route for a request.
    pub fn route<'h>(
        &self,
        request: &RequestFacts<'_, impl Fn(&str) -> Option<&'h str>>,
    ) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(request))
    }

    fn sort_routes(&mut self) {
        self.routes.sort_by_cached_key(|r| r.precedence());
    }
}

/// Host patterns to the index of their virtual host, looked up once per request. Its keys come
/// from configuration, so foldhash serves (per-process seeds; a request's host is only looked
/// up, never inserted), several times cheaper than SipHash for a host name.
type HostIndex = HashMap<String, usize, foldhash::fast::RandomState>;

/// Every virtual host, indexed for lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RoutingTable {
    /// Shared with the build that made them, which reuses the hosts a change did not touch.
    hosts: Vec<Arc<VirtualHost>>,
    #[serde(skip)]
    exact: HostIndex,
    #[serde(skip)]
    wildcard: HostIndex,
    #[serde(skip)]
    subdomains: HostIndex,
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
            HostMatch::Subdomains(suffix) => self.subdomains.get(suffix).copied(),
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
            HostMatch::Subdomains(suffix) => self.subdomains.insert(suffix.clone(), index),
            HostMatch::Any => self.any.replace(index),
        };
        self.hosts.push(vhost);
    }

    /// The virtual hosts in the order they were given.
    pub fn hosts(&self) -> &[Arc<VirtualHost>] {
        &self.hosts
    }

    /// One line per route, in lookup order within each host:
    /// `host Prefix /path [name=value] method=GET ?name=value on=tls -> 10.0.0.1:8080*2, … (route
    /// name)`, where `*N` is a weight other than the backend's smallest.
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

    /// The route for a request. `host` must be normalized ([`super::normalize_host`]).
    pub fn route_for<'h>(
        &self,
        host: &str,
        request: &RequestFacts<'_, impl Fn(&str) -> Option<&'h str>>,
    ) -> Option<&Arc<Route>> {
        self.virtual_host(host)?.route(request)
    }

    /// The route for a plain-HTTP `GET` of `path` without a query, with the headers `header`
    /// gives by lower-case name.
    pub fn lookup<'h>(
        &self,
        host: &str,
        path: &str,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Option<&Arc<Route>> {
        self.route_for(host, &RequestFacts { path, query: None, method: "GET", tls: false, header })
    }

    /// The certificate for a TLS handshake naming `server_name` (normalized): that of the most
    /// specific host pattern that has one, else the default certificate.
    pub fn certificate(&self, server_name: &str) -> Option<&Certificate> {
        let cert = |index: usize| {
            self.hosts.get(index).and_then(|v| v.tls.as_ref()).and_then(|t| t.certificate.as_ref())
        };
        self.host_patterns(server_name).find_map(cert).or(self.default_certificate.as_ref())
    }

    /// The virtual host a request for `host` (normalized) is served by: the most specific
    /// pattern that covers it, with no fall-through to a less specific one.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let index = self.host_patterns(host).next()?;
        self.hosts.get(index).map(|v| &**v)
    }

    /// The indexes of the virtual hosts whose patterns cover `host`, most specific first: the
    /// exact name, the one-label wildcard, Gateway wildcards from the longest suffix, the
    /// catch-all.
    fn host_patterns<'s>(&'s self, host: &'s str) -> impl Iterator<Item = usize> + 's {
        // Lazy: an exact hit (most requests) costs one lookup.
        let one_label = || wildcard_suffix(host);
        let exact = std::iter::once_with(|| self.exact.get(host)).flatten();
        let wildcard = std::iter::once_with(move || one_label().and_then(|s| self.wildcard.get(s))).flatten();
        let subdomains = std::iter::once_with(one_label)
            .filter(|_| !self.subdomains.is_empty())
            .flat_map(|first| std::iter::successors(first, |suffix| wildcard_suffix(suffix)))
            .filter_map(|suffix| self.subdomains.get(suffix));
        exact.chain(wildcard).chain(subdomains).chain(self.any.as_ref()).copied()
    }
}

fn summary_line(host: &HostMatch, route: &Route) -> String {
    format!("{host} {} -> {} ({})", what_matches(route), where_it_goes(route), route.name)
}

/// `Prefix /path [name=value] method=GET ?name=value on=tls`.
fn what_matches(route: &Route) -> String {
    let mut text = match &route.path {
        PathMatch::Exact(path) => format!("Exact {path}"),
        PathMatch::Prefix(path) => format!("Prefix {path}"),
        PathMatch::Regex(regex) => format!("Regex {}", regex.source()),
    };
    text.extend(route.headers.iter().map(|h| format!(" [{}={}]", h.name, h.value)));
    if let Some(method) = &route.method {
        text.push_str(&format!(" method={method}"));
    }
    text.extend(route.query.iter().map(|q| format!(" ?{}={}", q.name, q.value)));
    match route.listeners {
        Listeners::Both => {}
        Listeners::Plain => text.push_str(" on=plain"),
        Listeners::Tls => text.push_str(" on=tls"),
    }
    text
}

/// `10.0.0.1:8080*2, 10.0.0.2:8080 + 500 for 25%`, or what the route answers itself.
fn where_it_goes(route: &Route) -> String {
    let rewrites = &route.policy.rewrites;
    match (rewrites.status, &rewrites.request_redirect) {
        _ if route.policy.refused => return "(refused: 503)".to_owned(),
        (Some(status), _) => return format!("(answers {status})"),
        (None, Some(_)) => return "(redirects)".to_owned(),
        (None, None) => {}
    }
    let endpoints = route.backend.endpoints();
    let unit = endpoints.iter().map(|e| e.weight).min().unwrap_or(1).max(1);
    let targets: Vec<String> = endpoints
        .iter()
        .map(
            |e| if e.weight == unit { e.addr.to_string() } else { format!("{}*{}", e.addr, e.weight / unit) },
        )
        .collect();
    let targets = if targets.is_empty() { "(no ready endpoint)".to_owned() } else { targets.join(", ") };
    match route.backend.failing() {
        0 => targets,
        failing => {
            let total = endpoints.iter().map(|e| u64::from(e.weight)).sum::<u64>() + u64::from(failing);
            format!("{targets} + 500 for {}%", u64::from(failing) * 100 / total)
        }
    }
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

    fn find_request<'t>(
        table: &'t RoutingTable,
        host: &str,
        request: (&str, &str, &str, bool),
    ) -> Option<&'t str> {
        let (method, target, tls) = (request.0, request.1, request.3);
        let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
        let header = |name: &str| (name == "x").then_some(request.2);
        let request = RequestFacts { path, query, method, tls, header };
        table.route_for(host, &request).map(|r| &*r.name)
    }

    #[test]
    fn gateway_wildcards_cover_any_depth_and_longer_suffixes_win() {
        let gateway = |host: &str, name: &str| {
            VirtualHost::new(HostMatch::parse_gateway(host), vec![prefix(name, "/")])
        };
        let table = RoutingTable::new(vec![
            gateway("*.example.com", "example"),
            gateway("*.foo.example.com", "foo"),
            vhost("*.bar.example.com", vec![prefix("ingress-bar", "/")]),
            gateway("abc.foo.example.com", "abc"),
        ]);
        let cases = [
            ("a.example.com", Some("example")),
            ("a.b.c.example.com", Some("example")),
            ("x.foo.example.com", Some("foo")),
            ("y.x.foo.example.com", Some("foo")),
            ("abc.foo.example.com", Some("abc")),
            ("x.bar.example.com", Some("ingress-bar")),
            ("y.x.bar.example.com", Some("example")),
            ("example.com", None),
        ];
        for (host, want) in cases {
            assert_eq!(find(&table, host, "/", &[]), want, "host {host}");
        }
    }

    #[test]
    fn methods_query_parameters_and_listeners_refine_routes() {
        let mut post = prefix("post", "/");
        post.method = Some("POST".into());
        let mut whale = prefix("whale", "/");
        whale.query.push(QueryMatch { name: "animal".into(), value: "whale".into() });
        let mut both = with_header(prefix("whale-header", "/"), "x", "1");
        both.query = whale.query.clone();
        let mut tls = exact("tls-only", "/secure");
        tls.listeners = Listeners::Tls;
        let mut plain = exact("plain-only", "/secure");
        plain.listeners = Listeners::Plain;
        let table =
            RoutingTable::new(vec![vhost("a.com", vec![prefix("any", "/"), whale, post, both, tls, plain])]);
        let cases = [
            (("GET", "/", "", false), "any"),
            (("POST", "/?animal=whale", "1", false), "post"),
            (("GET", "/?animal=whale", "", false), "whale"),
            (("GET", "/?animal=wh%61le&animal=dolphin", "", false), "whale"),
            (("GET", "/?animal=dolphin&animal=whale", "", false), "any"),
            (("GET", "/?ANIMAL=whale", "", false), "any"),
            (("GET", "/?animal=whale", "1", false), "whale-header"),
            (("GET", "/secure", "", true), "tls-only"),
            (("GET", "/secure", "", false), "plain-only"),
        ];
        for (request, want) in cases {
            assert_eq!(find_request(&table, "a.com", request), Some(want), "request {request:?}");
        }
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
