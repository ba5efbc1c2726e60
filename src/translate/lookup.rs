//! The snapshot as one object's translation sees it. Every Service, EndpointSlice, Secret,
//! Namespace and Gateway API object a translation looks up is recorded with what it found ([`Reads`]), so a later build can tell
//! whether that translation still holds: it does while the object and everything it read are
//! the same (`Arc`-identical) in the new snapshot. Parsed Secrets (certificates, CA bundles) are
//! kept in [`SecretParses`] from build to build, so a Secret is parsed once per content.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::crd::WebSocketPolicy;
use crate::gateway_api::{BackendTlsPolicy, Gateway, GatewayClass, HttpRoute, ReferenceGrant};
use crate::model::NamespacedName as Key;
use crate::snapshot::Snapshot;

/// Lookups into a snapshot, recorded.
#[derive(Debug)]
pub struct Lookup<'a> {
    snapshot: &'a Snapshot,
    parses: &'a SecretParses,
    reads: RefCell<Reads>,
}

impl<'a> Lookup<'a> {
    /// Lookups into `snapshot`, parsing Secrets through `parses`.
    pub fn new(snapshot: &'a Snapshot, parses: &'a SecretParses) -> Self {
        Self { snapshot, parses, reads: RefCell::default() }
    }

    /// What was looked up so far.
    pub fn into_reads(self) -> Reads {
        self.reads.into_inner()
    }

    /// The Service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&'a Service> {
        let found = self.snapshot.service(namespace, name);
        self.record(Read::Service(key(namespace, name), found.cloned()));
        found.map(|s| &**s)
    }

    /// The EndpointSlices labelled for the Service `namespace/service`.
    pub fn endpoint_slices(&self, namespace: &str, service: &str) -> &'a [Arc<EndpointSlice>] {
        let found = self.snapshot.endpoint_slices(namespace, service);
        self.record(Read::Slices(key(namespace, service), found.to_vec()));
        found
    }

    /// The Secret `namespace/name`.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&'a Secret> {
        self.secret_arc(namespace, name).map(|s| &**s)
    }

    /// What `parse` makes of the Secret `namespace/name` (`None`: no such Secret), parsed once
    /// per content and `use_` ("certificate", "backend CA").
    pub fn parsed_secret<T>(
        &self,
        (namespace, name): (&str, &str),
        use_: &'static str,
        parse: impl FnOnce(&Secret) -> T,
    ) -> Option<T>
    where
        T: Clone + Send + Sync + 'static,
    {
        let secret = self.secret_arc(namespace, name)?;
        Some(self.parses.get_or_parse(key(namespace, name), use_, secret, parse))
    }

    /// The Namespace `name`, if the source has Namespaces.
    pub fn namespace(&self, name: &str) -> Option<&'a Namespace> {
        let found = self.snapshot.namespace(name);
        self.record(Read::Namespace(key("", name), found.cloned()));
        found.map(|n| &**n)
    }

    /// The GatewayClass `name`.
    pub fn gateway_class(&self, name: &str) -> Option<&'a GatewayClass> {
        let found = self.snapshot.gateway_class(name);
        self.record(Read::GatewayClass(key("", name), found.cloned()));
        found.map(|c| &**c)
    }

    /// The Gateway `namespace/name`.
    pub fn gateway(&self, namespace: &str, name: &str) -> Option<&'a Gateway> {
        let found = self.snapshot.gateway(namespace, name);
        self.record(Read::Gateway(key(namespace, name), found.cloned()));
        found.map(|g| &**g)
    }

    /// The ReferenceGrants in `namespace`.
    pub fn reference_grants(&self, namespace: &str) -> &'a [Arc<ReferenceGrant>] {
        let found = self.snapshot.reference_grants(namespace);
        self.record(Read::Grants(key(namespace, ""), found.to_vec()));
        found
    }

    /// The HTTPRoute `namespace/name`.
    pub fn http_route(&self, namespace: &str, name: &str) -> Option<&'a HttpRoute> {
        let found = self.snapshot.http_route(namespace, name);
        self.record(Read::HttpRoute(key(namespace, name), found.cloned()));
        found.map(|r| &**r)
    }

    /// Every HTTPRoute.
    pub fn http_routes(&self) -> &'a [Arc<HttpRoute>] {
        let found = &self.snapshot.http_routes;
        self.record(Read::AllHttpRoutes(key("", ""), found.clone()));
        found
    }

    /// The WebSocketPolicies in `namespace`.
    pub fn websocket_policies(&self, namespace: &str) -> &'a [Arc<WebSocketPolicy>] {
        let found = self.snapshot.websocket_policies(namespace);
        self.record(Read::Policies(key(namespace, ""), found.to_vec()));
        found
    }

    /// The BackendTLSPolicies in `namespace`.
    pub fn backend_tls_policies(&self, namespace: &str) -> &'a [Arc<BackendTlsPolicy>] {
        let found = self.snapshot.backend_tls_policies(namespace);
        self.record(Read::BackendTls(key(namespace, ""), found.to_vec()));
        found
    }

    /// The ConfigMap `namespace/name`.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&'a ConfigMap> {
        let found = self.snapshot.config_map(namespace, name);
        self.record(Read::ConfigMap(key(namespace, name), found.cloned()));
        found.map(|c| &**c)
    }

    fn secret_arc(&self, namespace: &str, name: &str) -> Option<&'a Arc<Secret>> {
        let found = self.snapshot.secret(namespace, name);
        self.record(Read::Secret(key(namespace, name), found.cloned()));
        found
    }

    fn record(&self, read: Read) {
        let mut reads = self.reads.borrow_mut();
        // A translation looks the same Service up once per path; checking it once is enough.
        if !reads.0.iter().any(|r| r.key() == read.key()) {
            reads.0.push(read);
        }
    }
}

