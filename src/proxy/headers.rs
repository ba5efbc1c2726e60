//! Header hygiene between client and backend: hop-by-hop removal (RFC 9110 §7.6.1), upgrade
//! detection (RFC 9110 §7.8), and the X-Forwarded-* / X-Real-IP headers.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

/// Hop-by-hop headers that are never forwarded, besides those the `Connection` header names.
/// RFC 9110 §7.6.1 lists all but `Proxy-Connection`, which it tells proxies to drop as well.
/// `Connection` comes first and `Upgrade` last: `strip_hop_by_hop` reads them by place.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// Forwarding headers a client could forge and a backend might believe: removed unless the
/// peer is a trusted proxy (`X-Original-*` by prefix too).
const FORGEABLE: [HeaderName; 4] = [
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-prefix"),
];

/// Who sent a request and over what.
#[derive(Clone, Debug)]
pub struct Client {
    /// The client's address (the TCP peer, or what a trusted PROXY header said).
    pub ip: IpAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Whether the peer is a trusted proxy whose X-Forwarded-* headers are kept.
    pub trusted: bool,
    /// The address as a header value, written once per connection rather than per request.
    ip_value: HeaderValue,
}

impl Client {
    /// A client at `ip`, trusted when `ip` is inside one of `trusted_proxies`.
    pub fn new(ip: IpAddr, scheme: &'static str, trusted_proxies: &[IpNet]) -> Self {
        let ip = ip.to_canonical();
        let ip_value = ip_header_value(ip).unwrap_or(HeaderValue::from_static("unknown"));
        Self { ip, scheme, trusted: trusted_proxies.iter().any(|net| net.contains(&ip)), ip_value }
    }
}

/// The room an HTTP/1.1 head buffer is given before a head is written into it: most heads fit,
/// so a new connection's buffer is allocated once rather than grown field by field.
pub const HEAD_ROOM: usize = 1024;

/// `ip` as a field value, written into a string made long enough first (`to_string` would grow
/// it once per part written).
fn ip_header_value(ip: IpAddr) -> Option<HeaderValue> {
    // The longest an `IpAddr` is written: an IPv6 address with an IPv4 tail, 45 bytes.
    let mut text = String::with_capacity(45);
    std::fmt::Write::write_fmt(&mut text, format_args!("{ip}")).ok()?;
    HeaderValue::try_from(text).ok()
}

/// Whether the `Connection` header carries `token` (case-insensitive, comma-separated lists).
fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    list_tokens(headers, &header::CONNECTION)
}

/// Whether one field's comma-separated list holds `token` (case-insensitive, RFC 9110 §5.6.1).
pub fn list_has(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The items of a comma-separated list header, over all its fields (RFC 9110 §5.6.1).
fn list_tokens<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// An HTTP/1.1 upgrade request: `Connection: upgrade` plus an `Upgrade` header.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

/// Keeps only the `Upgrade` protocols a route tunnels: `websocket`, and those in `allowed`.
/// False when none is left; the request then goes on as plain HTTP/1.1 (as nginx and Envoy
/// treat `h2c`, whose tunnel would reach every path of the backend past routing).
pub fn admit_upgrade(headers: &mut HeaderMap, allowed: &[String]) -> bool {
    // The common case, every protocol offered allowed, allocates nothing.
    let all_allowed = {
        let mut offered = upgrade_tokens(headers).peekable();
        offered.peek().is_some() && offered.all(|p| upgrade_allowed(p, allowed))
    };
    if all_allowed {
        return true;
    }
    let offered: Vec<&str> = upgrade_tokens(headers).collect();
    let kept: Vec<&str> = offered.iter().copied().filter(|p| upgrade_allowed(p, allowed)).collect();
    if kept.len() == offered.len() {
        return !kept.is_empty();
    }
    let value = HeaderValue::from_str(&kept.join(", ")).ok().filter(|_| !kept.is_empty());
    match value {
        Some(value) => {
            headers.insert(header::UPGRADE, value);
            true
        }
        None => false,
    }
}

/// Whether `protocol` (`name` or `name/version`, RFC 9110 §7.8) is tunnelled on a route that
/// allows `allowed` besides `websocket`. Names compare without case.
pub fn upgrade_allowed(protocol: &str, allowed: &[String]) -> bool {
    let protocol = protocol.trim();
    let name = protocol.split('/').next().unwrap_or_default();
    name.eq_ignore_ascii_case("websocket")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(protocol) || a.eq_ignore_ascii_case(name))
}

fn upgrade_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    list_tokens(headers, &header::UPGRADE)
}

