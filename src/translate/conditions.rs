//! WebSocketRoute status conditions, derived from the build's reports: `Accepted` (valid and
//! serving, no lost conflicts) and `ResolvedRefs` (every Service, port and Secret exists).

use serde::Serialize;

use super::report::{ObjectRef, Reason, Report};

/// One condition as the status writer will put it on the object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteCondition {
    /// `Accepted` or `ResolvedRefs`.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What to do about it.
    pub message: String,
}

/// The conditions of the object `object` given every report of the build.
pub fn route_conditions(object: &ObjectRef, reports: &[Report]) -> [RouteCondition; 2] {
    let mine: Vec<&Report> = reports.iter().filter(|r| &r.object == object).collect();
    let messages = |reasons: &[Reason]| {
        let found: Vec<String> = mine
            .iter()
            .filter(|r| reasons.contains(&r.reason))
            .map(|r| format!("{}: {}", r.field, r.message))
            .collect();
        (!found.is_empty()).then(|| found.join("; "))
    };
    let accepted = match (messages(&[Reason::Invalid, Reason::Refused]), messages(&[Reason::Conflict])) {
        (Some(message), _) => condition("Accepted", false, "Invalid", message),
        (None, Some(message)) => condition("Accepted", false, "Conflicted", message),
        (None, None) => condition("Accepted", true, "Accepted", "the route is served".into()),
    };
    let resolved = match messages(&[Reason::UnresolvedRef, Reason::Unsupported]) {
        Some(message) => condition("ResolvedRefs", false, "RefNotFound", message),
        None => {
            condition("ResolvedRefs", true, "ResolvedRefs", "every Service, port and Secret was found".into())
        }
    };
    [accepted, resolved]
}

fn condition(type_: &'static str, ok: bool, reason: &'static str, message: String) -> RouteCondition {
    RouteCondition { type_, status: if ok { "True" } else { "False" }, reason, message }
}
