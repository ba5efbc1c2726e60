//! An immutable, indexed copy of every input the build reads: Ingresses, IngressClasses,
//! WebSocketRoutes, Services, EndpointSlices and Secrets. Sources (a manifests directory, the
//! Kubernetes watch) produce [`Object`]s; [`Snapshot::new`] indexes them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::ResourceExt;

use crate::crd::WebSocketRoute;

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Namespace of namespaced objects that name none (as `kubectl apply` would default it).
pub const DEFAULT_NAMESPACE: &str = "default";

/// One input object of a kind the build reads.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    /// `networking.k8s.io/v1` Ingress.
    Ingress(Ingress),
    /// `networking.k8s.io/v1` IngressClass.
    IngressClass(IngressClass),
    /// `hawser.dev/v1alpha1` WebSocketRoute.
    WebSocketRoute(WebSocketRoute),
    /// `v1` Service.
    Service(Service),
    /// `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// `v1` Secret.
    Secret(Secret),
}

impl Object {
    /// Reads an object from its JSON form. `Ok(None)` for kinds the build does not read.
    pub fn from_value(value: serde_json::Value) -> Result<Option<Self>, String> {
        let api_version = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let object = match (api_version.as_str(), kind.as_str()) {
            ("networking.k8s.io/v1", "Ingress") => serde_json::from_value(value).map(Self::Ingress),
            ("networking.k8s.io/v1", "IngressClass") => serde_json::from_value(value).map(Self::IngressClass),
            ("hawser.dev/v1alpha1", "WebSocketRoute") => {
                serde_json::from_value(value).map(Self::WebSocketRoute)
            }
            ("v1", "Service") => serde_json::from_value(value).map(Self::Service),
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                serde_json::from_value(value).map(Self::EndpointSlice)
            }
            ("v1", "Secret") => serde_json::from_value(value).map(Self::Secret),
            ("", _) | (_, "") => return Err("apiVersion and kind are required".into()),
            _ => return Ok(None),
        };
        object.map(Some).map_err(|e| format!("{kind} ({api_version}): {e}"))
    }

    /// `Kind namespace/name`, for messages.
    pub fn describe(&self) -> String {
        let (kind, namespace, name) = match self {
            Self::Ingress(o) => ("Ingress", o.namespace(), o.name_any()),
            Self::IngressClass(o) => ("IngressClass", None, o.name_any()),
            Self::WebSocketRoute(o) => ("WebSocketRoute", o.namespace(), o.name_any()),
            Self::Service(o) => ("Service", o.namespace(), o.name_any()),
            Self::EndpointSlice(o) => ("EndpointSlice", o.namespace(), o.name_any()),
            Self::Secret(o) => ("Secret", o.namespace(), o.name_any()),
        };
        match namespace {
            Some(namespace) => format!("{kind} {namespace}/{name}"),
            None => format!("{kind} {name}"),
        }
    }

    fn default_namespace(&mut self) {
        let meta = match self {
            Self::IngressClass(_) => return,
            Self::Ingress(o) => &mut o.metadata,
            Self::WebSocketRoute(o) => &mut o.metadata,
            Self::Service(o) => &mut o.metadata,
            Self::EndpointSlice(o) => &mut o.metadata,
            Self::Secret(o) => &mut o.metadata,
        };
        meta.namespace.get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
    }
}

type Key = (String, String);

/// Every input of one build, indexed by namespace and name.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Ingresses, in the order given.
    pub ingresses: Vec<Ingress>,
    /// IngressClasses.
    pub ingress_classes: Vec<IngressClass>,
    /// WebSocketRoutes, in the order given.
    pub routes: Vec<WebSocketRoute>,
    services: BTreeMap<Key, Service>,
    slices: BTreeMap<Key, Vec<EndpointSlice>>,
    secrets: BTreeMap<Key, Secret>,
}

impl Snapshot {
    /// Indexes `objects`; namespaced objects without a namespace are put in `default`.
    pub fn new(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut snapshot = Self::default();
        for mut object in objects {
            object.default_namespace();
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
                self.services.insert(key(o.namespace(), o.name_any()), o);
            }
            Object::EndpointSlice(o) => {
                if let Some(service) = o.labels().get(SERVICE_NAME_LABEL) {
                    let service = key(o.namespace(), service.clone());
                    self.slices.entry(service).or_default().push(o);
                }
            }
            Object::Secret(o) => {
                self.secrets.insert(key(o.namespace(), o.name_any()), o);
            }
        }
    }

    /// The Service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// The EndpointSlices labelled for the Service `namespace/service`.
    pub fn endpoint_slices(&self, namespace: &str, service: &str) -> &[EndpointSlice] {
        self.slices.get(&(namespace.to_owned(), service.to_owned())).map_or(&[], Vec::as_slice)
    }

    /// Every address and port any EndpointSlice lists, ready or not: an endpoint missing here
    /// is gone, not merely unready.
    pub fn listed_endpoints(&self) -> std::collections::BTreeSet<std::net::SocketAddr> {
        let slices = self.slices.values().flatten();
        slices
            .flat_map(|slice| {
                let ports =
                    slice.ports.iter().flatten().filter_map(|p| p.port).filter_map(|p| u16::try_from(p).ok());
                let ports: Vec<u16> = ports.collect();
                let ips = slice.endpoints.iter().flat_map(|e| &e.addresses).filter_map(|a| a.parse().ok());
                ips.flat_map(move |ip: std::net::IpAddr| {
                    ports.clone().into_iter().map(move |port| std::net::SocketAddr::new(ip, port))
                })
            })
            .collect()
    }

    /// The Secret `namespace/name`.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.get(&(namespace.to_owned(), name.to_owned()))
    }
}

fn key(namespace: Option<String>, name: String) -> Key {
    (namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()), name)
}
