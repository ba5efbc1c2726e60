//! The checks a request passes before anything is sent to a backend: source ranges for every
//! request, and for upgrades the Origin allow-list and the connection budgets.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderMap, header};

use super::error::ProxyError;
use crate::model::{Policy, Route};

/// Refuses clients in the route's denied ranges, and those outside its source ranges (empty
/// ranges allow everyone).
pub fn check_source(policy: &Policy, client: IpAddr) -> Result<(), ProxyError> {
    let client = client.to_canonical();
    if policy.denied_ranges.iter().any(|net| net.contains(&client)) {
        return Err(ProxyError::SourceForbidden { ip: client });
    }
    if policy.source_ranges.is_empty() || policy.source_ranges.iter().any(|net| net.contains(&client)) {
        return Ok(());
    }
    Err(ProxyError::SourceForbidden { ip: client })
}

/// Refuses a browser handshake from an Origin not on the allow-list, which is what protects a
/// WebSocket from cross-site hijacking (browsers do not apply CORS to WebSocket handshakes).
/// A handshake without `Origin` comes from a non-browser client and passes; two `Origin`
/// headers, or one that is not `scheme://host[:port]`, are refused (RFC 6454 §7).
pub fn check_origin(policy: &Policy, headers: &HeaderMap) -> Result<(), ProxyError> {
    let mut values = headers.get_all(header::ORIGIN).iter();
    let Some(origin) = values.next() else { return Ok(()) };
    if values.next().is_some() {
        return Err(ProxyError::BadRequest { reason: "more than one Origin header" });
    }
    let origin = String::from_utf8_lossy(origin.as_bytes()).to_ascii_lowercase();
    if policy.allowed_origins.is_empty() {
        return Ok(());
    }
    let parsed = Origin::parse(&origin);
    if parsed.as_ref().is_some_and(|o| policy.allowed_origins.iter().any(|allowed| o.allowed_by(allowed))) {
        return Ok(());
    }
    Err(ProxyError::OriginForbidden { origin })
}

/// Whether `origin` (as the browser sent it) is one `allowed` names (`*`, exact, or
/// `https://*.example.com`).
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    let origin = origin.to_ascii_lowercase();
    Origin::parse(&origin).is_some_and(|o| allowed.iter().any(|a| o.allowed_by(a)))
}

/// A serialised origin, `scheme://host[:port]`, lower-case.
#[derive(Debug, PartialEq, Eq)]
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<&'a str>,
}

impl<'a> Origin<'a> {
    /// `None` unless `value` is exactly `scheme://host[:port]` with a host of hostname
    /// characters (or a bracketed IPv6 literal) and a numeric port.
    fn parse(value: &'a str) -> Option<Self> {
        let (scheme, rest) = value.split_once("://")?;
        let valid_scheme = scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.starts_with('[') || host.ends_with(']') => (host, Some(port)),
            _ => (rest, None),
        };
        let valid_host = if let Some(literal) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            literal.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        let valid_port = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        (!scheme.is_empty() && valid_scheme && valid_host && valid_port).then_some(Self {
            scheme,
            host,
            port,
        })
    }

    /// `*` allows all; `https://*.example.com` allows any subdomain (one or more labels) over
    /// that scheme and port; anything else must be the same origin.
    fn allowed_by(&self, allowed: &str) -> bool {
        let allowed = allowed.trim_end_matches('/').to_ascii_lowercase();
        if allowed == "*" {
            return true;
        }
        let stand_in = allowed.replacen("://*.", "://wildcard.", 1);
        let Some(pattern) = Origin::parse(&stand_in) else { return false };
        let same_place = pattern.scheme == self.scheme && pattern.port == self.port;
        match pattern.host.strip_prefix("wildcard.").filter(|_| allowed.contains("://*.")) {
            Some(suffix) => {
                same_place
                    && self
                        .host
                        .strip_suffix(suffix)
                        .is_some_and(|label| label.len() > 1 && label.ends_with('.'))
            }
            None => same_place && pattern.host == self.host,
        }
    }
}

