//! ReferenceGrants: whether an object may refer to one in another namespace (Gateway API
//! `ReferenceGrant`, GEP-709). A reference within one namespace needs none.

use super::super::lookup::Lookup;

/// The side of a reference that refers: `group`/`kind` in `namespace`.
#[derive(Clone, Copy, Debug)]
pub struct Referrer<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
}

/// The side referred to: `group`/`kind` named `name` in `namespace`.
#[derive(Clone, Copy, Debug)]
pub struct Referent<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Whether `from` may refer to `to`: the same namespace, or a ReferenceGrant in `to`'s
/// namespace lists both.
pub fn permits(lookup: &Lookup<'_>, from: Referrer<'_>, to: Referent<'_>) -> bool {
    from.namespace == to.namespace
        || lookup.reference_grants(to.namespace).iter().any(|grant| {
            let spec = &grant.spec;
            spec.from
                .iter()
                .any(|f| f.group == from.group && f.kind == from.kind && f.namespace == from.namespace)
                && spec.to.iter().any(|t| {
                    t.group == to.group && t.kind == to.kind && t.name.as_deref().is_none_or(|n| n == to.name)
                })
        })
}
