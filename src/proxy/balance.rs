//! Choosing an endpoint for a new connection or request: weighted round-robin,
//! least-connections with counts that outlive table swaps, and consistent (rendezvous) hashing.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use http::{HeaderMap, Uri, header};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::OwnKeyMap;
use crate::model::{Backend, Endpoint, HashKey, LoadBalancing};

/// Above this many tracked endpoints, idle entries are forgotten on the next insert.
const PRUNE_ABOVE: usize = 4096;

/// Live connections (tunnels and in-flight requests) per endpoint address. Kept outside the
/// routing table, keyed by endpoint identity, so a table swap does not reset them.
#[derive(Debug, Default)]
pub struct EndpointLoads {
    counts: RwLock<OwnKeyMap<SocketAddr, Arc<AtomicU32>>>,
}

/// One live connection counted against an endpoint until dropped.
#[derive(Debug)]
pub struct LoadGuard(Arc<AtomicU32>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EndpointLoads {
    /// Live connections to `addr` now.
    pub fn current(&self, addr: SocketAddr) -> u32 {
        let counts = self.counts.read().unwrap_or_else(PoisonError::into_inner);
        counts.get(&addr).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts one more live connection to `addr` until the guard is dropped.
    pub fn acquire(&self, addr: SocketAddr) -> LoadGuard {
        let existing = self.counts.read().unwrap_or_else(PoisonError::into_inner).get(&addr).cloned();
        let count = existing.unwrap_or_else(|| {
            let mut counts = self.counts.write().unwrap_or_else(PoisonError::into_inner);
            if counts.len() > PRUNE_ABOVE {
                counts.retain(|_, c| Arc::strong_count(c) > 1);
            }
            counts.entry(addr).or_default().clone()
        });
        count.fetch_add(1, Ordering::Relaxed);
        LoadGuard(count)
    }
}

/// Picks an endpoint of `backend` for a new connection, never one in `skip` (endpoints that
/// already failed for this request). `hash` is the request's consistent-hash key, if any.
pub fn pick<'b>(
    backend: &'b Backend,
    strategy: &LoadBalancing,
    hash: Option<u64>,
    loads: &EndpointLoads,
    skip: &[SocketAddr],
) -> Option<&'b Endpoint> {
    let usable = |e: &&Endpoint| !skip.contains(&e.addr);
    match (strategy, hash) {
        (LoadBalancing::LeastConnections, _) => least_connections(backend, loads, usable),
        (LoadBalancing::ConsistentHash(_), Some(hash)) => rendezvous(backend.endpoints(), hash, usable),
        _ => round_robin(backend, usable),
    }
}

fn round_robin(backend: &Backend, usable: impl Fn(&&Endpoint) -> bool) -> Option<&Endpoint> {
    let turn = backend.next_turn();
    let endpoints = backend.endpoints();
    (0..endpoints.len().max(1) * 2)
        .filter_map(|offset| backend.scheduled(turn.wrapping_add(offset)))
        .filter_map(|index| endpoints.get(index))
        .find(&usable)
        .or_else(|| endpoints.iter().find(usable))
}

/// The endpoint with the lowest live-connections-to-weight ratio; ties rotate.
fn least_connections<'b>(
    backend: &'b Backend,
    loads: &EndpointLoads,
    usable: impl Fn(&&Endpoint) -> bool,
) -> Option<&'b Endpoint> {
    let endpoints = backend.endpoints();
    let start = backend.next_turn() % endpoints.len().max(1);
    let rotated = endpoints[start..].iter().chain(&endpoints[..start]);
    let mut best: Option<(&Endpoint, u64)> = None;
    for endpoint in rotated.filter(usable) {
        let load = u64::from(loads.current(endpoint.addr));
        let better = best.is_none_or(|(chosen, chosen_load)| {
            // load / weight < chosen_load / chosen.weight, without division.
            load * u64::from(chosen.weight) < chosen_load * u64::from(endpoint.weight)
        });
        if better {
            best = Some((endpoint, load));
        }
    }
    best.map(|(endpoint, _)| endpoint)
}

