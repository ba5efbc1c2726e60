//! Cookie session affinity: which endpoint a request's affinity cookie names, and the
//! `Set-Cookie` that names the endpoint a request went to. The value is a keyed hash
//! (SipHash-2-4) of the endpoint's address: it reveals no address, and replicas that share the
//! key (`--affinity-key`) read each other's cookies.

use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, header};
use siphasher::sip::SipHasher24;
use xxhash_rust::xxh3::xxh3_128;

use super::balance::{addr_bytes, cookie};
use crate::model::{Backend, CookieAffinity, Endpoint, PathMatch, Route, SameSite};

/// The secret the cookie values are keyed with.
#[derive(Clone)]
pub struct AffinityKey(SipHasher24);

impl AffinityKey {
    /// A key of this process only: its cookies mean nothing to other replicas or after a restart.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // Without randomness the key is still secret enough to nobody; cookies stay opaque
        // only to clients then, which is what ingress-nginx offers.
        let _ = getrandom::fill(&mut bytes);
        Self(SipHasher24::new_with_key(&bytes))
    }

    /// A key derived from an operator's secret, the same in every replica given the same secret.
    pub fn from_secret(secret: &str) -> Self {
        Self(SipHasher24::new_with_key(&xxh3_128(secret.as_bytes()).to_le_bytes()))
    }

    /// The cookie value that names `addr`: 16 hex digits.
    fn token(&self, addr: SocketAddr) -> u64 {
        self.0.hash(&addr_bytes(addr))
    }
}

impl Default for AffinityKey {
    fn default() -> Self {
        Self::random()
    }
}

impl fmt::Debug for AffinityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AffinityKey(..)")
    }
}

/// One request's affinity on a route that has it: the endpoint its cookie names, and what the
/// cookie it may be given depends on.
#[derive(Debug)]
pub struct RequestAffinity<'r> {
    key: &'r AffinityKey,
    affinity: &'r CookieAffinity,
    sticky: Option<&'r Endpoint>,
    user_agent: Option<HeaderValue>,
    https: bool,
    route_path: &'r PathMatch,
}

impl<'r> RequestAffinity<'r> {
    /// `None` when the route has no affinity. `backend` is the one the request goes to (the
    /// route's, or its canary's).
    pub fn of(
        route: &'r Route,
        backend: &'r Backend,
        key: &'r AffinityKey,
        headers: &HeaderMap,
        scheme: &str,
    ) -> Option<Self> {
        let affinity = route.policy.affinity.as_ref()?;
        Some(Self {
            key,
            affinity,
            sticky: sticky_endpoint(key, affinity, headers, backend),
            user_agent: headers.get(header::USER_AGENT).cloned(),
            https: scheme == "https",
            route_path: &route.path,
        })
    }

    /// The endpoint the cookie names, unless it already failed for this request.
    pub fn preferred(&self, failed: &[SocketAddr]) -> Option<&'r Endpoint> {
        self.sticky.filter(|endpoint| !failed.contains(&endpoint.addr))
    }

    /// The `Set-Cookie` for a request that went to `chosen`: when the request's cookie named no
    /// listed endpoint, or named one that failed and `change_on_failure` is set.
    pub fn cookie_for(&self, chosen: SocketAddr) -> Option<HeaderValue> {
        let renew = self.sticky.is_none_or(|s| s.addr != chosen && self.affinity.change_on_failure);
        let user_agent = self.user_agent.as_ref().and_then(|ua| ua.to_str().ok());
        let context = CookieContext { https: self.https, user_agent, route_path: self.route_path };
        renew.then(|| set_cookie(self.key, self.affinity, chosen, &context)).flatten()
    }
}

/// The listed endpoint of `backend` the request's affinity cookie names, if any.
pub fn sticky_endpoint<'b>(
    key: &AffinityKey,
    affinity: &CookieAffinity,
    headers: &HeaderMap,
    backend: &'b Backend,
) -> Option<&'b Endpoint> {
    let value = cookie(headers, &affinity.name)?;
    let token = (value.len() == 16).then(|| u64::from_str_radix(value, 16).ok()).flatten()?;
    backend.endpoints().iter().find(|endpoint| key.token(endpoint.addr) == token)
}

