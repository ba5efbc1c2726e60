//! Session affinity from an Ingress's annotations (ingress-nginx's `affinity: cookie` with its
//! `session-cookie-*` keys, and `hawser.dev/affinity`) and from a WebSocketRoute rule's
//! `sessionAffinity`. Every attribute is validated here, so the proxy can write the cookie as
//! it stands.

use std::collections::BTreeMap;
use std::time::Duration;

use super::values;
use crate::crd::{SameSiteSpec, SessionAffinitySpec};
use crate::model::{CookieAffinity, SameSite, ValueError};

/// ingress-nginx's default affinity cookie.
pub const NGINX_DEFAULT_COOKIE: &str = "INGRESSCOOKIE";
/// The cookie of `hawser.dev/affinity: cookie` and of a WebSocketRoute that names none.
pub const HAWSER_DEFAULT_COOKIE: &str = "hawser-affinity";

/// ingress-nginx's cookie: the default name and ingress-nginx's attributes from the
/// `session-cookie-*` keys of `nginx`. Invalid values are left out (each is reported on its
/// own key by [`nginx_attribute`]).
pub fn nginx_cookie(nginx: &BTreeMap<&str, &str>) -> CookieAffinity {
    let mut cookie = CookieAffinity::named(NGINX_DEFAULT_COOKIE);
    for (key, value) in nginx {
        let _ = nginx_attribute(&mut cookie, key, value);
    }
    cookie
}

/// Applies one `session-cookie-*` key to `cookie`. `None`: not such a key.
pub fn nginx_attribute(
    cookie: &mut CookieAffinity,
    key: &str,
    value: &str,
) -> Option<Result<(), ValueError>> {
    let seconds = |value: &str| match value.trim().parse::<u64>() {
        Ok(n) => Ok(Duration::from_secs(n)),
        Err(_) => Err(ValueError::malformed(value, "a number of seconds")),
    };
    Some(match key {
        "session-cookie-name" => cookie_name(value).map(|name| cookie.name = name),
        "session-cookie-path" => cookie_path(value).map(|path| cookie.path = Some(path)),
        "session-cookie-domain" => cookie_domain(value).map(|domain| cookie.domain = Some(domain)),
        "session-cookie-max-age" => seconds(value).map(|age| cookie.max_age = Some(age)),
        "session-cookie-expires" => seconds(value).map(|after| cookie.expires = Some(after)),
        "session-cookie-samesite" => same_site(value).map(|same_site| cookie.same_site = Some(same_site)),
        "session-cookie-conditional-samesite-none" => {
            values::boolean(value).map(|on| cookie.same_site_none_if_supported = on)
        }
        "session-cookie-secure" => values::boolean(value).map(|on| cookie.secure = on),
        "session-cookie-change-on-failure" => values::boolean(value).map(|on| cookie.change_on_failure = on),
        _ => return None,
    })
}

/// `hawser.dev/affinity`: `cookie`, `cookie:NAME`, or `none`.
pub fn hawser(value: &str) -> Result<Option<CookieAffinity>, ValueError> {
    match value.trim().split_once(':') {
        _ if value.trim() == "none" => Ok(None),
        _ if value.trim() == "cookie" => Ok(Some(CookieAffinity::named(HAWSER_DEFAULT_COOKIE))),
        Some(("cookie", name)) => Ok(Some(CookieAffinity::named(&cookie_name(name)?))),
        _ => Err(ValueError::malformed(value, "cookie, cookie:NAME or none")),
    }
}

/// A WebSocketRoute rule's `sessionAffinity`.
pub fn route(spec: &SessionAffinitySpec) -> Result<CookieAffinity, ValueError> {
    let spec = &spec.cookie;
    let name = spec.name.as_deref().map_or(Ok(HAWSER_DEFAULT_COOKIE.to_owned()), cookie_name)?;
    Ok(CookieAffinity {
        path: spec.path.as_deref().map(cookie_path).transpose()?,
        max_age: spec.max_age.as_deref().map(values::bounded_timeout).transpose()?,
        same_site: spec.same_site.map(|s| match s {
            SameSiteSpec::Strict => SameSite::Strict,
            SameSiteSpec::Lax => SameSite::Lax,
            SameSiteSpec::None => SameSite::None,
        }),
        secure: spec.secure.unwrap_or(false),
        change_on_failure: spec.change_on_failure.unwrap_or(false),
        ..CookieAffinity::named(&name)
    })
}

/// A cookie name is an RFC 9110 token (RFC 6265 §4.1.1).
fn cookie_name(value: &str) -> Result<String, ValueError> {
    let name = value.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.is_empty() && name.bytes().all(token) {
        Ok(name.to_owned())
    } else {
        Err(ValueError::malformed(value, "a cookie name (a token)"))
    }
}

/// An absolute path without `;`, spaces or control characters (RFC 6265 §4.1.1 path-value).
fn cookie_path(value: &str) -> Result<String, ValueError> {
    let path = value.trim();
    if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
        Ok(path.to_owned())
    } else {
        Err(ValueError::malformed(value, "a cookie path (starts with /, no ';' or spaces)"))
    }
}

/// A host name, optionally with a leading dot.
fn cookie_domain(value: &str) -> Result<String, ValueError> {
    let domain = value.trim();
    let name = domain.strip_prefix('.').unwrap_or(domain);
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        Ok(domain.to_owned())
    } else {
        Err(ValueError::malformed(value, "a domain name"))
    }
}

/// `None`, `Lax` or `Strict`, any case.
fn same_site(value: &str) -> Result<SameSite, ValueError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "none" => Ok(SameSite::None),
        "lax" => Ok(SameSite::Lax),
        "strict" => Ok(SameSite::Strict),
        _ => Err(ValueError::malformed(value, "None, Lax or Strict")),
    }
}
