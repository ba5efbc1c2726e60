//! Writes the desired status to the cluster, only on the leader and only where it differs from
//! what the objects already show. Status goes through JSON merge patches on the `status`
//! subresource (not server-side apply: hawser owns these few fields outright and the patches
//! stay small and readable); Events through kube-runtime's recorder (events.k8s.io/v1), which
//! also folds repeats into series.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef as StoreRef;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::condition::{condition, truncate};
use super::desired::{ingress_addresses, new_events, publish_addresses, route_statuses};
use super::gateway;
use crate::crd::{WebSocketPolicy, WebSocketRoute};
use crate::gateway_api::{BackendTlsPolicy, Gateway, GatewayClass, HttpRoute};
use crate::model::NamespacedName;
use crate::source::cluster::ClusterInputs;
use crate::translate::{BuildOutcome, Facts, Kind, ObjectRef, Report};

/// Where the published address comes from.
#[derive(Clone, Debug, Default)]
pub struct Publish {
    /// `--publish-service NAMESPACE/NAME`.
    pub service: Option<crate::model::NamespacedName>,
    /// `--publish-status-address`, comma-separated IPs or host names.
    pub addresses: Vec<String>,
}

/// Applies status for the leader.
pub struct StatusWriter {
    client: Client,
    publish: Publish,
    /// The GatewayClass `controllerName` hawser serves.
    gateway_controller: String,
    recorder: Recorder,
    emitted: BTreeSet<Report>,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter").field("publish", &self.publish).finish_non_exhaustive()
    }
}

impl StatusWriter {
    /// A writer for `client`, reporting Events as `hawser` from `instance`, writing Gateway API
    /// status as `gateway_controller`.
    pub fn new(client: Client, publish: Publish, instance: String, gateway_controller: String) -> Self {
        let reporter = Reporter { controller: "hawser".into(), instance: Some(instance) };
        let recorder = Recorder::new(client.clone(), reporter);
        Self { recorder, client, publish, gateway_controller, emitted: BTreeSet::new() }
    }

    /// Brings the cluster in line with `outcome`; failures are logged and retried next time.
    pub async fn apply(&mut self, outcome: &BuildOutcome, inputs: &ClusterInputs) {
        self.ingress_status(outcome, inputs).await;
        self.route_status(outcome, inputs).await;
        self.gateway_api_status(outcome, inputs).await;
        self.events(outcome, inputs).await;
    }

    async fn ingress_status(&self, outcome: &BuildOutcome, inputs: &ClusterInputs) {
        let service = self.published_service().await;
        let ours = publish_addresses(&self.publish.addresses, service.as_ref());
        for ingress in inputs.ingresses().state() {
            let namespace = ingress.namespace().unwrap_or_default();
            let served =
                outcome.served.contains(&ObjectRef::new(Kind::Ingress, &namespace, &ingress.name_any()));
            let current = ingress
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.clone())
                .unwrap_or_default();
            let Some(wanted) = ingress_addresses(served, &current, &ours) else { continue };
            let api: Api<Ingress> = Api::namespaced(self.client.clone(), &namespace);
            let patch = json!({"status": {"loadBalancer": {"ingress": wanted}}});
            if let Err(error) =
                api.patch_status(&ingress.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await
            {
                tracing::warn!(ingress = %ingress.name_any(), %namespace, %error, "writing Ingress status failed");
            }
        }
    }

