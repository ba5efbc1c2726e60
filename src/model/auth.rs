//! Who may use a route: HTTP Basic or Digest credentials hawser checks itself (ingress-nginx's
//! `auth-type: basic|digest`), and a subrequest to an external authorisation service before the
//! request is proxied (`auth-url`: nginx's `auth_request`, Traefik's ForwardAuth, Envoy's
//! ext_authz).

use std::collections::BTreeMap;

use http::{HeaderName, Method};
use serde::{Serialize, Serializer};

use super::ValueError;
use super::password::PasswordHash;

/// HTTP Basic authentication (RFC 7617) against a list of users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BasicAuth {
    /// The realm of the `WWW-Authenticate` challenge.
    pub realm: String,
    /// User name → password hash. Shown by name only.
    #[serde(serialize_with = "names_only")]
    pub users: BTreeMap<String, PasswordHash>,
}

/// HTTP Digest authentication (RFC 7616, MD5 with `qop=auth`) against an htdigest file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DigestAuth {
    /// The realm of the challenge; the users' HA1 values were made with it.
    pub realm: String,
    /// User name → HA1, `MD5(user:realm:password)` as lower-case hex. Shown by name only.
    #[serde(serialize_with = "names_only")]
    pub users: BTreeMap<String, String>,
}

fn names_only<S: Serializer, V>(users: &BTreeMap<String, V>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(users.keys())
}

/// A subrequest to an authorisation service decides: `2xx` lets the request through, `401`
/// and `403` are the client's answer, anything else is `500`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExternalAuth {
    /// Where the subrequest goes (an absolute `http`/`https` URL once expanded).
    pub url: UrlTemplate,
    /// The subrequest's method (`auth-method`); `GET` by default.
    #[serde(serialize_with = "method")]
    pub method: Method,
    /// A `401` becomes a `302` here instead (`auth-signin`), with the original URL in the
    /// query parameter `signin_redirect_param` unless the URL already has it.
    pub signin: Option<UrlTemplate>,
    /// `rd` by default (`auth-signin-redirect-param`).
    pub signin_redirect_param: String,
    /// Headers of the service's `2xx` answer copied into the proxied request
    /// (`auth-response-headers`).
    #[serde(serialize_with = "header_names")]
    pub response_headers: Vec<HeaderName>,
    /// Sent as `X-Auth-Request-Redirect`; the request URI when `None`.
    pub request_redirect: Option<String>,
    /// With `signin`, the service's `Set-Cookie`s reach the client on every answer, not only
    /// `2xx`/`3xx` ones (`auth-always-set-cookie`).
    pub always_set_cookie: bool,
}

fn method<S: Serializer>(method: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(method.as_str())
}

fn header_names<S: Serializer>(names: &[HeaderName], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(names.iter().map(HeaderName::as_str))
}

/// A URL with nginx variables in it, as ingress-nginx users write them
/// (`https://$host/oauth2/start?rd=$escaped_request_uri`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlTemplate(Vec<Piece>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// The variables hawser expands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Var {
    /// `$host`, `$http_host`, `$best_http_host`: the request's host.
    Host,
    /// `$scheme`, `$pass_access_scheme`: `http` or `https`.
    Scheme,
    /// `$request_uri`: path and query as the client sent them.
    RequestUri,
    /// `$escaped_request_uri`: the same, percent-encoded for a query value.
    EscapedRequestUri,
}

const VARIABLES: [(&str, Var); 7] = [
    ("escaped_request_uri", Var::EscapedRequestUri),
    ("request_uri", Var::RequestUri),
    ("best_http_host", Var::Host),
    ("http_host", Var::Host),
    ("host", Var::Host),
    ("pass_access_scheme", Var::Scheme),
    ("scheme", Var::Scheme),
];

/// What a template is expanded with.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub request_uri: &'a str,
}

