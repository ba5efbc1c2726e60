//! Prometheus metrics of the proxy and the table, rendered in the text format by `/metrics`.
//! The names and labels are listed in the README's metrics reference.

use std::fmt::Write;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::handle::TableHandle;

/// Tunnel lifetimes worth telling apart: seconds to a day.
/// Table build times: a few milliseconds for a small install, up to seconds for a very large one.
const BUILD_SECONDS_BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const TUNNEL_SECONDS_BUCKETS: [f64; 11] =
    [0.1, 1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0];

/// A label set with a digest of it made once per lookup. prometheus-client finds a series by
/// hashing its labels with SipHash, which it offers no way to replace: a set of three or four
/// fields (a route's name of 20–60 bytes, static words, a code) cost some 300 instructions that
/// way, 8 bytes of digest about a third of it. The digest is foldhash's with a fixed seed: the
/// labels are hawser's own (route names from the configuration, its words, close codes), and
/// SipHash's per-process key still hashes the digest.
#[derive(Clone, Debug)]
struct Digested<L> {
    labels: L,
    digest: u64,
}

impl<L: Hash> Digested<L> {
    fn new(labels: L) -> Self {
        let digest = foldhash::fast::FixedState::default().hash_one(&labels);
        Self { labels, digest }
    }
}

impl<L> Hash for Digested<L> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Equal label sets have equal digests: consistent with `eq`.
        state.write_u64(self.digest);
    }
}

impl<L: PartialEq> PartialEq for Digested<L> {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest && self.labels == other.labels
    }
}

impl<L: Eq> Eq for Digested<L> {}

impl<L: EncodeLabelSet> EncodeLabelSet for Digested<L> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        self.labels.encode(encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabels {
    route: Arc<str>,
    endpoint: Endpoint,
}

/// An endpoint label, written out only when `/metrics` is rendered.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Endpoint(SocketAddr);

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        write!(encoder, "{}", self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    route: Arc<str>,
    reason: &'static str,
}

/// A served certificate: its Secret and the host pattern it serves.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    namespace: String,
    secret: String,
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    route: Arc<str>,
    direction: &'static str,
}

/// `protocol` is how the client opened the connection: `h1` (HTTP/1.1 `Upgrade`) or `h2`
/// (RFC 8441 extended CONNECT).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpgradeLabels {
    route: Arc<str>,
    reason: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    route: Arc<str>,
    /// The close code, `1005` for a close frame without one, `1006` when none was sent.
    code: u16,
    initiator: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    route: Arc<str>,
    direction: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabels {
    route: Arc<str>,
    side: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    route: Arc<str>,
    cause: &'static str,
}

