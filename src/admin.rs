//! The admin listener: `/healthz`, `/readyz` and `/metrics` for probes and Prometheus, and, for
//! loopback callers only (reach them with `kubectl port-forward`), what reveals configuration or
//! changes behaviour: `/debug/routes` and `POST /drain`. Bind it to loopback or a pod-internal
//! port: it is not meant for the public.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::accept::accept_until;
use crate::handle::TableHandle;
use crate::metrics::Metrics;
use crate::model::RoutingTable;
use crate::proxy::{DrainCause, DrainSelector, Proxy};

/// What the admin endpoints read.
#[derive(Clone, Debug)]
pub struct Admin {
    /// The live table (readiness, `/debug/routes`, table metrics).
    pub table: Arc<TableHandle>,
    /// Everything `/metrics` renders.
    pub metrics: Arc<Metrics>,
    /// Set once shutdown began: `/readyz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// The proxy whose tunnels `/drain` drains.
    pub proxy: Arc<Proxy>,
}

/// How long an admin drain spreads its closes over unless `window=` says otherwise.
const DRAIN_WINDOW: Duration = Duration::from_secs(5);

#[derive(Serialize)]
struct RoutesView<'t> {
    generation: u64,
    table: &'t RoutingTable,
}

impl Admin {
    /// Serves admin requests until `stop` completes.
    pub async fn serve(self, listener: TcpListener, stop: impl Future<Output = ()>) {
        accept_until(listener, "admin", stop, |stream, peer| {
            let admin = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = admin.respond(&req, peer.ip().to_canonical().is_loopback());
                    async move { Ok::<_, Infallible>(response) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                if let Err(error) = builder.serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!(%error, "admin connection ended with an error");
                }
            });
        })
        .await;
    }

    fn respond<B>(&self, req: &Request<B>, local: bool) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        // Every tenant's hosts, Services and endpoint addresses, or a lever on live tunnels: not
        // for any pod of the cluster that can reach the admin port.
        if !local && (path.starts_with("/debug/") || path == "/drain") {
            return text(StatusCode::FORBIDDEN, format!("{path} answers loopback callers only\n"));
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" if self.draining.load(Ordering::Relaxed) => {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
            }
            "/readyz" if self.table.generation() > 0 => text(StatusCode::OK, "ready\n".into()),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "no routing table published yet\n".into()),
            "/metrics" => {
                let mut response = text(StatusCode::OK, self.metrics.render(&self.table));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/debug/routes" => self.routes(),
            "/drain" if req.method() != Method::POST => {
                text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n".into())
            }
            "/drain" => self.drain(req.uri().query().unwrap_or_default()),
            _ => text(StatusCode::NOT_FOUND, "unknown admin path\n".into()),
        }
    }

    /// `POST /drain?route=NAME` or `?endpoint=ADDR` (both: that route's tunnels to that
    /// endpoint), `&window=30s` to spread the closes (default 5 s): every matching tunnel gets a
    /// close frame (1012 to the client). Answers how many were open.
    fn drain(&self, query: &str) -> Response<Full<Bytes>> {
        let mut route = None;
        let mut endpoint = None;
        let mut window = DRAIN_WINDOW;
        for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            let value = percent_decode(value);
            match key {
                "route" => route = Some(Arc::<str>::from(value)),
                "endpoint" => match value.parse::<SocketAddr>() {
                    Ok(addr) => endpoint = Some(addr),
                    Err(_) => return text(StatusCode::BAD_REQUEST, "endpoint must be IP:PORT\n".into()),
                },
                "window" => match humantime::parse_duration(&value) {
                    Ok(duration) => window = duration,
                    Err(_) => {
                        return text(StatusCode::BAD_REQUEST, "window must be a duration like 30s\n".into());
                    }
                },
                _ => return text(StatusCode::BAD_REQUEST, format!("unknown parameter {key:?}\n")),
            }
        }
        let selector = match (route, endpoint) {
            (Some(route), Some(endpoint)) => DrainSelector::RouteEndpoint(route, endpoint),
            (Some(route), None) => DrainSelector::Route(route),
            (None, Some(endpoint)) => DrainSelector::Endpoint(endpoint),
            (None, None) => return text(StatusCode::BAD_REQUEST, "name a route= or an endpoint=\n".into()),
        };
        let drained = self.proxy.drain(DrainCause::Admin, selector, window);
        let mut response = text(StatusCode::OK, format!("{{\"draining\":{drained}}}\n"));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        response
    }

    fn routes(&self) -> Response<Full<Bytes>> {
        let generation = self.table.generation();
        let table = self.table.load();
        match serde_json::to_vec_pretty(&RoutesView { generation, table: &table }) {
            Ok(json) => {
                let mut response = Response::new(Full::new(Bytes::from(json)));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
                response
            }
            Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// `%XX` escapes in a query value (route names hold `/`, written `%2F` by careful clients).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProxyConfig;

    fn admin() -> Admin {
        let (table, metrics) = (Arc::new(TableHandle::new()), Arc::new(Metrics::new()));
        let proxy = Proxy::new(table.clone(), metrics.clone(), ProxyConfig::default());
        Admin { table, metrics, draining: Arc::default(), proxy }
    }

    fn status(admin: &Admin, method: Method, path: &str, local: bool) -> u16 {
        let req = Request::builder().method(method).uri(path).body(()).expect("request");
        admin.respond(&req, local).status().as_u16()
    }

    #[tokio::test]
    async fn configuration_and_drains_answer_loopback_callers_only() {
        let admin = admin();
        for (method, path, from_the_pod, from_elsewhere) in [
            (Method::GET, "/healthz", 200, 200),
            (Method::GET, "/readyz", 503, 503),
            (Method::GET, "/metrics", 200, 200),
            (Method::GET, "/debug/routes", 200, 403),
            (Method::GET, "/debug/anything", 404, 403),
            (Method::POST, "/drain?route=r", 200, 403),
            (Method::GET, "/drain", 405, 403),
        ] {
            assert_eq!(status(&admin, method.clone(), path, true), from_the_pod, "{path} from loopback");
            assert_eq!(status(&admin, method, path, false), from_elsewhere, "{path} from another pod");
        }
    }
}