/// Live tunnels per route and per (route, client IP), shared by every table generation so a
/// swap neither resets nor double-counts them.
#[derive(Debug, Default)]
pub struct ConnectionBudgets {
    counts: Mutex<HashMap<BudgetKey, u32>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum BudgetKey {
    Route(Arc<str>),
    Client(Arc<str>, IpAddr),
}

impl Hash for BudgetKey {
    /// The map keeps SipHash for the client's address, which a client can choose; the route's
    /// name, hawser's own, goes through it as an 8-byte foldhash digest, and the address as one
    /// 16-byte word (not a discriminant, a length and the bytes, as `IpAddr` hashes itself):
    /// a third of the work, four times per tunnel.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let name = |route: &str| foldhash::fast::FixedState::default().hash_one(route);
        match self {
            Self::Route(route) => state.write_u64(name(route)),
            Self::Client(route, client) => {
                state.write_u64(name(route));
                state.write_u128(match client {
                    IpAddr::V4(v4) => u128::from(v4.to_bits()),
                    IpAddr::V6(v6) => v6.to_bits(),
                });
            }
        }
    }
}

/// One admitted tunnel; gives its place back when dropped.
#[derive(Debug)]
pub struct BudgetGuard {
    budgets: Arc<ConnectionBudgets>,
    route: Arc<str>,
    client: IpAddr,
}

impl ConnectionBudgets {
    /// Admits one more tunnel on `route` from `client`, or says which budget is spent.
    pub fn admit(self: &Arc<Self>, route: &Route, client: IpAddr) -> Result<BudgetGuard, ProxyError> {
        let route_key = BudgetKey::Route(route.name.clone());
        let client_key = BudgetKey::Client(route.name.clone(), client);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = |key: &BudgetKey| counts.get(key).copied().unwrap_or(0);
        if let Some(limit) = route.policy.max_connections.filter(|&limit| count(&route_key) >= limit) {
            return Err(ProxyError::RouteBudget { limit });
        }
        if let Some(limit) =
            route.policy.max_connections_per_client.filter(|&limit| count(&client_key) >= limit)
        {
            return Err(ProxyError::ClientBudget { limit });
        }
        *counts.entry(route_key).or_default() += 1;
        *counts.entry(client_key).or_default() += 1;
        Ok(BudgetGuard { budgets: self.clone(), route: route.name.clone(), client })
    }

