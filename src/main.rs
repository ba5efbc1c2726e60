//! The `hawser` binary: parse the command line, start the listeners, stop on SIGTERM/SIGINT.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;

use hawser::admin::Admin;
use hawser::cli::{Cli, Command, EchoArgs, RunArgs};
use hawser::handle::TableHandle;
use hawser::metrics::Metrics;
use hawser::model::RoutingTable;
use hawser::proxy::{self, Proxy};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    hawser::telemetry::init(cli.log_format);
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Echo(args) => echo(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let table = Arc::new(TableHandle::new());
    let metrics = Arc::new(Metrics::new());
    let proxy = Proxy::new(table.clone(), metrics.clone(), args.proxy_config());
    let http = bind(args.http_addr, "proxy").await?;
    let admin = bind(args.admin_addr, "admin").await?;
    // No configuration source is wired in yet: serve an empty table (404 for everything).
    table.publish(RoutingTable::default());

    let (stopping, stop) = watch::channel(false);
    let admin_task = tokio::spawn(Admin { table, metrics }.serve(admin, stopped(stop.clone())));
    let proxy_task = tokio::spawn(proxy::serve(http, proxy.clone(), stopped(stop), args.shutdown_grace));
    shutdown_signal().await;
    tracing::info!(grace = ?args.shutdown_grace, tunnels = proxy.open_tunnels(), "shutting down");
    stopping.send_replace(true);
    let _ = proxy_task.await;
    proxy.drain_tunnels(args.shutdown_grace).await;
    let _ = admin_task.await;
    Ok(())
}

async fn echo(args: EchoArgs) -> anyhow::Result<()> {
    let listener = bind(args.addr, "echo").await?;
    hawser::echo::serve(listener, &args.name, shutdown_signal()).await;
    Ok(())
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("binding the {what} listener to {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(listener = what, addr = %local, "listening");
    Ok(listener)
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
