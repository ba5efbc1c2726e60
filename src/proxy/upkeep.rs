//! What the proxy does on its own, between requests: when a table swap shows that an endpoint
//! left its EndpointSlices (gone, not merely unready), its tunnels are drained with 1012 so
//! clients reconnect at once instead of waiting for TCP to time out; and once a second, routes
//! that ask for rebalancing have surplus tunnels on overloaded endpoints closed (1012), at their
//! rate, until the spread is within their skew.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Proxy;
use super::drain::{Cause, Selector};
use crate::model::Rebalance;

/// How long the closes for a gone endpoint are spread over.
const ENDPOINT_GONE_WINDOW: Duration = Duration::from_secs(3);
/// How often routes are checked for rebalancing; also the window each round's closes spread over.
const REBALANCE_EVERY: Duration = Duration::from_secs(1);
/// Rounds whose tunnel totals a route's mean is taken over (the largest of them).
const ROUNDS_REMEMBERED: usize = 5;

/// Runs until the proxy is dropped.
pub async fn run(proxy: Weak<Proxy>) {
    let Some((mut generations, mut listed)) =
        proxy.upgrade().map(|p| (p.table.subscribe(), Arc::new(p.table.load().listed_endpoints().clone())))
    else {
        return;
    };
    let mut tick = tokio::time::interval(REBALANCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recent = RecentTotals::default();
    loop {
        tokio::select! {
            changed = generations.changed() => {
                let Some(proxy) = proxy.upgrade() else { return };
                if changed.is_err() {
                    return;
                }
                let now = Arc::new(proxy.table.load().listed_endpoints().clone());
                drain_gone(&proxy, &listed, &now);
                listed = now;
            }
            _ = tick.tick() => {
                let Some(proxy) = proxy.upgrade() else { return };
                rebalance(&proxy, &mut recent);
            }
        }
    }
}

fn drain_gone(proxy: &Proxy, before: &BTreeSet<SocketAddr>, now: &BTreeSet<SocketAddr>) {
    for gone in before.difference(now) {
        let tunnels = proxy.drain(Cause::EndpointGone, Selector::Endpoint(*gone), ENDPOINT_GONE_WINDOW);
        if tunnels > 0 {
            tracing::info!(endpoint = %gone, tunnels, "endpoint left its EndpointSlices, draining its tunnels");
        }
    }
}

/// Each rebalancing route's tunnel totals over the last rounds. A tunnel closed for
/// rebalancing leaves the count at once, but its client is back only after the close handshake
/// and a new one; a mean over the count of the moment would be too low while they reconnect,
/// and the next round would close more than the surplus. The largest recent total is the
/// number of tunnels to spread.
#[derive(Debug, Default)]
struct RecentTotals {
    round: usize,
    totals: HashMap<Arc<str>, [u32; ROUNDS_REMEMBERED]>,
}

impl RecentTotals {
    /// Records `total` for `route` this round; returns the largest of the remembered rounds.
    fn record(&mut self, route: &Arc<str>, total: u32) -> u32 {
        let rounds = self.totals.entry(route.clone()).or_default();
        rounds[self.round % ROUNDS_REMEMBERED] = total;
        rounds.iter().copied().max().unwrap_or(total)
    }

    /// Ends the round: routes not seen in it are forgotten.
    fn next_round(&mut self, seen: &BTreeSet<Arc<str>>) {
        self.totals.retain(|route, _| seen.contains(route));
        self.round += 1;
    }
}

fn rebalance(proxy: &Proxy, recent: &mut RecentTotals) {
    let table = proxy.table.load();
    let routes = table.hosts().iter().flat_map(|vhost| &vhost.routes);
    let mut seen = BTreeSet::new();
    for route in routes {
        let Some(settings) = route.policy.rebalance else { continue };
        seen.insert(route.name.clone());
        let ready: Vec<SocketAddr> = route.backend.endpoints().iter().map(|e| e.addr).collect();
        let counts = proxy.drains.per_endpoint(&route.name);
        let total = recent.record(&route.name, ready.iter().filter_map(|e| counts.get(e)).sum());
        for (endpoint, closes) in surplus(&counts, &ready, total, settings) {
            tracing::info!(route = %route.name, %endpoint, closes, "rebalancing");
            let selector = Selector::RouteEndpoint(route.name.clone(), endpoint);
            proxy.drains.order(Cause::Rebalance, selector, REBALANCE_EVERY, Some(u64::from(closes)));
        }
    }
    recent.next_round(&seen);
}

/// How many tunnels to close on which endpoints so that none of the `ready` ones holds more
/// than `max_skew` × the mean of `total` tunnels (at least those counted on them), at most
/// `closes_per_second` in all, taken one at a time from the most loaded. Tunnels on endpoints
/// no longer ready are not counted.
pub fn surplus(
    counts: &HashMap<SocketAddr, u32>,
    ready: &[SocketAddr],
    total: u32,
    settings: Rebalance,
) -> Vec<(SocketAddr, u32)> {
    let mut load: Vec<(SocketAddr, u32)> =
        ready.iter().map(|e| (*e, counts.get(e).copied().unwrap_or(0))).collect();
    let total = total.max(load.iter().map(|(_, n)| n).sum());
    if load.len() < 2 || total == 0 {
        return Vec::new();
    }
    let mean = f64::from(total) / load.len() as f64;
    let limit = ((settings.max_skew * mean).floor() as u32).max(mean.ceil() as u32);
    let mut closes: HashMap<SocketAddr, u32> = HashMap::new();
    for _ in 0..settings.closes_per_second {
        let Some(most) = load.iter_mut().filter(|(_, n)| *n > limit).max_by_key(|(_, n)| *n) else { break };
        most.1 -= 1;
        *closes.entry(most.0).or_default() += 1;
    }
    let mut closes: Vec<(SocketAddr, u32)> = closes.into_iter().collect();
    closes.sort();
    closes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        ([10, 0, 0, n], 80).into()
    }

    #[test]
    fn surplus_brings_the_most_loaded_down_to_the_skew_at_the_rate() {
        let counts: HashMap<SocketAddr, u32> = [(addr(1), 30), (addr(2), 30)].into();
        let four = [addr(1), addr(2), addr(3), addr(4)];
        let slow = Rebalance { max_skew: 1.25, closes_per_second: 5 };
        // Mean 15, limit 18: 12 surplus on each, 5 this second, alternating.
        assert_eq!(surplus(&counts, &four, 0, slow), vec![(addr(1), 2), (addr(2), 3)]);
        let fast = Rebalance { max_skew: 1.25, closes_per_second: 100 };
        assert_eq!(surplus(&counts, &four, 0, fast), vec![(addr(1), 12), (addr(2), 12)]);
        // Ten of them closed a round ago and reconnecting: the mean stays that of 60.
        let reconnecting: HashMap<SocketAddr, u32> = [(addr(1), 25), (addr(2), 25)].into();
        assert_eq!(surplus(&reconnecting, &four, 60, fast), vec![(addr(1), 7), (addr(2), 7)]);
        // Within the skew, or one endpoint, or nothing open: nothing to do.
        let even: HashMap<SocketAddr, u32> =
            [(addr(1), 18), (addr(2), 18), (addr(3), 12), (addr(4), 12)].into();
        assert!(surplus(&even, &four, 0, fast).is_empty());
        assert!(surplus(&counts, &[addr(1)], 0, fast).is_empty());
        assert!(surplus(&HashMap::new(), &four, 0, fast).is_empty());
        // Tunnels on an endpoint that is no longer ready are not the route's to move.
        let leaving: HashMap<SocketAddr, u32> = [(addr(9), 50), (addr(1), 5), (addr(2), 5)].into();
        assert!(surplus(&leaving, &[addr(1), addr(2)], 0, fast).is_empty());
    }

    #[test]
    fn the_largest_recent_total_is_spread() {
        let mut recent = RecentTotals::default();
        let route: Arc<str> = "r".into();
        let seen = BTreeSet::from([route.clone()]);
        assert_eq!(recent.record(&route, 60), 60);
        recent.next_round(&seen);
        assert_eq!(recent.record(&route, 50), 60, "ten are reconnecting");
        for _ in 0..ROUNDS_REMEMBERED {
            recent.next_round(&seen);
            recent.record(&route, 50);
        }
        assert_eq!(recent.record(&route, 50), 50, "they did not come back");
        recent.next_round(&BTreeSet::new());
        assert!(recent.totals.is_empty(), "a route without rebalancing is forgotten");
    }
}
