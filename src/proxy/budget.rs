//! How many client connections the proxy takes at once, so that it never runs out of file
//! descriptors: at the limit, new connections are closed at once (and counted) while the
//! admin listener, probes and live connections keep the descriptors they need. Without it, a
//! flood at the descriptor limit makes `/healthz` fail and the liveness probe restart the pod,
//! cutting every tunnel on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Descriptors kept back from the proxy listeners: admin, probes, backend pool, files, and
/// the pipes tunnels splice through (two descriptors each).
const RESERVED_DESCRIPTORS: u64 = 100 + 2 * super::tunnel::MAX_PIPES as u64;

/// The default `--max-connections`: every proxied connection holds two descriptors (the
/// client's and the backend's), and [`RESERVED_DESCRIPTORS`] stay free.
pub fn default_max_connections() -> usize {
    let limit = open_files_limit().unwrap_or(1024);
    usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS) / 2).unwrap_or(usize::MAX).max(1)
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` elsewhere or when
/// unlimited.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Open client connections (tunnels are counted by the proxy's task tracker on top), or
/// upgrade handshakes waiting for their backend.
#[derive(Debug, Default)]
pub struct ConnectionCount(Arc<AtomicUsize>);

/// One open client connection; gives its place back when dropped.
#[derive(Debug)]
pub struct Counted(Arc<AtomicUsize>);

impl ConnectionCount {
    /// Counts one more connection.
    pub fn open(&self) -> Counted {
        self.0.fetch_add(1, Ordering::Relaxed);
        Counted(self.0.clone())
    }

    /// Counts one more unless `limit` are counted already.
    pub fn try_open(&self, limit: usize) -> Option<Counted> {
        let counted = self.open();
        (self.get() <= limit).then_some(counted)
    }

    /// Connections open now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_defaults() {
        let count = ConnectionCount::default();
        let (a, b) = (count.open(), count.open());
        assert_eq!(count.get(), 2);
        assert!(count.try_open(2).is_none(), "a third is over the limit of two");
        let c = count.try_open(3).expect("room for a third");
        drop((a, b, c));
        assert_eq!(count.get(), 0);
        assert!(default_max_connections() >= 1);
    }
}
