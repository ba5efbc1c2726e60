//! A route some object wants in the table, with what decides who wins when two objects want
//! the same host, path and headers.

use k8s_openapi::jiff::Timestamp;

use super::report::{Kind, ObjectRef};
use crate::model::{HeaderMatch, HostMatch, PathMatch, QueryMatch, Route};

/// Which of two claims by objects of one namespace on the same host, path and headers wins:
/// explicit paths beat an Ingress `defaultBackend`, a WebSocketRoute beats an Ingress, then the
/// oldest object (`creationTimestamp`; objects without one, as in a manifests directory, come
/// after), then namespace/name order. Across namespaces see [`winner`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    implicit: bool,
    kind: u8,
    undated: bool,
    created: Option<Timestamp>,
    owner: ObjectRef,
}

impl Rank {
    /// The rank of a claim by `owner`.
    pub fn new(owner: ObjectRef, created: Option<Timestamp>, implicit: bool) -> Self {
        let kind = u8::from(owner.kind != Kind::WebSocketRoute);
        Self { implicit, kind, undated: created.is_none(), created, owner }
    }

    /// The object making the claim.
    pub fn owner(&self) -> &ObjectRef {
        &self.owner
    }

    /// How old the claim is: dated before undated, older first.
    fn age(&self) -> (bool, Option<Timestamp>) {
        (self.undated, self.created)
    }

    /// Which claim came first across namespaces: the oldest, then the namespace first in name
    /// order.
    pub fn claim_order(&self) -> ((bool, Option<Timestamp>), &str) {
        (self.age(), &self.owner.namespace)
    }
}

/// The index of the claim that wins among `claims` on one host and path (or one host's TLS).
/// Tenant isolation: across namespaces the oldest claim keeps what it has, whatever its kind,
/// so a newer object in another namespace can never take a host and path away (undated objects
/// come after dated ones, then namespaces in name order). Within the winning namespace,
/// [`Rank`] decides. `None` only for no claims.
pub fn winner<'r, T>(claims: &'r [T], rank: impl Fn(&'r T) -> &'r Rank) -> Option<usize> {
    let oldest = claims.iter().map(&rank).min_by(|a, b| a.claim_order().cmp(&b.claim_order()))?;
    let namespace = &oldest.owner.namespace;
    (0..claims.len())
        .filter(|&i| rank(&claims[i]).owner.namespace == *namespace)
        .min_by(|&a, &b| rank(&claims[a]).cmp(rank(&claims[b])))
}

/// Host, path, headers, method and query parameters: what two claims must share to conflict
/// (on the listeners both are served on).
pub type ConflictKey<'c> =
    (&'c HostMatch, &'c PathMatch, Vec<&'c HeaderMatch>, Option<&'c str>, Vec<&'c QueryMatch>);

/// A route and the host it is for, claimed by one object.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Who claims it and how strongly.
    pub rank: Rank,
    /// The host pattern.
    pub host: HostMatch,
    /// The route.
    pub route: Route,
    /// The object field that produced it, for conflict reports.
    pub field: String,
}

impl Candidate {
    /// What two candidates must share to conflict.
    pub fn key(&self) -> ConflictKey<'_> {
        let route = &self.route;
        let mut headers: Vec<&HeaderMatch> = route.headers.iter().collect();
        headers.sort();
        let mut query: Vec<&QueryMatch> = route.query.iter().collect();
        query.sort();
        (&self.host, &route.path, headers, route.method.as_deref(), query)
    }
}
