//! Every way a proxied request can fail, who caused it, and the ONE function that turns a
//! failure into the response the client sees.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

/// Any error, boxed: a backend exchange fails in hyper's client or in hawser's own.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Seconds a client is asked to wait after a connection budget said no.
const RETRY_AFTER_SECONDS: &str = "5";

/// Who a failure is attributed to, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Culprit {
    /// The request or the client's address broke a rule.
    Client,
    /// The backend refused, failed or was too slow.
    Backend,
    /// The routing table has nothing for the request.
    Config,
}

impl Culprit {
    /// Its name, for the access log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "Client",
            Self::Backend => "Backend",
            Self::Config => "Config",
        }
    }
}

/// A request hawser did not forward, or a backend exchange that failed before a response head.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches this host and path")]
    NoRoute,
    #[error("route {route} has no ready endpoint")]
    NoEndpoint { route: String },
    #[error("could not connect to {endpoint}: {source}")]
    Connect {
        endpoint: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {endpoint} took longer than {timeout:?}")]
    ConnectTimeout { endpoint: SocketAddr, timeout: Duration },
    #[error("backend {endpoint} failed before a response: {source}")]
    Backend {
        endpoint: SocketAddr,
        #[source]
        source: BoxError,
    },
    #[error("backend did not answer within {timeout:?}")]
    HandshakeTimeout { timeout: Duration },
    #[error("the client sent no part of the request body for {timeout:?}")]
    RequestBodyTimeout { timeout: Duration },
    #[error("origin {origin:?} is not allowed on this route")]
    OriginForbidden { origin: String },
    #[error("client address {ip} is outside the route's source ranges")]
    SourceForbidden { ip: IpAddr },
    #[error("the route's connection limit of {limit} is reached")]
    RouteBudget { limit: u32 },
    #[error("this client's connection limit of {limit} on the route is reached")]
    ClientBudget { limit: u32 },
    #[error("malformed request: {reason}")]
    BadRequest { reason: &'static str },
    #[error("malformed request: {0}")]
    BadPath(#[from] super::path::PathError),
    #[error("the route's object asks for a restriction hawser does not enforce")]
    Refused,
    #[error("CONNECT is not served (only RFC 8441's extended CONNECT for websocket)")]
    MethodNotAllowed,
    #[error("backend {endpoint} switched to a protocol this route does not tunnel")]
    UnwantedUpgrade { endpoint: SocketAddr },
    #[error("{limit} upgrade handshakes are already waiting for their backends")]
    PendingHandshakes { limit: usize },
    #[error("the request body is larger than the route's limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("this client is over the route's request rate")]
    RateLimited { status: StatusCode },
    #[error("the request head is larger than --max-header-bytes")]
    HeadersTooLarge,
    #[error("backend {endpoint} answered the WebSocket handshake with a wrong Sec-WebSocket-Accept")]
    BadHandshake { endpoint: SocketAddr },
    /// `401` with the challenge, or a `302` to the sign-in page when the route has one.
    #[error("the request carries no valid credentials")]
    Unauthorized { challenge: Option<HeaderValue>, signin: Option<HeaderValue> },
    #[error("the authorisation service refused the request")]
    AuthForbidden,
    #[error("authorisation failed: {reason}")]
    AuthFailed { reason: String },
    #[error("route {route} sent this request's share to a backend that does not resolve")]
    InvalidBackend { route: String },
}

impl ProxyError {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::NoEndpoint { .. }
            | Self::RouteBudget { .. }
            | Self::ClientBudget { .. }
            | Self::PendingHandshakes { .. }
            | Self::Refused => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect { .. }
            | Self::Backend { .. }
            | Self::UnwantedUpgrade { .. }
            | Self::BadHandshake { .. } => StatusCode::BAD_GATEWAY,
            Self::ConnectTimeout { .. } | Self::HandshakeTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::OriginForbidden { .. } | Self::SourceForbidden { .. } => StatusCode::FORBIDDEN,
            Self::BadRequest { .. } | Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestBodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { status } => *status,
            Self::Unauthorized { signin: Some(_), .. } => StatusCode::FOUND,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::AuthForbidden => StatusCode::FORBIDDEN,
            Self::AuthFailed { .. } | Self::InvalidBackend { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Who caused it.
    pub fn culprit(&self) -> Culprit {
        match self {
            Self::NoRoute | Self::NoEndpoint { .. } | Self::Refused | Self::InvalidBackend { .. } => {
                Culprit::Config
            }
            Self::Connect { .. }
            | Self::UnwantedUpgrade { .. }
            | Self::BadHandshake { .. }
            | Self::ConnectTimeout { .. }
            | Self::Backend { .. }
            | Self::HandshakeTimeout { .. }
            | Self::AuthFailed { .. } => Culprit::Backend,
            Self::OriginForbidden { .. }
            | Self::SourceForbidden { .. }
            | Self::RouteBudget { .. }
            | Self::ClientBudget { .. }
            | Self::PendingHandshakes { .. }
            | Self::BadRequest { .. }
            | Self::MethodNotAllowed
            | Self::RequestBodyTimeout { .. }
            | Self::HeadersTooLarge
            | Self::PayloadTooLarge { .. }
            | Self::RateLimited { .. }
            | Self::Unauthorized { .. }
            | Self::AuthForbidden
            | Self::BadPath(_) => Culprit::Client,
        }
    }

    /// A stable metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::NoEndpoint { .. } => "no_endpoint",
            Self::Connect { .. } => "connect_failed",
            Self::ConnectTimeout { .. } => "connect_timeout",
            Self::Backend { .. } => "backend_failed",
            Self::HandshakeTimeout { .. } => "handshake_timeout",
            Self::OriginForbidden { .. } => "origin_forbidden",
            Self::SourceForbidden { .. } => "source_forbidden",
            Self::RouteBudget { .. } => "route_budget",
            Self::ClientBudget { .. } => "client_budget",
            Self::BadRequest { .. } | Self::BadPath(_) => "bad_request",
            Self::Refused => "refused",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnwantedUpgrade { .. } => "unwanted_upgrade",
            Self::BadHandshake { .. } => "bad_handshake",
            Self::RequestBodyTimeout { .. } => "request_body_timeout",
            Self::HeadersTooLarge => "headers_too_large",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::PendingHandshakes { .. } => "pending_handshakes",
            Self::Unauthorized { .. } => "unauthorized",
            Self::AuthForbidden => "auth_forbidden",
            Self::AuthFailed { .. } => "auth_failed",
            Self::InvalidBackend { .. } => "invalid_backend",
        }
    }

    /// The one place a proxy failure becomes a response: the status line as a short
    /// plain-text body (the details, which name addresses and objects, only with `verbose`,
    /// for development; they are in the access log and metrics either way), and `Retry-After`
    /// where waiting helps.
    pub fn into_response(&self, verbose: bool) -> Response<String> {
        let status = self.status();
        let reason = status.canonical_reason().unwrap_or("");
        let body = if verbose {
            format!("{} {reason}: {self}\n", status.as_u16())
        } else {
            format!("{} {reason}\n", status.as_u16())
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(
            self,
            Self::RouteBudget { .. }
                | Self::ClientBudget { .. }
                | Self::NoEndpoint { .. }
                | Self::PendingHandshakes { .. }
        ) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        if let Self::Unauthorized { challenge, signin } = self {
            match (signin, challenge) {
                (Some(location), _) => headers.insert(header::LOCATION, location.clone()),
                (None, Some(challenge)) => headers.insert(header::WWW_AUTHENTICATE, challenge.clone()),
                (None, None) => None,
            };
        }
        if matches!(self, Self::MethodNotAllowed) {
            headers.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_retry_after() {
        let cases: [(ProxyError, u16, bool); 8] = [
            (ProxyError::Refused, 503, false),
            (ProxyError::BadPath(super::super::path::PathError::EncodedSlash), 400, false),
            (ProxyError::NoRoute, 404, false),
            (ProxyError::NoEndpoint { route: "r".into() }, 503, true),
            (ProxyError::HandshakeTimeout { timeout: Duration::from_secs(1) }, 504, false),
            (ProxyError::OriginForbidden { origin: "https://evil".into() }, 403, false),
            (ProxyError::ClientBudget { limit: 1 }, 503, true),
            (ProxyError::BadRequest { reason: "x" }, 400, false),
        ];
        for (error, status, retry_after) in cases {
            let response = error.into_response(false);
            assert_eq!(response.status().as_u16(), status, "{error}");
            assert_eq!(response.headers().contains_key(header::RETRY_AFTER), retry_after, "{error}");
        }
    }

    #[test]
    fn bodies_name_no_address_or_object_unless_verbose() {
        let error = ProxyError::Connect {
            endpoint: ([10, 1, 2, 3], 8080).into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        let no_endpoint = ProxyError::NoEndpoint { route: "ingress/bank/web/0/0".into() };
        let body = |verbose| no_endpoint.into_response(verbose).into_body();
        assert_eq!(body(false), "503 Service Unavailable\n");
        assert!(body(true).contains("ingress/bank/web"));
        assert_eq!(error.into_response(false).into_body(), "502 Bad Gateway\n");
    }
}
