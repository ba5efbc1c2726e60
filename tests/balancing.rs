//! Load balancing through the proxy: round-robin spread, least-connections across a table
//! swap, consistent hashing stable across swaps, and dead endpoints skipped.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::*;
use hawser::model::{HashKey, LoadBalancing, Policy};
use http::{Request, StatusCode};
use http_body_util::Full;

async fn served_by(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> String {
    let mut req = Request::get("/").header("host", "a.test");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let (status, _, body) = request(addr, req.body(Full::default()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    seen(&body).name
}

fn policy(load_balancing: LoadBalancing) -> Policy {
    Policy { load_balancing, ..Policy::default() }
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let backends = [echo("a").await, echo("b").await, echo("c").await];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let proxy = TestProxy::start(simple_table(&addrs, Policy::default())).await;
    let mut counts = HashMap::<String, usize>::new();
    for _ in 0..30 {
        *counts.entry(served_by(proxy.addr, &[]).await).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n == 10), "{counts:?}");
}

#[tokio::test]
async fn dead_endpoint_is_skipped() {
    let live = echo("live").await;
    let addrs = [dead_addr().await, live.addr, dead_addr().await];
    let proxy = TestProxy::start(simple_table(&addrs, Policy::default())).await;
    for _ in 0..9 {
        assert_eq!(served_by(proxy.addr, &[]).await, "live");
    }
}

#[tokio::test]
async fn least_connections_fills_the_new_endpoint_after_a_table_swap() {
    let (a, b, c) = (echo("a").await, echo("b").await, echo("c").await);
    let lc = policy(LoadBalancing::LeastConnections);
    let proxy = TestProxy::start(simple_table(&[a.addr, b.addr], lc.clone())).await;
    let mut tunnels = Vec::new();
    let mut counts = HashMap::<String, usize>::new();
    for _ in 0..4 {
        let (ws, name) = ws_open(proxy.addr, "a.test", "/ws").await;
        *counts.entry(name).or_default() += 1;
        tunnels.push(ws);
    }
    assert_eq!((counts["a"], counts["b"]), (2, 2));
    // Scale-up: the counts of a and b survive the swap, so c takes the next two.
    proxy.publish(simple_table(&[a.addr, b.addr, c.addr], lc));
    for _ in 0..2 {
        let (ws, name) = ws_open(proxy.addr, "a.test", "/ws").await;
        assert_eq!(name, "c");
        tunnels.push(ws);
    }
}

#[tokio::test]
async fn consistent_hash_is_stable_across_swaps() {
    let backends = [echo("a").await, echo("b").await, echo("c").await];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let hashed = policy(LoadBalancing::ConsistentHash(HashKey::Header("x-user".into())));
    let proxy = TestProxy::start(simple_table(&addrs, hashed.clone())).await;
    let users: Vec<String> = (0..30).map(|i| format!("user-{i}")).collect();
    let mut first = Vec::new();
    for user in &users {
        let name = served_by(proxy.addr, &[("x-user", user)]).await;
        assert_eq!(name, served_by(proxy.addr, &[("x-user", user)]).await, "same key, same endpoint");
        first.push(name);
    }
    let distinct: std::collections::HashSet<_> = first.iter().collect();
    assert!(distinct.len() > 1, "all keys on one endpoint: {first:?}");
    // A new table with the same endpoints in another order and an extra route.
    let mut reordered = addrs.clone();
    reordered.reverse();
    let mut next = simple_table(&reordered, hashed.clone());
    next = hawser::model::RoutingTable::new(
        next.hosts()
            .iter()
            .cloned()
            .chain(table("other.test", vec![prefix_route("o", "/", &addrs, hashed)]).hosts().iter().cloned())
            .collect::<Vec<_>>(),
    );
    assert_eq!(proxy.publish(next), 2);
    for (user, before) in users.iter().zip(&first) {
        assert_eq!(&served_by(proxy.addr, &[("x-user", user)]).await, before, "{user} moved");
    }
}
