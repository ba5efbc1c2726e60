//! What the translation found out about Gateway API objects that their status reports: which
//! listeners of which Gateways each HTTPRoute attached to (or why not), whether its backend
//! references resolved, and which Gateway listeners are served. Kept with each object's
//! translation, so status costs nothing extra per build.

use crate::model::NamespacedName;

/// A condition reason with the message that explains it.
pub type Why = (&'static str, String);

/// What one object's translation found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Facts {
    Route(RouteFacts),
    Gateway(GatewayFacts),
    Policy(PolicyFacts),
    /// A BackendTLSPolicy: one target entry standing for the policy (`ResolvedRefs`).
    BackendTls(PolicyFacts),
}

/// A WebSocketPolicy's targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFacts {
    pub targets: Vec<TargetFact>,
}

/// One `targetRefs` entry: the Gateways its route names (the policy's ancestors there), and
/// whether the policy took effect (`TargetNotFound`, `Invalid`, `Conflicted`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetFact {
    pub index: usize,
    pub ancestors: Vec<NamespacedName>,
    pub accepted: Result<(), Why>,
}

/// An HTTPRoute's parents that are Gateways of hawser's, and its references.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteFacts {
    pub parents: Vec<ParentFact>,
    /// The first backend reference that does not resolve (`BackendNotFound`, `RefNotPermitted`,
    /// `InvalidKind`); `None`: all do.
    pub unresolved: Option<Why>,
}

/// One `parentRefs` entry naming a Gateway of hawser's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentFact {
    /// Its index in `spec.parentRefs`.
    pub index: usize,
    pub gateway: NamespacedName,
    /// The listeners it attached to, or why it attached to none.
    pub attached: Result<Vec<String>, Why>,
}

/// A served Gateway's listeners.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayFacts {
    pub listeners: Vec<ListenerFact>,
}

/// One listener: whether hawser serves it, and whether its references resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerFact {
    pub name: String,
    /// `Err`: not served (`UnsupportedProtocol`, `PortUnavailable`).
    pub accepted: Result<(), Why>,
    /// `Err`: a reference did not resolve (`InvalidCertificateRef`, `RefNotPermitted`,
    /// `InvalidRouteKinds`).
    pub resolved: Result<(), Why>,
    /// Whether its `allowedRoutes.kinds` admit HTTPRoutes (its supported kinds).
    pub takes_http_routes: bool,
    /// Why it is conflicted (another listener of the Gateway has its place); `None`: it is not.
    pub conflicted: Option<String>,
}