/// Removes hop-by-hop headers. With `keep_upgrade`, an `Upgrade` header survives and is
/// re-announced with `Connection: upgrade`, so the next hop sees the upgrade (RFC 9110 §7.8).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names finds which are present: a lookup per hop-by-hop name would hash
    // each of them, twice per request, and most messages carry none or only `Connection`.
    let mut present = HOP_BY_HOP.map(|_| false);
    for name in headers.keys() {
        if let Some(at) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[at] = true;
        }
    }
    let [connection, .., upgrade] = present;
    let keep_upgrade = keep_upgrade && upgrade;
    // The fields `Connection` names (RFC 9110 §7.6.1) beyond the hop-by-hop ones removed anyway:
    // nothing is allocated for the usual `keep-alive` or `upgrade`.
    let named: Vec<HeaderName> = if connection {
        connection_tokens(headers)
            .filter(|token| !HOP_BY_HOP.iter().any(|name| token.eq_ignore_ascii_case(name.as_str())))
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
            .collect()
    } else {
        Vec::new()
    };
    for name in &named {
        headers.remove(name);
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|&(_, present)| present) {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Sets X-Forwarded-For/-Proto/-Host and X-Real-IP. From a trusted peer the incoming values are
/// kept and the peer is appended to X-Forwarded-For; from anyone else they are replaced, so a
/// client cannot forge its address (ingress-nginx's default, `use-forwarded-headers: false`).
pub fn set_forwarded(headers: &mut HeaderMap, client: &Client, host: &HeaderValue) {
    if !client.trusted {
        remove_forgeable(headers);
    }
    // Only a trusted peer's chain is extended (looked up only then).
    let chain = if client.trusted { headers.get(&X_FORWARDED_FOR) } else { None };
    let forwarded_for = chain.and_then(|chain| {
        HeaderValue::from_bytes(&[chain.as_bytes(), b", ", client.ip_value.as_bytes()].concat()).ok()
    });
    headers.insert(&X_FORWARDED_FOR, forwarded_for.unwrap_or_else(|| client.ip_value.clone()));
    set_unless_trusted(headers, &X_REAL_IP, &client.ip_value, client.trusted);
    set_unless_trusted(headers, &X_FORWARDED_PROTO, &HeaderValue::from_static(client.scheme), client.trusted);
    set_unless_trusted(headers, &X_FORWARDED_HOST, host, client.trusted);
}

fn remove_forgeable(headers: &mut HeaderMap) {
    // One pass over the names rather than a lookup for each: most requests carry none of them
    // (and then nothing is allocated).
    let forgeable = |name: &&HeaderName| FORGEABLE.contains(name) || name.as_str().starts_with("x-original-");
    let present: Vec<HeaderName> = headers.keys().filter(forgeable).cloned().collect();
    for name in present {
        headers.remove(name);
    }
}

/// HTTP/2 may split `cookie` into several fields; an HTTP/1.1 backend must get them as one,
/// joined with `; ` (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if cookies.nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect();
    if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, value);
    }
}

