//! Kubernetes conditions as hawser writes them: `lastTransitionTime` kept while the status stays
//! the same, messages cut to the API's limit.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::translate::conditions::RouteCondition;

/// A Kubernetes condition, keeping `lastTransitionTime` while the status stays the same.
pub fn condition(wanted: &RouteCondition, current: &[Condition], generation: Option<i64>) -> Condition {
    let previous = current.iter().find(|c| c.type_ == wanted.type_);
    let since = previous
        .filter(|c| c.status == wanted.status)
        .map_or_else(|| Time(Timestamp::now()), |c| c.last_transition_time.clone());
    Condition {
        type_: wanted.type_.to_owned(),
        status: wanted.status.to_owned(),
        reason: wanted.reason.to_owned(),
        message: truncate(&wanted.message, 32_000),
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// `text`, cut to at most `limit` bytes on a character boundary.
pub fn truncate(text: &str, limit: usize) -> String {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
