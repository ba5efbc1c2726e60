//! The Kubernetes source: one kube-runtime reflector per input kind (with backoff), cluster-wide
//! or in `--watch-namespace`, merged into one change signal; the stores become a [`Snapshot`].
//!
//! No-op changes are dropped before they reach the controller: an applied object counts only
//! when what the build reads of it changed ([`Relevant`]): for Ingresses and WebSocketRoutes a
//! new `generation` or new annotations (so hawser's own status writes never cause a rebuild),
//! for Services their spec, for EndpointSlices their endpoints, ports and labels, for Secrets
//! their type and data, for the Gateway API's kinds their `generation` (GatewayClasses their
//! spec), for Namespaces their labels. Deletions and completed (re)lists always count. A snapshot shares the
//! stores' objects; nothing is copied per build. Secrets are
//! watched with `type=kubernetes.io/tls` (cert-manager's Secrets carry `ca.crt` too) and
//! `type=Opaque` (htpasswd files for basic auth, `kubectl create secret generic`); Helm
//! releases, service-account tokens and other types are never read.
//!
//! WebSocketRoutes, WebSocketPolicies and the Gateway API kinds (GatewayClass, Gateway,
//! HTTPRoute, ReferenceGrant, BackendTLSPolicy with the ConfigMaps that hold CA bundles, and
//! Namespaces for `allowedRoutes` selectors) are watched only while their CRDs are served:
//! the watches start when the CRDs appear and stop when they go ([`Watches::follow_crds`]).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, PoisonError, RwLock};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use xxhash_rust::xxh3::Xxh3;

use crate::crd::{WebSocketPolicy, WebSocketRoute};
use crate::gateway_api::{BackendTlsPolicy, Gateway, GatewayClass, HttpRoute, ReferenceGrant};
use crate::metrics::Metrics;
use crate::snapshot::{Object, Snapshot};

/// The stores of every watched kind.
#[derive(Debug)]
pub struct ClusterInputs {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    /// While the WebSocketRoute CRD is served ([`Watches::follow_crds`]).
    routes: RwLock<Option<Store<WebSocketRoute>>>,
    /// While the WebSocketPolicy CRD is served.
    policies: RwLock<Option<Store<WebSocketPolicy>>>,
    /// While the Gateway API CRDs are served.
    gateway_api: RwLock<Option<GatewayApiStores>>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
    opaque_secrets: Store<Secret>,
}

/// The stores of the Gateway API kinds.
#[derive(Clone, Debug)]
pub struct GatewayApiStores {
    pub classes: Store<GatewayClass>,
    pub gateways: Store<Gateway>,
    pub routes: Store<HttpRoute>,
    /// `None` when ReferenceGrant `v1` is not served (Gateway API CRDs older than v1.5).
    pub grants: Option<Store<ReferenceGrant>>,
    /// BackendTLSPolicies and the ConfigMaps (CA bundles) they name; `None` when
    /// BackendTLSPolicy `v1` is not served.
    pub backend_tls: Option<(Store<BackendTlsPolicy>, Store<ConfigMap>)>,
    pub namespaces: Store<Namespace>,
}

/// Which optional CRDs the API server serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// `websocketroutes.hawser.dev`.
    pub websocket_routes: bool,
    /// `websocketpolicies.hawser.dev`.
    pub websocket_policies: bool,
    /// GatewayClass, Gateway and HTTPRoute `v1`.
    pub gateway_api: bool,
    /// ReferenceGrant `v1`.
    pub reference_grants: bool,
    /// BackendTLSPolicy `v1`.
    pub backend_tls_policies: bool,
}

/// Running watches: their stores, the merged change signal, and the tasks that drive them
/// (aborted when this is dropped).
#[derive(Debug)]
pub struct Watches {
    /// What the watches have seen so far.
    pub inputs: Arc<ClusterInputs>,
    /// One message per relevant change, from any kind.
    pub changes: mpsc::UnboundedReceiver<()>,
    tasks: JoinSet<()>,
    /// The WebSocketRoute watch, while the CRD is served.
    routes_task: Option<AbortHandle>,
    /// The WebSocketPolicy watch, while the CRD is served.
    policies_task: Option<AbortHandle>,
    /// The Gateway API watches, while the CRDs are served.
    gateway_tasks: Vec<AbortHandle>,
    apis: OptionalApis,
    /// What the optional watches follow now.
    served: Served,
    changed: mpsc::UnboundedSender<()>,
    metrics: Arc<Metrics>,
}

/// The APIs of the kinds watched only while their CRDs are served.
#[derive(Debug)]
struct OptionalApis {
    routes: Api<WebSocketRoute>,
    policies: Api<WebSocketPolicy>,
    classes: Api<GatewayClass>,
    gateways: Api<Gateway>,
    http_routes: Api<HttpRoute>,
    grants: Api<ReferenceGrant>,
    backend_tls: Api<BackendTlsPolicy>,
    config_maps: Api<ConfigMap>,
    namespaces: Api<Namespace>,
}

