//! How long hawser waits for something, or that it never gives up.

use std::time::Duration;

use serde::{Serialize, Serializer};

/// A timeout that users may turn off. Written `0s` (or `0`), it is [`Timeout::Disabled`]
/// wherever it is accepted; a wait that cannot be turned off is a plain [`Duration`] instead, and
/// `0s` there is refused when the value is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// Never give up.
    Disabled,
    /// Give up after this long (more than zero).
    After(Duration),
}

impl Timeout {
    /// `Disabled` for zero, `After` otherwise.
    pub fn from_duration(duration: Duration) -> Self {
        if duration.is_zero() { Self::Disabled } else { Self::After(duration) }
    }

    /// How long, or `None` for never.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Self::Disabled => None,
            Self::After(duration) => Some(duration),
        }
    }
}

/// `"90s"`, or `null` when disabled.
impl Serialize for Timeout {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Disabled => serializer.serialize_none(),
            Self::After(duration) => serializer.collect_str(&humantime::format_duration(*duration)),
        }
    }
}
