//! Diagnostics of a build: which object, which field, what is wrong or what was done, and how
//! serious it is. Reports become `hawser check` output, log lines, Events and conditions.

use std::fmt;

use serde::Serialize;

/// What a report can be about. Declared in name order, the order reports are sorted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    #[serde(rename = "BackendTLSPolicy")]
    BackendTlsPolicy,
    /// A manifest file (standalone mode) that could not be read.
    File,
    Gateway,
    #[serde(rename = "HTTPRoute")]
    HttpRoute,
    Ingress,
    /// `--default-ssl-certificate`.
    Secret,
    WebSocketPolicy,
    WebSocketRoute,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HttpRoute => f.write_str("HTTPRoute"),
            Self::BackendTlsPolicy => f.write_str("BackendTLSPolicy"),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

/// The object a report is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: Kind,
    /// Empty for cluster-scoped objects and files.
    pub namespace: String,
    /// Object name, or a file path.
    pub name: String,
}

impl ObjectRef {
    /// A namespaced object.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        Self { kind, namespace: namespace.to_owned(), name: name.to_owned() }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace.as_str() {
            "" => write!(f, "{} {}", self.kind, self.name),
            namespace => write!(f, "{} {}/{}", self.kind, namespace, self.name),
        }
    }
}

/// What kind of finding a report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    /// A value is wrong; the object, rule or annotation it belongs to is left out.
    Invalid,
    /// Asks for an access restriction hawser does not enforce: the object's routes answer 503
    /// (fail closed) until it is removed or opted out.
    Refused,
    /// A referenced Service, port or Secret does not exist (or another namespace's object is
    /// referred to without a ReferenceGrant).
    UnresolvedRef,
    /// A Gateway API route is not attached to a parent it names: no listener of that Gateway
    /// takes it.
    NotAttached,
    /// Another object already serves the same host and path (or host TLS); this one lost.
    Conflict,
    /// A Service has no ready endpoint: requests get 503 until one is ready.
    NoEndpoints,
    /// A recognised setting hawser does not support (yet); it has no effect.
    Unsupported,
    /// An unknown setting; it has no effect.
    Ignored,
    /// A served certificate expires within 14 days of the build.
    Expiring,
    /// A foreign setting that tunes something hawser does not have; nothing to do.
    NotNeeded,
    /// A foreign setting mapped onto hawser's nearest equivalent.
    Translated,
    /// A setting applied as written.
    Honored,
}

/// How serious a report is. `hawser check` fails on errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Level {
    /// Something was left out or cannot work.
    Error,
    /// Works, but not as the author may expect.
    Warning,
    /// For the record.
    Info,
}

impl Reason {
    /// The level this kind of finding has.
    pub fn level(self) -> Level {
        match self {
            Self::Invalid | Self::Refused | Self::UnresolvedRef | Self::NotAttached => Level::Error,
            Self::Conflict | Self::NoEndpoints | Self::Unsupported | Self::Ignored | Self::Expiring => {
                Level::Warning
            }
            Self::NotNeeded | Self::Translated | Self::Honored => Level::Info,
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Report {
    /// The object it is about.
    pub object: ObjectRef,
    /// Where in the object: a field path or an annotation key.
    pub field: String,
    /// What kind of finding.
    pub reason: Reason,
    /// A sentence a user can act on.
    pub message: String,
}

impl Report {
    /// How serious it is.
    pub fn level(&self) -> Level {
        self.reason.level()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:?} {} {}: {}", self.level(), self.reason, self.object, self.field, self.message)
    }
}

/// Collects the reports of one object.
#[derive(Debug)]
pub struct Reporter<'r> {
    object: ObjectRef,
    reports: &'r mut Vec<Report>,
}

impl<'r> Reporter<'r> {
    /// Reports about `object` go into `reports`.
    pub fn new(object: ObjectRef, reports: &'r mut Vec<Report>) -> Self {
        Self { object, reports }
    }

    /// The object reported on.
    pub fn object(&self) -> &ObjectRef {
        &self.object
    }

    /// Adds one finding. User-written values quoted in the message are cut short, so a huge
    /// annotation does not become a huge log line, Event or condition.
    pub fn report(&mut self, reason: Reason, field: impl Into<String>, message: impl Into<String>) {
        let message = shorten_quoted(&message.into());
        let report = Report { object: self.object.clone(), field: field.into(), reason, message };
        self.reports.push(report);
    }
}

/// Longest quoted value kept whole in a finding, in characters.
const QUOTED_MAX: usize = 64;

/// Cuts every `"…"` (a `{:?}`-quoted value) longer than [`QUOTED_MAX`] characters, saying how
/// long it was.
fn shorten_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut rest = message;
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..=open]);
        let quoted = &rest[open + 1..];
        let close = quoted
            .char_indices()
            .scan(false, |escaped, (i, c)| {
                let end = c == '"' && !*escaped;
                *escaped = c == '\\' && !*escaped;
                Some((i, end))
            })
            .find(|(_, end)| *end)
            .map_or(quoted.len(), |(i, _)| i);
        let value = &quoted[..close];
        let length = value.chars().count();
        if length > QUOTED_MAX {
            out.extend(value.chars().take(QUOTED_MAX));
            out.push_str(&format!("…({length} characters)"));
        } else {
            out.push_str(value);
        }
        rest = &quoted[close..];
        if let Some(stripped) = rest.strip_prefix('"') {
            out.push('"');
            rest = stripped;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::shorten_quoted;

    #[test]
    fn long_quoted_values_are_cut() {
        let huge = "x".repeat(1 << 20);
        let message = shorten_quoted(&format!("{huge:?} is not a duration like 90s or 1h"));
        assert!(message.len() < 200, "{} bytes", message.len());
        assert!(message.ends_with("…(1048576 characters)\" is not a duration like 90s or 1h"), "{message}");
        let short = "\"90x\" is not a duration";
        assert_eq!(shorten_quoted(short), short);
        let escaped = format!("{:?} and {:?}", "a\"b", "c");
        assert_eq!(shorten_quoted(&escaped), escaped);
    }
}