/// Where to watch.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Only this namespace (`--watch-namespace`); `None`: all namespaces.
    pub namespace: Option<String>,
    /// Which optional CRDs are installed.
    pub served: Served,
}

/// Starts one reflector per kind.
pub fn start(client: &Client, scope: &Scope, metrics: &Arc<Metrics>) -> Watches {
    let (tx, changes) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    let ns = scope.namespace.as_deref();
    let mut spawn = |task| {
        tasks.spawn(task);
    };
    let plain = watcher::Config::default();
    let ingresses = reflect(namespaced(client, ns), plain.clone(), &tx, metrics, &mut spawn);
    let classes = reflect(Api::all(client.clone()), plain.clone(), &tx, metrics, &mut spawn);
    let services = reflect(namespaced(client, ns), plain.clone(), &tx, metrics, &mut spawn);
    let slices = reflect(namespaced(client, ns), plain.clone(), &tx, metrics, &mut spawn);
    let tls_only = plain.clone().fields("type=kubernetes.io/tls");
    let secrets = reflect(namespaced(client, ns), tls_only, &tx, metrics, &mut spawn);
    let opaque_only = plain.fields("type=Opaque");
    let opaque_secrets = reflect(namespaced(client, ns), opaque_only, &tx, metrics, &mut spawn);
    let (routes, policies, gateway_api) = (RwLock::new(None), RwLock::new(None), RwLock::new(None));
    let inputs = ClusterInputs {
        ingresses,
        classes,
        routes,
        policies,
        gateway_api,
        services,
        slices,
        secrets,
        opaque_secrets,
    };
    let mut watches = Watches {
        inputs: Arc::new(inputs),
        changes,
        tasks,
        routes_task: None,
        policies_task: None,
        gateway_tasks: Vec::new(),
        apis: OptionalApis {
            routes: namespaced(client, ns),
            policies: namespaced(client, ns),
            classes: Api::all(client.clone()),
            gateways: namespaced(client, ns),
            http_routes: namespaced(client, ns),
            grants: namespaced(client, ns),
            backend_tls: namespaced(client, ns),
            config_maps: namespaced(client, ns),
            namespaces: Api::all(client.clone()),
        },
        served: Served::default(),
        changed: tx,
        metrics: metrics.clone(),
    };
    watches.follow_crds(scope.served);
    watches
}

impl Watches {
    /// Starts the watches of the optional kinds whose CRDs are `served` and stops those whose
    /// CRDs are not (their objects leave the table); whether anything changed.
    pub fn follow_crds(&mut self, served: Served) -> bool {
        if served == self.served {
            return false;
        }
        let inputs = self.inputs.clone();
        if served.websocket_routes != self.served.websocket_routes {
            abort(self.routes_task.take());
            self.routes_task = self.follow(&inputs.routes, self.apis.routes.clone(), served.websocket_routes);
        }
        if served.websocket_policies != self.served.websocket_policies {
            abort(self.policies_task.take());
            let api = self.apis.policies.clone();
            self.policies_task = self.follow(&inputs.policies, api, served.websocket_policies);
        }
        let gateway_kinds = |s: &Served| (s.gateway_api, s.reference_grants, s.backend_tls_policies);
        if gateway_kinds(&served) != gateway_kinds(&self.served) {
            self.follow_gateway_api(served);
        }
        self.served = served;
        // The inputs changed kinds: build again.
        let _ = self.changed.send(());
        true
    }