    /// The `--publish-service`, read directly: it lives in hawser's own namespace, which may be
    /// outside `--watch-namespace`.
    async fn published_service(&self) -> Option<Service> {
        let crate::model::NamespacedName { namespace, name } = self.publish.service.as_ref()?;
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(service) => service,
            Err(error) => {
                tracing::warn!(service = %name, %namespace, %error, "reading the published Service failed");
                None
            }
        }
    }

    async fn route_status(&self, outcome: &BuildOutcome, inputs: &ClusterInputs) {
        let Some(routes) = inputs.routes() else { return };
        for (object, conditions) in route_statuses(&outcome.served, &outcome.reports) {
            let Some(route) = routes.get(&StoreRef::new(&object.name).within(&object.namespace)) else {
                continue;
            };
            let generation = route.metadata.generation;
            let current = route.status.clone().unwrap_or_default();
            let wanted =
                conditions.iter().map(|c| condition(c, &current.conditions, generation)).collect::<Vec<_>>();
            if current.observed_generation == generation && same_conditions(&current.conditions, &wanted) {
                continue;
            }
            let api: Api<WebSocketRoute> = Api::namespaced(self.client.clone(), &object.namespace);
            let patch = json!({"status": {"observedGeneration": generation, "conditions": wanted}});
            if let Err(error) =
                api.patch_status(&object.name, &PatchParams::default(), &Patch::Merge(&patch)).await
            {
                tracing::warn!(route = %object, %error, "writing WebSocketRoute status failed");
            }
        }
    }

    /// GatewayClass, Gateway, HTTPRoute and WebSocketPolicy status, written where it differs
    /// from the current.
    async fn gateway_api_status(&self, outcome: &BuildOutcome, inputs: &ClusterInputs) {
        let Some(stores) = inputs.gateway_api() else { return };
        let controller = self.gateway_controller.as_str();
        for class in stores.classes.state().iter().filter(|c| c.spec.controller_name == controller) {
            let wanted = gateway::gateway_class_status(class);
            let api: Api<GatewayClass> = Api::all(self.client.clone());
            self.patch_status(&api, &class.name_any(), class.status.as_ref(), wanted).await;
        }
        let service = self.published_service().await;
        let addresses = publish_addresses(&self.publish.addresses, service.as_ref());
        let attached = gateway::attached_routes(&outcome.facts);
        let policies = inputs.policies();
        for (object, facts) in &outcome.facts {
            let (name, namespace) = (object.name.as_str(), object.namespace.as_str());
            match &**facts {
                Facts::Gateway(facts) => {
                    let Some(gateway) = stores.gateways.get(&StoreRef::new(name).within(namespace)) else {
                        continue;
                    };
                    let listeners =
                        attached.get(&NamespacedName::new(namespace, name)).cloned().unwrap_or_default();
                    let wanted =
                        gateway::gateway_status(&gateway, facts, &listeners, &addresses, &outcome.reports);
                    let api: Api<Gateway> = Api::namespaced(self.client.clone(), namespace);
                    self.patch_status(&api, name, gateway.status.as_ref(), wanted).await;
                }
                Facts::Route(facts) => {
                    let Some(route) = stores.routes.get(&StoreRef::new(name).within(namespace)) else {
                        continue;
                    };
                    let wanted = gateway::route_parents(&route, facts, controller);
                    let api: Api<HttpRoute> = Api::namespaced(self.client.clone(), namespace);
                    self.patch_status(&api, name, route.status.as_ref(), wanted).await;
                }
                Facts::BackendTls(facts) => {
                    let found = stores
                        .backend_tls
                        .as_ref()
                        .and_then(|(p, _)| p.get(&StoreRef::new(name).within(namespace)));
                    let Some(policy) = found else { continue };
                    let Some(wanted) = gateway::backend_tls_ancestors(&policy, facts, controller) else {
                        continue;
                    };
                    let api: Api<BackendTlsPolicy> = Api::namespaced(self.client.clone(), namespace);
                    self.patch_status(&api, name, policy.status.as_ref(), wanted).await;
                }
                Facts::Policy(facts) => {
                    let found = policies.as_ref().and_then(|p| p.get(&StoreRef::new(name).within(namespace)));
                    let Some(policy) = found else { continue };
                    let wanted = gateway::policy_ancestors(&policy, facts, controller);
                    let api: Api<WebSocketPolicy> = Api::namespaced(self.client.clone(), namespace);
                    self.patch_status(&api, name, policy.status.as_ref(), wanted).await;
                }
            }
        }
        // Routes hawser stopped serving keep no entry of hawser's.
        for route in stores.routes.state() {
            let object =
                ObjectRef::new(Kind::HttpRoute, &route.namespace().unwrap_or_default(), &route.name_any());
            if outcome.facts.contains_key(&object) {
                continue;
            }
            if let Some(wanted) = gateway::stale_route_parents(&route, controller) {
                let api: Api<HttpRoute> = Api::namespaced(self.client.clone(), &object.namespace);
                self.patch_status(&api, &object.name, route.status.as_ref(), wanted).await;
            }
        }
    }

    /// Merge-patches `status` of `name` to `wanted` unless it already is that.
    async fn patch_status<K, S>(
        &self,
        api: &Api<K>,
        name: &str,
        current: Option<&S>,
        wanted: serde_json::Value,
    ) where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        S: serde::Serialize,
    {
        let current = current.and_then(|s| serde_json::to_value(s).ok()).unwrap_or_default();
        if same_json(&current, &wanted) {
            return;
        }
        let patch = json!({"status": wanted});
        if let Err(error) = api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::warn!(kind = %K::kind(&()), %name, %error, "writing status failed");
        }
    }

    async fn events(&mut self, outcome: &BuildOutcome, inputs: &ClusterInputs) {
        for report in new_events(&outcome.reports, &mut self.emitted) {
            let reference = match report.object.kind {
                Kind::Ingress => inputs
                    .ingresses()
                    .get(&StoreRef::new(&report.object.name).within(&report.object.namespace))
                    .map(|o| o.object_ref(&())),
                Kind::WebSocketRoute => inputs
                    .routes()
                    .and_then(|r| r.get(&StoreRef::new(&report.object.name).within(&report.object.namespace)))
                    .map(|o| o.object_ref(&())),
                Kind::WebSocketPolicy => inputs
                    .policies()
                    .and_then(|r| r.get(&StoreRef::new(&report.object.name).within(&report.object.namespace)))
                    .map(|o| o.object_ref(&())),
                Kind::Gateway => inputs
                    .gateway_api()
                    .and_then(|s| {
                        s.gateways.get(&StoreRef::new(&report.object.name).within(&report.object.namespace))
                    })
                    .map(|o| o.object_ref(&())),
                Kind::HttpRoute => inputs
                    .gateway_api()
                    .and_then(|s| {
                        s.routes.get(&StoreRef::new(&report.object.name).within(&report.object.namespace))
                    })
                    .map(|o| o.object_ref(&())),
                Kind::BackendTlsPolicy => inputs
                    .gateway_api()
                    .and_then(|s| s.backend_tls)
                    .and_then(|(p, _)| {
                        p.get(&StoreRef::new(&report.object.name).within(&report.object.namespace))
                    })
                    .map(|o| o.object_ref(&())),
                Kind::Secret | Kind::File => None,
            };
            let Some(reference) = reference else { continue };
            let event = Event {
                type_: EventType::Warning,
                reason: format!("{:?}", report.reason),
                note: Some(truncate(&format!("{}: {}", report.field, report.message), 1000)),
                action: "Build".into(),
                secondary: None,
            };
            if let Err(error) = self.recorder.publish(&event, &reference).await {
                tracing::warn!(object = %report.object, %error, "publishing an Event failed");
                self.emitted.remove(&report);
            }
        }
    }
}

/// Whether `current` already shows every field of `wanted` (fields it has beyond them, such
/// as ones another writer owns, do not count).
fn same_json(current: &serde_json::Value, wanted: &serde_json::Value) -> bool {
    match (current, wanted) {
        (serde_json::Value::Object(current), serde_json::Value::Object(wanted)) => {
            wanted.iter().all(|(key, value)| current.get(key).is_some_and(|c| same_json(c, value)))
        }
        (serde_json::Value::Array(current), serde_json::Value::Array(wanted)) => {
            current.len() == wanted.len() && current.iter().zip(wanted).all(|(c, w)| same_json(c, w))
        }
        _ => current == wanted,
    }
}

fn same_conditions(current: &[Condition], wanted: &[Condition]) -> bool {
    current.len() == wanted.len()
        && wanted.iter().all(|w| {
            current.iter().any(|c| {
                c.type_ == w.type_
                    && c.status == w.status
                    && c.reason == w.reason
                    && c.message == w.message
                    && c.observed_generation == w.observed_generation
            })
        })
}
