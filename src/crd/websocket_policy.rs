//! `WebSocketPolicy` (`hawser.dev/v1alpha1`, short name `wsp`): a WebSocketRoute rule's
//! connection settings for Gateway API HTTPRoutes, attached by `targetRefs` (Gateway API policy
//! attachment, GEP-713) to HTTPRoutes in its namespace, or to one rule of one (`sectionName`:
//! the rule's `name`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConnectionSettings;

/// WebSocket settings for the connections of HTTPRoutes (or of their rules).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hawser.dev",
    version = "v1alpha1",
    kind = "WebSocketPolicy",
    plural = "websocketpolicies",
    shortname = "wsp",
    namespaced,
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Targets","type":"string","jsonPath":".spec.targetRefs[*].name"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketPolicySpec {
    /// The HTTPRoutes in this namespace it sets, or one rule of one (`sectionName`: the rule's
    /// `name`). At least one.
    #[schemars(length(min = 1))]
    pub target_refs: Vec<PolicyTargetRef>,
    /// The settings, with the WebSocketRoute defaults for what it leaves unset.
    #[serde(flatten)]
    pub settings: ConnectionSettings,
}

/// An object a policy applies to (Gateway API `LocalPolicyTargetReferenceWithSectionName`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRef {
    /// `gateway.networking.k8s.io`.
    pub group: String,
    /// `HTTPRoute`.
    pub kind: String,
    /// The HTTPRoute's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// A rule's `name`; unset: every rule of the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// Where the policy took effect (Gateway API `PolicyStatus`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// One entry per Gateway its targets attach to (or per target that was not found), with
    /// the `Accepted` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// The policy's standing under one ancestor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    /// The Gateway (or, for a target not found, the target).
    pub ancestor_ref: AncestorRef,
    /// The controller that wrote this entry.
    pub controller_name: String,
    /// `Accepted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A reference to an ancestor (Gateway API `ParentReference`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AncestorRef {
    pub group: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}
