//! The admin listener: `/healthz`, `/readyz`, `/metrics` and `/debug/routes`.
//! Bind it to loopback or a pod-internal port: it is not meant for the public.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::accept::accept_until;
use crate::handle::TableHandle;
use crate::metrics::Metrics;
use crate::model::RoutingTable;

/// What the admin endpoints read.
#[derive(Clone, Debug)]
pub struct Admin {
    /// The live table (readiness, `/debug/routes`, table metrics).
    pub table: Arc<TableHandle>,
    /// Everything `/metrics` renders.
    pub metrics: Arc<Metrics>,
}

#[derive(Serialize)]
struct RoutesView<'t> {
    generation: u64,
    table: &'t RoutingTable,
}

impl Admin {
    /// Serves admin requests until `stop` completes.
    pub async fn serve(self, listener: TcpListener, stop: impl Future<Output = ()>) {
        accept_until(listener, "admin", stop, |stream, _| {
            let admin = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = admin.respond(&req);
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

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
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
            _ => text(StatusCode::NOT_FOUND, "unknown admin path\n".into()),
        }
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