/// Weighted rendezvous hashing: each endpoint scores `weight / -ln(u)` with `u` drawn from the
/// hash of (key, endpoint); the highest score wins. Removing an endpoint moves only its keys.
fn rendezvous(endpoints: &[Endpoint], hash: u64, usable: impl Fn(&&Endpoint) -> bool) -> Option<&Endpoint> {
    let score = |endpoint: &Endpoint| {
        let draw = xxh3_64_with_seed(&addr_bytes(endpoint.addr), hash);
        let unit = (draw as f64 + 1.0) / (u64::MAX as f64 + 2.0);
        f64::from(endpoint.weight) / -unit.ln()
    };
    endpoints.iter().filter(usable).max_by(|a, b| score(a).total_cmp(&score(b)))
}

pub(super) fn addr_bytes(addr: SocketAddr) -> [u8; 18] {
    let mut bytes = [0u8; 18];
    let ip = match addr.ip() {
        IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
        IpAddr::V6(ip) => ip.octets(),
    };
    bytes[..16].copy_from_slice(&ip);
    bytes[16..].copy_from_slice(&addr.port().to_be_bytes());
    bytes
}

/// The consistent-hash key of a request, or `None` when the request lacks it.
pub fn hash_key(key: &HashKey, headers: &HeaderMap, uri: &Uri, client: IpAddr) -> Option<u64> {
    match key {
        HashKey::Header(name) => headers.get(name.as_str()).map(|v| xxh3_64(v.as_bytes())),
        HashKey::Cookie(name) => cookie(headers, name).map(|v| xxh3_64(v.as_bytes())),
        HashKey::Query(name) => query_param(uri, name).map(|v| xxh3_64(v.as_bytes())),
        HashKey::SourceIp => Some(match client {
            IpAddr::V4(ip) => xxh3_64(&ip.octets()),
            IpAddr::V6(ip) => xxh3_64(&ip.octets()),
        }),
    }
}

pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(n, v)| (n == name).then_some(v))
}