fn set_unless_trusted(
    headers: &mut HeaderMap,
    name: &'static HeaderName,
    value: &HeaderValue,
    trusted: bool,
) {
    if !(trusted && headers.contains_key(name)) {
        headers.insert(name, value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).expect("name"), value.parse().expect("value"));
        }
        map
    }

    #[test]
    fn detects_upgrades() {
        assert!(is_upgrade(&headers(&[("connection", "Upgrade"), ("upgrade", "websocket")])));
        assert!(is_upgrade(&headers(&[("connection", "keep-alive, upgrade"), ("upgrade", "websocket")])));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&headers(&[("connection", "upgrade")])));
        assert!(!is_upgrade(&headers(&[("connection", "upgraded"), ("upgrade", "websocket")])));
    }

    #[test]
    fn admits_only_the_upgrades_a_route_tunnels() {
        let none: &[String] = &[];
        let cases: &[(&str, &[String], Option<&str>)] = &[
            ("websocket", none, Some("websocket")),
            ("WebSocket", none, Some("WebSocket")),
            ("h2c", none, None),
            ("h2c", &["foo".to_owned()], None),
            ("h2c, websocket", none, Some("websocket")),
            ("foo/2", &["foo".to_owned()], Some("foo/2")),
            ("foo", &["bar".to_owned()], None),
        ];
        for (offered, allowed, want) in cases {
            let mut map = headers(&[("connection", "upgrade"), ("upgrade", offered)]);
            let admitted = admit_upgrade(&mut map, allowed);
            assert_eq!(admitted, want.is_some(), "{offered}");
            if let Some(want) = want {
                assert_eq!(map[header::UPGRADE], *want, "{offered}");
            }
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut map, false);
        let left: Vec<_> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn each_hop_by_hop_field_is_found_alone_and_the_rest_stays() {
        for hop in ["connection", "proxy-connection", "keep-alive", "te", "transfer-encoding", "upgrade"] {
            let mut map = headers(&[("host", "a"), (hop, "x"), ("x-kept", "yes"), (hop, "y")]);
            strip_hop_by_hop(&mut map, false);
            let left: Vec<_> = map.keys().map(|k| k.as_str()).collect();
            assert_eq!(left, ["host", "x-kept"], "{hop}");
        }
        let untouched = headers(&[("host", "a"), ("x-kept", "yes"), ("x-kept", "again")]);
        let mut map = untouched.clone();
        strip_hop_by_hop(&mut map, true);
        assert_eq!(map, untouched, "no hop-by-hop field: nothing changes, nothing is announced");
        // Every `Connection` field's list names fields to drop.
        let mut map =
            headers(&[("connection", "x-one"), ("x-one", "1"), ("Connection", "X-Two"), ("x-two", "2")]);
        strip_hop_by_hop(&mut map, false);
        assert!(map.is_empty(), "{map:?}");
    }

    #[test]
    fn keeps_the_upgrade_pair_on_upgrades() {
        let mut map =
            headers(&[("connection", "Upgrade, x-secret"), ("upgrade", "websocket"), ("x-secret", "1")]);
        strip_hop_by_hop(&mut map, true);
        assert_eq!(map.get(header::UPGRADE).map(|v| v.as_bytes()), Some(&b"websocket"[..]));
        assert_eq!(map.get(header::CONNECTION).map(|v| v.as_bytes()), Some(&b"upgrade"[..]));
        assert!(!map.contains_key("x-secret"));

        // Every `Upgrade` field survives; without one there is nothing to re-announce.
        let mut map = headers(&[("connection", "keep-alive, UPGRADE"), ("upgrade", "a"), ("upgrade", "b")]);
        strip_hop_by_hop(&mut map, true);
        let upgrades: Vec<_> = map.get_all(header::UPGRADE).iter().collect();
        assert_eq!(upgrades, ["a", "b"]);
        assert_eq!(map.get_all(header::CONNECTION).iter().collect::<Vec<_>>(), ["upgrade"]);
        let mut map = headers(&[("connection", "upgrade"), ("keep-alive", "timeout=5")]);
        strip_hop_by_hop(&mut map, true);
        assert!(map.is_empty(), "{map:?}");
    }

    #[test]
    fn a_client_address_is_written_as_its_field_value() {
        let cases: &[(IpAddr, &str)] = &[
            ([192, 0, 2, 7].into(), "192.0.2.7"),
            ([255, 255, 255, 255].into(), "255.255.255.255"),
            ("2001:db8::1".parse().expect("v6"), "2001:db8::1"),
            ("::ffff:192.0.2.7".parse().expect("mapped"), "192.0.2.7"),
            (
                "1111:2222:3333:4444:5555:6666:7777:8888".parse().expect("v6"),
                "1111:2222:3333:4444:5555:6666:7777:8888",
            ),
        ];
        for (ip, want) in cases {
            assert_eq!(Client::new(*ip, "http", &[]).ip_value, *want);
        }
    }

    #[test]
    fn forwarded_headers_from_untrusted_clients_are_replaced() {
        let client = Client::new([192, 0, 2, 7].into(), "http", &[]);
        let mut map = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "6.6.6.6"),
        ]);
        set_forwarded(&mut map, &client, &HeaderValue::from_static("a.com"));
        assert_eq!(map["x-forwarded-for"], "192.0.2.7");
        assert_eq!(map["x-real-ip"], "192.0.2.7");
        assert_eq!(map["x-forwarded-proto"], "http");
        assert_eq!(map["x-forwarded-host"], "a.com");
    }

    #[test]
    fn forgeable_forwarding_headers_from_untrusted_clients_are_removed() {
        let pairs = [
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-scheme", "https"),
            ("x-forwarded-prefix", "/admin"),
            ("x-original-uri", "/admin"),
            ("x-original-forwarded-for", "6.6.6.6"),
            ("x-kept", "yes"),
        ];
        let mut untrusted = headers(&pairs);
        set_forwarded(
            &mut untrusted,
            &Client::new([192, 0, 2, 7].into(), "http", &[]),
            &HeaderValue::from_static("a.com"),
        );
        let left: Vec<&str> = untrusted
            .keys()
            .map(|k| k.as_str())
            .filter(|k| !k.starts_with("x-forwarded-") || *k == "x-forwarded-port")
            .collect();
        assert_eq!(left, vec!["x-kept", "x-real-ip"]);
        let trusted_net = ["192.0.2.0/24".parse().expect("net")];
        let mut trusted = headers(&pairs);
        set_forwarded(
            &mut trusted,
            &Client::new([192, 0, 2, 7].into(), "http", &trusted_net),
            &HeaderValue::from_static("a.com"),
        );
        assert_eq!(trusted["forwarded"], "for=6.6.6.6");
        assert_eq!(trusted["x-original-uri"], "/admin");
    }

    #[test]
    fn split_http2_cookies_are_joined() {
        let mut map = headers(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
        join_cookies(&mut map);
        assert_eq!(map.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(map[header::COOKIE], "a=1; b=2; c=3");
    }

    #[test]
    fn forwarded_headers_from_trusted_proxies_are_extended() {
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        let client = Client::new([10, 0, 0, 9].into(), "http", &trusted);
        let mut map = headers(&[("x-forwarded-for", "203.0.113.5"), ("x-forwarded-proto", "https")]);
        set_forwarded(&mut map, &client, &HeaderValue::from_static("a.com"));
        assert_eq!(map["x-forwarded-for"], "203.0.113.5, 10.0.0.9");
        assert_eq!(map["x-forwarded-proto"], "https");
        assert_eq!(map["x-forwarded-host"], "a.com");
    }
}
