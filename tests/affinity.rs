//! Cookie session affinity through the proxy: the first answer sets a cookie naming its
//! endpoint, requests and WebSockets carrying it stay there across table swaps, and a cookie
//! whose endpoint is gone or dead is replaced (or kept, per `change_on_failure`).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;

use common::*;
use hawser::model::{CookieAffinity, Policy};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::Full;

fn sticky(change_on_failure: bool) -> Policy {
    let affinity = CookieAffinity { change_on_failure, ..CookieAffinity::named("INGRESSCOOKIE") };
    Policy { affinity: Some(affinity), ..Policy::default() }
}

/// Which echo served a GET carrying `cookie`, and the affinity cookie it set (`NAME=VALUE`).
async fn visit(addr: SocketAddr, cookie: Option<&str>) -> (String, Option<String>) {
    let mut req = Request::get("/chat").header("host", "a.test");
    if let Some(cookie) = cookie {
        req = req.header(header::COOKIE, format!("theme=dark; {cookie}"));
    }
    let (status, headers, body) = request(addr, req.body(Full::default()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    (seen(&body).name, affinity_cookie(&headers))
}

fn affinity_cookie(headers: &HeaderMap) -> Option<String> {
    let set = headers.get_all(header::SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().unwrap();
        v.starts_with("INGRESSCOOKIE=").then(|| v.to_owned())
    })?;
    assert!(set.ends_with("; Path=/; HttpOnly"), "{set}");
    Some(set.split(';').next().unwrap().to_owned())
}

#[tokio::test]
async fn requests_stay_on_the_endpoint_their_cookie_names() {
    let backends = [echo("a").await, echo("b").await, echo("c").await];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let proxy = TestProxy::start(simple_table(&addrs, sticky(false))).await;
    // New clients are balanced round-robin and each gets a cookie naming its endpoint.
    let mut sessions = Vec::new();
    for _ in 0..6 {
        let (name, cookie) = visit(proxy.addr, None).await;
        sessions.push((name, cookie.expect("a new session gets the cookie")));
    }
    let names: HashSet<_> = sessions.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(names.len(), 3, "{sessions:?}");
    for (name, cookie) in &sessions {
        assert!(!cookie.contains("127.0.0.1"), "{cookie}");
        for _ in 0..5 {
            assert_eq!(visit(proxy.addr, Some(cookie)).await, (name.clone(), None));
        }
    }
    // Scale-up: more endpoints, a new table; every session stays where it was.
    let more = [echo("d").await, echo("e").await];
    let all: Vec<_> = addrs.iter().chain(more.iter().map(|b| &b.addr)).copied().collect();
    proxy.publish(simple_table(&all, sticky(false)));
    for (name, cookie) in &sessions {
        assert_eq!(visit(proxy.addr, Some(cookie)).await, (name.clone(), None));
    }
    // An unknown or forged value is a new session.
    let (_, replaced) = visit(proxy.addr, Some("INGRESSCOOKIE=0123456789abcdef")).await;
    assert!(replaced.is_some());
}

#[tokio::test]
async fn a_session_whose_endpoint_is_gone_moves_and_gets_a_new_cookie() {
    let (a, b) = (echo("a").await, echo("b").await);
    let proxy = TestProxy::start(simple_table(&[a.addr, b.addr], sticky(false))).await;
    let (first, cookie) = visit(proxy.addr, None).await;
    let cookie = cookie.unwrap();
    let remaining = if first == "a" { b.addr } else { a.addr };
    proxy.publish(simple_table(&[remaining], sticky(false)));
    let (moved_to, new_cookie) = visit(proxy.addr, Some(&cookie)).await;
    assert_ne!(moved_to, first);
    let new_cookie = new_cookie.expect("the cookie is replaced");
    assert_ne!(new_cookie, cookie);
    assert_eq!(visit(proxy.addr, Some(&new_cookie)).await, (moved_to, None));
}

#[tokio::test]
async fn an_endpoint_that_refuses_keeps_its_cookie_unless_change_on_failure() {
    for change_on_failure in [false, true] {
        let live = echo("live").await;
        let doomed = echo("doomed").await;
        let proxy =
            TestProxy::start(simple_table(&[live.addr, doomed.addr], sticky(change_on_failure))).await;
        let mut naming_doomed = None;
        for _ in 0..2 {
            if let (name, Some(cookie)) = visit(proxy.addr, None).await {
                naming_doomed = (name == "doomed").then_some(cookie).or(naming_doomed);
            }
        }
        let naming_doomed = naming_doomed.expect("round-robin reached both endpoints");
        // The endpoint stays listed but stops listening. An upgrade connects afresh, so it
        // meets the refusal and goes to the other endpoint.
        drop(doomed);
        let (ws, response) =
            ws_connect(proxy.addr, "a.test", "/chat", &[("cookie", &naming_doomed)]).await.unwrap();
        assert_eq!(response.headers()["x-echo-name"], "live");
        let cookie = affinity_cookie(response.headers());
        assert_eq!(cookie.is_some(), change_on_failure, "change_on_failure = {change_on_failure}");
        drop(ws);
    }
}

#[tokio::test]
async fn websockets_get_the_cookie_and_follow_it() {
    let backends = [echo("a").await, echo("b").await, echo("c").await];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let proxy = TestProxy::start(simple_table(&addrs, sticky(false))).await;
    let (_ws, response) = ws_connect(proxy.addr, "a.test", "/chat", &[]).await.unwrap();
    let first = response.headers()["x-echo-name"].to_str().unwrap().to_owned();
    let cookie = affinity_cookie(response.headers()).expect("the 101 sets the cookie");
    for _ in 0..5 {
        let (_ws, response) =
            ws_connect(proxy.addr, "a.test", "/chat", &[("cookie", &cookie)]).await.unwrap();
        assert_eq!(response.headers()["x-echo-name"], first.as_str());
        assert_eq!(affinity_cookie(response.headers()), None);
    }
    // The same cookie takes plain requests (socket.io's long-polling) to the same endpoint.
    assert_eq!(visit(proxy.addr, Some(&cookie)).await, (first, None));
}
