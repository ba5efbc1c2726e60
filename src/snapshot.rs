//! An immutable, indexed view of every input the build reads: Ingresses, IngressClasses,
//! WebSocketRoutes, WebSocketPolicies, the Gateway API's GatewayClasses, Gateways, HTTPRoutes,
//! ReferenceGrants and BackendTLSPolicies, Namespaces, Services, EndpointSlices, Secrets and
//! ConfigMaps. Sources (a manifests directory, the
//! Kubernetes watch) produce [`Object`]s, which share their content (`Arc`): a snapshot costs an
//! index, never a copy of the objects, and an object that did not change is the same `Arc` in
//! the next snapshot (which is how the build tells what it can reuse).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::ResourceExt;

use crate::crd::{WebSocketPolicy, WebSocketRoute};
use crate::gateway_api::{BackendTlsPolicy, Gateway, GatewayClass, HttpRoute, ReferenceGrant};

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Namespace of namespaced objects that name none (as `kubectl apply` would default it).
pub const DEFAULT_NAMESPACE: &str = "default";

/// One input object of a kind the build reads.
#[derive(Clone, Debug)]
pub enum Object {
    /// `networking.k8s.io/v1` Ingress.
    Ingress(Arc<Ingress>),
    /// `networking.k8s.io/v1` IngressClass.
    IngressClass(Arc<IngressClass>),
    /// `hawser.dev/v1alpha1` WebSocketRoute.
    WebSocketRoute(Arc<WebSocketRoute>),
    /// `hawser.dev/v1alpha1` WebSocketPolicy.
    WebSocketPolicy(Arc<WebSocketPolicy>),
    /// `v1` Service.
    Service(Arc<Service>),
    /// `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice(Arc<EndpointSlice>),
    /// `v1` Secret.
    Secret(Arc<Secret>),
    /// `v1` Namespace (its labels select Gateway API routes).
    Namespace(Arc<Namespace>),
    /// `gateway.networking.k8s.io/v1` GatewayClass.
    GatewayClass(Arc<GatewayClass>),
    /// `gateway.networking.k8s.io/v1` Gateway.
    Gateway(Arc<Gateway>),
    /// `gateway.networking.k8s.io/v1` HTTPRoute.
    HttpRoute(Arc<HttpRoute>),
    /// `gateway.networking.k8s.io/v1` (or `v1beta1`) ReferenceGrant.
    ReferenceGrant(Arc<ReferenceGrant>),
    /// `gateway.networking.k8s.io/v1` BackendTLSPolicy.
    BackendTlsPolicy(Arc<BackendTlsPolicy>),
    /// `v1` ConfigMap (CA bundles of BackendTLSPolicies).
    ConfigMap(Arc<ConfigMap>),
}

impl Object {
    /// Reads an object from its JSON form, in `default` when it is namespaced and names no
    /// namespace. `Ok(None)` for kinds the build does not read.
    pub fn from_value(value: serde_json::Value) -> Result<Option<Self>, ObjectError> {
        let api_version = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let object = match (api_version.as_str(), kind.as_str()) {
            ("networking.k8s.io/v1", "Ingress") => namespaced(value).map(Self::Ingress),
            ("networking.k8s.io/v1", "IngressClass") => {
                serde_json::from_value(value).map(|o| Self::IngressClass(Arc::new(o)))
            }
            ("hawser.dev/v1alpha1", "WebSocketRoute") => namespaced(value).map(Self::WebSocketRoute),
            ("hawser.dev/v1alpha1", "WebSocketPolicy") => namespaced(value).map(Self::WebSocketPolicy),
            ("v1", "Service") => namespaced(value).map(Self::Service),
            ("discovery.k8s.io/v1", "EndpointSlice") => namespaced(value).map(Self::EndpointSlice),
            ("v1", "Secret") => namespaced(value).map(Self::Secret),
            ("v1", "Namespace") => serde_json::from_value(value).map(|o| Self::Namespace(Arc::new(o))),
            // v1beta1 has the same schema as v1 for these kinds.
            (GATEWAY_V1 | GATEWAY_V1BETA1, "GatewayClass") => {
                serde_json::from_value(value).map(|o| Self::GatewayClass(Arc::new(o)))
            }
            (GATEWAY_V1 | GATEWAY_V1BETA1, "Gateway") => namespaced(value).map(Self::Gateway),
            (GATEWAY_V1 | GATEWAY_V1BETA1, "HTTPRoute") => namespaced(value).map(Self::HttpRoute),
            (GATEWAY_V1 | GATEWAY_V1BETA1, "ReferenceGrant") => namespaced(value).map(Self::ReferenceGrant),
            (GATEWAY_V1, "BackendTLSPolicy") => namespaced(value).map(Self::BackendTlsPolicy),
            ("v1", "ConfigMap") => namespaced(value).map(Self::ConfigMap),
            ("", _) | (_, "") => return Err(ObjectError::Untyped),
            _ => return Ok(None),
        };
        object.map(Some).map_err(|source| ObjectError::Malformed { kind, api_version, source })
    }