    /// Empties `slot` and, when `served`, fills it with a new watch of `api`; the new watch's
    /// task.
    fn follow<K>(&mut self, slot: &RwLock<Option<Store<K>>>, api: Api<K>, served: bool) -> Option<AbortHandle>
    where
        K: Resource<DynamicType = ()> + Relevant + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let mut store = slot.write().unwrap_or_else(PoisonError::into_inner);
        *store = None;
        if !served {
            return None;
        }
        let mut task = None;
        let mut spawn = |future| task = Some(self.tasks.spawn(future));
        *store = Some(reflect(api, watcher::Config::default(), &self.changed, &self.metrics, &mut spawn));
        task
    }

    fn follow_gateway_api(&mut self, served: Served) {
        let mut stores = self.inputs.gateway_api.write().unwrap_or_else(PoisonError::into_inner);
        for task in self.gateway_tasks.drain(..) {
            task.abort();
        }
        *stores = None;
        if !served.gateway_api {
            return;
        }
        let apis = &self.apis;
        let mut tasks = Vec::new();
        let mut spawn = |future| tasks.push(self.tasks.spawn(future));
        let (tx, metrics, plain) = (&self.changed, &self.metrics, watcher::Config::default());
        let grants = served
            .reference_grants
            .then(|| reflect(apis.grants.clone(), plain.clone(), tx, metrics, &mut spawn));
        let backend_tls = served.backend_tls_policies.then(|| {
            let policies = reflect(apis.backend_tls.clone(), plain.clone(), tx, metrics, &mut spawn);
            (policies, reflect(apis.config_maps.clone(), plain.clone(), tx, metrics, &mut spawn))
        });
        *stores = Some(GatewayApiStores {
            classes: reflect(apis.classes.clone(), plain.clone(), tx, metrics, &mut spawn),
            gateways: reflect(apis.gateways.clone(), plain.clone(), tx, metrics, &mut spawn),
            routes: reflect(apis.http_routes.clone(), plain.clone(), tx, metrics, &mut spawn),
            grants,
            backend_tls,
            namespaces: reflect(apis.namespaces.clone(), plain, tx, metrics, &mut spawn),
        });
        self.gateway_tasks = tasks;
    }
}

fn abort(task: Option<AbortHandle>) {
    if let Some(task) = task {
        task.abort();
    }
}

fn namespaced<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

impl ClusterInputs {
    /// Waits until every store has completed its first list.
    pub async fn wait_synced(&self) {
        let _ = self.ingresses.wait_until_ready().await;
        let _ = self.classes.wait_until_ready().await;
        if let Some(routes) = self.routes() {
            let _ = routes.wait_until_ready().await;
        }
        if let Some(policies) = self.policies() {
            let _ = policies.wait_until_ready().await;
        }
        if let Some(gateway_api) = self.gateway_api() {
            let _ = gateway_api.classes.wait_until_ready().await;
            let _ = gateway_api.gateways.wait_until_ready().await;
            let _ = gateway_api.routes.wait_until_ready().await;
            if let Some(grants) = &gateway_api.grants {
                let _ = grants.wait_until_ready().await;
            }
            if let Some((policies, config_maps)) = &gateway_api.backend_tls {
                let _ = policies.wait_until_ready().await;
                let _ = config_maps.wait_until_ready().await;
            }
            let _ = gateway_api.namespaces.wait_until_ready().await;
        }
        let _ = self.services.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
        let _ = self.opaque_secrets.wait_until_ready().await;
    }

    /// Everything the stores hold now (shared with the stores, not copied).
    pub fn snapshot(&self) -> Snapshot {
        let mut objects: Vec<Object> = Vec::new();
        objects.extend(self.ingresses.state().into_iter().map(Object::Ingress));
        objects.extend(self.classes.state().into_iter().map(Object::IngressClass));
        if let Some(routes) = self.routes() {
            objects.extend(routes.state().into_iter().map(Object::WebSocketRoute));
        }
        if let Some(policies) = self.policies() {
            objects.extend(policies.state().into_iter().map(Object::WebSocketPolicy));
        }
        if let Some(gateway_api) = self.gateway_api() {
            objects.extend(gateway_api.classes.state().into_iter().map(Object::GatewayClass));
            objects.extend(gateway_api.gateways.state().into_iter().map(Object::Gateway));
            objects.extend(gateway_api.routes.state().into_iter().map(Object::HttpRoute));
            let grants = gateway_api.grants.iter().flat_map(Store::state);
            objects.extend(grants.map(Object::ReferenceGrant));
            if let Some((policies, config_maps)) = &gateway_api.backend_tls {
                objects.extend(policies.state().into_iter().map(Object::BackendTlsPolicy));
                objects.extend(config_maps.state().into_iter().map(Object::ConfigMap));
            }
            objects.extend(gateway_api.namespaces.state().into_iter().map(Object::Namespace));
        }
        objects.extend(self.services.state().into_iter().map(Object::Service));
        objects.extend(self.slices.state().into_iter().map(Object::EndpointSlice));
        let secrets = self.secrets.state().into_iter().chain(self.opaque_secrets.state());
        objects.extend(secrets.map(Object::Secret));
        Snapshot::new(objects)
    }

    /// The Ingress store (for status).
    pub fn ingresses(&self) -> &Store<Ingress> {
        &self.ingresses
    }