/// What the request says that shapes its affinity cookie.
#[derive(Debug)]
pub struct CookieContext<'r> {
    /// Whether the client came over HTTPS (the cookie is then `Secure`, as ingress-nginx does).
    pub https: bool,
    /// The client's `User-Agent`, for the `SameSite=None` exceptions.
    pub user_agent: Option<&'r str>,
    /// The route's path: the cookie's `Path` unless one is configured.
    pub route_path: &'r PathMatch,
}

/// The `Set-Cookie` naming `endpoint`: `HttpOnly`, with the configured attributes.
pub fn set_cookie(
    key: &AffinityKey,
    affinity: &CookieAffinity,
    endpoint: SocketAddr,
    context: &CookieContext<'_>,
) -> Option<HeaderValue> {
    let mut cookie = format!("{}={:016x}", affinity.name, key.token(endpoint));
    // A regular expression is no cookie path: `/` then (ingress-nginx asks for
    // `session-cookie-path` with regex paths).
    let path = affinity.path.as_deref().unwrap_or(match context.route_path {
        PathMatch::Exact(path) | PathMatch::Prefix(path) => path,
        PathMatch::Regex(_) => "/",
    });
    // A `;` would end the attribute early and start another (a route path may hold one).
    if !path.contains(';') {
        cookie.push_str("; Path=");
        cookie.push_str(path);
    }
    if let Some(domain) = &affinity.domain {
        cookie.push_str("; Domain=");
        cookie.push_str(domain);
    }
    if let Some(max_age) = affinity.max_age {
        cookie.push_str(&format!("; Max-Age={}", max_age.as_secs()));
    }
    if let Some(expires) = affinity.expires {
        let at = SystemTime::now() + expires;
        cookie.push_str(&format!("; Expires={}", httpdate::fmt_http_date(at)));
    }
    match affinity.same_site {
        Some(SameSite::None)
            if affinity.same_site_none_if_supported && rejects_same_site_none(context.user_agent) => {}
        Some(SameSite::None) => cookie.push_str("; SameSite=None"),
        Some(SameSite::Lax) => cookie.push_str("; SameSite=Lax"),
        Some(SameSite::Strict) => cookie.push_str("; SameSite=Strict"),
        None => {}
    }
    if affinity.secure || context.https {
        cookie.push_str("; Secure");
    }
    cookie.push_str("; HttpOnly");
    HeaderValue::from_str(&cookie).ok()
}

/// The browsers that reject a cookie with `SameSite=None` or take it for `Strict`
/// (the Chromium project's list of incompatible clients): Chrome 51–66, UC Browser before
/// 12.13.2, and Safari and embedded browsers on iOS 12 and macOS 10.14.
fn rejects_same_site_none(user_agent: Option<&str>) -> bool {
    let Some(ua) = user_agent else { return false };
    let major = |product: &str| {
        let start = ua.find(product)? + product.len();
        let version: Vec<u32> = ua[start..]
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .next()?
            .split('.')
            .map_while(|n| n.parse().ok())
            .collect();
        Some(version)
    };
    let chrome_51_to_66 = ["Chrome/", "Chromium/"]
        .iter()
        .filter_map(|p| major(p))
        .any(|v| v.first().is_some_and(|m| (51..=66).contains(m)));
    let old_uc = major("UCBrowser/").is_some_and(|v| v.as_slice() < [12, 13, 2].as_slice());
    let ios_12 = ua.contains("AppleWebKit/") && ua.contains("(iP") && ua.contains(" OS 12_");
    let mac_10_14_safari = ua.contains("Mac OS X 10_14")
        && ua.contains("AppleWebKit/")
        && (ua.ends_with("(KHTML, like Gecko)") || (ua.contains("Safari") && !ua.contains("Chrom")));
    chrome_51_to_66 || old_uc || ios_12 || mac_10_14_safari
}

#[cfg(test)]
mod tests;
