//! Path matching with Kubernetes Ingress semantics (networking.k8s.io/v1 `pathType`).

use std::cmp::Reverse;

use serde::Serialize;

use super::RegexPath;

/// How a route matches the request path (the part before `?`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", content = "value")]
pub enum PathMatch {
    /// The whole path, case-sensitive: `/foo` matches `/foo` only, not `/foo/`.
    Exact(String),
    /// Whole `/`-separated segments: `/foo` (or `/foo/`) matches `/foo`, `/foo/` and `/foo/bar`,
    /// but not `/foobar`. `/` matches every path.
    Prefix(String),
    /// A regular expression matched from the start of the path, without case (ingress-nginx's
    /// `use-regex`).
    Regex(RegexPath),
}

impl PathMatch {
    /// Whether `path` (without query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(exact) => path == exact,
            Self::Prefix(prefix) => {
                let prefix = prefix.trim_end_matches('/');
                match path.strip_prefix(prefix) {
                    Some(rest) => rest.is_empty() || rest.starts_with('/'),
                    None => false,
                }
            }
            Self::Regex(regex) => regex.matches(path),
        }
    }

    /// Sort key for precedence within a host: Exact first; then regular expressions and
    /// prefixes together, the longer path first, a regular expression before a prefix of the
    /// same length. This is ingress-nginx's order once a host has a regex path (every location
    /// of the host becomes a regex, longest first), so another Ingress's longer prefix — an
    /// ACME challenge path above all — still wins over a regex `/`.
    pub(crate) fn precedence(&self) -> (u8, Reverse<usize>, u8) {
        match self {
            Self::Exact(path) => (0, Reverse(path.len()), 0),
            Self::Regex(regex) => (1, Reverse(regex.source().len()), 0),
            Self::Prefix(prefix) => (1, Reverse(prefix.trim_end_matches('/').len()), 1),
        }
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Exact(path) | Self::Prefix(path) => path,
            Self::Regex(regex) => regex.source(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PathMatch::{Exact, Prefix};

    /// The examples table of the Kubernetes Ingress documentation, plus edge cases.
    #[test]
    fn kubernetes_path_examples() {
        let cases = [
            (Prefix("/".into()), "/anything", true),
            (Prefix("/".into()), "/", true),
            (Exact("/foo".into()), "/foo", true),
            (Exact("/foo".into()), "/bar", false),
            (Exact("/foo".into()), "/foo/", false),
            (Exact("/foo/".into()), "/foo", false),
            (Prefix("/foo".into()), "/foo", true),
            (Prefix("/foo".into()), "/foo/", true),
            (Prefix("/foo/".into()), "/foo", true),
            (Prefix("/foo/".into()), "/foo/", true),
            (Prefix("/aaa/bb".into()), "/aaa/bbb", false),
            (Prefix("/aaa/bbb".into()), "/aaa/bbb", true),
            (Prefix("/aaa/bbb/".into()), "/aaa/bbb", true),
            (Prefix("/aaa/bbb".into()), "/aaa/bbb/", true),
            (Prefix("/aaa/bbb".into()), "/aaa/bbb/ccc", true),
            (Prefix("/aaa/bbb".into()), "/aaa/bbbxyz", false),
            (Prefix("/foo".into()), "/foobar", false),
            (Prefix("/foo".into()), "/fo", false),
        ];
        for (rule, path, want) in cases {
            assert_eq!(rule.matches(path), want, "{rule:?} vs {path}");
        }
    }
}