/// Every metric hawser exports. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Digested<RequestLabels>, Counter>,
    upgrades: Family<Digested<UpgradeLabels>, Counter>,
    tunnels_active: Family<Digested<TunnelLabels>, Gauge>,
    tunnels_closed: Family<Digested<ReasonLabels>, Counter>,
    tunnel_seconds: Family<Digested<RouteLabels>, Histogram, fn() -> Histogram>,
    tunnel_bytes: Family<Digested<BytesLabels>, Counter>,
    websocket_closes: Family<Digested<CloseLabels>, Counter>,
    websocket_messages: Family<Digested<MessageLabels>, Counter>,
    websocket_protocol_errors: Family<Digested<SideLabels>, Counter>,
    drained: Family<Digested<CauseLabels>, Counter>,
    table_generation: Gauge,
    table_builds: Counter,
    table_build_seconds: Histogram,
    kube_watch_errors: Family<KindLabels, Counter>,
    connections_rejected: Family<RejectLabels, Counter>,
    certificate_expiry: Family<CertificateLabels, Gauge>,
    config_errors: Gauge,
    /// The table generation the certificate series were last filled from. Held while rendering,
    /// so one scrape cannot see the series another is refilling.
    certificates_of: Mutex<u64>,
    /// The route label of requests no route matched.
    no_route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `hawser_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hawser");
        let metrics = Self {
            requests: Family::default(),
            upgrades: Family::default(),
            tunnels_active: Family::default(),
            tunnels_closed: Family::default(),
            tunnel_seconds: Family::new_with_constructor(|| {
                Histogram::new(TUNNEL_SECONDS_BUCKETS.iter().copied())
            }),
            tunnel_bytes: Family::default(),
            websocket_closes: Family::default(),
            websocket_messages: Family::default(),
            websocket_protocol_errors: Family::default(),
            drained: Family::default(),
            table_generation: Gauge::default(),
            table_builds: Counter::default(),
            table_build_seconds: Histogram::new(BUILD_SECONDS_BUCKETS.iter().copied()),
            kube_watch_errors: Family::default(),
            connections_rejected: Family::default(),
            certificate_expiry: Family::default(),
            config_errors: Gauge::default(),
            certificates_of: Mutex::new(0),
            no_route: Arc::from(""),
            registry: Registry::default(),
        };
        registry.register("requests", "Responses sent, by route and status", metrics.requests.clone());
        registry.register(
            "upgrades",
            "Upgrade (WebSocket) handshakes, by route, result and client protocol (h1, h2)",
            metrics.upgrades.clone(),
        );
        registry.register(
            "tunnels_active",
            "Open upgraded connections, by route and endpoint",
            metrics.tunnels_active.clone(),
        );
        registry.register(
            "tunnels_closed",
            "Closed upgraded connections, by route and who closed",
            metrics.tunnels_closed.clone(),
        );
        registry.register(
            "tunnel_duration_seconds",
            "Lifetime of closed upgraded connections",
            metrics.tunnel_seconds.clone(),
        );
        registry.register(
            "tunnel_bytes",
            "Bytes carried by upgraded connections, by route and direction",
            metrics.tunnel_bytes.clone(),
        );
        registry.register(
            "websocket_closes",
            "Closed WebSockets, by route, first close code (1005: none given, 1006: no close frame), who sent it and client protocol",
            metrics.websocket_closes.clone(),
        );
        registry.register(
            "websocket_messages",
            "WebSocket data messages through closed tunnels, by route, direction and client protocol",
            metrics.websocket_messages.clone(),
        );
        registry.register(
            "websocket_protocol_errors",
            "WebSockets closed with 1002 for breaking RFC 6455, by route, the side that broke it and client protocol",
            metrics.websocket_protocol_errors.clone(),
        );
        registry.register(
            "drained",
            "Tunnels hawser closed gracefully, by route and cause (shutdown, endpoint_gone, admin, rebalance)",
            metrics.drained.clone(),
        );
        registry.register(
            "table_generation",
            "Generation of the live routing table",
            metrics.table_generation.clone(),
        );
        registry.register(
            "table_builds",
            "Routing tables built from the inputs (a change that touches nothing routing-relevant builds none)",
            metrics.table_builds.clone(),
        );
        registry.register(
            "table_build_seconds",
            "Time from reading the inputs to the table being live, per build",
            metrics.table_build_seconds.clone(),
        );
        registry.register(
            "connections_rejected",
            "Client connections closed at accept, by reason (max_connections: the descriptor budget is spent)",
            metrics.connections_rejected.clone(),
        );
        registry.register(
            "kube_watch_errors",
            "Failed list/watch calls to the Kubernetes API server, by kind (retried with backoff)",
            metrics.kube_watch_errors.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When each served certificate expires (notAfter), Unix seconds, by Secret and host",
            metrics.certificate_expiry.clone(),
        );
        registry.register(
            "log_dropped",
            "Access-log lines dropped because stdout could not keep up (the proxy never waits for the log)",
            crate::access_log::dropped(),
        );
        registry.register(
            "spliced_bytes",
            "Tunnel bytes moved socket to socket with splice(2), never copied through hawser (plain-TCP tunnels, large payloads)",
            crate::proxy::spliced_bytes(),
        );
        registry.register(
            "config_errors",
            "Error-level findings of the latest build (objects, rules or annotations left out or refused)",
            metrics.config_errors.clone(),
        );
        // Known before it happens: a zero is a better first sample than an absent series.
        metrics.connections_rejected.get_or_create(&RejectLabels { reason: "max_connections" }).inc_by(0);
        Self { registry, ..metrics }
    }

    /// Counts one response; `route` is `None` when no route matched. Labels share the route's
    /// name (an `Arc`), so counting allocates nothing once the series exists.
    pub fn request(&self, route: Option<&Arc<str>>, status: u16) {
        let route = route.unwrap_or(&self.no_route).clone();
        self.requests.get_or_create(&Digested::new(RequestLabels { route, status })).inc();
    }

    /// Counts one upgrade handshake outcome (`upgraded`, `refused_by_backend`, `incomplete`, or
    /// a proxy error's label) of a client that used `protocol` (`h1` or `h2`).
    pub fn upgrade(&self, route: Option<&Arc<str>>, result: &'static str, protocol: &'static str) {
        let route = route.unwrap_or(&self.no_route).clone();
        let labels = Digested::new(UpgradeLabels { route, reason: result, protocol });
        self.upgrades.get_or_create(&labels).inc();
    }

    /// Marks a tunnel open; the returned gauge must be handed back to [`Self::tunnel_closed`].
    pub fn tunnel_opened(&self, route: &Arc<str>, endpoint: SocketAddr) -> Gauge {
        let labels = Digested::new(TunnelLabels { route: route.clone(), endpoint: Endpoint(endpoint) });
        let gauge = self.tunnels_active.get_or_create(&labels).clone();
        gauge.inc();
        gauge
    }

    /// Records how a tunnel ended.
    pub fn tunnel_closed(&self, open: Gauge, route: &Arc<str>, ended: &TunnelEnding) {
        open.dec();
        let totals = &ended.totals;
        let reason = Digested::new(ReasonLabels { route: route.clone(), reason: ended.reason });
        self.tunnels_closed.get_or_create(&reason).inc();
        if let Some(websocket) = &ended.websocket {
            self.websocket_closed(route, websocket);
        }
        self.tunnel_seconds
            .get_or_create(&Digested::new(RouteLabels { route: route.clone() }))
            .observe(totals.duration.as_secs_f64());
        let upstream = Digested::new(BytesLabels { route: route.clone(), direction: "client_to_backend" });
        self.tunnel_bytes.get_or_create(&upstream).inc_by(totals.client_to_backend);
        let downstream = Digested::new(BytesLabels { route: route.clone(), direction: "backend_to_client" });
        self.tunnel_bytes.get_or_create(&downstream).inc_by(totals.backend_to_client);
    }

    fn websocket_closed(&self, route: &Arc<str>, ended: &WebSocketEnding) {
        let protocol = ended.protocol;
        let close =
            CloseLabels { route: route.clone(), code: ended.code, initiator: ended.initiator, protocol };
        let close = Digested::new(close);
        self.websocket_closes.get_or_create(&close).inc();
        let (from_client, from_backend) = ended.messages;
        let up =
            Digested::new(MessageLabels { route: route.clone(), direction: "client_to_backend", protocol });
        self.websocket_messages.get_or_create(&up).inc_by(from_client);
        let down =
            Digested::new(MessageLabels { route: route.clone(), direction: "backend_to_client", protocol });
        self.websocket_messages.get_or_create(&down).inc_by(from_backend);
        if let Some(side) = ended.protocol_error_by {
            let labels = Digested::new(SideLabels { route: route.clone(), side, protocol });
            self.websocket_protocol_errors.get_or_create(&labels).inc();
        }
        if let Some(cause) = ended.drained_by {
            self.drained.get_or_create(&Digested::new(CauseLabels { route: route.clone(), cause })).inc();
        }
    }

    /// Counts a client connection closed at accept, by why (`max_connections`).
    pub fn connection_rejected(&self, reason: &'static str) {
        self.connections_rejected.get_or_create(&RejectLabels { reason }).inc();
    }

    /// Counts a table build that took `took` (inputs read to table live).
    pub fn table_built(&self, took: Duration) {
        self.table_builds.inc();
        self.table_build_seconds.observe(took.as_secs_f64());
    }

    /// Tables built so far.
    pub fn table_builds(&self) -> u64 {
        self.table_builds.get()
    }

    /// Counts a failed list or watch of `kind`.
    pub fn kube_watch_error(&self, kind: &str) {
        self.kube_watch_errors.get_or_create(&KindLabels { kind: kind.to_owned() }).inc();
    }

    /// The text exposition, with the table gauges read from `table` now.
    pub fn render(&self, table: &TableHandle) -> String {
        let mut certificates_of = self.certificates_of.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = table.generation();
        self.table_generation.set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.config_errors.set(i64::try_from(table.config_errors()).unwrap_or(i64::MAX));
        if *certificates_of != generation {
            self.fill_certificates(table);
            *certificates_of = generation;
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        text
    }

    /// One series per certificate the live table serves; those of certificates no longer
    /// served go away.
    fn fill_certificates(&self, table: &TableHandle) {
        self.certificate_expiry.clear();
        for vhost in table.load().hosts() {
            let Some(tls) = &vhost.tls else { continue };
            let Some(not_after) = tls.not_after else { continue };
            let (namespace, secret) = tls.secret.split_once('/').unwrap_or(("", &tls.secret));
            let labels = CertificateLabels {
                namespace: namespace.to_owned(),
                secret: secret.to_owned(),
                host: vhost.host.to_string(),
            };
            self.certificate_expiry.get_or_create(&labels).set(not_after);
        }
    }
}

/// What one tunnel carried and how long it lived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelTotals {
    /// Bytes read from the client and written to the backend.
    pub client_to_backend: u64,
    /// Bytes read from the backend and written to the client.
    pub backend_to_client: u64,
    /// From the upgrade to the close.
    pub duration: Duration,
}

/// How a tunnel ended, as its metrics count it (the labels are the tunnel's to choose).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelEnding {
    /// Who or what closed it (`client`, `idle`, `shutdown`, …).
    pub reason: &'static str,
    pub totals: TunnelTotals,
    /// For a WebSocket.
    pub websocket: Option<WebSocketEnding>,
}

/// How a WebSocket ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSocketEnding {
    /// The first close frame's code; 1005 when it had none, 1006 when there was no close frame.
    pub code: u16,
    /// Who sent the first close frame (or dropped TCP): `client`, `backend` or `hawser`.
    pub initiator: &'static str,
    /// The client's protocol (`h1` or `h2`).
    pub protocol: &'static str,
    /// Data messages: (from the client, from the backend).
    pub messages: (u64, u64),
    /// The peer that broke the protocol, when that ended it.
    pub protocol_error_by: Option<&'static str>,
    /// The drain cause, when a drain ended it.
    pub drained_by: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostMatch, HostTls, RoutingTable, VirtualHost};

    fn with_certificate(host: &str, secret: &str, not_after: i64) -> RoutingTable {
        let tls = HostTls { secret: secret.into(), certificate: None, not_after: Some(not_after) };
        RoutingTable::new(vec![VirtualHost::new(HostMatch::parse(host), vec![]).with_tls(tls)])
    }

    fn certificate_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| l.starts_with("hawser_certificate_expiry_timestamp_seconds{")).collect()
    }

    #[test]
    fn certificate_series_follow_the_live_table() {
        let (metrics, table) = (Metrics::new(), TableHandle::new());
        assert!(certificate_lines(&metrics.render(&table)).is_empty());
        table.publish(with_certificate("a.com", "apps/a-tls", 1_900_000_000));
        assert_eq!(
            certificate_lines(&metrics.render(&table)),
            vec![
                r#"hawser_certificate_expiry_timestamp_seconds{namespace="apps",secret="a-tls",host="a.com"} 1900000000"#
            ]
        );
        table.publish(with_certificate("b.com", "apps/b-tls", 1_800_000_000));
        let text = metrics.render(&table);
        assert_eq!(certificate_lines(&text).len(), 1, "a.com's certificate is no longer served");
        assert!(certificate_lines(&text)[0].contains(r#"host="b.com""#));
    }

    #[test]
    fn a_route_is_one_series_whichever_copy_of_its_name_counts() {
        let (metrics, table) = (Metrics::new(), TableHandle::new());
        // Names equal in text but not in allocation, as a rebuilt table's are.
        let (first, rebuilt, other): (Arc<str>, Arc<str>, Arc<str>) = (
            Arc::from("ingress/apps/web/0"),
            Arc::from("ingress/apps/web/0"),
            Arc::from("ingress/apps/web/1"),
        );
        metrics.request(Some(&first), 200);
        metrics.request(Some(&rebuilt), 200);
        metrics.request(Some(&other), 200);
        metrics.request(None, 404);
        let text = metrics.render(&table);
        let series: Vec<_> = text.lines().filter(|l| l.starts_with("hawser_requests_total{")).collect();
        assert_eq!(series.len(), 3, "{series:?}");
        assert!(
            series.contains(&r#"hawser_requests_total{route="ingress/apps/web/0",status="200"} 2"#),
            "{series:?}"
        );
        assert!(
            series.contains(&r#"hawser_requests_total{route="ingress/apps/web/1",status="200"} 1"#),
            "{series:?}"
        );
        assert!(series.contains(&r#"hawser_requests_total{route="",status="404"} 1"#), "{series:?}");
    }

    #[test]
    fn config_errors_are_those_of_the_latest_build() {
        let (metrics, table) = (Metrics::new(), TableHandle::new());
        table.set_config_errors(3);
        assert!(metrics.render(&table).lines().any(|l| l == "hawser_config_errors 3"));
        table.set_config_errors(0);
        assert!(metrics.render(&table).lines().any(|l| l == "hawser_config_errors 0"));
    }
}
