//! The second half of a build: the candidate routes and TLS claims every translation made for
//! one host become that host's virtual host. Candidates claiming the same path + headers are
//! settled by [`candidate::Rank`] and the losers reported, canaries join their main routes, one
//! TLS claim wins per host and its certificate is checked. A host's result depends only on what
//! was claimed for it (and the clock, for certificates: [`AssembledHost::recheck_at`]), which is
//! what lets a [`super::Builder`] assemble again only the hosts a change touched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::candidate::{self, Candidate};
use super::lookup::Lookup;
use super::report::{Reason, Reporter};
use super::secret_error::SecretError;
use super::{BuildConfig, Kind, ObjectRef, Output, Report, TlsClaim, canary, tls};
use crate::model::{Certificate, HostMatch, HostTls, Listeners, NamespacedName, Route, VirtualHost};

/// One host's share of the table, and what its assembly found.
#[derive(Debug)]
pub struct AssembledHost {
    /// Its routes and TLS; `None` when nothing is claimed for it any more.
    pub vhost: Option<Arc<VirtualHost>>,
    /// The Secret that serves HTTPS for it.
    pub secret: Option<NamespacedName>,
    /// Conflicts and certificate problems.
    pub reports: Vec<Report>,
    /// When the clock alone could change this result (a certificate becoming valid, nearing
    /// expiry, expiring); `None`: never.
    pub recheck_at: Option<SystemTime>,
}

/// Assembles `host` from what the translations claimed for it.
pub fn assemble_host(
    host: HostMatch,
    claimed: Output,
    lookup: &Lookup<'_>,
    now: SystemTime,
) -> AssembledHost {
    let mut reports = Vec::new();
    let mut hosts = settle_routes(claimed.candidates, &mut reports);
    let mut canaries = claimed.canaries;
    // The oldest canary of a route is the one served.
    canaries.sort_by(|(a, _), (b, _)| a.rank.cmp(&b.rank).then_with(|| a.route.name.cmp(&b.route.name)));
    canary::attach(canaries, &mut hosts, &mut reports);
    let claims = settle_tls(claimed.tls, &mut reports);
    let mut host_tls = certificates(&claims, lookup, now, &mut reports);
    let claim = claims.into_values().next();
    let secret = claim.as_ref().map(|c| c.secret.clone());
    let recheck_at = secret.as_ref().and_then(|s| tls::next_change(lookup, (&s.namespace, &s.name), now));
    let routes = hosts.remove(&host);
    let vhost = match (routes, host_tls.remove(&host)) {
        (None, None) => None,
        (routes, None) => Some(Arc::new(VirtualHost::new(host, routes.unwrap_or_default()))),
        (routes, Some(tls)) => {
            Some(Arc::new(VirtualHost::new(host, routes.unwrap_or_default()).with_tls(tls)))
        }
    };
    AssembledHost { vhost, secret, reports, recheck_at }
}

/// Keeps the winning candidate of each host + path + headers + method + query, on each of
/// hawser's listeners ([`candidate::winner`]: an Ingress serves both, a Gateway route one),
/// reports the others, and groups the winners by host. Within a host they are in rank order
/// (oldest object first, then namespace/name), each object's in the order it gave them: the
/// order the table keeps among routes of equal precedence (Gateway API `HTTPRouteRule`).
fn settle_routes(candidates: Vec<Candidate>, reports: &mut Vec<Report>) -> BTreeMap<HostMatch, Vec<Route>> {
    let mut candidates: Vec<(usize, Candidate)> = candidates.into_iter().enumerate().collect();
    candidates.sort_by(|(a_order, a), (b_order, b)| {
        a.key().cmp(&b.key()).then_with(|| a.rank.cmp(&b.rank)).then(a_order.cmp(b_order))
    });
    let mut hosts: BTreeMap<HostMatch, Vec<(usize, &Candidate, Listeners)>> = BTreeMap::new();
    for group in candidates.chunk_by(|(_, a), (_, b)| a.key() == b.key()) {
        // The winners, with the listeners each won.
        let mut kept: BTreeMap<usize, Vec<bool>> = BTreeMap::new();
        let mut beaten: BTreeMap<usize, &ObjectRef> = BTreeMap::new();
        for tls in [false, true] {
            let serving: Vec<usize> =
                (0..group.len()).filter(|&i| group[i].1.route.listeners.serve(tls)).collect();
            let Some(won) = candidate::winner(&serving, |&i| &group[i].1.rank).map(|w| serving[w]) else {
                continue;
            };
            let winner = group[won].1.rank.owner();
            for &i in serving.iter().filter(|&&i| group[i].1.rank.owner() != winner) {
                beaten.entry(i).or_insert(winner);
            }
            kept.entry(won).or_default().push(tls);
        }
        for (i, winner) in beaten {
            report_conflict(&group[i].1, winner, reports);
        }
        for (i, won) in kept {
            let (order, candidate) = &group[i];
            // A route keeps only the listeners it won: the one it lost is the winner's alone.
            let listeners = match won.as_slice() {
                [false] => Listeners::Plain,
                [true] => Listeners::Tls,
                _ => candidate.route.listeners,
            };
            hosts.entry(candidate.host.clone()).or_default().push((*order, candidate, listeners));
        }
    }
    hosts
        .into_iter()
        .map(|(host, mut winners)| {
            winners
                .sort_by(|(a_order, a, _), (b_order, b, _)| a.rank.cmp(&b.rank).then(a_order.cmp(b_order)));
            let routes = winners.into_iter().map(|(_, c, listeners)| Route { listeners, ..c.route.clone() });
            (host, routes.collect())
        })
        .collect()
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
    claims.sort_by(|a, b| {
        a.host.cmp(&b.host).then_with(|| a.rank.cmp(&b.rank)).then_with(|| a.secret.cmp(&b.secret))
    });
    let mut settled: BTreeMap<HostMatch, TlsClaim> = BTreeMap::new();
    for group in claims.chunk_by(|a, b| a.host == b.host) {
        let Some(won) = candidate::winner(group, |c| &c.rank) else { continue };
        let kept = &group[won];
        for claim in group.iter().filter(|c| c.secret != kept.secret) {
            let (owner, secret) = (kept.rank.owner(), &kept.secret);
            let message = format!(
                "HTTPS for {} already uses Secret {secret} of {owner} ({})",
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
    snapshot: &Lookup<'_>,
    now: SystemTime,
    reports: &mut Vec<Report>,
) -> BTreeMap<HostMatch, HostTls> {
    let mut parsed: BTreeMap<&NamespacedName, Option<Result<tls::Loaded, SecretError>>> = BTreeMap::new();
    let mut hosts = BTreeMap::new();
    for (host, claim) in claims {
        let NamespacedName { namespace, name } = &claim.secret;
        let loaded =
            parsed.entry(&claim.secret).or_insert_with(|| tls::load(snapshot, (namespace, name), now));
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
pub fn default_certificate(
    snapshot: &Lookup<'_>,
    config: &BuildConfig,
    reports: &mut Vec<Report>,
) -> Option<Certificate> {
    let NamespacedName { namespace, name } = config.default_certificate.as_ref()?;
    let mut reporter = Reporter::new(ObjectRef::new(Kind::Secret, namespace, name), reports);
    let field = "--default-ssl-certificate";
    let Some(loaded) = tls::load(snapshot, (namespace, name), config.now) else {
        reporter.report(
            Reason::UnresolvedRef,
            field,
            "not found; a self-signed certificate is served instead",
        );
        return None;
    };
    match loaded {
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
