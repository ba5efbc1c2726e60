//! Why a Secret's content cannot be used: a certificate, a CA bundle, a users file.

/// A Secret hawser cannot use. The message does not name the Secret; the caller does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No Secret of that name in the snapshot.
    #[error("not found")]
    NotFound,
    /// The key is absent or empty.
    #[error("has no {key}")]
    MissingKey { key: &'static str },
    /// The key holds something other than what it must.
    #[error("{key} is not {expected}: {reason}")]
    Unreadable { key: &'static str, expected: &'static str, reason: String },
    /// Readable, but nothing in it can be used.
    #[error("{0}")]
    Unusable(&'static str),
    /// A certificate whose validity starts after the build.
    #[error("the certificate is not valid before {0}")]
    NotYetValid(String),
    /// A certificate whose validity ended before the build.
    #[error("the certificate expired on {0}")]
    Expired(String),
}

impl SecretError {
    /// `key` is not `expected`, because of `reason` (a parser's message).
    pub fn unreadable(key: &'static str, expected: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Unreadable { key, expected, reason: reason.to_string() }
    }
}
