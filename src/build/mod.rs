//! The translation from Kubernetes objects to the routing table: a pure function, no I/O, no
//! clock. `build(&Snapshot, &BuildConfig) -> Built { table, tls, reports, served }`.
//!
//! Order: IngressClasses decide what is served; every served Ingress and WebSocketRoute becomes
//! candidate routes and TLS claims (each object reports its own problems); candidates claiming
//! the same host + path + headers are settled by [`candidate::Rank`] and the losers reported;
//! what is left is grouped into virtual hosts. Output is sorted, so equal inputs give equal
//! tables and equal reports.

mod affinity;
mod annotations;
mod auth;
mod backends;
mod canary;
mod candidate;
mod class;
pub mod conditions;
mod ingress;
mod ownership;
pub mod report;
mod requests;
mod tls;
mod unenforced;
mod values;
mod websocket_route;

use std::collections::BTreeMap;
use std::time::SystemTime;

use kube::ResourceExt;
use serde::Serialize;

pub use annotations::{HAWSER as HAWSER_ANNOTATION_PREFIX, NGINX as NGINX_ANNOTATION_PREFIX};
pub use class::CONTROLLER_NAME;
pub use report::{Level, ObjectRef, Reason, Report};
pub use websocket_route::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT};

use candidate::{Candidate, Rank};
use ownership::Delegations;
pub use ownership::HostOwnership;
use report::Reporter;

use crate::model::{Certificate, HostMatch, HostTls, Route, RoutingTable, VirtualHost};
use crate::snapshot::Snapshot;

/// Settings of the translation. The clock is an input too, so `build` stays pure.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    /// The IngressClass name hawser serves even without an IngressClass object (`--ingress-class`).
    pub ingress_class: String,
    /// The Secret served when no host's certificate fits (`--default-ssl-certificate`).
    pub default_certificate: Option<SecretRef>,
    /// When the build happens: certificates must be valid then.
    pub now: SystemTime,
    /// Access-restricting nginx annotations served without enforcement instead of refusing
    /// the Ingress (`--ignore-annotations`). Default: none.
    pub ignore_annotations: Vec<String>,
    /// How hosts are shared between namespaces (`--host-ownership`). Default: by path.
    pub host_ownership: HostOwnership,
}

impl Default for BuildConfig {
    /// Class `hawser`, no default certificate, now.
    fn default() -> Self {
        Self {
            ingress_class: "hawser".to_owned(),
            default_certificate: None,
            now: SystemTime::now(),
            ignore_annotations: Vec::new(),
            host_ownership: HostOwnership::Path,
        }
    }
}

/// `(namespace, name)` of a Secret.
pub type SecretRef = (String, String);

/// A claim that `secret` serves HTTPS for `host`.
#[derive(Clone, Debug)]
pub struct TlsClaim {
    rank: Rank,
    host: HostMatch,
    secret: SecretRef,
    field: String,
}

/// What the translators produce before conflicts are settled.
#[derive(Debug, Default)]
pub struct Output {
    candidates: Vec<Candidate>,
    /// Paths of canary Ingresses, joined to their main routes after conflicts are settled.
    canaries: Vec<(Candidate, canary::CanaryRule)>,
    tls: Vec<TlsClaim>,
}

/// The result of one build.
#[derive(Debug, Serialize)]
pub struct Built {
    /// The routing table to publish.
    pub table: RoutingTable,
    /// Which Secret serves HTTPS for which host pattern.
    pub tls: BTreeMap<String, SecretRef>,
    /// Every finding, sorted.
    pub reports: Vec<Report>,
    /// The Ingresses and WebSocketRoutes hawser serves (their class is hawser's), sorted.
    pub served: Vec<ObjectRef>,
}

impl Built {
    /// Whether any report is an error.
    pub fn has_errors(&self) -> bool {
        self.reports.iter().any(|r| r.level() == Level::Error)
    }
}

