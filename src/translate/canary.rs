//! ingress-nginx canaries: an Ingress annotated `canary: "true"` serves no routes of its own;
//! each of its paths joins the main Ingress's route for the same host and path as a second
//! backend, taking the requests `canary-by-header` or `canary-by-cookie` send it and
//! `canary-weight` of `canary-weight-total` of the rest.

use std::collections::BTreeMap;

use super::candidate::Candidate;
use super::report::{Reason, Report, Reporter};
use crate::model::{Canary, HostMatch, RegexPath, Route, ValueError};

/// The canary settings of an Ingress.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryRule {
    header: Option<String>,
    header_value: Option<String>,
    header_pattern: Option<RegexPath>,
    cookie: Option<String>,
    weight: u32,
    weight_total: u32,
}

/// The Ingress's canary settings when it says `canary: "true"` (invalid values are left out;
/// each is reported on its own key by [`check`]).
pub fn rule(nginx: &BTreeMap<&str, &str>) -> Option<CanaryRule> {
    if nginx.get("canary").is_none_or(|v| v.trim() != "true") {
        return None;
    }
    let text = |key: &str| nginx.get(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let number = |key: &str| nginx.get(key).and_then(|v| v.trim().parse::<u32>().ok());
    Some(CanaryRule {
        header: text("canary-by-header").map(|h| h.to_ascii_lowercase()),
        header_value: text("canary-by-header-value"),
        header_pattern: text("canary-by-header-pattern").and_then(|p| RegexPath::new(&p).ok()),
        cookie: text("canary-by-cookie"),
        weight: number("canary-weight").unwrap_or(0),
        weight_total: number("canary-weight-total").filter(|&t| t > 0).unwrap_or(100),
    })
}

/// Whether a `canary*` key's value is usable. `None`: not a canary key.
pub fn check(key: &str, value: &str) -> Option<Result<(), ValueError>> {
    let value = value.trim();
    Some(match key {
        "canary" => super::values::boolean(value).map(drop),
        "canary-weight" | "canary-weight-total" => {
            value.parse::<u32>().map(drop).map_err(|_| ValueError::malformed(value, "a whole number"))
        }
        "canary-by-header" => http::HeaderName::from_bytes(value.as_bytes())
            .map(drop)
            .map_err(|_| ValueError::malformed(value, "a header name")),
        "canary-by-header-pattern" => RegexPath::new(value).map(drop),
        "canary-by-header-value" | "canary-by-cookie" => Ok(()),
        _ => return None,
    })
}

/// Joins each canary path to the route of the same host, path and headers; a canary without
/// one, or for a route that has a canary already, is reported and left out.
pub fn attach(
    canaries: Vec<(Candidate, CanaryRule)>,
    hosts: &mut BTreeMap<HostMatch, Vec<Route>>,
    reports: &mut Vec<Report>,
) {
    for (candidate, rule) in canaries {
        let main = hosts.get_mut(&candidate.host).and_then(|routes| {
            routes.iter_mut().find(|r| r.path == candidate.route.path && r.headers == candidate.route.headers)
        });
        let owner = candidate.rank.owner().clone();
        let mut reporter = Reporter::new(owner.clone(), reports);
        match main {
            None => reporter.report(
                Reason::Invalid,
                candidate.field,
                format!(
                    "canary for host {} path {:?}, which no main Ingress serves; the canary is not served",
                    candidate.host,
                    candidate.route.path.as_str()
                ),
            ),
            Some(main) if main.canary.is_some() => reporter.report(
                Reason::Conflict,
                candidate.field,
                format!("route {} has a canary already; this one is not served", main.name),
            ),
            Some(main) => {
                let name = owner.to_string();
                let mut canary =
                    Canary::weighted(&name, candidate.route.backend, rule.weight, rule.weight_total);
                canary.header = rule.header;
                canary.header_value = rule.header_value;
                canary.header_pattern = rule.header_pattern;
                canary.cookie = rule.cookie;
                main.canary = Some(Box::new(canary));
            }
        }
    }
}
