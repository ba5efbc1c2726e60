//! HTTPRoute rule filters → the rule's policy: `RequestHeaderModifier`,
//! `ResponseHeaderModifier`, `RequestRedirect`, `URLRewrite` and `CORS`. `RequestMirror` is not
//! served (reported; requests go on unmirrored). An `ExtensionRef` hawser cannot follow makes
//! the rule answer 500, as the Gateway API requires of a filter that cannot be applied.

use http::{HeaderName, HeaderValue};

use super::super::report::{Reason, Reporter};
use crate::gateway_api::httproutes::{
    HttpRouteRulesFilters, HttpRouteRulesFiltersCors, HttpRouteRulesFiltersRequestRedirect,
    HttpRouteRulesFiltersRequestRedirectPathType as RedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme as Scheme, HttpRouteRulesFiltersType as Type,
    HttpRouteRulesFiltersUrlRewritePathType as RewritePathType,
};
use crate::model::{Cors, HeaderEdits, PathRewrite, Policy, RequestRedirect};

/// A filter value that cannot be applied; the rule is left out.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("{0:?} is not a valid header name")]
    HeaderName(String),
    #[error("{0:?} is not a valid header value")]
    HeaderValue(String),
    #[error("{kind} has no {field}")]
    Missing { kind: &'static str, field: &'static str },
    #[error("port {0} is out of range")]
    Port(i32),
    #[error("status {0} is not a redirect status (301, 302, 303, 307, 308)")]
    Status(i64),
    #[error("a {0} this version does not know")]
    Unknown(&'static str),
}

/// Applies the rule's `filters` to `policy`, reporting what is not served. `Err` (reported by
/// the caller) leaves the rule out.
pub fn apply(
    filters: &[HttpRouteRulesFilters],
    policy: &mut Policy,
    field: &str,
    reporter: &mut Reporter<'_>,
) -> Result<(), (String, FilterError)> {
    for (f, filter) in filters.iter().enumerate() {
        let at = |error| (format!("{field}.filters[{f}]"), error);
        let rewrites = &mut policy.rewrites;
        match filter.r#type {
            Type::RequestHeaderModifier => {
                let modifier = filter.request_header_modifier.as_ref();
                let edits = modifier.map(|m| edits(&m.set, &m.add, &m.remove)).transpose().map_err(at)?;
                rewrites.request_headers = edits.map(Box::new);
            }
            Type::ResponseHeaderModifier => {
                let modifier = filter.response_header_modifier.as_ref();
                let edits = modifier.map(|m| edits(&m.set, &m.add, &m.remove)).transpose().map_err(at)?;
                rewrites.response_headers = edits.map(Box::new);
            }
            Type::RequestRedirect => {
                let redirect = filter
                    .request_redirect
                    .as_ref()
                    .ok_or(FilterError::Missing { kind: "RequestRedirect", field: "requestRedirect" });
                rewrites.request_redirect = Some(Box::new(redirect.and_then(request_redirect).map_err(at)?));
            }
            Type::UrlRewrite => {
                let Some(rewrite) = &filter.url_rewrite else {
                    return Err(at(FilterError::Missing { kind: "URLRewrite", field: "urlRewrite" }));
                };
                if let Some(host) = &rewrite.hostname {
                    rewrites.upstream_host = Some(host.clone());
                }
                if let Some(path) = &rewrite.path {
                    let full = match path.r#type {
                        RewritePathType::ReplaceFullPath => Some(true),
                        RewritePathType::ReplacePrefixMatch => Some(false),
                        RewritePathType::Unknown => None,
                    };
                    let rewrite = path_rewrite(full, &path.replace_full_path, &path.replace_prefix_match);
                    rewrites.path = Some(rewrite.map_err(at)?);
                }
            }
            Type::Cors => policy.cors = filter.cors.as_ref().map(cors),
            Type::RequestMirror => {
                let message = "RequestMirror is not served; requests are not mirrored";
                reporter.report(Reason::Unsupported, format!("{field}.filters[{f}]"), message);
            }
            // A filter that cannot be applied must not be skipped: the rule answers 500
            // (Gateway API `HTTPRouteFilter`).
            Type::ExtensionRef | Type::Unknown => {
                let message = "this filter type is not served; the rule answers 500";
                reporter.report(Reason::Unsupported, format!("{field}.filters[{f}]"), message);
                rewrites.status = Some(500);
            }
        }
    }
    Ok(())
}

