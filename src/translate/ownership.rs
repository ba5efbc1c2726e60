//! Strict host ownership (`--host-ownership=namespace`): the namespace holding the oldest claim
//! on a host owns the whole host, every path and its TLS; objects of other namespaces add routes
//! to it only where the owner's objects on that host allow their namespace
//! (`hawser.dev/allowed-namespaces`). The default (`path`) settles each host and path on its own
//! ([`super::candidate::winner`]). This is Contour's root-and-delegation and the Gateway API's
//! `allowedRoutes` in the shape of an annotation; Gateway API objects themselves are governed
//! by their Gateways' `allowedRoutes`, not by this.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::TlsClaim;
use super::candidate::{Candidate, Rank};
use super::report::{Kind, ObjectRef, Reason, Report, Reporter};
use crate::model::{HostMatch, ValueError};

/// The annotation (on Ingresses and WebSocketRoutes) listing the namespaces allowed on the
/// object's hosts: names, or `*` for all.
pub const ALLOWED_NAMESPACES: &str = "hawser.dev/allowed-namespaces";

/// How hosts are shared between namespaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HostOwnership {
    /// Each host and path goes to the namespace that claimed it first.
    #[default]
    Path,
    /// Each host goes to the namespace that claimed it first, whole.
    Namespace,
}

/// Namespaces each object allows on its hosts.
pub type Delegations = HashMap<ObjectRef, BTreeSet<String>>;

/// Leaves out the routes and TLS claims that objects of other namespaces make on an owned host
/// without the owner's leave, and reports them.
pub fn enforce(
    candidates: &mut Vec<Candidate>,
    tls: &mut Vec<TlsClaim>,
    delegations: &Delegations,
    reports: &mut Vec<Report>,
) {
    let ranks = candidates.iter().map(|c| (&c.host, &c.rank)).chain(tls.iter().map(|t| (&t.host, &t.rank)));
    let owners = owners(ranks.filter(|(_, rank)| governed(rank)), delegations);
    let allowed = |host: &HostMatch, rank: &Rank| {
        if !governed(rank) {
            return true;
        }
        let Some((namespace, guests)) = owners.get(host) else { return true };
        let theirs = &rank.owner().namespace;
        theirs == namespace || guests.contains("*") || guests.contains(theirs)
    };
    let mut refused = BTreeMap::new();
    candidates.retain(|c| {
        let keep = allowed(&c.host, &c.rank);
        if !keep {
            refused.insert((c.rank.owner().clone(), c.host.clone()), c.field.clone());
        }
        keep
    });
    tls.retain(|t| {
        let keep = allowed(&t.host, &t.rank);
        if !keep {
            refused.insert((t.rank.owner().clone(), t.host.clone()), t.field.clone());
        }
        keep
    });
    for ((object, host), field) in refused {
        let Some((owner, _)) = owners.get(&host) else { continue };
        let message = format!(
            "host {host} belongs to namespace {owner}, which claimed it first (--host-ownership=namespace); none of its objects on the host lists namespace {} in {ALLOWED_NAMESPACES}",
            object.namespace
        );
        Reporter::new(object, reports).report(Reason::Conflict, field, message);
    }
}

/// Each host's owning namespace (that of its oldest claim) and the namespaces its objects on
/// the host allow.
/// Whether strict host ownership applies to a claim: not to the Gateway API's, whose Gateways
/// say which namespaces' routes they take (`allowedRoutes`).
fn governed(rank: &Rank) -> bool {
    !matches!(rank.owner().kind, Kind::Gateway | Kind::HttpRoute)
}

fn owners<'a>(
    claims: impl Iterator<Item = (&'a HostMatch, &'a Rank)>,
    delegations: &Delegations,
) -> HashMap<HostMatch, (String, BTreeSet<String>)> {
    let mut by_host: HashMap<&HostMatch, Vec<&Rank>> = HashMap::new();
    for (host, rank) in claims {
        by_host.entry(host).or_default().push(rank);
    }
    by_host
        .into_iter()
        .filter_map(|(host, ranks)| {
            let oldest = ranks.iter().min_by(|a, b| a.claim_order().cmp(&b.claim_order()))?;
            let namespace = oldest.owner().namespace.clone();
            let guests = ranks
                .iter()
                .filter(|r| r.owner().namespace == namespace)
                .filter_map(|r| delegations.get(r.owner()))
                .flatten()
                .cloned()
                .collect();
            Some((host.clone(), (namespace, guests)))
        })
        .collect()
}

/// The namespaces an `allowed-namespaces` value names: DNS labels or `*`, comma-separated.
pub fn parse_allowed(value: &str) -> Result<BTreeSet<String>, ValueError> {
    super::values::list(value)
        .map(|name| {
            let label = name.len() <= 63
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !name.starts_with('-')
                && !name.ends_with('-');
            if name == "*" || label {
                Ok(name.to_owned())
            } else {
                Err(ValueError::malformed(name, "a namespace name or *"))
            }
        })
        .collect()
}
