//! The `hawser` binary: parse the command line, start what the subcommand needs, stop on
//! SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use hawser::admin::Admin;
use hawser::cli::{CheckArgs, Cli, Command, EchoArgs, MigrateArgs, QuickstartArgs, RunArgs};
use hawser::handle::TableHandle;
use hawser::metrics::Metrics;
use hawser::proxy::{self, Proxy, ProxyConfig};
use hawser::translate::BuildConfig;
use hawser::{controller, quickstart};

/// mimalloc rather than glibc's allocator: building a table for 10,000 Ingresses is three times
/// faster with it (the build allocates and frees many small strings and vectors), and it returns
/// freed memory to the system instead of keeping fragmented arenas (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    runtime(cli.workers).context("starting the async runtime")?.block_on(run(cli))
}

/// One worker per allowed core (`taskset` and cgroup CPU quotas count); a
/// single-threaded runtime when that is one, as one nginx worker or linkerd2-proxy on one core.
fn runtime(workers: Option<NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = workers.or_else(|| std::thread::available_parallelism().ok()).map_or(1, NonZeroUsize::get);
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().build()
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crd => print!("{}{}", hawser::crd::crd_yaml(), hawser::crd::policy_crd_yaml()),
        Command::Rbac => print!("{}", hawser::rbac::json()),
        Command::Check(args) => check(&args),
        Command::Migrate(args) => migrate(&args).await?,
        command => {
            hawser::telemetry::init(cli.log_format);
            match command {
                Command::Run(args) => serve(Serve::from(*args)).await?,
                Command::Echo(args) => echo(args).await?,
                Command::Quickstart(args) => run_quickstart(args).await?,
                Command::Crd | Command::Rbac | Command::Check(_) | Command::Migrate(_) => {}
            }
        }
    }
    Ok(())
}

fn check(args: &CheckArgs) {
    let config = args.translation.build_config();
    let (output, errors) = hawser::check::check(&args.dir, &config, args.output);
    print!("{output}");
    if errors {
        std::process::exit(1);
    }
}

async fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    let snapshot = match &args.dir {
        Some(dir) => hawser::source::ManifestDir::new(dir).load().0,
        None => cluster_snapshot(args.kubeconfig.as_deref()).await?,
    };
    // The class being left is served as if it were hawser's, whichever controller it names.
    let class = snapshot
        .ingress_classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(args.from_class.as_str()));
    let controller_name = class.and_then(|c| c.spec.as_ref()?.controller.clone());
    let translation = hawser::cli::TranslationArgs {
        ingress_class: args.from_class.clone(),
        controller_name: controller_name.unwrap_or_else(|| hawser::translate::CONTROLLER_NAME.to_owned()),
        ignore_annotations: args.ignore_annotations.clone(),
        host_ownership: hawser::translate::HostOwnership::Path,
        gateway_controller_name: hawser::translate::GATEWAY_CONTROLLER_NAME.to_owned(),
        gateway_http_port: 80,
        gateway_https_port: 443,
    };
    let built = hawser::translate::build(&snapshot, &translation.build_config());
    let plan = hawser::migrate::plan(&snapshot, &built);
    print!("{}", hawser::migrate::render(&plan, args.output, &args.from_class));
    if plan.has_problems() {
        std::process::exit(1);
    }
    Ok(())
}

/// Everything the cluster holds that the build reads, listed once.
async fn cluster_snapshot(
    kubeconfig: Option<&std::path::Path>,
) -> anyhow::Result<hawser::snapshot::Snapshot> {
    let client = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let config =
                kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                    .await?;
            kube::Client::try_from(config)?
        }
        None => kube::Client::try_default()
            .await
            .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?,
    };
    let scope = hawser::source::cluster::Scope { namespace: None, served: Default::default() };
    let watches = hawser::source::cluster::start(&client, &scope, &Arc::new(Metrics::default()));
    tokio::time::timeout(Duration::from_secs(60), watches.inputs.wait_synced())
        .await
        .context("the cluster's objects could not be listed within 60 s")?;
    Ok(watches.inputs.snapshot())
}

