//! ingress-nginx annotations honoured through the proxy, as a migrating user writes them:
//! `proxy-body-size`, `permanent-redirect` / `temporal-redirect` (+ `-code`), `app-root`,
//! `upstream-vhost` and `x-forwarded-prefix`.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode, header};
use http_body_util::{Full, StreamBody};

/// An Ingress `name` for `a.test`: one `path` of `path_type` to Service `service` (port
/// `http`), with `annotations` (the nginx prefix added).
fn ingress_yaml(
    name: &str,
    service: &str,
    path: &str,
    path_type: &str,
    annotations: &[(&str, &str)],
) -> String {
    let annotations: String =
        annotations.iter().map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: {v:?}\n")).collect();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations:\n{annotations}spec:\n  ingressClassName: hawser\n  rules:\n  - host: a.test\n    http:\n      paths:\n      - {{path: {path:?}, pathType: {path_type}, backend: {{service: {{name: {service}, port: {{name: http}}}}}}}}\n"
    )
}

/// The echo Service and an Ingress for `a.test` `/` with `annotations`.
fn ingress(echo: std::net::SocketAddr, annotations: &[(&str, &str)]) -> hawser::model::RoutingTable {
    build_table(
        &[service_yaml("echo", echo), ingress_yaml("web", "echo", "/", "Prefix", annotations)].join("---\n"),
    )
}

#[tokio::test]
async fn proxy_body_size_answers_413_for_declared_and_streamed_bodies() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(ingress(echo.addr, &[("proxy-body-size", "1k")])).await;
    let post =
        |body: Vec<u8>| Request::post("/upload").header("host", "a.test").body(Full::from(body)).unwrap();
    assert_eq!(request(proxy.addr, post(vec![b'x'; 1024])).await.0, StatusCode::OK);
    assert_eq!(request(proxy.addr, post(vec![b'x'; 1025])).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Chunked, no Content-Length: counted as it streams.
    let chunks =
        futures_util::stream::iter((0..4).map(|_| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b'y'; 400])))
        }));
    let streamed = Request::post("/upload").header("host", "a.test").body(StreamBody::new(chunks)).unwrap();
    let mut sender = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(
        tokio::net::TcpStream::connect(proxy.addr).await.unwrap(),
    ))
    .await
    .map(|(sender, connection)| {
        tokio::spawn(connection);
        sender
    })
    .unwrap();
    let response = sender.send_request(streamed).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// Annotations, a path, and the status and `Location` hawser answers.
type RedirectCase<'a> = (&'a [(&'a str, &'a str)], &'a str, StatusCode, Option<&'a str>);

#[tokio::test]
async fn redirects_and_app_root_are_answered_by_hawser() {
    let echo = echo("a").await;
    let cases: &[RedirectCase] = &[
        (
            &[("permanent-redirect", "https://example.com/new")],
            "/any",
            StatusCode::MOVED_PERMANENTLY,
            Some("https://example.com/new"),
        ),
        (
            &[("permanent-redirect", "https://example.com/new"), ("permanent-redirect-code", "308")],
            "/any",
            StatusCode::PERMANENT_REDIRECT,
            Some("https://example.com/new"),
        ),
        (&[("temporal-redirect", "/maintenance")], "/any", StatusCode::FOUND, Some("/maintenance")),
        (&[("app-root", "/app")], "/", StatusCode::FOUND, Some("/app")),
        (&[("app-root", "/app")], "/app/page", StatusCode::OK, None),
    ];
    for (annotations, path, status, location) in cases {
        let proxy = TestProxy::start(ingress(echo.addr, annotations)).await;
        let (got, headers, _) = get(proxy.addr, "a.test", path).await;
        assert_eq!(got, *status, "{annotations:?} {path}");
        assert_eq!(headers.get(header::LOCATION).map(|l| l.to_str().unwrap()), *location, "{annotations:?}");
    }
}

