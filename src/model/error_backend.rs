//! ingress-nginx's `default-backend` and `custom-http-errors`: a Service of the Ingress's
//! namespace that serves the route when the route's own Service has no ready endpoint, and
//! answers instead of it when the answer's status is one of the listed codes.

use serde::Serialize;

use super::Backend;

/// Where a route's error pages come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorBackend {
    /// The endpoints of the `default-backend` Service (its first port).
    pub backend: Backend,
    /// Statuses (400–599) the error backend answers instead (`custom-http-errors`), whether the
    /// backend sent them or hawser did. Empty: only the no-endpoint fallback.
    pub codes: Vec<u16>,
    /// Told to the error backend as `X-Namespace`, `X-Ingress-Name` and `X-Service-Name` (the
    /// route's own Service), as ingress-nginx does.
    pub namespace: String,
    pub ingress: String,
    pub service: String,
}
