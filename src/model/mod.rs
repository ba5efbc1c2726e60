//! The routing table: plain, immutable data that the control plane builds and the proxy reads.
//!
//! Nothing here knows about Kubernetes or hyper. A [`RoutingTable`] is built once, published
//! whole through [`crate::handle::TableHandle`], and never mutated afterwards (the round-robin
//! cursor is the one interior counter, and it does not take part in equality).

mod auth;
mod backend;
mod canary;
mod error_backend;
mod filters;
mod host;
mod namespaced_name;
mod password;
mod path;
mod policy;
mod regex_path;
mod table;
mod timeout;
mod tls;
mod value_error;

pub use auth::{BasicAuth, DigestAuth, ExternalAuth, RequestParts, UrlTemplate, escape_query_value};
pub use backend::{Backend, Endpoint};
pub use canary::{Canary, CanarySignals};
pub use error_backend::ErrorBackend;
pub use filters::{HeaderEdits, PathRewrite, RequestRedirect};
pub use host::{HostMatch, normalize_host};
pub use namespaced_name::NamespacedName;
pub use password::{HashError, PasswordHash};
pub use path::PathMatch;
pub use policy::{
    BackendProtocol, CookieAffinity, Cors, HashKey, HttpsRedirect, LoadBalancing, Policy, Rate, RateLimit,
    Rebalance, Redirect, Rewrites, SameSite,
};
pub use regex_path::RegexPath;
pub use table::{HeaderMatch, Listeners, QueryMatch, RequestFacts, Route, RoutingTable, VirtualHost};
pub use timeout::Timeout;
pub use tls::{BackendCa, Certificate, HostTls};
pub use value_error::ValueError;
