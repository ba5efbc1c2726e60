//! The translation from Kubernetes objects to the routing table: a pure function, no I/O, no
//! clock. `build(&Snapshot, &BuildConfig) -> Built { table, tls, reports }`.
//!
//! Order: IngressClasses decide what is served; every served Ingress and WebSocketRoute becomes
//! candidate routes and TLS claims (each object reports its own problems); candidates claiming
//! the same host + path + headers are settled by [`candidate::Rank`] and the losers reported;
//! what is left is grouped into virtual hosts. Output is sorted, so equal inputs give equal
//! tables and equal reports.

mod annotations;
mod backends;
mod candidate;
mod class;
pub mod conditions;
mod ingress;
pub mod report;
mod values;
mod websocket_route;

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde::Serialize;

pub use annotations::{HAWSER as HAWSER_ANNOTATION_PREFIX, NGINX as NGINX_ANNOTATION_PREFIX};
pub use class::CONTROLLER_NAME;
pub use report::{Level, ObjectRef, Reason, Report};
pub use websocket_route::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT};

use candidate::{Candidate, Rank};
use report::Reporter;

use crate::model::{HostMatch, RoutingTable, VirtualHost};
use crate::snapshot::Snapshot;

/// Settings of the translation.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    /// The IngressClass name hawser serves even without an IngressClass object (`--ingress-class`).
    pub ingress_class: String,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self { ingress_class: "hawser".to_owned() }
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
    for ingress in snapshot.ingresses.iter().filter(|i| classes.serves_ingress(i)) {
        let object = ObjectRef::new("Ingress", &ingress.namespace().unwrap_or_default(), &ingress.name_any());
        ingress::translate(ingress, snapshot, &mut Reporter::new(object, &mut reports), &mut out);
    }
    for route in snapshot.routes.iter().filter(|r| classes.serves_route(r.spec.ingress_class_name.as_deref()))
    {
        let object =
            ObjectRef::new("WebSocketRoute", &route.namespace().unwrap_or_default(), &route.name_any());
        websocket_route::translate(route, snapshot, &mut Reporter::new(object, &mut reports), &mut out);
    }
    let table = assemble(out.candidates, &mut reports);
    let tls = settle_tls(out.tls, &mut reports);
    reports.sort();
    reports.dedup();
    Built { table, tls, reports }
}

/// Keeps the best-ranked candidate of each host + path + headers, reports the others, and
/// groups the winners by host in a stable order.
fn assemble(mut candidates: Vec<Candidate>, reports: &mut Vec<Report>) -> RoutingTable {
    candidates.sort_by(|a, b| {
        a.key().cmp(&b.key()).then_with(|| a.rank.cmp(&b.rank)).then_with(|| a.route.name.cmp(&b.route.name))
    });
    let mut hosts: BTreeMap<HostMatch, Vec<crate::model::Route>> = BTreeMap::new();
    let mut winner: Option<Candidate> = None;
    for candidate in candidates {
        if let Some(kept) = winner.as_ref().filter(|w| w.key() == candidate.key()) {
            if kept.rank.owner() != candidate.rank.owner() {
                report_conflict(&candidate, kept.rank.owner(), reports);
            }
            continue;
        }
        hosts.entry(candidate.host.clone()).or_default().push(candidate.route.clone());
        winner = Some(candidate);
    }
    RoutingTable::new(hosts.into_iter().map(|(host, routes)| VirtualHost::new(host, routes)).collect())
}

fn report_conflict(loser: &Candidate, winner: &ObjectRef, reports: &mut Vec<Report>) {
    let message = format!(
        "host {} path {:?} is already served by {winner}, which takes precedence (WebSocketRoute over Ingress, then the oldest)",
        loser.host, loser.route.path
    );
    Reporter::new(loser.rank.owner().clone(), reports).report(Reason::Conflict, loser.field.clone(), message);
}

/// One Secret per host pattern: the best-ranked claim wins, the others are reported.
fn settle_tls(mut claims: Vec<TlsClaim>, reports: &mut Vec<Report>) -> BTreeMap<String, SecretRef> {
    claims.sort_by(|a, b| a.host.cmp(&b.host).then_with(|| a.rank.cmp(&b.rank)));
    let mut settled: BTreeMap<String, (SecretRef, ObjectRef)> = BTreeMap::new();
    for claim in claims {
        let host = claim.host.to_string();
        match settled.get(&host) {
            Some((secret, owner)) if *secret != claim.secret => {
                let message =
                    format!("HTTPS for {host} already uses Secret {}/{} of {owner}", secret.0, secret.1);
                Reporter::new(claim.rank.owner().clone(), reports).report(
                    Reason::Conflict,
                    claim.field,
                    message,
                );
            }
            Some(_) => {}
            None => {
                settled.insert(host, (claim.secret, claim.rank.owner().clone()));
            }
        }
    }
    settled.into_iter().map(|(host, (secret, _))| (host, secret)).collect()
}

#[cfg(test)]
mod tests;