/// Translates `snapshot` into a table. Never fails: bad input is left out and reported.
pub fn build(snapshot: &Snapshot, config: &BuildConfig) -> Built {
    let classes = class::Classes::new(snapshot, config);
    let mut reports = Vec::new();
    let mut out = Output::default();
    let mut served = Vec::new();
    let mut delegations = Delegations::new();
    for ingress in snapshot.ingresses.iter().filter(|i| classes.serves_ingress(i)) {
        let object = ObjectRef::new("Ingress", &ingress.namespace().unwrap_or_default(), &ingress.name_any());
        served.push(object.clone());
        delegate(&object, ingress.annotations(), &mut delegations);
        let reporter = &mut Reporter::new(object, &mut reports);
        ingress::translate(ingress, snapshot, &config.ignore_annotations, reporter, &mut out);
    }
    for route in snapshot.routes.iter().filter(|r| classes.serves_route(r.spec.ingress_class_name.as_deref()))
    {
        let object =
            ObjectRef::new("WebSocketRoute", &route.namespace().unwrap_or_default(), &route.name_any());
        served.push(object.clone());
        delegate(&object, route.annotations(), &mut delegations);
        websocket_route::translate(route, snapshot, &mut Reporter::new(object, &mut reports), &mut out);
    }
    if config.host_ownership == HostOwnership::Namespace {
        ownership::enforce(&mut out.candidates, &mut out.tls, &delegations, &mut reports);
    }
    let mut hosts = assemble(out.candidates, &mut reports);
    canary::attach(out.canaries, &mut hosts, &mut reports);
    let claims = settle_tls(out.tls, &mut reports);
    let mut host_tls = certificates(&claims, snapshot, config.now, &mut reports);
    for host in host_tls.keys() {
        hosts.entry(host.clone()).or_default();
    }
    let vhosts = hosts.into_iter().map(|(host, routes)| {
        let tls = host_tls.remove(&host);
        let vhost = VirtualHost::new(host, routes);
        match tls {
            Some(tls) => vhost.with_tls(tls),
            None => vhost,
        }
    });
    let default_certificate = default_certificate(snapshot, config, &mut reports);
    let table = RoutingTable::new(vhosts.collect())
        .with_default_certificate(default_certificate)
        .with_listed_endpoints(snapshot.listed_endpoints());
    let tls = claims.into_iter().map(|(host, claim)| (host.to_string(), claim.secret)).collect();
    reports.sort();
    reports.dedup();
    served.sort();
    Built { table, tls, reports, served }
}

/// Notes the namespaces `object` allows on its hosts (its `hawser.dev/allowed-namespaces`; an
/// invalid value allows none, and an Ingress reports it with its other annotations).
fn delegate(object: &ObjectRef, annotations: &BTreeMap<String, String>, delegations: &mut Delegations) {
    if let Some(Ok(allowed)) =
        annotations.get(ownership::ALLOWED_NAMESPACES).map(|v| ownership::parse_allowed(v))
    {
        delegations.insert(object.clone(), allowed);
    }
}

/// Keeps the winning candidate of each host + path + headers ([`candidate::winner`]),
/// reports the others, and groups the winners by host in a stable order.
fn assemble(mut candidates: Vec<Candidate>, reports: &mut Vec<Report>) -> BTreeMap<HostMatch, Vec<Route>> {
    candidates.sort_by(|a, b| {
        a.key().cmp(&b.key()).then_with(|| a.rank.cmp(&b.rank)).then_with(|| a.route.name.cmp(&b.route.name))
    });
    let mut hosts: BTreeMap<HostMatch, Vec<Route>> = BTreeMap::new();
    for group in candidates.chunk_by(|a, b| a.key() == b.key()) {
        let Some(won) = candidate::winner(group, |c| &c.rank) else { continue };
        let kept = &group[won];
        for loser in group.iter().filter(|c| c.rank.owner() != kept.rank.owner()) {
            report_conflict(loser, kept.rank.owner(), reports);
        }
        hosts.entry(kept.host.clone()).or_default().push(kept.route.clone());
    }
    hosts
}

fn report_conflict(loser: &Candidate, winner: &ObjectRef, reports: &mut Vec<Report>) {
    let message = format!(
        "host {} path {:?} is already served by {winner}, which takes precedence ({})",
        loser.host,
        loser.route.path,
        precedence(loser.rank.owner(), winner)
    );
    Reporter::new(loser.rank.owner().clone(), reports).report(Reason::Conflict, loser.field.clone(), message);
}

/// Why `winner` beat `loser`, in words.
fn precedence(loser: &ObjectRef, winner: &ObjectRef) -> &'static str {
    if loser.namespace == winner.namespace {
        "WebSocketRoute over Ingress, then the oldest"
    } else {
        "another namespace claimed it first; a newer object never takes a host and path from another namespace"
    }
}

