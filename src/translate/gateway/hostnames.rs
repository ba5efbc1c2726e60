//! Gateway API host names: which hosts a route serves on a listener, the intersection of the
//! listener's `hostname` and the route's `hostnames` (Gateway API `HTTPRouteSpec.hostnames`).
//! A wildcard `*.example.com` covers one or more labels before `example.com`.

use crate::model::{HostMatch, normalize_host};

/// The host patterns a route with `route_hosts` serves on a listener with `listener_host`
/// (`None`: any). Empty when they have none in common: the route does not attach there.
pub fn intersect(listener_host: Option<&str>, route_hosts: &[String]) -> Vec<HostMatch> {
    let listener = listener_host.map(normalize_host).filter(|h| !h.is_empty());
    if route_hosts.is_empty() {
        return vec![listener.as_deref().map_or(HostMatch::Any, HostMatch::parse_gateway)];
    }
    let mut hosts: Vec<HostMatch> = route_hosts
        .iter()
        .map(|h| normalize_host(h).into_owned())
        .filter_map(|route| match &listener {
            None => Some(route),
            Some(listener) => narrower(listener, &route).map(str::to_owned),
        })
        .map(|h| HostMatch::parse_gateway(&h))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Whether `host`, which a listener with hostname `own` serves, belongs to a sibling listener
/// (same Gateway, same hawser listener) with a narrower hostname that covers it: requests are
/// matched to the most specific listener, and only its routes serve them.
pub fn claimed_by_narrower(host: &HostMatch, own: Option<&str>, siblings: &[Option<&str>]) -> bool {
    let host = host.to_string();
    siblings.iter().flatten().map(|s| normalize_host(s)).any(|sibling| {
        let narrower_than_own =
            own.map(normalize_host).is_none_or(|own| own != sibling && covers(&own, &sibling));
        narrower_than_own && covers(&sibling, &host)
    })
}

/// The narrower of two host names when one covers the other (a name covers itself).
fn narrower<'a>(a: &'a str, b: &'a str) -> Option<&'a str> {
    if covers(a, b) {
        Some(b)
    } else if covers(b, a) {
        Some(a)
    } else {
        None
    }
}

/// Whether every name `inner` matches is matched by `outer`: `*.example.com` covers itself,
/// `a.example.com`, `a.b.example.com` and `*.b.example.com`, but not `example.com`.
fn covers(outer: &str, inner: &str) -> bool {
    match outer.strip_prefix("*.") {
        None => outer == inner,
        Some(suffix) => {
            let name = inner.strip_prefix("*.").unwrap_or(inner);
            inner == outer || name.ends_with(&format!(".{suffix}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listener: Option<&str>, route: &[&str]) -> Vec<String> {
        let route: Vec<String> = route.iter().map(|h| (*h).to_owned()).collect();
        intersect(listener, &route).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn intersections_follow_the_gateway_api() {
        let cases: [(Option<&str>, &[&str], &[&str]); 12] = [
            (None, &[], &["*"]),
            (None, &["a.com", "*.b.com"], &["a.com", "*.b.com"]),
            (Some("a.com"), &[], &["a.com"]),
            (Some("test.example.com"), &["test.example.com"], &["test.example.com"]),
            (Some("test.example.com"), &["*.example.com"], &["test.example.com"]),
            (Some("test.example.com"), &["example.com", "other.com"], &[]),
            (Some("*.example.com"), &["test.example.com", "test.example.net"], &["test.example.com"]),
            (Some("*.example.com"), &["foo.test.example.com"], &["foo.test.example.com"]),
            (Some("*.example.com"), &["example.com"], &[]),
            (Some("*.foo.example.com"), &["*.example.com"], &["*.foo.example.com"]),
            (Some("*.example.com"), &["*.foo.example.com"], &["*.foo.example.com"]),
            (Some("abc.foo.example.com"), &["*.example.com", "*.foo.example.com"], &["abc.foo.example.com"]),
        ];
        for (listener, route, want) in cases {
            assert_eq!(hosts(listener, route), want, "listener {listener:?}, route {route:?}");
        }
    }
}
