//! Answers hawser gives itself instead of the backend's: redirects to HTTPS, a route's
//! redirect (ingress-nginx's `permanent-redirect`, `temporal-redirect`; the Gateway API's
//! `RequestRedirect`), `app-root` and a fixed status; and what a route changes in a request on
//! its way (`rewrite-target`, `upstream-vhost`, `x-forwarded-prefix`; `URLRewrite` and
//! `RequestHeaderModifier`) and in its response (`ResponseHeaderModifier`).

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};

use super::body::ProxyBody;
use crate::model::{HeaderEdits, HttpsRedirect, PathMatch, Route, VirtualHost};

static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Whether a plain-HTTP request on `route` must go to HTTPS first.
pub fn redirects_to_https(route: &Route, vhost: &VirtualHost) -> bool {
    match route.policy.https_redirect {
        HttpsRedirect::Always => true,
        HttpsRedirect::IfTls => vhost.tls.is_some(),
        HttpsRedirect::Never => false,
    }
}

/// `308 Permanent Redirect` (RFC 9110 §15.4.9: the method and body are kept, so upgrades and
/// POSTs are redirected safely) to the same host on the default HTTPS port.
pub fn https_redirect(host: &str, uri: &Uri) -> Response<ProxyBody> {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    redirect(StatusCode::PERMANENT_REDIRECT, &format!("https://{host}{target}"))
}

/// What the route answers itself, if it answers a request for `uri` on `scheme://host` (the
/// host without port): a fixed status, its redirect, or its `app-root` redirect for `/`. A
/// refused route answers nothing itself: it is refused.
pub fn route_answer(route: &Route, uri: &Uri, (scheme, host): (&str, &str)) -> Option<Response<ProxyBody>> {
    let rewrites = &route.policy.rewrites;
    if route.policy.refused {
        return None;
    }
    if let Some(status) = rewrites.status {
        let mut response = Response::new(ProxyBody::empty());
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Some(response);
    }
    if let Some(to) = &rewrites.redirect {
        let status = StatusCode::from_u16(to.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
        return Some(redirect(status, &to.location));
    }
    if let Some(to) = &rewrites.request_redirect {
        let status = StatusCode::from_u16(to.status).unwrap_or(StatusCode::FOUND);
        let location = to.location((scheme, host), (uri.path(), uri.query()), &route.path);
        return Some(redirect(status, &location));
    }
    let root = rewrites.app_root.as_deref().filter(|_| uri.path() == "/")?;
    Some(redirect(StatusCode::FOUND, root))
}

/// What `route` changes in a request for its backend: the path (`rewrite-target`, from the
/// route's regular expression; the query stays), the `Host` (`upstream-vhost`) and
/// `X-Forwarded-Prefix`.
pub fn rewrite_request<B>(route: &Route, req: &mut Request<B>) {
    if let Some(uri) = rewritten_uri(route, req.uri()) {
        *req.uri_mut() = uri;
    }
    let rewrites = &route.policy.rewrites;
    let headers = req.headers_mut();
    if let Some(edits) = &rewrites.request_headers {
        edit_headers(edits, headers);
    }
    if let Some(host) = rewrites.upstream_host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(header::HOST, host);
    }
    if let Some(prefix) = rewrites.forwarded_prefix.as_deref().and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert(&X_FORWARDED_PREFIX, prefix);
    }
}

/// Applies a route's response header edits.
pub fn rewrite_response<B>(route: &Route, response: &mut Response<B>) {
    if let Some(edits) = &route.policy.rewrites.response_headers {
        edit_headers(edits, response.headers_mut());
    }
}

/// Removes, sets, then adds headers. (The translation checked every name and value.)
fn edit_headers(edits: &HeaderEdits, headers: &mut HeaderMap) {
    let parse = |(name, value): &(String, String)| {
        Some((HeaderName::from_bytes(name.as_bytes()).ok()?, HeaderValue::from_str(value).ok()?))
    };
    for name in &edits.remove {
        headers.remove(name.as_str());
    }
    for (name, value) in edits.set.iter().filter_map(parse) {
        headers.insert(name, value);
    }
    for (name, value) in edits.add.iter().filter_map(parse) {
        headers.append(name, value);
    }
}

/// The request target `rewrite-target` makes of `uri` on a regular-expression route, or a
/// Gateway API `URLRewrite` path makes of it on any route.
fn rewritten_uri(route: &Route, uri: &Uri) -> Option<Uri> {
    let mut path =
        match (&route.policy.rewrites.path, route.policy.rewrites.rewrite_target.as_deref(), &route.path) {
            (Some(rewrite), _, matched) => rewrite.apply(uri.path(), matched),
            (None, Some(target), PathMatch::Regex(regex)) => regex.rewrite(uri.path(), target)?,
            _ => return None,
        };
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    if let Some(query) = uri.query() {
        path.push('?');
        path.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path.parse().ok()?);
    Uri::from_parts(parts).ok()
}

fn redirect(status: StatusCode, location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = status;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
