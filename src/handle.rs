//! The live routing table: swapped whole with ArcSwap, with a generation counter that tests,
//! readiness and the admin endpoint can watch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::model::RoutingTable;

/// Shared by the publisher (control plane) and every reader (proxy, admin).
#[derive(Debug)]
pub struct TableHandle {
    table: ArcSwap<RoutingTable>,
    generation: watch::Sender<u64>,
    config_errors: AtomicU64,
}

impl Default for TableHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl TableHandle {
    /// An empty table at generation 0 ("nothing published yet").
    pub fn new() -> Self {
        Self {
            table: ArcSwap::from_pointee(RoutingTable::default()),
            generation: watch::Sender::new(0),
            config_errors: AtomicU64::new(0),
        }
    }

    /// The current table. A request calls this once and uses the snapshot throughout.
    pub fn load(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Makes `table` live unless it equals the live one. Returns the generation now live.
    /// The first publish always counts, even of an empty table: it is what makes hawser ready.
    pub fn publish(&self, table: RoutingTable) -> u64 {
        let generation = self.generation();
        if generation > 0 && **self.table.load() == table {
            return generation;
        }
        self.table.store(Arc::new(table));
        self.generation.send_modify(|g| *g += 1);
        generation + 1
    }

    /// How many tables have been made live (0 until the first publish).
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Records how many error-level findings the latest build had, published or not
    /// (`hawser_config_errors`).
    pub fn set_config_errors(&self, errors: u64) {
        self.config_errors.store(errors, Ordering::Relaxed);
    }

    /// Error-level findings of the latest build (0 before the first).
    pub fn config_errors(&self) -> u64 {
        self.config_errors.load(Ordering::Relaxed)
    }

    /// A receiver that wakes on every swap.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, HostMatch, PathMatch, Policy, Route, VirtualHost};

    fn table(path: &str) -> RoutingTable {
        let route = Route::new("r", PathMatch::Prefix(path.into()), Backend::new(vec![]), Policy::default());
        RoutingTable::new(vec![VirtualHost::new(HostMatch::Any, vec![route])])
    }

    #[test]
    fn publish_swaps_only_changed_tables() {
        let handle = TableHandle::new();
        assert_eq!(handle.generation(), 0);
        assert_eq!(handle.publish(RoutingTable::default()), 1);
        assert_eq!(handle.publish(RoutingTable::default()), 1);
        assert_eq!(handle.publish(table("/a")), 2);
        assert_eq!(handle.publish(table("/a")), 2);
        assert_eq!(handle.publish(table("/b")), 3);
        assert!(handle.load().lookup("x", "/b", |_| None).is_some());
    }

    #[tokio::test]
    async fn subscribers_see_each_swap() {
        let handle = TableHandle::new();
        let mut generations = handle.subscribe();
        handle.publish(table("/a"));
        generations.changed().await.expect("sender alive");
        assert_eq!(*generations.borrow_and_update(), 1);
    }
}
