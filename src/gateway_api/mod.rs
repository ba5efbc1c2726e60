//! Gateway API v1.5.1 (Standard channel) types: GatewayClass, Gateway, HTTPRoute (`HttpRoute`),
//! ReferenceGrant and BackendTLSPolicy (`BackendTlsPolicy`), generated from the upstream CRDs in `crds/gateway-api/` by
//! `crds/gateway-api/regenerate.py` (kopium, plus an `Unknown` variant on every enum so that one
//! object with a value this version does not know cannot fail a whole list) and not edited.
//! (The `gateway-api` crate follows an older kube.) Tests below check that every field of the
//! CRDs is a field of these types and nothing else is, and that unknown values read as `Unknown`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

#[rustfmt::skip]
pub mod backendtlspolicies;
#[rustfmt::skip]
pub mod gatewayclasses;
#[rustfmt::skip]
pub mod gateways;
#[rustfmt::skip]
pub mod httproutes;
#[rustfmt::skip]
pub mod referencegrants;

pub use backendtlspolicies::BackendTlsPolicy;
pub use gatewayclasses::GatewayClass;
pub use gateways::Gateway;
pub use httproutes::HttpRoute;
pub use referencegrants::ReferenceGrant;

/// The API group of every Gateway API kind.
pub const GROUP: &str = "gateway.networking.k8s.io";

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use kube::CustomResourceExt;
    use serde_json::Value;

    use super::*;

    /// Every field path in an OpenAPI schema: `spec.listeners[].hostname`, ….
    fn fields(schema: &Value, at: &str, out: &mut BTreeSet<String>) {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                let path = if at.is_empty() { name.clone() } else { format!("{at}.{name}") };
                out.insert(path.clone());
                fields(property, &path, out);
            }
        }
        if let Some(items) = schema.get("items") {
            fields(items, &format!("{at}[]"), out);
        }
        // schemars puts optional structs behind `anyOf`/`allOf`; the CRDs never do for fields.
        for key in ["anyOf", "allOf", "oneOf"] {
            for branch in schema.get(key).and_then(Value::as_array).into_iter().flatten() {
                fields(branch, at, out);
            }
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            panic!("unresolved {reference} at {at}");
        }
    }

    fn v1_fields(crd: &Value) -> BTreeSet<String> {
        let versions = crd["spec"]["versions"].as_array().expect("versions");
        let v1 = versions.iter().find(|v| v["name"] == "v1").expect("a v1 version");
        let mut out = BTreeSet::new();
        fields(&v1["schema"]["openAPIV3Schema"], "", &mut out);
        // kube-derive leaves `apiVersion`, `kind` and `metadata` to the API server.
        out.retain(|f| f.starts_with("spec") || f.starts_with("status"));
        out
    }

    fn upstream(yaml: &str) -> Value {
        serde_yaml_ng::from_str(yaml).expect("upstream CRD")
    }

    #[test]
    fn values_this_version_does_not_know_read_as_unknown() {
        use httproutes::{HttpRouteRulesFiltersType, HttpRouteRulesMatchesPathType};
        let route: HttpRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
            "spec": {"rules": [{"matches": [{"path": {"type": "Glob", "value": "/*"}}],
                                "filters": [{"type": "ExternalAuth", "externalAuth": {}}]}]}
        }))
        .expect("an HTTPRoute from a newer or Experimental-channel CRD");
        let rule = &route.spec.rules.as_deref().expect("rules")[0];
        let filter = &rule.filters.as_deref().expect("filters")[0];
        assert_eq!(filter.r#type, HttpRouteRulesFiltersType::Unknown);
        let path = rule.matches.as_deref().expect("matches")[0].path.as_ref().expect("path");
        assert_eq!(path.r#type, Some(HttpRouteRulesMatchesPathType::Unknown));
        let sources = [
            include_str!("gateways.rs"),
            include_str!("httproutes.rs"),
            include_str!("backendtlspolicies.rs"),
        ];
        for source in sources {
            let enums = source.matches("pub enum ").count();
            assert_eq!(source.matches("#[serde(other)]").count(), enums, "every enum has Unknown");
        }
    }

    #[test]
    fn the_types_have_exactly_the_fields_of_the_upstream_crds() {
        let cases = [
            (GatewayClass::crd(), include_str!("../../crds/gateway-api/gatewayclasses.yaml")),
            (Gateway::crd(), include_str!("../../crds/gateway-api/gateways.yaml")),
            (HttpRoute::crd(), include_str!("../../crds/gateway-api/httproutes.yaml")),
            (ReferenceGrant::crd(), include_str!("../../crds/gateway-api/referencegrants.yaml")),
            (BackendTlsPolicy::crd(), include_str!("../../crds/gateway-api/backendtlspolicies.yaml")),
        ];
        for (ours, theirs) in cases {
            let ours = serde_json::to_value(&ours).expect("CRD as JSON");
            let name = ours["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            assert_eq!(v1_fields(&ours), v1_fields(&upstream(theirs)), "{name}");
        }
    }
}