fn key(namespace: &str, name: &str) -> Key {
    Key::new(namespace, name)
}

/// What one translation looked up, and what it found.
#[derive(Debug, Default)]
pub struct Reads(Vec<Read>);

#[derive(Debug)]
enum Read {
    Service(Key, Option<Arc<Service>>),
    Slices(Key, Vec<Arc<EndpointSlice>>),
    Secret(Key, Option<Arc<Secret>>),
    Namespace(Key, Option<Arc<Namespace>>),
    GatewayClass(Key, Option<Arc<GatewayClass>>),
    Gateway(Key, Option<Arc<Gateway>>),
    Grants(Key, Vec<Arc<ReferenceGrant>>),
    HttpRoute(Key, Option<Arc<HttpRoute>>),
    Policies(Key, Vec<Arc<WebSocketPolicy>>),
    BackendTls(Key, Vec<Arc<BackendTlsPolicy>>),
    ConfigMap(Key, Option<Arc<ConfigMap>>),
    AllHttpRoutes(Key, Vec<Arc<HttpRoute>>),
}

impl Read {
    fn key(&self) -> (u8, &Key) {
        match self {
            Self::Service(key, _) => (0, key),
            Self::Slices(key, _) => (1, key),
            Self::Secret(key, _) => (2, key),
            Self::Namespace(key, _) => (3, key),
            Self::GatewayClass(key, _) => (4, key),
            Self::Gateway(key, _) => (5, key),
            Self::Grants(key, _) => (6, key),
            Self::HttpRoute(key, _) => (7, key),
            Self::Policies(key, _) => (8, key),
            Self::BackendTls(key, _) => (9, key),
            Self::ConfigMap(key, _) => (10, key),
            Self::AllHttpRoutes(key, _) => (11, key),
        }
    }
}

impl Reads {
    /// Whether every lookup would find the same objects in `snapshot`. (The `Arc`s held here
    /// keep the objects alive, so an address cannot be reused by a different object.)
    pub fn still_hold(&self, snapshot: &Snapshot) -> bool {
        self.0.iter().all(|read| match read {
            Read::Service(Key { namespace, name }, seen) => {
                same(snapshot.service(namespace, name), seen.as_ref())
            }
            Read::Secret(Key { namespace, name }, seen) => {
                same(snapshot.secret(namespace, name), seen.as_ref())
            }
            Read::Slices(Key { namespace, name: service }, seen) => {
                same_all(snapshot.endpoint_slices(namespace, service), seen)
            }
            Read::Namespace(Key { name, .. }, seen) => same(snapshot.namespace(name), seen.as_ref()),
            Read::GatewayClass(Key { name, .. }, seen) => same(snapshot.gateway_class(name), seen.as_ref()),
            Read::Gateway(Key { namespace, name }, seen) => {
                same(snapshot.gateway(namespace, name), seen.as_ref())
            }
            Read::Grants(Key { namespace, .. }, seen) => same_all(snapshot.reference_grants(namespace), seen),
            Read::HttpRoute(Key { namespace, name }, seen) => {
                same(snapshot.http_route(namespace, name), seen.as_ref())
            }
            Read::Policies(Key { namespace, .. }, seen) => {
                same_all(snapshot.websocket_policies(namespace), seen)
            }
            Read::BackendTls(Key { namespace, .. }, seen) => {
                same_all(snapshot.backend_tls_policies(namespace), seen)
            }
            Read::ConfigMap(Key { namespace, name }, seen) => {
                same(snapshot.config_map(namespace, name), seen.as_ref())
            }
            Read::AllHttpRoutes(_, seen) => same_all(&snapshot.http_routes, seen),
        })
    }
}

