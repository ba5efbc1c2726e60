//! A canary beside a route (ingress-nginx's `canary` Ingress): a second backend that takes the
//! requests a header or cookie sends it, and otherwise a weighted share.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::{Backend, RegexPath};

/// Which requests the canary backend takes.
#[derive(Debug, Serialize)]
pub struct Canary {
    /// The canary Ingress, for logs and reports.
    pub name: String,
    /// Its backend.
    pub backend: Backend,
    /// A header that picks: `always`, `never`, or (with `header_value` / `header_pattern`)
    /// the value that means canary. Lower-case name.
    pub header: Option<String>,
    /// The value of `header` that means canary.
    pub header_value: Option<String>,
    /// A pattern the value of `header` must match to mean canary.
    pub header_pattern: Option<RegexPath>,
    /// A cookie that picks: `always` or `never`.
    pub cookie: Option<String>,
    /// Out of `weight_total`, the share of the other requests.
    pub weight: u32,
    /// The whole (default 100).
    pub weight_total: u32,
    #[serde(skip)]
    turn: AtomicU64,
}

/// What a request carries that a canary reads.
pub trait CanarySignals {
    /// A header's value, if present and text.
    fn header(&self, name: &str) -> Option<&str>;
    /// A cookie's value, if present.
    fn cookie(&self, name: &str) -> Option<&str>;
}

impl Canary {
    /// A canary taking `weight` of `weight_total` of the requests, and none by header or cookie.
    pub fn weighted(name: &str, backend: Backend, weight: u32, weight_total: u32) -> Self {
        Self {
            name: name.to_owned(),
            backend,
            header: None,
            header_value: None,
            header_pattern: None,
            cookie: None,
            weight,
            weight_total: weight_total.max(1),
            turn: AtomicU64::new(0),
        }
    }

    /// Whether this request goes to the canary: by header, then by cookie, then by weight
    /// (ingress-nginx's precedence). The weighted share is spread evenly over the requests.
    pub fn takes(&self, request: &impl CanarySignals) -> bool {
        if let Some(value) = self.header.as_deref().and_then(|name| request.header(name)) {
            match (&self.header_value, &self.header_pattern) {
                (Some(wanted), _) if value == wanted => return true,
                (None, Some(pattern)) if pattern.matches(value) => return true,
                (None, None) if value == "always" => return true,
                (None, None) if value == "never" => return false,
                _ => {}
            }
        }
        match self.cookie.as_deref().and_then(|name| request.cookie(name)) {
            Some("always") => return true,
            Some("never") => return false,
            _ => {}
        }
        let (weight, total) = (u64::from(self.weight.min(self.weight_total)), u64::from(self.weight_total));
        let n = self.turn.fetch_add(1, Ordering::Relaxed) % total;
        (n + 1) * weight / total > n * weight / total
    }
}

impl Clone for Canary {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            backend: self.backend.clone(),
            header: self.header.clone(),
            header_value: self.header_value.clone(),
            header_pattern: self.header_pattern.clone(),
            cookie: self.cookie.clone(),
            weight: self.weight,
            weight_total: self.weight_total,
            turn: AtomicU64::new(0),
        }
    }
}

impl PartialEq for Canary {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.backend, &self.header, &self.header_value, &self.header_pattern, &self.cookie)
            == (
                &other.name,
                &other.backend,
                &other.header,
                &other.header_value,
                &other.header_pattern,
                &other.cookie,
            )
            && (self.weight, self.weight_total) == (other.weight, other.weight_total)
    }
}

impl Eq for Canary {}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Request(HashMap<&'static str, &'static str>, HashMap<&'static str, &'static str>);

    impl CanarySignals for Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.0.get(name).copied()
        }
        fn cookie(&self, name: &str) -> Option<&str> {
            self.1.get(name).copied()
        }
    }

    #[test]
    fn weights_are_exact_and_spread() {
        let canary = Canary::weighted("c", Backend::new(vec![]), 10, 100);
        let picks: Vec<bool> = (0..1000).map(|_| canary.takes(&Request::default())).collect();
        assert_eq!(picks.iter().filter(|&&p| p).count(), 100);
        assert!(picks.chunks(10).all(|ten| ten.iter().filter(|&&p| p).count() == 1), "one in every ten");
        let none = Canary::weighted("c", Backend::new(vec![]), 0, 100);
        assert!((0..100).all(|_| !none.takes(&Request::default())));
        let all = Canary::weighted("c", Backend::new(vec![]), 5, 5);
        assert!((0..100).all(|_| all.takes(&Request::default())));
    }

    #[test]
    fn header_then_cookie_then_weight() {
        let canary = Canary {
            header: Some("x-canary".into()),
            cookie: Some("canary".into()),
            ..Canary::weighted("c", Backend::new(vec![]), 0, 100)
        };
        let with = |headers: &[(&'static str, &'static str)], cookies: &[(&'static str, &'static str)]| {
            canary.takes(&Request(headers.iter().copied().collect(), cookies.iter().copied().collect()))
        };
        assert!(with(&[("x-canary", "always")], &[]));
        assert!(!with(&[("x-canary", "never")], &[("canary", "always")]), "the header wins");
        assert!(with(&[("x-canary", "maybe")], &[("canary", "always")]), "an unknown value falls through");
        assert!(!with(&[], &[("canary", "never")]));
        assert!(!with(&[], &[]), "weight 0");
        let by_value = Canary { header_value: Some("beta".into()), ..canary.clone() };
        assert!(by_value.takes(&Request([("x-canary", "beta")].into(), HashMap::new())));
        assert!(!by_value.takes(&Request([("x-canary", "always")].into(), HashMap::new())), "only the value");
        let by_pattern = Canary { header_pattern: RegexPath::new("^(beta|gamma)$").ok(), ..canary.clone() };
        assert!(by_pattern.takes(&Request([("x-canary", "gamma")].into(), HashMap::new())));
    }
}
