//! CORS answered by hawser (ingress-nginx's `enable-cors`): an `OPTIONS` request from an allowed
//! Origin is answered `204` with the route's `Access-Control-*` headers and never reaches the
//! backend; any other request from an allowed Origin gets them on the backend's answer. Requests
//! from other Origins get no CORS headers, so browsers refuse them their answers.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use super::admission::origin_allowed;
use super::body::ProxyBody;
use crate::model::Cors;

/// What CORS does with one request.
#[derive(Debug)]
pub enum CorsAnswer {
    /// A preflight: answered by hawser.
    Preflight(Response<ProxyBody>),
    /// An actual request: its answer gets the headers for this Origin.
    Decorate(HeaderValue),
}

/// `None` when the route has no CORS or the request comes from no allowed Origin.
pub fn answer(cors: Option<&Cors>, method: &Method, headers: &HeaderMap) -> Option<CorsAnswer> {
    let cors = cors?;
    let origin = headers.get(header::ORIGIN)?;
    if !origin_allowed(origin.to_str().ok()?, &cors.allow_origins) {
        return None;
    }
    if method != Method::OPTIONS {
        return Some(CorsAnswer::Decorate(origin.clone()));
    }
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    decorate(cors, origin, headers);
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(cors.max_age));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Some(CorsAnswer::Preflight(response))
}

/// Adds the route's CORS headers for `origin` to an answer. The Origin is echoed (with `Vary:
/// Origin`) unless every origin is allowed without credentials, where `*` says it.
pub fn decorate(cors: &Cors, origin: &HeaderValue, headers: &mut HeaderMap) {
    let any = cors.allow_origins.iter().any(|o| o == "*") && !cors.allow_credentials;
    let allow_origin = if any { HeaderValue::from_static("*") } else { origin.clone() };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    if !any {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if cors.allow_credentials {
        headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    let lists = [
        (header::ACCESS_CONTROL_ALLOW_METHODS, &cors.allow_methods),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, &cors.allow_headers),
        (header::ACCESS_CONTROL_EXPOSE_HEADERS, &cors.expose_headers),
    ];
    for (name, value) in lists {
        if !value.is_empty()
            && let Ok(value) = HeaderValue::from_str(value)
        {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, origin: Option<&str>) -> (Method, HeaderMap) {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).expect("origin"));
        }
        (method, headers)
    }

    #[test]
    fn preflights_from_allowed_origins_are_answered() {
        let cors = Cors { allow_origins: vec!["https://*.example.com".into()], ..Cors::default() };
        let (method, headers) = request(Method::OPTIONS, Some("https://app.example.com"));
        let Some(CorsAnswer::Preflight(response)) = answer(Some(&cors), &method, &headers) else {
            panic!("a preflight")
        };
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let h = response.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "1728000");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, PUT, POST, DELETE, PATCH, OPTIONS");
        assert!(!h.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
        for origin in [Some("https://evil.test"), Some("http://app.example.com"), None] {
            let (method, headers) = request(Method::OPTIONS, origin);
            assert!(answer(Some(&cors), &method, &headers).is_none(), "{origin:?}");
        }
        let (method, headers) = request(Method::OPTIONS, Some("https://app.example.com"));
        assert!(answer(None, &method, &headers).is_none(), "no CORS on the route");
    }

    #[test]
    fn actual_requests_are_decorated() {
        let cors = Cors { allow_credentials: false, expose_headers: "X-Total".into(), ..Cors::default() };
        let (method, headers) = request(Method::GET, Some("https://any.test"));
        let Some(CorsAnswer::Decorate(origin)) = answer(Some(&cors), &method, &headers) else {
            panic!("decorate")
        };
        let mut out = HeaderMap::new();
        decorate(&cors, &origin, &mut out);
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(out[header::ACCESS_CONTROL_EXPOSE_HEADERS], "X-Total");
        assert!(!out.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }
}