    /// The WebSocketRoute store, while the CRD is served.
    pub fn routes(&self) -> Option<Store<WebSocketRoute>> {
        self.routes.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The WebSocketPolicy store, while the CRD is served.
    pub fn policies(&self) -> Option<Store<WebSocketPolicy>> {
        self.policies.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The Gateway API stores, while the CRDs are served.
    pub fn gateway_api(&self) -> Option<GatewayApiStores> {
        self.gateway_api.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: &mpsc::UnboundedSender<()>,
    metrics: &Arc<Metrics>,
    spawn: &mut impl FnMut(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Relevant + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let (changed, metrics) = (changed.clone(), metrics.clone());
    let mut seen: HashMap<String, u64> = HashMap::new();
    let events = watcher(api, config).default_backoff().reflect(writer);
    spawn(Box::pin(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let relevant = match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                    let key = format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any());
                    let hash = fingerprint(&object);
                    seen.insert(key, hash) != Some(hash)
                }
                Ok(watcher::Event::Delete(object)) => {
                    seen.remove(&format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any()));
                    true
                }
                Ok(watcher::Event::Init) => false,
                Ok(watcher::Event::InitDone) => true,
                Err(error) => {
                    tracing::warn!(%kind, %error, "watching the API server failed; retrying with backoff, the last table keeps serving");
                    metrics.kube_watch_error(&kind);
                    false
                }
            };
            if relevant && changed.send(()).is_err() {
                return;
            }
        }
    }));
    reader
}

/// What the build reads of an object: a change anywhere else is no change.
pub trait Relevant {
    /// The parts of the object the build reads.
    fn relevant(&self) -> impl Serialize + '_;
}

impl Relevant for Ingress {
    fn relevant(&self) -> impl Serialize + '_ {
        (self.metadata.generation, &self.metadata.annotations)
    }
}

impl Relevant for WebSocketPolicy {
    fn relevant(&self) -> impl Serialize + '_ {
        (self.metadata.generation, &self.metadata.annotations)
    }
}

impl Relevant for WebSocketRoute {
    fn relevant(&self) -> impl Serialize + '_ {
        (self.metadata.generation, &self.metadata.annotations)
    }
}

impl Relevant for Gateway {
    fn relevant(&self) -> impl Serialize + '_ {
        (self.metadata.generation, &self.metadata.annotations)
    }
}

impl Relevant for HttpRoute {
    fn relevant(&self) -> impl Serialize + '_ {
        (self.metadata.generation, &self.metadata.annotations)
    }
}

impl Relevant for GatewayClass {
    fn relevant(&self) -> impl Serialize + '_ {
        &self.spec
    }
}

impl Relevant for ReferenceGrant {
    fn relevant(&self) -> impl Serialize + '_ {
        &self.spec
    }
}

impl Relevant for BackendTlsPolicy {
    fn relevant(&self) -> impl Serialize + '_ {
        (self.metadata.generation, &self.metadata.annotations)
    }
}

impl Relevant for ConfigMap {
    fn relevant(&self) -> impl Serialize + '_ {
        (&self.data, &self.binary_data)
    }
}

impl Relevant for Namespace {
    fn relevant(&self) -> impl Serialize + '_ {
        &self.metadata.labels
    }
}

impl Relevant for IngressClass {
    fn relevant(&self) -> impl Serialize + '_ {
        (&self.spec, &self.metadata.annotations)
    }
}

impl Relevant for Service {
    fn relevant(&self) -> impl Serialize + '_ {
        &self.spec
    }
}

impl Relevant for EndpointSlice {
    fn relevant(&self) -> impl Serialize + '_ {
        (&self.metadata.labels, &self.address_type, &self.endpoints, &self.ports)
    }
}

impl Relevant for Secret {
    fn relevant(&self) -> impl Serialize + '_ {
        (&self.type_, &self.data, &self.string_data)
    }
}

/// A hash of [`Relevant::relevant`].
fn fingerprint<K: Relevant>(object: &K) -> u64 {
    let mut hasher = HashWriter(Xxh3::new());
    // Serializing into a hasher cannot fail: `HashWriter` never returns an error.
    let _ = serde_json::to_writer(&mut hasher, &object.relevant());
    hasher.0.digest()
}

struct HashWriter(Xxh3);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(labels: &str, port: i32) -> Service {
        let value = serde_json::json!({
            "metadata": {"name": "s", "labels": {"l": labels}, "resourceVersion": labels},
            "spec": {"ports": [{"port": port}]}
        });
        serde_json::from_value(value).expect("a Service")
    }

    #[test]
    fn only_what_the_build_reads_counts_as_a_change() {
        let base = fingerprint(&service("a", 80));
        assert_eq!(fingerprint(&service("b", 80)), base, "a new label and resourceVersion");
        assert_ne!(fingerprint(&service("a", 81)), base, "a new port");
        let mut ingress = Ingress::default();
        let base = fingerprint(&ingress);
        ingress.status = Some(Default::default());
        ingress.metadata.resource_version = Some("2".into());
        assert_eq!(fingerprint(&ingress), base, "hawser's own status write");
        ingress.metadata.generation = Some(2);
        assert_ne!(fingerprint(&ingress), base, "a new spec");
    }
}
