//! A Kubernetes object's namespace and name, as `--default-ssl-certificate` and friends take it.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::ValueError;

/// `NAMESPACE/NAME` of one object (which kind is up to the field that holds it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self { namespace: namespace.to_owned(), name: name.to_owned() }
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// As `"NAMESPACE/NAME"`.
impl Serialize for NamespacedName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `NAMESPACE/NAME`, both parts non-empty.
impl FromStr for NamespacedName {
    type Err = ValueError;

    fn from_str(value: &str) -> Result<Self, ValueError> {
        match value.trim().split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self::new(namespace, name))
            }
            _ => Err(ValueError::malformed(value, "NAMESPACE/NAME")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_namespace_slash_name() {
        let read = |v: &str| v.parse::<NamespacedName>().ok().map(|n| n.to_string());
        assert_eq!(read("ns/a"), Some("ns/a".into()));
        assert_eq!(read(" ns/a "), Some("ns/a".into()));
        for bad in ["a", "/a", "ns/", "ns/a/b", ""] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
    }
}
