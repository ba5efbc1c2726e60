//! A route some object wants in the table, with what decides who wins when two objects want
//! the same host, path and headers.

use k8s_openapi::jiff::Timestamp;

use super::report::ObjectRef;
use crate::model::{HeaderMatch, HostMatch, PathMatch, Route};

/// Which of two claims on the same host, path and headers wins: explicit paths beat an
/// Ingress `defaultBackend`, a WebSocketRoute beats an Ingress, then the oldest object
/// (`creationTimestamp`; objects without one, as in a manifests directory, come after), then
/// namespace/name order.
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
        let kind = u8::from(owner.kind != "WebSocketRoute");
        Self { implicit, kind, undated: created.is_none(), created, owner }
    }

    /// The object making the claim.
    pub fn owner(&self) -> &ObjectRef {
        &self.owner
    }
}

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
    pub fn key(&self) -> (&HostMatch, &PathMatch, Vec<&HeaderMatch>) {
        let mut headers: Vec<&HeaderMatch> = self.route.headers.iter().collect();
        headers.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
        (&self.host, &self.route.path, headers)
    }
}
