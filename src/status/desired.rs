//! The status hawser wants on the cluster's objects, computed from a build without I/O.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::IngressLoadBalancerIngress;

use crate::translate::conditions::{RouteCondition, route_conditions};
use crate::translate::{Kind, Level, ObjectRef, Report};

/// Events emitted per rebuild at most, so a flood of bad objects cannot flood the API server.
pub const MAX_EVENTS_PER_PASS: usize = 20;

/// Addresses to publish on served Ingresses: `--publish-status-address`, else the
/// `--publish-service`'s load-balancer ingress, else its cluster IPs (ingress-nginx's order).
pub fn publish_addresses(
    static_addresses: &[String],
    service: Option<&Service>,
) -> Vec<IngressLoadBalancerIngress> {
    if !static_addresses.is_empty() {
        return static_addresses.iter().map(|a| address(a)).collect();
    }
    let Some(service) = service else { return Vec::new() };
    let balancer: Vec<IngressLoadBalancerIngress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .map(|i| IngressLoadBalancerIngress {
            ip: i.ip.clone(),
            hostname: i.hostname.clone(),
            ..Default::default()
        })
        .collect();
    if !balancer.is_empty() {
        return balancer;
    }
    let spec = service.spec.as_ref();
    let ips = spec
        .and_then(|s| s.cluster_ips.clone())
        .or_else(|| spec.and_then(|s| s.cluster_ip.clone()).map(|ip| vec![ip]));
    ips.into_iter().flatten().filter(|ip| ip != "None").map(|ip| address(&ip)).collect()
}

fn address(value: &str) -> IngressLoadBalancerIngress {
    let is_ip = value.parse::<std::net::IpAddr>().is_ok();
    IngressLoadBalancerIngress {
        ip: is_ip.then(|| value.to_owned()),
        hostname: (!is_ip).then(|| value.to_owned()),
        ..Default::default()
    }
}

/// What an Ingress's `status.loadBalancer.ingress` should be. Served: the published addresses.
/// Not served: empty if it currently shows exactly our addresses (we published them before),
/// else `None` — another controller's status is left alone.
pub fn ingress_addresses(
    served: bool,
    current: &[IngressLoadBalancerIngress],
    ours: &[IngressLoadBalancerIngress],
) -> Option<Vec<IngressLoadBalancerIngress>> {
    if served {
        return (current != ours).then(|| ours.to_vec());
    }
    (!current.is_empty() && current == ours).then(Vec::new)
}

/// The conditions of every served WebSocketRoute.
pub fn route_statuses(served: &[ObjectRef], reports: &[Report]) -> BTreeMap<ObjectRef, [RouteCondition; 2]> {
    served
        .iter()
        .filter(|o| o.kind == Kind::WebSocketRoute)
        .map(|o| (o.clone(), route_conditions(o, reports)))
        .collect()
}

/// Warning Events to emit now: errors and warnings about objects (not files or the default
/// certificate) not
/// emitted already (`emitted` remembers them; a finding that disappears is forgotten, so it is
/// reported again if it comes back), at most [`MAX_EVENTS_PER_PASS`].
pub fn new_events(reports: &[Report], emitted: &mut BTreeSet<Report>) -> Vec<Report> {
    let current: BTreeSet<&Report> = reports
        .iter()
        .filter(|r| r.level() != Level::Info && !matches!(r.object.kind, Kind::Secret | Kind::File))
        .collect();
    emitted.retain(|r| current.contains(r));
    let fresh: Vec<Report> =
        current.into_iter().filter(|r| !emitted.contains(*r)).take(MAX_EVENTS_PER_PASS).cloned().collect();
    emitted.extend(fresh.iter().cloned());
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::Reason;
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus};

    fn ip(value: &str) -> IngressLoadBalancerIngress {
        IngressLoadBalancerIngress { ip: Some(value.into()), ..Default::default() }
    }

    fn service(balancer: &[&str], cluster_ip: &str) -> Service {
        let ingress = balancer
            .iter()
            .map(|ip| LoadBalancerIngress { ip: Some((*ip).into()), ..Default::default() })
            .collect();
        Service {
            spec: Some(ServiceSpec { cluster_ip: Some(cluster_ip.into()), ..Default::default() }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus { ingress: Some(ingress) }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn published_addresses_follow_ingress_nginx_order() {
        let host =
            IngressLoadBalancerIngress { hostname: Some("lb.example.com".into()), ..Default::default() };
        assert_eq!(
            publish_addresses(&["192.0.2.1".into(), "lb.example.com".into()], None),
            vec![ip("192.0.2.1"), host]
        );
        assert_eq!(
            publish_addresses(&[], Some(&service(&["203.0.113.5"], "10.0.0.9"))),
            vec![ip("203.0.113.5")]
        );
        assert_eq!(publish_addresses(&[], Some(&service(&[], "10.0.0.9"))), vec![ip("10.0.0.9")]);
        assert_eq!(publish_addresses(&[], Some(&service(&[], "None"))), vec![]);
        assert_eq!(publish_addresses(&[], None), vec![]);
    }

    #[test]
    fn ingress_status_is_written_only_when_it_changes_and_never_over_another_controller() {
        let ours = vec![ip("203.0.113.5")];
        assert_eq!(ingress_addresses(true, &[], &ours), Some(ours.clone()));
        assert_eq!(ingress_addresses(true, &ours, &ours), None);
        assert_eq!(ingress_addresses(false, &ours, &ours), Some(vec![]), "cleared when no longer served");
        assert_eq!(ingress_addresses(false, &[ip("198.51.100.1")], &ours), None, "someone else's");
        assert_eq!(ingress_addresses(false, &[], &ours), None);
    }

    fn report(name: &str, reason: Reason) -> Report {
        Report {
            object: ObjectRef::new(Kind::Ingress, "default", name),
            field: "f".into(),
            reason,
            message: "m".into(),
        }
    }

    #[test]
    fn events_are_deduplicated_rate_limited_and_reemitted_after_a_fix() {
        let mut emitted = BTreeSet::new();
        let reports =
            vec![report("a", Reason::Invalid), report("b", Reason::Honored), report("c", Reason::Conflict)];
        assert_eq!(new_events(&reports, &mut emitted).len(), 2, "info is not an event");
        assert!(new_events(&reports, &mut emitted).is_empty(), "no repeats");
        assert!(new_events(&[], &mut emitted).is_empty());
        assert_eq!(new_events(&reports, &mut emitted).len(), 2, "a finding that came back is reported again");
        let flood: Vec<Report> = (0..100).map(|i| report(&format!("x{i}"), Reason::Invalid)).collect();
        let mut emitted = BTreeSet::new();
        assert_eq!(new_events(&flood, &mut emitted).len(), MAX_EVENTS_PER_PASS);
        assert_eq!(
            new_events(&flood, &mut emitted).len(),
            MAX_EVENTS_PER_PASS,
            "the rest follow on later passes"
        );
    }
}
