//! What a Gateway API HTTPRoute rule's filters do to a request or its response, as pure
//! functions of the request: header edits (`RequestHeaderModifier`, `ResponseHeaderModifier`),
//! path rewrites (`URLRewrite`) and redirects built from the request (`RequestRedirect`).

use serde::Serialize;

use super::PathMatch;

/// Header changes, applied in the order remove, set, add (Gateway API `HTTPHeaderFilter`).
/// Names are lower-case.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HeaderEdits {
    /// Replace every value of the header with this one.
    pub set: Vec<(String, String)>,
    /// Add a value, keeping those already there.
    pub add: Vec<(String, String)>,
    /// Drop the header.
    pub remove: Vec<String>,
}

/// A new path for a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum PathRewrite {
    /// The whole path becomes this.
    Full(String),
    /// The part the route's `PathPrefix` matched becomes this; the rest stays.
    Prefix(String),
}

impl PathRewrite {
    /// The path `path` becomes on a route matching `matched`. `Prefix` on a route that is not a
    /// prefix route replaces the whole path.
    pub fn apply(&self, path: &str, matched: &PathMatch) -> String {
        let rewritten = match (self, matched) {
            (Self::Full(full), _) => full.clone(),
            (Self::Prefix(replacement), PathMatch::Prefix(prefix)) => {
                let rest = path.get(prefix.trim_end_matches('/').len()..).unwrap_or_default();
                format!("{}{rest}", replacement.trim_end_matches('/'))
            }
            (Self::Prefix(replacement), _) => replacement.clone(),
        };
        if rewritten.is_empty() { "/".to_owned() } else { rewritten }
    }
}

/// A redirect built from the request (Gateway API `HTTPRequestRedirectFilter`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestRedirect {
    /// `http` or `https`; `None`: the request's.
    pub scheme: Option<String>,
    /// `None`: the request's host (without port).
    pub hostname: Option<String>,
    /// `None`: the well-known port of the scheme, which the `Location` leaves out.
    pub port: Option<u16>,
    /// `None`: the request's path.
    pub path: Option<PathRewrite>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

impl RequestRedirect {
    /// The `Location` for a request to `scheme://host` + `path`?`query` on a route matching
    /// `matched`.
    pub fn location(
        &self,
        (scheme, host): (&str, &str),
        (path, query): (&str, Option<&str>),
        matched: &PathMatch,
    ) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(scheme);
        let host = self.hostname.as_deref().unwrap_or(host);
        let well_known = match scheme {
            "https" => 443,
            _ => 80,
        };
        let port = match self.port {
            Some(port) if port != well_known => format!(":{port}"),
            _ => String::new(),
        };
        let path = self.path.as_ref().map_or_else(|| path.to_owned(), |rewrite| rewrite.apply(path, matched));
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        format!("{scheme}://{host}{port}{path}{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rewrites_follow_the_gateway_api_table() {
        // (request path, matched prefix, replacement, result): Gateway API `HTTPPathModifier`.
        let cases = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            ("/abc", "/", "/xyz", "/xyz/abc"),
        ];
        for (path, prefix, replacement, want) in cases {
            let rewrite = PathRewrite::Prefix(replacement.into());
            assert_eq!(
                rewrite.apply(path, &PathMatch::Prefix(prefix.into())),
                want,
                "{path} {prefix} {replacement}"
            );
        }
        assert_eq!(PathRewrite::Full("/one".into()).apply("/a/b", &PathMatch::Prefix("/a".into())), "/one");
    }

    #[test]
    fn redirect_locations_keep_what_the_filter_does_not_set() {
        let redirect = |scheme: Option<&str>, hostname: Option<&str>, port: Option<u16>| RequestRedirect {
            scheme: scheme.map(str::to_owned),
            hostname: hostname.map(str::to_owned),
            port,
            path: None,
            status: 302,
        };
        let root = PathMatch::Prefix("/".into());
        let at = |r: RequestRedirect| r.location(("http", "a.com"), ("/p", Some("q=1")), &root);
        assert_eq!(at(redirect(None, None, None)), "http://a.com/p?q=1");
        assert_eq!(at(redirect(Some("https"), None, None)), "https://a.com/p?q=1");
        assert_eq!(at(redirect(Some("https"), None, Some(443))), "https://a.com/p?q=1");
        assert_eq!(at(redirect(None, Some("b.com"), Some(8443))), "http://b.com:8443/p?q=1");
        let mut prefix = redirect(None, None, None);
        prefix.path = Some(PathRewrite::Prefix("/new".into()));
        assert_eq!(
            prefix.location(("http", "a.com"), ("/old/x", None), &PathMatch::Prefix("/old".into())),
            "http://a.com/new/x"
        );
    }
}