    /// Whether `other` is this very object (not merely an equal one).
    pub fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Ingress(a), Self::Ingress(b)) => Arc::ptr_eq(a, b),
            (Self::IngressClass(a), Self::IngressClass(b)) => Arc::ptr_eq(a, b),
            (Self::WebSocketRoute(a), Self::WebSocketRoute(b)) => Arc::ptr_eq(a, b),
            (Self::WebSocketPolicy(a), Self::WebSocketPolicy(b)) => Arc::ptr_eq(a, b),
            (Self::Service(a), Self::Service(b)) => Arc::ptr_eq(a, b),
            (Self::EndpointSlice(a), Self::EndpointSlice(b)) => Arc::ptr_eq(a, b),
            (Self::Secret(a), Self::Secret(b)) => Arc::ptr_eq(a, b),
            (Self::Namespace(a), Self::Namespace(b)) => Arc::ptr_eq(a, b),
            (Self::GatewayClass(a), Self::GatewayClass(b)) => Arc::ptr_eq(a, b),
            (Self::Gateway(a), Self::Gateway(b)) => Arc::ptr_eq(a, b),
            (Self::HttpRoute(a), Self::HttpRoute(b)) => Arc::ptr_eq(a, b),
            (Self::ReferenceGrant(a), Self::ReferenceGrant(b)) => Arc::ptr_eq(a, b),
            (Self::BackendTlsPolicy(a), Self::BackendTlsPolicy(b)) => Arc::ptr_eq(a, b),
            (Self::ConfigMap(a), Self::ConfigMap(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// `Kind namespace/name`, for messages.
    pub fn describe(&self) -> String {
        let (kind, namespace, name) = match self {
            Self::Ingress(o) => ("Ingress", o.namespace(), o.name_any()),
            Self::IngressClass(o) => ("IngressClass", None, o.name_any()),
            Self::WebSocketRoute(o) => ("WebSocketRoute", o.namespace(), o.name_any()),
            Self::WebSocketPolicy(o) => ("WebSocketPolicy", o.namespace(), o.name_any()),
            Self::Service(o) => ("Service", o.namespace(), o.name_any()),
            Self::EndpointSlice(o) => ("EndpointSlice", o.namespace(), o.name_any()),
            Self::Secret(o) => ("Secret", o.namespace(), o.name_any()),
            Self::Namespace(o) => ("Namespace", None, o.name_any()),
            Self::GatewayClass(o) => ("GatewayClass", None, o.name_any()),
            Self::Gateway(o) => ("Gateway", o.namespace(), o.name_any()),
            Self::HttpRoute(o) => ("HTTPRoute", o.namespace(), o.name_any()),
            Self::ReferenceGrant(o) => ("ReferenceGrant", o.namespace(), o.name_any()),
            Self::BackendTlsPolicy(o) => ("BackendTLSPolicy", o.namespace(), o.name_any()),
            Self::ConfigMap(o) => ("ConfigMap", o.namespace(), o.name_any()),
        };
        match namespace {
            Some(namespace) => format!("{kind} {namespace}/{name}"),
            None => format!("{kind} {name}"),
        }
    }
}

const GATEWAY_V1: &str = "gateway.networking.k8s.io/v1";
const GATEWAY_V1BETA1: &str = "gateway.networking.k8s.io/v1beta1";

/// Why a manifest is not an object hawser can read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("apiVersion and kind are required")]
    Untyped,
    #[error("{kind} ({api_version}): {source}")]
    Malformed { kind: String, api_version: String, source: serde_json::Error },
}

