//! hawser: a Kubernetes ingress controller built first for WebSocket and other long-lived
//! connections. See `DESIGN.md` for the architecture; the binary's wiring is in `main.rs`.

pub mod accept;
pub mod access_log;
pub mod admin;
pub mod check;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod echo;
pub mod gateway_api;
pub mod handle;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod proxy;
pub mod quickstart;
pub mod rbac;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod telemetry;
pub mod translate;
