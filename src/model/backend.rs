//! A route's backend: the weighted endpoints new connections may go to, the round-robin
//! schedule computed once when the table is built, and the share of requests that must fail
//! instead (a Gateway API rule's invalid backends).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

/// The longest round-robin schedule kept; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 4096;

/// One address that takes new connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Endpoint {
    /// Where the backend listens.
    pub addr: SocketAddr,
    /// Relative share of new connections; 0 takes none.
    pub weight: u32,
}

/// The ready endpoints of a route, with a smooth weighted round-robin schedule.
#[derive(Debug, Serialize)]
pub struct Backend {
    endpoints: Vec<Endpoint>,
    /// Weight of the requests answered 500 instead, beside the endpoints' (0: none).
    #[serde(skip_serializing_if = "is_zero")]
    failing: u32,
    #[serde(skip)]
    schedule: Vec<u32>,
    #[serde(skip)]
    cursor: AtomicUsize,
    /// Counts requests for the failing share.
    #[serde(skip)]
    failures: AtomicUsize,
}

fn is_zero(weight: &u32) -> bool {
    *weight == 0
}

impl Backend {
    /// Endpoints with weight 0 are dropped; duplicates are kept (they double the share).
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        let endpoints: Vec<Endpoint> = endpoints.into_iter().filter(|e| e.weight > 0).collect();
        let schedule = smooth_schedule(&endpoints);
        Self { endpoints, failing: 0, schedule, cursor: AtomicUsize::new(0), failures: AtomicUsize::new(0) }
    }

    /// The same endpoints, with requests of weight `failing` (against theirs) answered 500: the
    /// Gateway API's share of a rule's invalid backends.
    pub fn with_failing(mut self, failing: u32) -> Self {
        self.failing = failing;
        self
    }

    /// The weight of the failing share (0: none).
    pub fn failing(&self) -> u32 {
        self.failing
    }

    /// Whether this request falls in the failing share (spread evenly: with weights 1 to 1,
    /// every other request).
    pub fn fails_now(&self) -> bool {
        if self.failing == 0 {
            return false;
        }
        let total =
            self.endpoints.iter().map(|e| u128::from(e.weight)).sum::<u128>() + u128::from(self.failing);
        let turn = self.failures.fetch_add(1, Ordering::Relaxed) as u128 % total;
        // The n-th request fails when the failing share's running total crosses a whole number
        // (u128: weights times their sum overflow u64).
        let share = |n: u128| n * u128::from(self.failing) / total;
        share(turn + 1) > share(turn)
    }

    /// The endpoints that take new connections.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Advances the shared round-robin cursor and returns the next position in the schedule.
    pub fn next_turn(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }

    /// The endpoint index scheduled at position `turn` (any number; it wraps).
    pub fn scheduled(&self, turn: usize) -> Option<usize> {
        let len = self.schedule.len();
        (len > 0).then(|| self.schedule[turn % len] as usize)
    }
}

impl Clone for Backend {
    fn clone(&self) -> Self {
        Self::new(self.endpoints.clone()).with_failing(self.failing)
    }
}

impl PartialEq for Backend {
    fn eq(&self, other: &Self) -> bool {
        self.endpoints == other.endpoints && self.failing == other.failing
    }
}

impl Eq for Backend {}

/// nginx's smooth weighted round-robin, run once over a whole cycle: with weights 5,1,1 the
/// cycle is a a b a c a a rather than a a a a a b c.
fn smooth_schedule(endpoints: &[Endpoint]) -> Vec<u32> {
    let weights = scaled_weights(endpoints);
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let Some((best, _)) = current.iter().enumerate().max_by_key(|&(i, c)| (*c, std::cmp::Reverse(i)))
        else {
            break;
        };
        current[best] -= total;
        schedule.push(best as u32);
    }
    schedule
}

/// Weights divided by their greatest common divisor, then scaled to fit [`MAX_SCHEDULE`].
fn scaled_weights(endpoints: &[Endpoint]) -> Vec<i64> {
    let divisor = endpoints.iter().map(|e| u64::from(e.weight)).fold(0, gcd).max(1);
    let reduced: Vec<u64> = endpoints.iter().map(|e| u64::from(e.weight) / divisor).collect();
    let total: u64 = reduced.iter().sum();
    reduced
        .into_iter()
        .map(|w| if total > MAX_SCHEDULE { (w * MAX_SCHEDULE / total).max(1) } else { w })
        .map(|w| i64::try_from(w).unwrap_or(i64::MAX))
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(weights: &[u32]) -> Backend {
        let endpoints = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Endpoint { addr: SocketAddr::from(([10, 0, 0, i as u8], 80)), weight })
            .collect();
        Backend::new(endpoints)
    }

    fn cycle(backend: &Backend) -> Vec<usize> {
        (0..backend.schedule.len()).filter_map(|t| backend.scheduled(t)).collect()
    }

    #[test]
    fn equal_weights_alternate() {
        assert_eq!(cycle(&backend(&[1, 1, 1])), vec![0, 1, 2]);
        assert_eq!(cycle(&backend(&[7, 7])), vec![0, 1]);
    }

    #[test]
    fn weights_interleave_smoothly() {
        assert_eq!(cycle(&backend(&[5, 1, 1])), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn zero_weights_take_nothing() {
        let backend = backend(&[0, 3]);
        assert_eq!(backend.endpoints().len(), 1);
        assert_eq!(cycle(&backend), vec![0]);
    }

    #[test]
    fn huge_weights_are_scaled_and_keep_every_endpoint() {
        let backend = backend(&[1_000_000, 1, 999_999]);
        let cycle = cycle(&backend);
        assert!(cycle.len() as u64 <= MAX_SCHEDULE + 3);
        assert!(cycle.contains(&1));
        let share_0 = cycle.iter().filter(|&&i| i == 0).count() as f64 / cycle.len() as f64;
        assert!((share_0 - 0.5).abs() < 0.01, "share {share_0}");
    }

    #[test]
    fn the_failing_share_is_spread_evenly() {
        let half = backend(&[1000]).with_failing(1000);
        let fails: Vec<bool> = (0..6).map(|_| half.fails_now()).collect();
        assert_eq!(fails.iter().filter(|&&f| f).count(), 3);
        let quarter = backend(&[1500, 1500]).with_failing(1000);
        assert_eq!((0..400).filter(|_| quarter.fails_now()).count(), 100);
        assert!(!backend(&[1]).fails_now());
    }

    #[test]
    fn empty_backend_schedules_nothing() {
        assert_eq!(backend(&[]).scheduled(3), None);
    }
}