/// A namespaced object from JSON, put in [`DEFAULT_NAMESPACE`] when it names none.
fn namespaced<K>(value: serde_json::Value) -> serde_json::Result<Arc<K>>
where
    K: kube::Resource + serde::de::DeserializeOwned,
{
    let mut object: K = serde_json::from_value(value)?;
    object.meta_mut().namespace.get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
    Ok(Arc::new(object))
}

/// Objects of one kind by namespace, then name: looked up without building a key.
type ByName<T> = HashMap<String, HashMap<String, T>>;

/// Every input of one build, indexed by namespace and name.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Ingresses, in the order given.
    pub ingresses: Vec<Arc<Ingress>>,
    /// IngressClasses.
    pub ingress_classes: Vec<Arc<IngressClass>>,
    /// WebSocketRoutes, in the order given.
    pub routes: Vec<Arc<WebSocketRoute>>,
    services: ByName<Arc<Service>>,
    /// By namespace, then Service name; ordered, so the slices have one order.
    slices: BTreeMap<String, BTreeMap<String, Vec<Arc<EndpointSlice>>>>,
    secrets: ByName<Arc<Secret>>,
    namespaces: HashMap<String, Arc<Namespace>>,
    /// GatewayClasses.
    pub gateway_classes: Vec<Arc<GatewayClass>>,
    gateways: ByName<Arc<Gateway>>,
    /// HTTPRoutes, in the order given.
    pub http_routes: Vec<Arc<HttpRoute>>,
    http_routes_by_name: ByName<Arc<HttpRoute>>,
    /// WebSocketPolicies by namespace.
    policies: HashMap<String, Vec<Arc<WebSocketPolicy>>>,
    /// ReferenceGrants by the namespace they grant access to.
    grants: HashMap<String, Vec<Arc<ReferenceGrant>>>,
    /// BackendTLSPolicies by namespace.
    backend_tls: HashMap<String, Vec<Arc<BackendTlsPolicy>>>,
    config_maps: ByName<Arc<ConfigMap>>,
}

impl Snapshot {
    /// Indexes `objects`.
    pub fn new(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut snapshot = Self::default();
        for object in objects {
            snapshot.insert(object);
        }
        snapshot
    }

    fn insert(&mut self, object: Object) {
        match object {
            Object::Ingress(o) => self.ingresses.push(o),
            Object::IngressClass(o) => self.ingress_classes.push(o),
            Object::WebSocketRoute(o) => self.routes.push(o),
            Object::Service(o) => {
                in_namespace(&mut self.services, &*o).insert(o.name_any(), o);
            }
            Object::EndpointSlice(o) => {
                if let Some(service) = o.labels().get(SERVICE_NAME_LABEL).cloned() {
                    let namespace = o.namespace().unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
                    self.slices.entry(namespace).or_default().entry(service).or_default().push(o);
                }
            }
            Object::Secret(o) => {
                in_namespace(&mut self.secrets, &*o).insert(o.name_any(), o);
            }
            Object::Namespace(o) => {
                self.namespaces.insert(o.name_any(), o);
            }
            Object::GatewayClass(o) => self.gateway_classes.push(o),
            Object::Gateway(o) => {
                in_namespace(&mut self.gateways, &*o).insert(o.name_any(), o);
            }
            Object::HttpRoute(o) => {
                in_namespace(&mut self.http_routes_by_name, &*o).insert(o.name_any(), o.clone());
                self.http_routes.push(o);
            }
            Object::WebSocketPolicy(o) => {
                let namespace = o.namespace().unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
                self.policies.entry(namespace).or_default().push(o);
            }
            Object::ReferenceGrant(o) => {
                let namespace = o.namespace().unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
                self.grants.entry(namespace).or_default().push(o);
            }
            Object::BackendTlsPolicy(o) => {
                let namespace = o.namespace().unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
                self.backend_tls.entry(namespace).or_default().push(o);
            }
            Object::ConfigMap(o) => {
                in_namespace(&mut self.config_maps, &*o).insert(o.name_any(), o);
            }
        }
    }

