//! A rule as it came: read when its fields have the right types, kept as raw JSON with the
//! reason otherwise, so one mistyped rule (possible in a manifests directory; the API server's
//! schema rejects it in a cluster) leaves out that rule alone, not its whole WebSocketRoute.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::RouteRule;

/// One entry of `spec.rules`.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleSlot {
    /// A rule that parsed.
    Valid(Box<RouteRule>),
    /// A rule that did not, as written, and why.
    Invalid {
        /// The parse error.
        error: String,
        /// The rule as written.
        raw: serde_json::Value,
    },
}

impl From<RouteRule> for RuleSlot {
    fn from(rule: RouteRule) -> Self {
        Self::Valid(Box::new(rule))
    }
}

impl<'de> Deserialize<'de> for RuleSlot {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(deserializer)?;
        Ok(match RouteRule::deserialize(&raw) {
            Ok(rule) => Self::Valid(Box::new(rule)),
            Err(error) => Self::Invalid { error: error.to_string(), raw },
        })
    }
}

impl Serialize for RuleSlot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Valid(rule) => rule.serialize(serializer),
            Self::Invalid { raw, .. } => raw.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_rule_is_kept_apart_and_written_back_as_it_came() {
        let rules = serde_json::json!([
            {"backends": [{"name": "a", "port": 80}]},
            {"backends": [{"name": "b", "port": 80}], "maxConnections": "many"},
        ]);
        let slots: Vec<RuleSlot> = serde_json::from_value(rules.clone()).expect("slots");
        assert!(matches!(&slots[0], RuleSlot::Valid(rule) if rule.backends[0].name == "a"));
        match &slots[1] {
            RuleSlot::Invalid { error, .. } => assert!(error.contains("invalid type"), "{error}"),
            other => panic!("expected the second rule invalid, got {other:?}"),
        }
        assert_eq!(serde_json::to_value(&slots).expect("json"), rules);
    }
}