/// Everything `hawser run` and `hawser quickstart` start.
struct Serve {
    http_addr: SocketAddr,
    https_addr: SocketAddr,
    admin_addr: SocketAddr,
    manifests: Option<PathBuf>,
    cluster: Option<hawser::controller::ClusterOptions>,
    proxy: ProxyConfig,
    build: BuildConfig,
    shutdown: Shutdown,
    listen_backlog: u32,
    banner: Option<String>,
}

/// The shutdown clocks: all of it happens within `grace` of the signal.
#[derive(Clone, Copy, Debug)]
struct Shutdown {
    grace: Duration,
    delay: Duration,
    drain_window: Option<Duration>,
}

impl From<RunArgs> for Serve {
    fn from(args: RunArgs) -> Self {
        Self {
            proxy: args.proxy_config(),
            build: args.build_config(),
            cluster: Some(args.cluster_options()),
            http_addr: args.http_addr,
            https_addr: args.https_addr,
            admin_addr: args.admin_addr,
            manifests: args.manifests,
            shutdown: Shutdown {
                grace: args.shutdown_grace,
                delay: args.shutdown_delay,
                drain_window: args.drain_window,
            },
            listen_backlog: args.listen_backlog,
            banner: None,
        }
    }
}

async fn serve(options: Serve) -> anyhow::Result<()> {
    let table = Arc::new(TableHandle::new());
    let metrics = Arc::new(Metrics::new());
    let proxy = Proxy::new(table.clone(), metrics.clone(), options.proxy);
    let http = bind_with_backlog(options.http_addr, "proxy", options.listen_backlog)?;
    let https = bind_with_backlog(options.https_addr, "proxy-tls", options.listen_backlog)?;
    let admin_listener = bind(options.admin_addr, "admin").await?;
    let tls = proxy::tls::acceptor(table.clone()).context("setting up TLS")?;
    let (closing, close) = watch::channel(None);
    let (quitting, quit) = watch::channel(false);
    let mut source =
        start_source(options.manifests, options.cluster, options.build, &table, &metrics, &quit).await?;
    let draining = Arc::new(AtomicBool::new(false));
    let admin = Admin { table, metrics, draining: draining.clone(), proxy: proxy.clone() };
    let admin_task = tokio::spawn(admin.serve(admin_listener, stopped(quit.clone())));
    let listen = |listener, tls| proxy::serve(listener, tls, proxy.clone(), deadline(close.clone()));
    let proxy_task = tokio::spawn(listen(http, None));
    let tls_task = tokio::spawn(listen(https, Some(tls)));
    if let Some(banner) = options.banner {
        println!("{banner}");
    }
    let outcome = tokio::select! {
        () = shutdown_signal() => Ok(()),
        finished = &mut source => finished.context("the configuration source failed").and_then(|r| r),
    };
    shut_down(options.shutdown, &proxy, &draining, &closing).await;
    let _ = tokio::join!(proxy_task, tls_task);
    quitting.send_replace(true);
    let _ = admin_task.await;
    hawser::access_log::flush(Duration::from_secs(1));
    outcome
}

/// Everything from the signal to the exit, within `--shutdown-grace`: not ready at once, new
/// connections still taken for `--shutdown-delay` (the load balancer needs a moment to notice),
/// then the listeners close, in-flight requests finish, and tunnels get their close frames
/// spread over the drain window; whatever is left at the deadline is closed.
async fn shut_down(
    clocks: Shutdown,
    proxy: &Arc<Proxy>,
    draining: &AtomicBool,
    closing: &watch::Sender<Option<Instant>>,
) {
    let signalled = Instant::now();
    let deadline = signalled + clocks.grace;
    tracing::info!(grace = ?clocks.grace, delay = ?clocks.delay, tunnels = proxy.open_tunnels(), "shutting down");
    draining.store(true, Ordering::Relaxed);
    tokio::time::sleep_until((signalled + clocks.delay).min(deadline)).await;
    closing.send_replace(Some(deadline));
    // The last close frames must still have their handshake time before the deadline.
    let room = deadline.saturating_duration_since(Instant::now()).saturating_sub(proxy::CLOSE_HANDSHAKE);
    let window = clocks.drain_window.unwrap_or(clocks.grace / 2).min(room);
    proxy.drain_tunnels(window, deadline).await;
}