fn same_all<T>(now: &[Arc<T>], seen: &[Arc<T>]) -> bool {
    now.len() == seen.len() && now.iter().zip(seen).all(|(a, b)| Arc::ptr_eq(a, b))
}

fn same<T>(now: Option<&Arc<T>>, seen: Option<&Arc<T>>) -> bool {
    match (now, seen) {
        (None, None) => true,
        (Some(now), Some(seen)) => Arc::ptr_eq(now, seen),
        _ => false,
    }
}

/// Parses of Secrets, each kept with the Secret it was made from: reused while the Secret is
/// the same object or has the same type and data, forgotten when the Secret goes. Parsing is a
/// pure function of the content, so a build that uses this stays pure.
#[derive(Debug, Default)]
pub struct SecretParses {
    entries: RefCell<HashMap<(Key, &'static str), Parse>>,
}

#[derive(Debug)]
struct Parse {
    from: Arc<Secret>,
    result: Arc<dyn Any + Send + Sync>,
}

impl SecretParses {
    fn get_or_parse<T>(
        &self,
        key: Key,
        use_: &'static str,
        secret: &Arc<Secret>,
        parse: impl FnOnce(&Secret) -> T,
    ) -> T
    where
        T: Clone + Send + Sync + 'static,
    {
        let slot = (key, use_);
        let cached = self
            .entries
            .borrow()
            .get(&slot)
            .filter(|e| same_content(&e.from, secret))
            .and_then(|e| e.result.downcast_ref::<T>().cloned());
        if let Some(result) = cached {
            return result;
        }
        let result = parse(secret);
        let parse = Parse { from: secret.clone(), result: Arc::new(result.clone()) };
        self.entries.borrow_mut().insert(slot, parse);
        result
    }

    /// Forgets the parses of Secrets `snapshot` no longer has.
    pub fn retain_present(&self, snapshot: &Snapshot) {
        self.entries
            .borrow_mut()
            .retain(|(Key { namespace, name }, _), _| snapshot.secret(namespace, name).is_some());
    }
}

fn same_content(a: &Arc<Secret>, b: &Arc<Secret>) -> bool {
    Arc::ptr_eq(a, b) || (a.type_ == b.type_ && a.data == b.data && a.string_data == b.string_data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Object;

    fn object(value: serde_json::Value) -> Object {
        Object::from_value(value).expect("valid").expect("a kind the build reads")
    }

    fn secret(data: &str) -> Object {
        object(
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": data}}),
        )
    }

    fn service(port: u16) -> Object {
        object(
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}, "spec": {"ports": [{"port": port}]}}),
        )
    }

    #[test]
    fn a_secret_is_parsed_once_per_content() {
        let parses = SecretParses::default();
        let parsed = std::cell::Cell::new(0);
        let parse = |s: &Secret| {
            parsed.set(parsed.get() + 1);
            s.string_data.as_ref().and_then(|d| d.get("k")).cloned()
        };
        let value = |snapshot: &Snapshot, name| {
            Lookup::new(snapshot, &parses).parsed_secret(("default", name), "test", parse)
        };
        assert_eq!(value(&Snapshot::new([secret("a")]), "s"), Some(Some("a".to_owned())));
        assert_eq!(value(&Snapshot::new([secret("a")]), "s"), Some(Some("a".to_owned())));
        assert_eq!(parsed.get(), 1, "equal content in a new object: not parsed again");
        assert_eq!(value(&Snapshot::new([secret("b")]), "s"), Some(Some("b".to_owned())));
        assert_eq!(parsed.get(), 2);
        assert_eq!(value(&Snapshot::new([secret("b")]), "t"), None, "no such Secret");
        parses.retain_present(&Snapshot::new([]));
        assert!(parses.entries.borrow().is_empty(), "the Secret is gone, so is its parse");
    }

    #[test]
    fn reads_hold_while_what_they_found_is_unchanged() {
        let (svc, other) = (service(80), secret("a"));
        let before = Snapshot::new([svc.clone(), other.clone()]);
        let parses = SecretParses::default();
        let lookup = Lookup::new(&before, &parses);
        assert!(lookup.service("default", "svc").is_some());
        assert!(lookup.secret("default", "missing").is_none());
        assert!(lookup.endpoint_slices("default", "svc").is_empty());
        let reads = lookup.into_reads();
        assert!(
            reads.still_hold(&Snapshot::new([svc.clone(), secret("b")])),
            "the Secret it read is not `s`"
        );
        assert!(!reads.still_hold(&Snapshot::new([service(80)])), "a new Service object");
        let appeared = object(
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "missing"}}),
        );
        assert!(!reads.still_hold(&Snapshot::new([svc, appeared])), "a Secret it missed appeared");
    }
}
