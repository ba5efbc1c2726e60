//! Service references → endpoint addresses: the Service port (by number or name), then the
//! Service's EndpointSlices (`kubernetes.io/service-name`), the slice port of the same name,
//! and every address whose `ready` condition is not false. Serving-but-terminating endpoints
//! take no new connections; connections they already have are never touched by a rebuild.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::ServicePort;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::lookup::Lookup;
use super::report::{Reason, Reporter};
use crate::model::Endpoint;

/// Weight units shared out over one backend's endpoints, so that a Service of weight 3 with
/// two endpoints and one of weight 1 with one endpoint split 3:1 (the table reduces the numbers).
const WEIGHT_SCALE: u32 = 1000;

/// A Service port as an Ingress or WebSocketRoute names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    /// `port.number` / an integer.
    Number(i32),
    /// `port.name` / a string.
    Name(String),
}

impl From<&IntOrString> for PortRef {
    fn from(port: &IntOrString) -> Self {
        match port {
            IntOrString::Int(number) => Self::Number(*number),
            IntOrString::String(name) => Self::Name(name.clone()),
        }
    }
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(number) => write!(f, "{number}"),
            Self::Name(name) => write!(f, "{name:?}"),
        }
    }
}

/// The ready addresses of `service` on `port`, reporting every reason there are none. With
/// `upstream` (ingress-nginx's `service-upstream`), the Service's cluster IP and port instead,
/// so kube-proxy picks the endpoint.
pub fn resolve(
    snapshot: &Lookup<'_>,
    namespace: &str,
    (service, port): (&str, &PortRef),
    upstream: bool,
    field: &str,
    reporter: &mut Reporter<'_>,
) -> Vec<SocketAddr> {
    let Some(svc) = snapshot.service(namespace, service) else {
        let message = format!("Service {namespace}/{service} not found; requests get 503 until it exists");
        reporter.report(Reason::UnresolvedRef, field, message);
        return Vec::new();
    };
    let spec = svc.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        reporter.report(
            Reason::Unsupported,
            field,
            format!("Service {service} is ExternalName, which hawser does not route to"),
        );
        return Vec::new();
    }
    let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let Some(service_port) = ports.iter().find(|p| matches_port(p, port)) else {
        let known: Vec<String> =
            ports.iter().map(|p| format!("{}({})", p.name.as_deref().unwrap_or(""), p.port)).collect();
        let message = format!("Service {service} has no port {port} (it has: {})", known.join(", "));
        reporter.report(Reason::UnresolvedRef, field, message);
        return Vec::new();
    };
    if let Some(target) = upstream.then(|| cluster_ip(spec, service_port)).flatten() {
        return vec![target];
    }
    if upstream {
        let message = format!(
            "service-upstream: Service {service} has no cluster IP (headless); its endpoints are used"
        );
        reporter.report(Reason::Unsupported, field, message);
    }
    let addrs: Vec<SocketAddr> = snapshot
        .endpoint_slices(namespace, service)
        .iter()
        .flat_map(|slice| ready_addresses(slice, service_port.name.as_deref().unwrap_or("")))
        .collect();
    if addrs.is_empty() {
        let message = format!(
            "Service {service} has no ready endpoint for port {port}; requests get 503 until one is ready"
        );
        reporter.report(Reason::NoEndpoints, field, message);
    }
    addrs
}

fn cluster_ip(
    spec: Option<&k8s_openapi::api::core::v1::ServiceSpec>,
    port: &ServicePort,
) -> Option<SocketAddr> {
    let ip: IpAddr = spec?.cluster_ip.as_deref()?.parse().ok()?;
    Some(SocketAddr::new(ip, u16::try_from(port.port).ok()?))
}

fn matches_port(service_port: &ServicePort, port: &PortRef) -> bool {
    match port {
        PortRef::Number(number) => service_port.port == *number,
        PortRef::Name(name) => service_port.name.as_deref() == Some(name.as_str()),
    }
}

/// Addresses of `slice` on the slice port named like the Service port (unnamed matches unnamed).
fn ready_addresses(slice: &EndpointSlice, port_name: &str) -> Vec<SocketAddr> {
    let Some(port) = slice
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|p| p.name.as_deref().unwrap_or("") == port_name)
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok())
    else {
        return Vec::new();
    };
    slice
        .endpoints
        .iter()
        // The API says an unset `ready` means ready.
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// The cluster DNS name of a Service, sent as SNI to HTTPS backends.
pub fn dns_name(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc")
}

/// A Service's weight in the units [`weighted`] shares out (what a rule's failing share is
/// counted in).
pub fn weight_units(weight: u32) -> u32 {
    weight.saturating_mul(WEIGHT_SCALE)
}

/// Endpoints of several weighted groups (one group per Service of a rule): each group's weight
/// is shared evenly among its addresses.
pub fn weighted(groups: &[(u32, Vec<SocketAddr>)]) -> Vec<Endpoint> {
    groups
        .iter()
        .filter(|(_, addrs)| !addrs.is_empty())
        .flat_map(|(weight, addrs)| {
            let share = u32::try_from(addrs.len()).unwrap_or(u32::MAX);
            let each = if *weight == 0 { 0 } else { (weight.saturating_mul(WEIGHT_SCALE) / share).max(1) };
            addrs.iter().map(move |&addr| Endpoint { addr, weight: each })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_shared_within_a_group() {
        let a = [SocketAddr::from(([10, 0, 0, 1], 80)), SocketAddr::from(([10, 0, 0, 2], 80))];
        let b = [SocketAddr::from(([10, 0, 1, 1], 80))];
        let endpoints = weighted(&[(3, a.to_vec()), (1, b.to_vec()), (5, vec![])]);
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        assert_eq!(weights, vec![1500, 1500, 1000]);
        assert_eq!(weighted(&[(0, b.to_vec())])[0].weight, 0);
    }
}
