//! The promise hawser is built on: publishing new tables never disturbs an established
//! tunnel, and new connections follow the new table as soon as its generation is live.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use hawser::model::{LoadBalancing, Policy, RoutingTable};
use http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

const TUNNELS: usize = 1000;
const SWAPS: usize = 100;

/// Generation `n`: `/ws` on one of the two echo sets, plus `/extra-n` routes for this
/// generation and the previous one.
fn generation(n: usize, sets: &[Vec<std::net::SocketAddr>; 2]) -> RoutingTable {
    let policy = Policy { load_balancing: LoadBalancing::LeastConnections, ..Policy::default() };
    let mut routes = vec![prefix_route("default/ws", "/ws", &sets[n % 2], policy.clone())];
    for extra in n.saturating_sub(1)..=n {
        routes.push(prefix_route(
            &format!("default/extra-{extra}"),
            &format!("/extra-{extra}"),
            &sets[0],
            policy.clone(),
        ));
    }
    table("chat.test", routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tunnels_survive_a_hundred_swaps() {
    let echoes = [echo("a").await, echo("b").await, echo("c").await, echo("d").await];
    let sets = [vec![echoes[0].addr, echoes[1].addr], vec![echoes[2].addr, echoes[3].addr]];
    let proxy = TestProxy::start(generation(0, &sets)).await;

    let mut tunnels = Vec::with_capacity(TUNNELS);
    for _ in 0..TUNNELS {
        tunnels.push(ws_open(proxy.addr, "chat.test", "/ws").await.0);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (messages, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = tunnels
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            let (stop, messages, errors) = (stop.clone(), messages.clone(), errors.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let text = format!("{i}:{n}");
                    let echoed = match ws.send(Message::text(text.clone())).await {
                        Ok(()) => tokio::time::timeout(Duration::from_secs(10), ws.next()).await,
                        Err(_) => Ok(None),
                    };
                    match echoed {
                        Ok(Some(Ok(Message::Text(back)))) if back.as_str() == text => {
                            messages.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => errors.fetch_add(1, Ordering::Relaxed),
                    };
                    n += 1;
                    tokio::time::sleep(ms(100)).await;
                }
                ws.close(None).await.is_ok() && matches!(ws.next().await, Some(Ok(Message::Close(_))))
            })
        })
        .collect();

    for n in 1..=SWAPS {
        let live = proxy.publish(generation(n, &sets));
        assert_eq!(live, n as u64 + 1);
        // The very next request sees generation n: its new route exists, the old-old one is gone.
        assert_eq!(get(proxy.addr, "chat.test", &format!("/extra-{n}")).await.0, StatusCode::OK);
        if n >= 2 {
            assert_eq!(
                get(proxy.addr, "chat.test", &format!("/extra-{}", n - 2)).await.0,
                StatusCode::NOT_FOUND
            );
        }
        // New tunnels follow the endpoint set of the live generation.
        let (_ws, name) = ws_open(proxy.addr, "chat.test", "/ws").await;
        let expected = if n % 2 == 0 { ["a", "b"] } else { ["c", "d"] };
        assert!(expected.contains(&name.as_str()), "generation {n} sent a new tunnel to {name}");
        tokio::time::sleep(ms(10)).await;
    }

    stop.store(true, Ordering::Relaxed);
    let mut closed_cleanly = 0;
    for client in clients {
        closed_cleanly += usize::from(client.await.unwrap());
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0, "message errors");
    assert_eq!(closed_cleanly, TUNNELS, "tunnels that survived to a clean close");
    assert!(messages.load(Ordering::Relaxed) >= TUNNELS as u64, "too few messages exchanged");
}