/// Header edits, with every name and value checked.
fn edits(
    set: &Option<Vec<impl NameValue>>,
    add: &Option<Vec<impl NameValue>>,
    remove: &Option<Vec<String>>,
) -> Result<HeaderEdits, FilterError> {
    let remove = remove.iter().flatten().map(|name| checked(name, "").map(|(name, _)| name));
    Ok(HeaderEdits { set: pairs(set)?, add: pairs(add)?, remove: remove.collect::<Result<_, _>>()? })
}

fn pairs(list: &Option<Vec<impl NameValue>>) -> Result<Vec<(String, String)>, FilterError> {
    list.iter().flatten().map(|p| checked(p.name(), p.value())).collect()
}

fn checked(name: &str, value: &str) -> Result<(String, String), FilterError> {
    let name = name.to_ascii_lowercase();
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| FilterError::HeaderName(name.clone()))?;
    HeaderValue::from_str(value).map_err(|_| FilterError::HeaderValue(value.to_owned()))?;
    Ok((name, value.to_owned()))
}

/// A `name`/`value` pair of a header filter (the request and response filters have one type
/// each).
trait NameValue {
    fn name(&self) -> &str;
    fn value(&self) -> &str;
}

macro_rules! name_value {
    ($($type:ty),*) => {$(
        impl NameValue for $type {
            fn name(&self) -> &str {
                &self.name
            }
            fn value(&self) -> &str {
                &self.value
            }
        }
    )*};
}

name_value!(
    crate::gateway_api::httproutes::HttpRouteRulesFiltersRequestHeaderModifierSet,
    crate::gateway_api::httproutes::HttpRouteRulesFiltersRequestHeaderModifierAdd,
    crate::gateway_api::httproutes::HttpRouteRulesFiltersResponseHeaderModifierSet,
    crate::gateway_api::httproutes::HttpRouteRulesFiltersResponseHeaderModifierAdd
);

fn request_redirect(spec: &HttpRouteRulesFiltersRequestRedirect) -> Result<RequestRedirect, FilterError> {
    let status = spec.status_code.unwrap_or(302);
    if ![301, 302, 303, 307, 308].contains(&status) {
        return Err(FilterError::Status(status));
    }
    let port = spec.port.map(|p| u16::try_from(p).map_err(|_| FilterError::Port(p))).transpose()?;
    let path = spec.path.as_ref().map(|path| {
        let full = match path.r#type {
            RedirectPathType::ReplaceFullPath => Some(true),
            RedirectPathType::ReplacePrefixMatch => Some(false),
            RedirectPathType::Unknown => None,
        };
        path_rewrite(full, &path.replace_full_path, &path.replace_prefix_match)
    });
    let path = path.transpose()?;
    let scheme = match &spec.scheme {
        None => None,
        Some(Scheme::Http) => Some("http".to_owned()),
        Some(Scheme::Https) => Some("https".to_owned()),
        Some(Scheme::Unknown) => return Err(FilterError::Unknown("scheme")),
    };
    let status = u16::try_from(status).map_err(|_| FilterError::Status(status))?;
    Ok(RequestRedirect { scheme, hostname: spec.hostname.clone(), port, path, status })
}

/// A `ReplaceFullPath` (`full`) or `ReplacePrefixMatch` path modifier; `None`: a type this
/// version does not know.
fn path_rewrite(
    full: Option<bool>,
    full_path: &Option<String>,
    prefix: &Option<String>,
) -> Result<PathRewrite, FilterError> {
    match full {
        Some(true) => Ok(PathRewrite::Full(full_path.clone().unwrap_or_default())),
        Some(false) => Ok(PathRewrite::Prefix(prefix.clone().unwrap_or_default())),
        None => Err(FilterError::Unknown("path modifier type")),
    }
}

fn cors(spec: &HttpRouteRulesFiltersCors) -> Cors {
    let joined = |list: &Option<Vec<String>>| list.as_deref().unwrap_or_default().join(", ");
    Cors {
        allow_origins: spec.allow_origins.clone().unwrap_or_default(),
        allow_methods: joined(&spec.allow_methods),
        allow_headers: joined(&spec.allow_headers),
        expose_headers: joined(&spec.expose_headers),
        allow_credentials: spec.allow_credentials.unwrap_or(false),
        max_age: spec.max_age.and_then(|age| u64::try_from(age).ok()).unwrap_or(5),
    }
}