    /// Live tunnels admitted on the route named `route`.
    #[cfg(test)]
    pub fn route_count(&self, route: &str) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(&BudgetKey::Route(route.into())).copied().unwrap_or(0)
    }
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        let mut counts = self.budgets.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for key in [BudgetKey::Route(self.route.clone()), BudgetKey::Client(self.route.clone(), self.client)]
        {
            if let Some(count) = counts.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, PathMatch};

    fn route(policy: Policy) -> Route {
        Route::new("r", PathMatch::Prefix("/".into()), Backend::new(vec![]), policy)
    }

    #[test]
    fn origins() {
        let cases = [
            ("https://chat.example.com", "https://chat.example.com", true),
            ("https://chat.example.com/", "https://CHAT.example.com", true),
            ("https://chat.example.com", "http://chat.example.com", false),
            ("https://chat.example.com", "https://chat.example.com.evil.org", false),
            ("https://*.example.com", "https://a.example.com", true),
            ("https://*.example.com", "https://a.b.example.com", true),
            ("https://*.example.com", "https://example.com", false),
            ("https://*.example.com", "https://evilexample.com", false),
            ("https://*.example.com", "http://a.example.com", false),
            ("*", "https://anything.org", true),
            ("https://a.com", "null", false),
            ("https://*.ok.example", "https://evil.com?.ok.example", false),
            ("https://*.ok.example", "https://evil.com/.ok.example", false),
            ("https://*.ok.example", "https://a.ok.example:8443", false),
            ("https://*.ok.example:8443", "https://a.ok.example:8443", true),
            ("https://a.com", "https://a.com:443", false),
            ("https://a.com", "https://a.com@evil.org", false),
            ("http://[::1]:8080", "http://[::1]:8080", true),
        ];
        for (allowed, origin, want) in cases {
            let origin = origin.to_ascii_lowercase();
            let allowed_by = Origin::parse(&origin).is_some_and(|o| o.allowed_by(allowed));
            assert_eq!(allowed_by, want, "{allowed} vs {origin}");
        }
    }

    #[test]
    fn two_origins_are_a_bad_request() {
        let policy = Policy { allowed_origins: vec!["https://a.com".into()], ..Policy::default() };
        let mut headers = HeaderMap::new();
        headers.append(header::ORIGIN, "https://a.com".parse().expect("value"));
        headers.append(header::ORIGIN, "https://evil.org".parse().expect("value"));
        assert!(matches!(check_origin(&policy, &headers), Err(ProxyError::BadRequest { .. })));
        assert!(matches!(check_origin(&Policy::default(), &headers), Err(ProxyError::BadRequest { .. })));
    }

    #[test]
    fn missing_origin_passes_and_empty_list_allows_all() {
        let policy = Policy { allowed_origins: vec!["https://a.com".into()], ..Policy::default() };
        assert!(check_origin(&policy, &HeaderMap::new()).is_ok());
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, "https://b.com".parse().expect("value"));
        assert!(matches!(check_origin(&policy, &headers), Err(ProxyError::OriginForbidden { .. })));
        assert!(check_origin(&Policy::default(), &headers).is_ok());
    }

    #[test]
    fn denied_ranges_win() {
        let policy = Policy {
            source_ranges: vec!["10.0.0.0/8".parse().expect("net")],
            denied_ranges: vec!["10.9.0.0/16".parse().expect("net")],
            ..Policy::default()
        };
        assert!(check_source(&policy, IpAddr::from([10, 1, 2, 3])).is_ok());
        assert!(check_source(&policy, IpAddr::from([10, 9, 2, 3])).is_err());
        let denied_only =
            Policy { denied_ranges: vec!["192.0.2.0/24".parse().expect("net")], ..Policy::default() };
        assert!(check_source(&denied_only, IpAddr::from([198, 51, 100, 1])).is_ok());
        assert!(check_source(&denied_only, "::ffff:192.0.2.9".parse().expect("ip")).is_err());
    }

    #[test]
    fn source_ranges() {
        let policy = Policy { source_ranges: vec!["10.0.0.0/8".parse().expect("net")], ..Policy::default() };
        assert!(check_source(&policy, [10, 1, 2, 3].into()).is_ok());
        assert!(check_source(&policy, [11, 1, 2, 3].into()).is_err());
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert!(check_source(&policy, mapped).is_ok());
        assert!(check_source(&Policy::default(), [11, 1, 2, 3].into()).is_ok());
    }

    #[test]
    fn budgets_limit_and_release() {
        let budgets = Arc::new(ConnectionBudgets::default());
        let route = route(Policy {
            max_connections: Some(3),
            max_connections_per_client: Some(2),
            ..Policy::default()
        });
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        let first = budgets.admit(&route, a).expect("first");
        let _second = budgets.admit(&route, a).expect("second");
        assert!(matches!(budgets.admit(&route, a), Err(ProxyError::ClientBudget { limit: 2 })));
        let _third = budgets.admit(&route, b).expect("other client");
        assert!(matches!(budgets.admit(&route, b), Err(ProxyError::RouteBudget { limit: 3 })));
        drop(first);
        assert_eq!(budgets.route_count("r"), 2);
        assert!(budgets.admit(&route, a).is_ok());
    }

    #[test]
    fn addresses_that_hash_alike_keep_their_own_budgets() {
        let budgets = Arc::new(ConnectionBudgets::default());
        let route = route(Policy { max_connections_per_client: Some(1), ..Policy::default() });
        // The same 128 bits once an IPv4 address is widened: one word to the hash, two keys.
        let v4 = IpAddr::from([192, 0, 2, 1]);
        let v6: IpAddr = "::c000:201".parse().expect("ip");
        let _held = budgets.admit(&route, v4).expect("v4");
        assert!(budgets.admit(&route, v6).is_ok(), "not the IPv4 client's budget");
        assert!(matches!(budgets.admit(&route, v4), Err(ProxyError::ClientBudget { limit: 1 })));
    }
}