/// One Secret per host pattern: the winning claim ([`candidate::winner`]) is kept, the others
/// are reported.
fn settle_tls(mut claims: Vec<TlsClaim>, reports: &mut Vec<Report>) -> BTreeMap<HostMatch, TlsClaim> {
    claims.sort_by(|a, b| a.host.cmp(&b.host).then_with(|| a.rank.cmp(&b.rank)));
    let mut settled: BTreeMap<HostMatch, TlsClaim> = BTreeMap::new();
    for group in claims.chunk_by(|a, b| a.host == b.host) {
        let Some(won) = candidate::winner(group, |c| &c.rank) else { continue };
        let kept = &group[won];
        for claim in group.iter().filter(|c| c.secret != kept.secret) {
            let (owner, (ns, name)) = (kept.rank.owner(), &kept.secret);
            let message = format!(
                "HTTPS for {} already uses Secret {ns}/{name} of {owner} ({})",
                claim.host,
                precedence(claim.rank.owner(), owner)
            );
            Reporter::new(claim.rank.owner().clone(), reports).report(
                Reason::Conflict,
                claim.field.clone(),
                message,
            );
        }
        settled.insert(kept.host.clone(), kept.clone());
    }
    settled
}

/// The certificate of every host with a TLS claim. A missing Secret was reported by the
/// claimant; an unusable one (unparsable, expired, not covering the host) is reported here, and
/// either way the host is served the default certificate. One that expires within
/// [`tls::EXPIRY_WARNING`] is served and reported (a Warning, so an Event in a cluster).
fn certificates(
    claims: &BTreeMap<HostMatch, TlsClaim>,
    snapshot: &Snapshot,
    now: SystemTime,
    reports: &mut Vec<Report>,
) -> BTreeMap<HostMatch, HostTls> {
    let mut parsed: BTreeMap<&SecretRef, Option<Result<tls::Loaded, String>>> = BTreeMap::new();
    let mut hosts = BTreeMap::new();
    for (host, claim) in claims {
        let (namespace, name) = &claim.secret;
        let loaded = parsed
            .entry(&claim.secret)
            .or_insert_with(|| snapshot.secret(namespace, name).map(|s| tls::load(s, now)));
        let served = match loaded {
            None => None,
            Some(Err(problem)) => {
                report_certificate(claim, format!("Secret {namespace}/{name}: {problem}"), reports);
                None
            }
            Some(Ok(loaded)) if !tls::covers(&loaded.names, host) => {
                let names = loaded.names.join(", ");
                report_certificate(
                    claim,
                    format!("Secret {namespace}/{name} is not valid for {host} (it names {names})"),
                    reports,
                );
                None
            }
            Some(Ok(loaded)) => Some(&*loaded),
        };
        if let Some(warning) = served.and_then(|l| tls::expiry_warning(l.not_after, now)) {
            let message = format!("Secret {namespace}/{name}: {warning}");
            Reporter::new(claim.rank.owner().clone(), reports).report(
                Reason::Expiring,
                claim.field.clone(),
                message,
            );
        }
        let (certificate, not_after) =
            (served.map(|l| l.certificate.clone()), served.map(|l| l.not_after.timestamp()));
        hosts.insert(host.clone(), HostTls { secret: format!("{namespace}/{name}"), certificate, not_after });
    }
    hosts
}

fn report_certificate(claim: &TlsClaim, problem: String, reports: &mut Vec<Report>) {
    let message = format!("{problem}; HTTPS for {} uses the default certificate", claim.host);
    Reporter::new(claim.rank.owner().clone(), reports).report(Reason::Invalid, claim.field.clone(), message);
}

/// The `--default-ssl-certificate` Secret, when it is set and usable.
fn default_certificate(
    snapshot: &Snapshot,
    config: &BuildConfig,
    reports: &mut Vec<Report>,
) -> Option<Certificate> {
    let (namespace, name) = config.default_certificate.as_ref()?;
    let mut reporter = Reporter::new(ObjectRef::new("Secret", namespace, name), reports);
    let field = "--default-ssl-certificate";
    let Some(secret) = snapshot.secret(namespace, name) else {
        reporter.report(
            Reason::UnresolvedRef,
            field,
            "not found; a self-signed certificate is served instead",
        );
        return None;
    };
    match tls::load(secret, config.now) {
        Ok(loaded) => Some(loaded.certificate),
        Err(problem) => {
            reporter.report(
                Reason::Invalid,
                field,
                format!("{problem}; a self-signed certificate is served instead"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests;