/// Completes with the shutdown deadline once one is set.
async fn deadline(mut close: watch::Receiver<Option<Instant>>) -> Instant {
    match close.wait_for(Option::is_some).await {
        Ok(deadline) => deadline.unwrap_or_else(Instant::now),
        Err(_) => Instant::now(),
    }
}

/// The configuration source: a manifests directory, else the cluster.
async fn start_source(
    manifests: Option<PathBuf>,
    cluster: Option<hawser::controller::ClusterOptions>,
    build: BuildConfig,
    table: &Arc<TableHandle>,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    if let Some(dir) = manifests {
        tracing::info!(dir = %dir.display(), "standalone mode");
        let watched = controller::run_manifests(
            dir.clone(),
            table.clone(),
            metrics.clone(),
            build,
            stopped(stop.clone()),
        );
        return Ok(tokio::spawn(async move {
            watched.await.with_context(|| format!("serving manifests from {}", dir.display()))
        }));
    }
    let options = cluster.context("no --manifests and no Kubernetes settings")?;
    let client = kube::Client::try_default().await.context(
        "no Kubernetes configuration (in-cluster or KUBECONFIG); use --manifests DIR for standalone mode",
    )?;
    tracing::info!(namespace = ?options.namespace, "Kubernetes mode");
    let watched = controller::run_cluster(
        client,
        table.clone(),
        build,
        metrics.clone(),
        options,
        stopped(stop.clone()),
    );
    Ok(tokio::spawn(async move {
        watched.await;
        Ok(())
    }))
}

async fn run_quickstart(args: QuickstartArgs) -> anyhow::Result<()> {
    let dir = quickstart::manifests_dir(args.manifests).context("preparing the quickstart manifests")?;
    for (name, addr) in quickstart::ECHO_BACKENDS {
        let addr: SocketAddr = addr.parse()?;
        let listener = bind(addr, name).await?;
        tokio::spawn(async move { hawser::echo::serve(listener, name, std::future::pending()).await });
    }
    let banner = quickstart::instructions(args.http_addr, args.admin_addr, &dir);
    serve(Serve {
        http_addr: args.http_addr,
        https_addr: args.https_addr,
        admin_addr: args.admin_addr,
        manifests: Some(dir),
        cluster: None,
        proxy: ProxyConfig::default(),
        build: BuildConfig::default(),
        shutdown: Shutdown { grace: Duration::from_secs(1), delay: Duration::ZERO, drain_window: None },
        listen_backlog: 1024,
        banner: Some(banner),
    })
    .await
}

async fn echo(args: EchoArgs) -> anyhow::Result<()> {
    let listener = bind(args.addr, "echo").await?;
    hawser::echo::serve(listener, &args.name, shutdown_signal()).await;
    Ok(())
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("binding the {what} listener to {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(listener = what, addr = %local, "listening");
    Ok(listener)
}

/// A proxy listener with an explicit backlog (`TcpListener::bind` uses 128, which a reconnect
/// storm overflows: the SYNs it drops wait out a 1 s retransmission).
fn bind_with_backlog(addr: SocketAddr, what: &str, backlog: u32) -> anyhow::Result<TcpListener> {
    let context = || format!("binding the {what} listener to {addr}");
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() };
    let socket = socket.with_context(context)?;
    socket.set_reuseaddr(true).with_context(context)?;
    socket.bind(addr).with_context(context)?;
    let listener = socket.listen(backlog).with_context(context)?;
    tracing::info!(listener = what, addr = %listener.local_addr()?, backlog, "listening");
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