#[tokio::test]
async fn upstream_vhost_and_forwarded_prefix_reach_the_backend() {
    let echo = echo("a").await;
    let annotations = [("upstream-vhost", "internal.svc.local"), ("x-forwarded-prefix", "/shop")];
    let proxy = TestProxy::start(ingress(echo.addr, &annotations)).await;
    let request = Request::get("/").header("host", "a.test").header("x-forwarded-prefix", "/forged");
    let (status, _, body) = common::request(proxy.addr, request.body(Full::default()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let seen = seen(&body);
    assert_eq!(seen.host.as_deref(), Some("internal.svc.local"));
    assert_eq!(seen.headers["x-forwarded-prefix"], "/shop");
    assert_eq!(seen.headers["x-forwarded-host"], "a.test", "the client's host stays in X-Forwarded-Host");
}

#[tokio::test]
async fn regex_paths_and_rewrite_target_as_the_ingress_nginx_docs_teach() {
    let echo = echo("api").await;
    let annotations = [("use-regex", "true"), ("rewrite-target", "/$2")];
    let api = ingress_yaml("api", "echo", "/api(/|$)(.*)", "ImplementationSpecific", &annotations);
    let yaml = [service_yaml("echo", echo.addr), api].join("---\n");
    let proxy = TestProxy::start(build_table(&yaml)).await;
    for (path, sent) in [
        ("/api/orders?page=2", Some("/orders?page=2")),
        ("/api", Some("/")),
        ("/API/orders/7", Some("/orders/7")),
        ("/apix", None),
        ("/v1/api/orders", None),
    ] {
        let (status, _, body) = get(proxy.addr, "a.test", path).await;
        match sent {
            Some(sent) => {
                assert_eq!(status, StatusCode::OK, "{path}");
                let seen = seen(&body);
                let target = seen.query.map_or(seen.path.clone(), |query| format!("{}?{query}", seen.path));
                assert_eq!(target, sent, "{path}");
            }
            None => assert_eq!(status, StatusCode::NOT_FOUND, "{path}"),
        }
    }
    // A WebSocket handshake takes the regex route too.
    let (_ws, response) = ws_connect(proxy.addr, "a.test", "/api/live", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
}

/// ingress-nginx's order once a host has a regex path: every path longest first, so a longer
/// prefix of another Ingress (cert-manager's ACME challenge path) still beats a regex `/`.
#[tokio::test]
async fn a_longer_prefix_of_another_ingress_beats_a_regex_root() {
    let (app, acme) = (echo("app").await, echo("acme").await);
    let rewrite = [("rewrite-target", "/new/backend")];
    let yaml = [
        service_yaml("app", app.addr),
        service_yaml("acme", acme.addr),
        ingress_yaml("app", "app", "/", "Prefix", &rewrite),
        ingress_yaml("solver", "acme", "/.well-known/acme-challenge/token", "ImplementationSpecific", &[]),
    ]
    .join("---\n");
    let proxy = TestProxy::start(build_table(&yaml)).await;
    let (_, _, body) = get(proxy.addr, "a.test", "/.well-known/acme-challenge/token").await;
    assert_eq!(
        (seen(&body).name.as_str(), seen(&body).path.as_str()),
        ("acme", "/.well-known/acme-challenge/token")
    );
    let (_, _, body) = get(proxy.addr, "a.test", "/anything").await;
    assert_eq!((seen(&body).name.as_str(), seen(&body).path.as_str()), ("app", "/new/backend"));
}

#[tokio::test]
async fn regex_routes_come_before_prefixes_and_longer_regexes_first() {
    let (short, long, prefix) = (echo("short").await, echo("long").await, echo("prefix").await);
    let regex = [("use-regex", "true")];
    let yaml = [
        service_yaml("short", short.addr),
        service_yaml("long", long.addr),
        service_yaml("prefix", prefix.addr),
        ingress_yaml("short", "short", "/shop/.*", "ImplementationSpecific", &regex),
        ingress_yaml("long", "long", "/shop/items/[0-9]+", "ImplementationSpecific", &regex),
        ingress_yaml("plain", "prefix", "/shop", "Prefix", &[]),
    ]
    .join("---\n");
    let proxy = TestProxy::start(build_table(&yaml)).await;
    for (path, want) in [("/shop/items/42", "long"), ("/shop/cart", "short"), ("/shop", "prefix")] {
        let (status, _, body) = get(proxy.addr, "a.test", path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(seen(&body).name, want, "{path}");
    }
}

#[tokio::test]
async fn cors_preflights_are_answered_by_hawser_and_answers_decorated() {
    let echo = echo("a").await;
    let annotations = [
        ("enable-cors", "true"),
        ("cors-allow-origin", "https://app.example.com, https://*.partner.test"),
        ("cors-expose-headers", "X-Total"),
        ("cors-max-age", "600"),
    ];
    let proxy = TestProxy::start(ingress(echo.addr, &annotations)).await;
    let send = |method: &str, origin: &str| {
        let request = Request::builder()
            .method(method)
            .uri("/orders")
            .header("host", "a.test")
            .header("origin", origin)
            .header("access-control-request-method", "PUT");
        common::request(proxy.addr, request.body(Full::default()).unwrap())
    };
    let (status, headers, body) = send("OPTIONS", "https://app.example.com").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(body.is_empty(), "the preflight never reached the backend");
    assert_eq!(headers["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(headers["access-control-max-age"], "600");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    let (status, headers, body) = send("GET", "https://eu.partner.test").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen(&body).method, "GET");
    assert_eq!(headers["access-control-allow-origin"], "https://eu.partner.test");
    assert_eq!(headers["access-control-expose-headers"], "X-Total");
    // Another origin: no CORS headers, and its OPTIONS goes to the backend like any request.
    let (status, headers, body) = send("OPTIONS", "https://evil.test").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen(&body).method, "OPTIONS");
    assert!(!headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn limit_rps_lets_the_burst_through_then_refuses() {
    let echo = echo("a").await;
    let statuses = |proxy: std::net::SocketAddr| async move {
        let mut statuses = Vec::new();
        for _ in 0..30 {
            statuses.push(get(proxy, "a.test", "/").await.0);
        }
        statuses
    };
    // Two a second with a burst of 2 × 3: six at once, then refusals.
    let limited = ingress(echo.addr, &[("limit-rps", "2"), ("limit-burst-multiplier", "3")]);
    let proxy = TestProxy::start(limited.clone()).await;
    let got = statuses(proxy.addr).await;
    let passed = got.iter().filter(|s| **s == StatusCode::OK).count();
    assert!((6..=8).contains(&passed), "{passed} passed: {got:?}");
    assert!(got[..6].iter().all(|s| *s == StatusCode::OK), "the burst comes first: {got:?}");
    assert!(got.contains(&StatusCode::SERVICE_UNAVAILABLE));
    // 429 by flag; an exempt client is never limited.
    let config = hawser::proxy::ProxyConfig {
        rate_limited_status: StatusCode::TOO_MANY_REQUESTS,
        ..hawser::proxy::ProxyConfig::default()
    };
    let proxy = TestProxy::with_config(limited, config).await;
    assert!(statuses(proxy.addr).await.contains(&StatusCode::TOO_MANY_REQUESTS));
    let exempt = ingress(echo.addr, &[("limit-rps", "2"), ("limit-whitelist", "127.0.0.0/8")]);
    let proxy = TestProxy::start(exempt).await;
    assert!(statuses(proxy.addr).await.iter().all(|s| *s == StatusCode::OK));
}

#[tokio::test]
async fn a_handshake_rate_limit_stops_a_reconnect_loop_and_lets_plain_requests_through() {
    let echo = echo("a").await;
    let yaml = ingress_yaml("web", "echo", "/", "Prefix", &[])
        .replace("  annotations:\n", "  annotations:\n    hawser.dev/handshake-rate-limit: 3/m\n");
    let proxy = TestProxy::start(build_table(&[service_yaml("echo", echo.addr), yaml].join("---\n"))).await;
    for _ in 0..3 {
        assert!(ws_connect(proxy.addr, "a.test", "/", &[]).await.is_ok());
    }
    assert_eq!(ws_refused(proxy.addr, "a.test", "/", &[]).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    for _ in 0..20 {
        assert_eq!(get(proxy.addr, "a.test", "/poll").await.0, StatusCode::OK, "long-polling is not counted");
    }
}

#[tokio::test]
async fn a_canary_ingress_takes_its_weight_and_what_its_header_or_cookie_send() {
    let (stable, canary) = (echo("stable").await, echo("canary").await);
    let canary_annotations = [
        ("canary", "true"),
        ("canary-weight", "20"),
        ("canary-by-header", "X-Canary"),
        ("canary-by-cookie", "use_canary"),
    ];
    let yaml = [
        service_yaml("stable", stable.addr),
        service_yaml("canary", canary.addr),
        ingress_yaml("web", "stable", "/", "Prefix", &[]),
        ingress_yaml("web-canary", "canary", "/", "Prefix", &canary_annotations),
    ]
    .join("---\n");
    let proxy = TestProxy::start(build_table(&yaml)).await;
    let served_by = |headers: &'static [(&'static str, &'static str)]| async move {
        let mut request = Request::get("/").header("host", "a.test");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (status, _, body) = common::request(proxy.addr, request.body(Full::default()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        seen(&body).name
    };
    let mut to_canary = 0;
    for _ in 0..1000 {
        if served_by(&[]).await == "canary" {
            to_canary += 1;
        }
    }
    assert!((180..=220).contains(&to_canary), "{to_canary} of 1000 with a weight of 20");
    for _ in 0..20 {
        assert_eq!(served_by(&[("x-canary", "always")]).await, "canary");
        assert_eq!(served_by(&[("x-canary", "never"), ("cookie", "use_canary=always")]).await, "stable");
        assert_eq!(served_by(&[("cookie", "use_canary=never")]).await, "stable");
        assert_eq!(served_by(&[("cookie", "a=1; use_canary=always")]).await, "canary");
    }
}

#[tokio::test]
async fn default_backend_renders_custom_http_errors_and_serves_when_no_endpoint_is_ready() {
    // The app: 404 for /missing, 200 otherwise. The error backend: the X-Code status, and a body
    // naming what it was told.
    let app = backend(|req: http::Request<hyper::body::Incoming>| async move {
        let status = if req.uri().path() == "/missing" { StatusCode::NOT_FOUND } else { StatusCode::OK };
        http::Response::builder().status(status).body(full_body("from the app")).unwrap()
    })
    .await;
    let pages = backend(|req: http::Request<hyper::body::Incoming>| async move {
        let header = |name: &str| req.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let code = header("x-code").and_then(|c| c.parse().ok()).unwrap_or(200);
        let told = [
            header("x-code"),
            header("x-format"),
            header("x-original-uri"),
            header("x-namespace"),
            header("x-ingress-name"),
            header("x-service-name"),
        ];
        let body = format!("{} {:?}", req.uri(), told.map(Option::unwrap_or_default));
        http::Response::builder().status(code).body(full_body(body)).unwrap()
    })
    .await;
    let annotations = [("default-backend", "pages"), ("custom-http-errors", "404,503")];
    let yaml = [
        service_yaml("app", app.addr),
        service_yaml("pages", pages.addr),
        ingress_yaml("web", "app", "/", "Prefix", &annotations),
    ];
    let proxy = TestProxy::start(build_table(&yaml.join("---\n"))).await;
    let (status, _, body) = get(proxy.addr, "a.test", "/ok").await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"from the app"[..]));
    let (status, _, body) = get(proxy.addr, "a.test", "/missing?q=1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"/missing?q=1 ["404", "text/html", "/missing?q=1", "default", "web", "app"]"#
    );
    // The app's Service has no endpoint: the default backend serves the request itself, told
    // `X-Code: 503` as ingress-nginx tells it.
    let no_app =
        "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {ports: [{name: http, port: 80}]}\n";
    let yaml = [
        no_app.to_owned(),
        service_yaml("pages", pages.addr),
        ingress_yaml("web", "app", "/", "Prefix", &annotations),
    ];
    proxy.publish(build_table(&yaml.join("---\n")));
    let (status, _, body) = get(proxy.addr, "a.test", "/shop").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "the pages backend answers the X-Code it was told");
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"/shop ["503", "text/html", "/shop", "default", "web", "app"]"#
    );
}
