//! Why a value written in an annotation, a CRD field or a flag cannot be used.

/// A value hawser cannot use. The message names the value; the caller adds the field and what
/// happens instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not of the form the field takes.
    #[error("{value:?} is not {expected}")]
    Malformed { value: String, expected: &'static str },
    /// Zero where it cannot mean "off": a timeout that cannot be turned off, a cookie lifetime.
    #[error("{value:?} must be more than zero (this cannot be turned off)")]
    Zero { value: String },
    /// Well-formed, but hawser will not do what it asks.
    #[error("{value:?} {why}")]
    Refused { value: String, why: String },
    /// Settings that do not go together, or one that needs another.
    #[error("{0}")]
    Incomplete(&'static str),
}

impl ValueError {
    /// `value` is not `expected` (e.g. "a duration like 90s or 1h").
    pub fn malformed(value: &str, expected: &'static str) -> Self {
        Self::Malformed { value: value.to_owned(), expected }
    }

    /// `value` is refused; `why` completes the sentence after the value.
    pub fn refused(value: &str, why: impl Into<String>) -> Self {
        Self::Refused { value: value.to_owned(), why: why.into() }
    }
}
