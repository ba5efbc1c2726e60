//! The Kubernetes source: one kube-runtime reflector per input kind (with backoff), cluster-wide
//! or in `--watch-namespace`, merged into one change signal; the stores become a [`Snapshot`].
//!
//! No-op changes are dropped before they reach the controller: for Ingresses and
//! WebSocketRoutes only a new `generation` or new annotations count, so hawser's own status
//! writes never cause a rebuild. Deletions and completed (re)lists always count. Secrets are
//! watched with `type=kubernetes.io/tls` (cert-manager's Secrets carry `ca.crt` too) and
//! `type=Opaque` (htpasswd files for basic auth, `kubectl create secret generic`); Helm
//! releases, service-account tokens and other types are never read.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::crd::WebSocketRoute;
use crate::metrics::Metrics;
use crate::snapshot::{Object, Snapshot};

/// The stores of every watched kind.
#[derive(Debug)]
pub struct ClusterInputs {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    routes: Option<Store<WebSocketRoute>>,
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
    pub inputs: ClusterInputs,
    /// One message per relevant change, from any kind.
    pub changes: mpsc::UnboundedReceiver<()>,
    _tasks: JoinSet<()>,
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
    let ingresses =
        reflect(namespaced(client, ns), plain.clone(), Filter::SpecAndAnnotations, &tx, metrics, &mut spawn);
    let classes = reflect(Api::all(client.clone()), plain.clone(), Filter::Any, &tx, metrics, &mut spawn);
    let routes = scope.routes.then(|| {
        reflect(namespaced(client, ns), plain.clone(), Filter::SpecAndAnnotations, &tx, metrics, &mut spawn)
    });
    let services = reflect(namespaced(client, ns), plain.clone(), Filter::Any, &tx, metrics, &mut spawn);
    let slices = reflect(namespaced(client, ns), plain.clone(), Filter::Any, &tx, metrics, &mut spawn);
    let tls_only = plain.clone().fields("type=kubernetes.io/tls");
    let secrets = reflect(namespaced(client, ns), tls_only, Filter::Any, &tx, metrics, &mut spawn);
    let opaque_only = plain.fields("type=Opaque");
    let opaque_secrets = reflect(namespaced(client, ns), opaque_only, Filter::Any, &tx, metrics, &mut spawn);
    let inputs = ClusterInputs { ingresses, classes, routes, services, slices, secrets, opaque_secrets };
    Watches { inputs, changes, _tasks: tasks }
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
        if let Some(routes) = &self.routes {
            let _ = routes.wait_until_ready().await;
        }
        let _ = self.services.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
        let _ = self.opaque_secrets.wait_until_ready().await;
    }

    /// Everything the stores hold now.
    pub fn snapshot(&self) -> Snapshot {
        let mut objects: Vec<Object> = Vec::new();
        objects.extend(self.ingresses.state().into_iter().map(|o| Object::Ingress((*o).clone())));
        objects.extend(self.classes.state().into_iter().map(|o| Object::IngressClass((*o).clone())));
        if let Some(routes) = &self.routes {
            objects.extend(routes.state().into_iter().map(|o| Object::WebSocketRoute((*o).clone())));
        }
        objects.extend(self.services.state().into_iter().map(|o| Object::Service((*o).clone())));
        objects.extend(self.slices.state().into_iter().map(|o| Object::EndpointSlice((*o).clone())));
        let secrets = self.secrets.state().into_iter().chain(self.opaque_secrets.state());
        objects.extend(secrets.map(|o| Object::Secret((*o).clone())));
        Snapshot::new(objects)
    }

    /// The Ingress store (for status).
    pub fn ingresses(&self) -> &Store<Ingress> {
        &self.ingresses
    }

    /// The WebSocketRoute store, when the CRD is installed.
    pub fn routes(&self) -> Option<&Store<WebSocketRoute>> {
        self.routes.as_ref()
    }
}

/// Which applied objects count as a change.
#[derive(Clone, Copy, Debug)]
enum Filter {
    /// Every applied version.
    Any,
    /// Only a new `generation` or new annotations (status writes do not count).
    SpecAndAnnotations,
}

fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    filter: Filter,
    changed: &mpsc::UnboundedSender<()>,
    metrics: &Arc<Metrics>,
    spawn: &mut impl FnMut(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
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
                    let hash = fingerprint(&object, filter);
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

/// What of an object decides whether it changed.
fn fingerprint<K: Resource>(object: &K, filter: Filter) -> u64 {
    let mut hasher = DefaultHasher::new();
    match filter {
        Filter::Any => object.resource_version().hash(&mut hasher),
        Filter::SpecAndAnnotations => {
            object.meta().generation.hash(&mut hasher);
            object.annotations().hash(&mut hasher);
        }
    }
    hasher.finish()
}