    /// The Namespace `name`, if the source has Namespaces.
    pub fn namespace(&self, name: &str) -> Option<&Arc<Namespace>> {
        self.namespaces.get(name)
    }

    /// The GatewayClass `name`.
    pub fn gateway_class(&self, name: &str) -> Option<&Arc<GatewayClass>> {
        self.gateway_classes.iter().find(|c| c.metadata.name.as_deref() == Some(name))
    }

    /// The Gateway `namespace/name`.
    pub fn gateway(&self, namespace: &str, name: &str) -> Option<&Arc<Gateway>> {
        self.gateways.get(namespace)?.get(name)
    }

    /// Every Gateway, in no particular order.
    pub fn gateways(&self) -> impl Iterator<Item = &Arc<Gateway>> {
        self.gateways.values().flat_map(HashMap::values)
    }

    /// The HTTPRoute `namespace/name`.
    pub fn http_route(&self, namespace: &str, name: &str) -> Option<&Arc<HttpRoute>> {
        self.http_routes_by_name.get(namespace)?.get(name)
    }

    /// The WebSocketPolicies in `namespace`.
    pub fn websocket_policies(&self, namespace: &str) -> &[Arc<WebSocketPolicy>] {
        self.policies.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// Every WebSocketPolicy.
    pub fn all_websocket_policies(&self) -> impl Iterator<Item = &Arc<WebSocketPolicy>> {
        self.policies.values().flatten()
    }

    /// The BackendTLSPolicies in `namespace`.
    pub fn backend_tls_policies(&self, namespace: &str) -> &[Arc<BackendTlsPolicy>] {
        self.backend_tls.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// Every BackendTLSPolicy.
    pub fn all_backend_tls_policies(&self) -> impl Iterator<Item = &Arc<BackendTlsPolicy>> {
        self.backend_tls.values().flatten()
    }

    /// The ConfigMap `namespace/name`.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&Arc<ConfigMap>> {
        self.config_maps.get(namespace)?.get(name)
    }

    /// The ReferenceGrants in `namespace` (which grant access to its objects).
    pub fn reference_grants(&self, namespace: &str) -> &[Arc<ReferenceGrant>] {
        self.grants.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// The Service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        self.services.get(namespace)?.get(name)
    }

    /// The EndpointSlices labelled for the Service `namespace/service`.
    pub fn endpoint_slices(&self, namespace: &str, service: &str) -> &[Arc<EndpointSlice>] {
        self.slices.get(namespace).and_then(|s| s.get(service)).map_or(&[], Vec::as_slice)
    }

    /// Every EndpointSlice labelled for a Service, in a stable order.
    pub fn all_endpoint_slices(&self) -> impl Iterator<Item = &Arc<EndpointSlice>> {
        self.slices.values().flat_map(BTreeMap::values).flatten()
    }

    /// Every address and port any EndpointSlice lists, ready or not: an endpoint missing here
    /// is gone, not merely unready.
    pub fn listed_endpoints(&self) -> BTreeSet<SocketAddr> {
        self.all_endpoint_slices()
            .flat_map(|slice| {
                let ports =
                    slice.ports.iter().flatten().filter_map(|p| p.port).filter_map(|p| u16::try_from(p).ok());
                let ports: Vec<u16> = ports.collect();
                let ips = slice.endpoints.iter().flat_map(|e| &e.addresses).filter_map(|a| a.parse().ok());
                ips.flat_map(move |ip: IpAddr| {
                    ports.clone().into_iter().map(move |port| SocketAddr::new(ip, port))
                })
            })
            .collect()
    }

    /// The Secret `namespace/name`.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Arc<Secret>> {
        self.secrets.get(namespace)?.get(name)
    }
}

/// The objects of `object`'s namespace in `index`.
fn in_namespace<'a, T, K: kube::Resource>(
    index: &'a mut ByName<T>,
    object: &K,
) -> &'a mut HashMap<String, T> {
    let namespace = object.meta().namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    index.entry(namespace.to_owned()).or_default()
}