fn query_param<'u>(uri: &'u Uri, name: &str) -> Option<&'u str> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(n, v)| (n == name).then_some(v))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn endpoint(last: u8, weight: u32) -> Endpoint {
        Endpoint { addr: SocketAddr::from(([10, 0, 0, last], 8080)), weight }
    }

    fn backend(weights: &[u32]) -> Backend {
        Backend::new(weights.iter().enumerate().map(|(i, &w)| endpoint(i as u8, w)).collect())
    }

    fn counts(picks: impl Iterator<Item = SocketAddr>) -> HashMap<SocketAddr, usize> {
        picks.fold(HashMap::new(), |mut acc, addr| {
            *acc.entry(addr).or_default() += 1;
            acc
        })
    }

    #[test]
    fn round_robin_is_even_and_weighted() {
        let loads = EndpointLoads::default();
        let even = backend(&[1, 1, 1]);
        let picks = (0..300).filter_map(|_| pick(&even, &LoadBalancing::RoundRobin, None, &loads, &[]));
        assert!(counts(picks.map(|e| e.addr)).values().all(|&n| n == 100));
        let weighted = backend(&[3, 1]);
        let picks = (0..400).filter_map(|_| pick(&weighted, &LoadBalancing::RoundRobin, None, &loads, &[]));
        let counts = counts(picks.map(|e| e.addr));
        assert_eq!(counts[&endpoint(0, 3).addr], 300);
        assert_eq!(counts[&endpoint(1, 1).addr], 100);
    }

    #[test]
    fn skipped_endpoints_are_never_picked() {
        let loads = EndpointLoads::default();
        let backend = backend(&[1, 1, 1]);
        let skip = [endpoint(0, 1).addr, endpoint(2, 1).addr];
        for strategy in [LoadBalancing::RoundRobin, LoadBalancing::LeastConnections] {
            for _ in 0..10 {
                assert_eq!(
                    pick(&backend, &strategy, None, &loads, &skip).map(|e| e.addr),
                    Some(endpoint(1, 1).addr)
                );
            }
        }
        let all: Vec<_> = backend.endpoints().iter().map(|e| e.addr).collect();
        assert!(pick(&backend, &LoadBalancing::RoundRobin, None, &loads, &all).is_none());
        let hashed = LoadBalancing::ConsistentHash(HashKey::SourceIp);
        assert!(pick(&backend, &hashed, Some(7), &loads, &all).is_none());
    }

    #[test]
    fn least_connections_fills_the_emptiest_endpoint() {
        let loads = EndpointLoads::default();
        let backend = backend(&[1, 1, 1]);
        let _held: Vec<LoadGuard> =
            [0, 0, 0, 1].iter().map(|&i| loads.acquire(backend.endpoints()[i].addr)).collect();
        let chosen = pick(&backend, &LoadBalancing::LeastConnections, None, &loads, &[]);
        assert_eq!(chosen.map(|e| e.addr), Some(backend.endpoints()[2].addr));
    }

    #[test]
    fn least_connections_respects_weights_and_guards_release() {
        let loads = EndpointLoads::default();
        let backend = backend(&[3, 1]);
        let mut held = Vec::new();
        for _ in 0..8 {
            let chosen =
                pick(&backend, &LoadBalancing::LeastConnections, None, &loads, &[]).expect("endpoint");
            held.push(loads.acquire(chosen.addr));
        }
        assert_eq!(loads.current(backend.endpoints()[0].addr), 6);
        assert_eq!(loads.current(backend.endpoints()[1].addr), 2);
        drop(held);
        assert_eq!(loads.current(backend.endpoints()[0].addr), 0);
    }

    #[test]
    fn consistent_hash_is_stable_and_moves_only_removed_keys() {
        let loads = EndpointLoads::default();
        let strategy = LoadBalancing::ConsistentHash(HashKey::Header("x-user".into()));
        let full = backend(&[1, 1, 1, 1]);
        let rebuilt = backend(&[1, 1, 1, 1]);
        let reduced = Backend::new(full.endpoints()[..3].to_vec());
        let mut moved = 0;
        for key in 0..1000u64 {
            let before = pick(&full, &strategy, Some(key), &loads, &[]).map(|e| e.addr);
            assert_eq!(before, pick(&rebuilt, &strategy, Some(key), &loads, &[]).map(|e| e.addr));
            let after = pick(&reduced, &strategy, Some(key), &loads, &[]).map(|e| e.addr);
            if before != after {
                assert_eq!(before, Some(full.endpoints()[3].addr), "a key of a kept endpoint moved");
                moved += 1;
            }
        }
        assert!((150..350).contains(&moved), "moved {moved}");
    }

    #[test]
    fn hash_keys_come_from_the_request() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "alice".parse().expect("value"));
        headers.append(header::COOKIE, "a=1; sid=abc".parse().expect("value"));
        let uri: Uri = "/ws?room=7&x".parse().expect("uri");
        let ip = IpAddr::from([192, 0, 2, 1]);
        let key = |k: HashKey| hash_key(&k, &headers, &uri, ip);
        assert_eq!(key(HashKey::Header("x-user".into())), Some(xxh3_64(b"alice")));
        assert_eq!(key(HashKey::Cookie("sid".into())), Some(xxh3_64(b"abc")));
        assert_eq!(key(HashKey::Query("room".into())), Some(xxh3_64(b"7")));
        assert_eq!(key(HashKey::Header("x-none".into())), None);
        assert_eq!(key(HashKey::Cookie("none".into())), None);
        assert_eq!(key(HashKey::Query("x".into())), None);
        assert!(key(HashKey::SourceIp).is_some());
    }
}
