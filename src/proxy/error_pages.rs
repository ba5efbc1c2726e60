//! A route's error backend (ingress-nginx's `default-backend` + `custom-http-errors`): it takes
//! the route's requests while the route's own Service has no ready endpoint, and when an answer
//! (the backend's or hawser's own) has one of the listed statuses, the client gets the error
//! backend's answer to a `GET` of the same URI with the `X-Code` headers ingress-nginx sends.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};

use super::Proxy;
use super::body::ProxyBody;
use super::error::ProxyError;
use super::headers::Client;
use super::request_body::RequestBody;
use super::service::ClientRequest;
use super::target::REQUEST_ID;
use crate::model::{ErrorBackend, Route};

static X_CODE: HeaderName = HeaderName::from_static("x-code");
static X_FORMAT: HeaderName = HeaderName::from_static("x-format");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_NAMESPACE: HeaderName = HeaderName::from_static("x-namespace");
static X_INGRESS_NAME: HeaderName = HeaderName::from_static("x-ingress-name");
static X_SERVICE_NAME: HeaderName = HeaderName::from_static("x-service-name");

/// What the error page request repeats of the client's.
struct Original {
    uri: Uri,
    host: Option<HeaderValue>,
    accept: Option<HeaderValue>,
    id: Option<HeaderValue>,
}

impl Proxy {
    /// A plain request on a route with an error backend.
    pub(super) async fn with_error_pages(
        self: &Arc<Self>,
        route: &Arc<Route>,
        errors: &ErrorBackend,
        req: ClientRequest,
        client: &Client,
    ) -> Result<(Response<ProxyBody>, SocketAddr), ProxyError> {
        let headers = req.headers();
        let original = Original {
            uri: req.uri().clone(),
            host: headers.get(header::HOST).cloned(),
            accept: headers.get(header::ACCEPT).cloned(),
            id: headers.get(&REQUEST_ID).cloned(),
        };
        let fallback = || {
            Arc::new(Route {
                backend: errors.backend.clone(),
                canary: None,
                error_backend: None,
                ..(**route).clone()
            })
        };
        if route.backend.endpoints().is_empty() {
            // The default backend serves the request itself, told why as for an error page.
            let mut req = req;
            tell(req.headers_mut(), errors, StatusCode::SERVICE_UNAVAILABLE, &original);
            return self.plain(&fallback(), req, client).await;
        }
        let answer = self.plain(route, req, client).await;
        let status = match &answer {
            Ok((response, _)) => response.status(),
            Err(error) => error.status(),
        };
        if !errors.codes.contains(&status.as_u16()) {
            return answer;
        }
        let page = error_page_request(errors, status, original);
        match self.exchange(&fallback(), Box::new(page), None, client).await {
            Ok(page) => Ok(page),
            Err(error) => {
                tracing::debug!(route = %route.name, %error, "the error backend failed; the original answer stands");
                answer
            }
        }
    }
}

/// `GET` of the original URI, with what ingress-nginx tells its custom error backends.
fn error_page_request(errors: &ErrorBackend, status: StatusCode, original: Original) -> Request<RequestBody> {
    let mut req = Request::new(RequestBody::empty());
    *req.uri_mut() =
        original.uri.path_and_query().map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
    tell(req.headers_mut(), errors, status, &original);
    if let Some(host) = original.host {
        req.headers_mut().insert(header::HOST, host);
    }
    req
}

/// The `X-Code` family of headers: the status, the client's `Accept`, the original URI, and the
/// route's namespace, Ingress and Service.
fn tell(headers: &mut HeaderMap, errors: &ErrorBackend, status: StatusCode, original: &Original) {
    let text = |value: &str| HeaderValue::from_str(value).ok();
    let values = [
        (&X_CODE, text(status.as_str())),
        (&X_FORMAT, original.accept.clone().or_else(|| text("text/html"))),
        (&X_ORIGINAL_URI, text(&original.uri.to_string())),
        (&X_NAMESPACE, text(&errors.namespace)),
        (&X_INGRESS_NAME, text(&errors.ingress)),
        (&X_SERVICE_NAME, text(&errors.service)),
        (&REQUEST_ID, original.id.clone()),
    ];
    for (name, value) in values {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
}
