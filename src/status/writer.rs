//! Writes the desired status to the cluster, only on the leader and only where it differs from
//! what the objects already show. Status goes through JSON merge patches on the `status`
//! subresource (not server-side apply: hawser owns these few fields outright and the patches
//! stay small and readable); Events through kube-runtime's recorder (events.k8s.io/v1), which
//! also folds repeats into series.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef as StoreRef;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::desired::{ingress_addresses, new_events, publish_addresses, route_statuses};
use crate::crd::WebSocketRoute;
use crate::source::cluster::ClusterInputs;
use crate::translate::conditions::RouteCondition;
use crate::translate::{BuildOutcome, Kind, ObjectRef, Report};

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
    recorder: Recorder,
    emitted: BTreeSet<Report>,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter").field("publish", &self.publish).finish_non_exhaustive()
    }
}

impl StatusWriter {
    /// A writer for `client`, reporting Events as `hawser` from `instance`.
    pub fn new(client: Client, publish: Publish, instance: String) -> Self {
        let reporter = Reporter { controller: "hawser".into(), instance: Some(instance) };
        Self { recorder: Recorder::new(client.clone(), reporter), client, publish, emitted: BTreeSet::new() }
    }

    /// Brings the cluster in line with `outcome`; failures are logged and retried next time.
    pub async fn apply(&mut self, outcome: &BuildOutcome, inputs: &ClusterInputs) {
        self.ingress_status(outcome, inputs).await;
        self.route_status(outcome, inputs).await;
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

/// A Kubernetes condition, keeping `lastTransitionTime` while the status stays the same.
fn condition(wanted: &RouteCondition, current: &[Condition], generation: Option<i64>) -> Condition {
    let previous = current.iter().find(|c| c.type_ == wanted.type_);
    let since = previous
        .filter(|c| c.status == wanted.status)
        .map_or_else(|| Time(Timestamp::now()), |c| c.last_transition_time.clone());
    Condition {
        type_: wanted.type_.to_owned(),
        status: wanted.status.to_owned(),
        reason: wanted.reason.to_owned(),
        message: truncate(&wanted.message, 32_000),
        observed_generation: generation,
        last_transition_time: since,
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

fn truncate(text: &str, limit: usize) -> String {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
