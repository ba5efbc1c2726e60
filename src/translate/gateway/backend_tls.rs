//! BackendTLSPolicy (Gateway API, GEP-1897): TLS from hawser to a Service's endpoints, verified
//! against the CA bundles its `caCertificateRefs` name (ConfigMaps with `ca.crt`, in the
//! policy's namespace) and the `hostname` it gives, which is also sent as SNI. A policy targets
//! a Service (`sectionName`: one of its ports, by name); one naming the port beats one naming
//! the Service, then the oldest. `wellKnownCACertificates` (the system's CAs) and
//! `subjectAltNames` are not served: such a policy makes its routes answer 500 rather than send
//! traffic unverified. Its status names, as ancestors, the Gateways of the HTTPRoutes that send
//! to its Services.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use super::super::lookup::Lookup;
use super::super::secret_error::SecretError;
use super::super::tls;
use std::sync::Arc;

use super::super::Output;
use super::super::report::{Reason, Reporter};
use super::GatewaySettings;
use super::facts::{Facts, PolicyFacts, TargetFact, Why};
use super::policy::our_gateways;
use crate::gateway_api::{BackendTlsPolicy, HttpRoute};
use crate::model::BackendProtocol;

/// How hawser talks to the Service `namespace/service` on its port named `port` (if named):
/// `Ok(None)` when no BackendTLSPolicy targets it.
pub fn protocol(
    lookup: &Lookup<'_>,
    namespace: &str,
    service: &str,
    port: Option<&str>,
) -> Result<Option<BackendProtocol>, Why> {
    let Some(policy) = policy_for(lookup, namespace, service, port) else { return Ok(None) };
    validated(policy, lookup).map(Some)
}

/// The TLS `policy` asks for, or why hawser cannot give it.
fn validated(policy: &BackendTlsPolicy, lookup: &Lookup<'_>) -> Result<BackendProtocol, Why> {
    let namespace = policy.namespace().unwrap_or_default();
    let validation = &policy.spec.validation;
    let name = format!("BackendTLSPolicy {namespace}/{}", policy.name_any());
    if validation.well_known_ca_certificates.is_some() || validation.subject_alt_names.is_some() {
        let message = format!("{name}: wellKnownCACertificates and subjectAltNames are not served");
        return Err(("NoValidCACertificate", message));
    }
    let refs = validation.ca_certificate_refs.as_deref().unwrap_or_default();
    let Some(reference) = refs.first() else {
        return Err(("NoValidCACertificate", format!("{name} names no CA certificate")));
    };
    if (reference.group.as_str(), reference.kind.as_str()) != ("", "ConfigMap") {
        let message =
            format!("{name}: {} is not a CA bundle kind hawser reads (a ConfigMap is)", reference.kind);
        return Err(("InvalidKind", message));
    }
    let bundle = lookup
        .config_map(&namespace, &reference.name)
        .ok_or(SecretError::NotFound)
        .and_then(|c| tls::ca_bundle(&ca_crt(c)?, format!("ConfigMap {namespace}/{}", reference.name)));
    match bundle {
        Ok(ca) => {
            let mut protocol = BackendProtocol::HTTPS.with_server_name(Some(validation.hostname.clone()));
            protocol.verify_with(ca);
            Ok(protocol)
        }
        Err(problem) => {
            let message = format!("{name}: ConfigMap {namespace}/{}: {problem}", reference.name);
            Err(("InvalidCACertificateRef", message))
        }
    }
}

/// Checks `policy` (its validation, its CA bundle) and finds the Gateways of the HTTPRoutes that
/// send to a Service it targets (its ancestors), reporting problems; records what its status
/// reports.
pub fn translate(
    policy: &BackendTlsPolicy,
    (lookup, gateway_settings): (&Lookup<'_>, &GatewaySettings),
    reporter: &mut Reporter<'_>,
    out: &mut Output,
) {
    let namespace = policy.namespace().unwrap_or_default();
    let resolved = validated(policy, lookup).map(|_| ());
    if let Err((_, message)) = &resolved {
        reporter.report(
            Reason::Invalid,
            "spec.validation",
            format!("{message}; routes to its Services answer 500"),
        );
    }
    let services = policy.spec.target_refs.iter().filter(|t| t.group.is_empty() && t.kind == "Service");
    // Another policy for the same Service (or port) that takes precedence: this one is
    // `Conflicted` there (the Gateway API's rules for policy attachment).
    let lost = services.clone().find(|t| {
        policy_for(lookup, &namespace, &t.name, t.section_name.as_deref())
            .is_some_and(|p| !std::ptr::eq(p, policy))
    });
    let resolved = match (lost, resolved) {
        (Some(target), Ok(())) => {
            let message =
                format!("another BackendTLSPolicy takes precedence for Service {namespace}/{}", target.name);
            reporter.report(Reason::Conflict, "spec.targetRefs", message.clone());
            Err(("Conflicted", message))
        }
        (_, resolved) => resolved,
    };
    let targets: Vec<&str> = services.map(|t| t.name.as_str()).collect();
    let ancestors = lookup
        .http_routes()
        .iter()
        .filter(|route| sends_to(route, &namespace, &targets))
        .flat_map(|route| our_gateways(route, lookup, gateway_settings))
        .collect::<std::collections::BTreeSet<_>>();
    let ancestors = ancestors.into_iter().collect();
    let facts = PolicyFacts { targets: vec![TargetFact { index: 0, ancestors, accepted: resolved }] };
    out.facts = Some(Arc::new(Facts::BackendTls(facts)));
}

/// Whether a rule of `route` sends to one of the Services `services` in `namespace`.
fn sends_to(route: &HttpRoute, namespace: &str, services: &[&str]) -> bool {
    let route_namespace = route.namespace().unwrap_or_default();
    let refs = route.spec.rules.iter().flatten().flat_map(|r| r.backend_refs.iter().flatten());
    refs.into_iter().any(|r| {
        r.kind.as_deref().unwrap_or("Service") == "Service"
            && r.namespace.as_deref().unwrap_or(&route_namespace) == namespace
            && services.contains(&r.name.as_str())
    })
}

/// The policy for the Service's port: one naming the port, else one naming the Service; the
/// oldest, then the first by name.
fn policy_for<'a>(
    lookup: &Lookup<'a>,
    namespace: &str,
    service: &str,
    port: Option<&str>,
) -> Option<&'a BackendTlsPolicy> {
    let specificity = |section: &Option<String>| super::specificity(section.as_deref(), port);
    lookup
        .backend_tls_policies(namespace)
        .iter()
        .filter_map(|policy| {
            let targets = policy
                .spec
                .target_refs
                .iter()
                .filter(|t| t.group.is_empty() && t.kind == "Service" && t.name == service);
            let created = policy.creation_timestamp().map(|t| t.0);
            Some((
                (
                    targets.filter_map(|t| specificity(&t.section_name)).min()?,
                    created.is_none(),
                    created,
                    policy.name_any(),
                ),
                &**policy,
            ))
        })
        .min_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, policy)| policy)
}

/// The `ca.crt` of a ConfigMap (`data`, or `binaryData`).
fn ca_crt(map: &ConfigMap) -> Result<Vec<u8>, SecretError> {
    let text = map.data.as_ref().and_then(|d| d.get("ca.crt")).map(|s| s.as_bytes().to_vec());
    let binary = || map.binary_data.as_ref().and_then(|d| d.get("ca.crt")).map(|b| b.0.clone());
    text.or_else(binary).filter(|b| !b.is_empty()).ok_or(SecretError::MissingKey { key: "ca.crt" })
}
