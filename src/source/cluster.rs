//! The Kubernetes source: one kube-runtime reflector per input kind (with backoff), cluster-wide
//! or in `--watch-namespace`, merged into one change signal; the stores become a [`Snapshot`].
//!
//! No-op changes are dropped before they reach the controller: an applied object counts only
//! when what the build reads of it changed ([`Relevant`]): for Ingresses and WebSocketRoutes a
//! new `generation` or new annotations (so hawser's own status writes never cause a rebuild),
//! for Services their spec, for EndpointSlices their endpoints, ports and labels, for Secrets
//! their type and data. Deletions and completed (re)lists always count. A snapshot shares the
//! stores' objects; nothing is copied per build. Secrets are
//! watched with `type=kubernetes.io/tls` (cert-manager's Secrets carry `ca.crt` too) and
//! `type=Opaque` (htpasswd files for basic auth, `kubectl create secret generic`); Helm
//! releases, service-account tokens and other types are never read.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, PoisonError, RwLock};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
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

use crate::crd::WebSocketRoute;
use crate::metrics::Metrics;
use crate::snapshot::{Object, Snapshot};

/// The stores of every watched kind.
#[derive(Debug)]
pub struct ClusterInputs {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    /// While the WebSocketRoute CRD is served ([`Watches::follow_crd`]).
    routes: RwLock<Option<Store<WebSocketRoute>>>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
    opaque_secrets: Store<Secret>,
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
    routes_api: Api<WebSocketRoute>,
    changed: mpsc::UnboundedSender<()>,
    metrics: Arc<Metrics>,
}

/// Where to watch.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Only this namespace (`--watch-namespace`); `None`: all namespaces.
    pub namespace: Option<String>,
    /// Whether the WebSocketRoute CRD is installed.
    pub routes: bool,
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
    let routes = RwLock::new(None);
    let inputs = ClusterInputs { ingresses, classes, routes, services, slices, secrets, opaque_secrets };
    let mut watches = Watches {
        inputs: Arc::new(inputs),
        changes,
        tasks,
        routes_task: None,
        routes_api: namespaced(client, ns),
        changed: tx,
        metrics: metrics.clone(),
    };
    watches.follow_crd(scope.routes);
    watches
}

impl Watches {
    /// Starts the WebSocketRoute watch when the CRD is `served` and stops it (its routes leave
    /// the table) when it is not; whether anything changed.
    pub fn follow_crd(&mut self, served: bool) -> bool {
        let mut routes = self.inputs.routes.write().unwrap_or_else(PoisonError::into_inner);
        match (served, self.routes_task.take()) {
            (true, None) => {
                let api = self.routes_api.clone();
                let mut task = None;
                let mut spawn = |future| task = Some(self.tasks.spawn(future));
                let config = watcher::Config::default();
                *routes = Some(reflect(api, config, &self.changed, &self.metrics, &mut spawn));
                self.routes_task = task;
                true
            }
            (false, Some(task)) => {
                task.abort();
                *routes = None;
                // The routes are gone from the inputs: build without them.
                let _ = self.changed.send(());
                true
            }
            (_, kept) => {
                self.routes_task = kept;
                false
            }
        }
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

impl Relevant for WebSocketRoute {
    fn relevant(&self) -> impl Serialize + '_ {
        (self.metadata.generation, &self.metadata.annotations)
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
