//! Which Ingresses and WebSocketRoutes hawser serves.
//!
//! An Ingress is served when its `spec.ingressClassName` names an IngressClass whose
//! `spec.controller` is `--controller-name` (`hawser.dev/ingress-controller`), or names
//! `--ingress-class` itself (so a manifests directory needs no IngressClass object) unless an
//! IngressClass of that name belongs to another controller; when it has no class, it is served if
//! the deprecated `kubernetes.io/ingress.class` annotation names one of those classes, or if one
//! of hawser's IngressClasses carries `ingressclass.kubernetes.io/is-default-class: "true"`.
//!
//! A WebSocketRoute without `ingressClassName` is served by the install with the default
//! controller name, or by one whose IngressClass is the cluster's default: with two installs in
//! one cluster, exactly one of them serves it.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::ResourceExt;

use super::BuildConfig;
use crate::snapshot::Snapshot;

/// The IngressClass controller name hawser answers to unless `--controller-name` says otherwise.
pub const CONTROLLER_NAME: &str = "hawser.dev/ingress-controller";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The class names hawser serves and whether it is the cluster's default.
#[derive(Debug)]
pub struct Classes {
    names: Vec<String>,
    default: bool,
    /// Whether WebSocketRoutes without a class are ours.
    classless_routes: bool,
}

impl Classes {
    /// Reads the IngressClasses of `snapshot`.
    pub fn new(snapshot: &Snapshot, config: &BuildConfig) -> Self {
        let controller = |c: &IngressClass| c.spec.as_ref().and_then(|s| s.controller.clone());
        let ours: Vec<&Arc<IngressClass>> = snapshot
            .ingress_classes
            .iter()
            .filter(|c| controller(c).as_deref() == Some(config.controller_name.as_str()))
            .collect();
        let default = ours
            .iter()
            .any(|c| c.annotations().get(DEFAULT_CLASS_ANNOTATION).map(String::as_str) == Some("true"));
        let mut names: Vec<String> = ours.iter().map(|c| c.name_any()).collect();
        let claimed_elsewhere = snapshot.ingress_classes.iter().any(|c| {
            c.name_any() == config.ingress_class
                && controller(c).as_deref() != Some(config.controller_name.as_str())
        });
        if !claimed_elsewhere {
            names.push(config.ingress_class.clone());
        }
        let classless_routes = default || config.controller_name == CONTROLLER_NAME;
        Self { names, default, classless_routes }
    }

    fn is_ours(&self, class: &str) -> bool {
        self.names.iter().any(|name| name == class)
    }

    /// Whether hawser serves `ingress`.
    pub fn serves_ingress(&self, ingress: &Ingress) -> bool {
        if let Some(class) = ingress.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()) {
            return self.is_ours(class);
        }
        match ingress.annotations().get(LEGACY_CLASS_ANNOTATION) {
            Some(class) => self.is_ours(class),
            None => self.default,
        }
    }

    /// Whether hawser serves a WebSocketRoute with this `ingressClassName`.
    pub fn serves_route(&self, class: Option<&str>) -> bool {
        class.map_or(self.classless_routes, |class| self.is_ours(class))
    }
}
