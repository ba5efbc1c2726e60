//! Host matching: exact names, `*.suffix` wildcards covering exactly one label (Ingress) or any
//! number of labels (Gateway API), and a catch-all.

use std::borrow::Cow;
use std::fmt;

use serde::{Serialize, Serializer};

/// Which request hosts a virtual host answers for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// One exact, lower-case host name.
    Exact(String),
    /// `*.example.com`: the stored value is the suffix `example.com`; matches `a.example.com`
    /// but neither `example.com` nor `a.b.example.com` (Kubernetes Ingress semantics).
    Wildcard(String),
    /// `*.example.com` as the Gateway API reads it: the stored value is the suffix
    /// `example.com`; matches `a.example.com` and `a.b.example.com` but not `example.com`. A
    /// longer suffix is more specific.
    Subdomains(String),
    /// Any host not claimed by an exact or wildcard virtual host.
    Any,
}

impl HostMatch {
    /// Parses `example.com`, `*.example.com` or `*` / empty (catch-all).
    pub fn parse(host: &str) -> Self {
        let host = normalize_host(host).into_owned();
        match host.as_str() {
            "" | "*" => Self::Any,
            _ => match host.strip_prefix("*.") {
                Some(suffix) => Self::Wildcard(suffix.to_owned()),
                None => Self::Exact(host),
            },
        }
    }

    /// Parses a Gateway API host name: `example.com`, `*.example.com` (any depth) or empty.
    pub fn parse_gateway(host: &str) -> Self {
        match Self::parse(host) {
            Self::Wildcard(suffix) => Self::Subdomains(suffix),
            other => other,
        }
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(host) => f.write_str(host),
            Self::Wildcard(suffix) | Self::Subdomains(suffix) => write!(f, "*.{suffix}"),
            Self::Any => f.write_str("*"),
        }
    }
}

impl Serialize for HostMatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Lower-cases a host and drops a port and a trailing dot: `Example.COM.:8080` → `example.com`.
/// IPv6 literals keep their brackets: `[::1]:80` → `[::1]`. Borrowed when already in that form
/// (as most requests' hosts are: nothing is allocated for them).
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    let host = without_port.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The suffix a one-label wildcard would need to cover `host`: `a.example.com` → `example.com`.
pub(crate) fn wildcard_suffix(host: &str) -> Option<&str> {
    let (label, suffix) = host.split_once('.')?;
    (!label.is_empty() && !suffix.is_empty()).then_some(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_hosts() {
        let cases = [
            ("example.com", "example.com"),
            ("Example.COM", "example.com"),
            ("example.com:8080", "example.com"),
            ("example.com.", "example.com"),
            ("[::1]:8080", "[::1]"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_host(input), want, "input {input:?}");
        }
        // A host already in that form is not copied.
        assert!(matches!(normalize_host("example.com:8080"), Cow::Borrowed("example.com")));
        assert!(matches!(normalize_host("Example.com"), Cow::Owned(_)));
    }

    #[test]
    fn parses_host_matches() {
        assert_eq!(HostMatch::parse("A.com"), HostMatch::Exact("a.com".into()));
        assert_eq!(HostMatch::parse("*.a.com"), HostMatch::Wildcard("a.com".into()));
        assert_eq!(HostMatch::parse("*"), HostMatch::Any);
        assert_eq!(HostMatch::parse(""), HostMatch::Any);
        assert_eq!(HostMatch::parse("*.a.com").to_string(), "*.a.com");
        assert_eq!(HostMatch::parse_gateway("*.A.com"), HostMatch::Subdomains("a.com".into()));
        assert_eq!(HostMatch::parse_gateway("a.com"), HostMatch::Exact("a.com".into()));
    }

    #[test]
    fn wildcard_suffix_takes_exactly_one_label() {
        assert_eq!(wildcard_suffix("a.example.com"), Some("example.com"));
        assert_eq!(wildcard_suffix("example"), None);
        assert_eq!(wildcard_suffix(".example.com"), None);
    }
}