impl UrlTemplate {
    /// Reads `text`; an nginx variable hawser does not expand is an error (the URL would be
    /// wrong), and so is a URL that is not `http://` or `https://`.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let text = text.trim();
        if !(text.starts_with("http://") || text.starts_with("https://")) {
            return Err(ValueError::malformed(text, "an http:// or https:// URL"));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            push_text(&mut pieces, &rest[..at]);
            let after = &rest[at + 1..];
            let braced = after.starts_with('{');
            let name_start = &after[usize::from(braced)..];
            let length = name_start
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(name_start.len());
            let name = &name_start[..length];
            let var = VARIABLES.iter().find(|(known, _)| *known == name).map(|(_, var)| *var).ok_or_else(|| {
                ValueError::refused(text, format!("uses ${name}, which hawser does not expand (only $host, $scheme, $request_uri, $escaped_request_uri)"))
            })?;
            if braced && !name_start[length..].starts_with('}') {
                return Err(ValueError::refused(text, "has an unclosed ${"));
            }
            pieces.push(Piece::Var(var));
            rest = &name_start[length + usize::from(braced)..];
        }
        push_text(&mut pieces, rest);
        let template = Self(pieces);
        // Checked once with sample values: a URL that can never work is an error now, not a
        // 500 on every request.
        let sample = template.expand(RequestParts { scheme: "https", host: "example.com", request_uri: "/" });
        let host = sample.parse::<http::Uri>().ok().and_then(|uri| uri.host().map(str::to_owned));
        match host {
            Some(host) if !host.is_empty() && !host.split('.').any(str::is_empty) => Ok(template),
            _ => Err(ValueError::malformed(text, "a URL with a valid host")),
        }
    }

    /// The URL for one request.
    pub fn expand(&self, parts: RequestParts<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(Var::Host) => out.push_str(parts.host),
                Piece::Var(Var::Scheme) => out.push_str(parts.scheme),
                Piece::Var(Var::RequestUri) => out.push_str(parts.request_uri),
                Piece::Var(Var::EscapedRequestUri) => out.push_str(&escape_query_value(parts.request_uri)),
            }
        }
        out
    }
}

fn push_text(pieces: &mut Vec<Piece>, text: &str) {
    if !text.is_empty() {
        pieces.push(Piece::Text(text.to_owned()));
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so the value fits in a query.
pub fn escape_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Serialize for UrlTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let name = |var: &Var| match var {
            Var::Host => "$host",
            Var::Scheme => "$scheme",
            Var::RequestUri => "$request_uri",
            Var::EscapedRequestUri => "$escaped_request_uri",
        };
        let text: String = self
            .0
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.as_str(),
                Piece::Var(var) => name(var),
            })
            .collect();
        s.serialize_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_the_variables_oauth2_proxy_setups_use() {
        let parts = RequestParts { scheme: "https", host: "app.test", request_uri: "/a b?x=1&y" };
        let cases = [
            ("https://$host/oauth2/auth", "https://app.test/oauth2/auth"),
            (
                "https://$host/oauth2/start?rd=$escaped_request_uri",
                "https://app.test/oauth2/start?rd=%2Fa%20b%3Fx%3D1%26y",
            ),
            (
                "http://auth.svc/check?u=${scheme}://${host}$request_uri",
                "http://auth.svc/check?u=https://app.test/a b?x=1&y",
            ),
            ("http://auth.svc:8080/", "http://auth.svc:8080/"),
        ];
        for (template, expanded) in cases {
            let parsed = UrlTemplate::parse(template).unwrap_or_else(|e| panic!("{template}: {e}"));
            assert_eq!(parsed.expand(parts), expanded, "{template}");
        }
        for bad in [
            "auth.svc/check",
            "https://$remote_user/x",
            "https://$hostname/",
            "https://${host/",
            "ftp://x/",
            "https://invalid..auth.url/",
            "http:///x",
        ] {
            assert!(UrlTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
