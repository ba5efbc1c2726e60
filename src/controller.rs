//! The control loop: load the inputs, build, publish the table if it changed, and log what the
//! build found (each finding once, when it first appears). Standalone mode reloads the
//! manifests directory after every debounced burst of changes, and builds only when an object
//! or a problem changed; Kubernetes mode builds after every burst of relevant watch events.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use tokio::sync::watch as channel;

use crate::handle::TableHandle;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::source::cluster::{self, ClusterInputs, Scope, Served};
use crate::source::{ManifestDir, debounce, watch};
use crate::status::lease::{self, Election};
use crate::status::writer::{Publish, StatusWriter};
use crate::translate::{BuildConfig, BuildOutcome, Builder, Level, Report};

/// How often the inputs are rebuilt without a change: findings that depend on the clock (a
/// certificate expiring within 14 days, or expired) then appear without one. An unchanged
/// table is not republished.
pub const REBUILD_EVERY: Duration = Duration::from_secs(60 * 60);

/// Ticks every [`REBUILD_EVERY`], the first one [`REBUILD_EVERY`] from now.
fn rebuild_clock() -> tokio::time::Interval {
    tokio::time::interval_at(tokio::time::Instant::now() + REBUILD_EVERY, REBUILD_EVERY)
}

/// Builds tables and publishes them into one [`TableHandle`].
#[derive(Debug)]
pub struct Controller {
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
    config: BuildConfig,
    builder: Builder,
    logged: BTreeSet<Report>,
}

impl Controller {
    /// A controller publishing into `table` and counting its builds in `metrics`.
    pub fn new(table: Arc<TableHandle>, metrics: Arc<Metrics>, config: BuildConfig) -> Self {
        Self { table, metrics, config, builder: Builder::default(), logged: BTreeSet::new() }
    }

    /// Builds `snapshot` (adding the source's own findings), publishes the table, logs new
    /// findings, and returns what status is made of. `started` is when the inputs were read.
    pub fn apply(
        &mut self,
        started: Instant,
        snapshot: &Snapshot,
        source_reports: Vec<Report>,
    ) -> BuildOutcome {
        let config = BuildConfig { now: std::time::SystemTime::now(), ..self.config.clone() };
        let built = self.builder.build_with(snapshot, &config, source_reports);
        let routes: usize = built.table.hosts().iter().map(|h| h.routes.len()).sum();
        let generation = self.table.publish(built.table);
        let took = started.elapsed();
        self.metrics.table_built(took);
        self.log(&built.reports);
        let errors = built.reports.iter().filter(|r| r.level() == Level::Error).count();
        self.table.set_config_errors(u64::try_from(errors).unwrap_or(u64::MAX));
        let problems = built.reports.iter().filter(|r| r.level() != Level::Info).count();
        tracing::info!(generation, routes, problems, ms = took.as_millis(), "routing table built");
        BuildOutcome { reports: built.reports, served: built.served, facts: built.facts }
    }

    fn log(&mut self, reports: &[Report]) {
        let current: BTreeSet<Report> = reports.iter().cloned().collect();
        for report in current.difference(&self.logged) {
            match report.level() {
                Level::Error | Level::Warning => {
                    tracing::warn!(object = %report.object, field = %report.field, reason = ?report.reason, "{}", report.message)
                }
                Level::Info => {
                    tracing::debug!(object = %report.object, field = %report.field, reason = ?report.reason, "{}", report.message)
                }
            }
        }
        for report in self.logged.difference(&current).filter(|r| r.level() != Level::Info) {
            tracing::info!(object = %report.object, field = %report.field, "resolved: {}", report.message);
        }
        self.logged = current;
    }
}

/// Why standalone mode stopped serving its directory.
#[derive(Debug, thiserror::Error)]
pub enum ManifestsError {
    #[error("cannot watch the manifests directory: {0}")]
    Watch(#[from] notify::Error),
    #[error("the manifests watcher stopped")]
    WatcherStopped,
}

/// Standalone mode: serve the manifests under `dir`, rebuilding after each burst of changes,
/// until `stop` completes. The first table is published before this returns control.
pub async fn run_manifests(
    dir: PathBuf,
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
    config: BuildConfig,
    stop: impl Future<Output = ()>,
) -> Result<(), ManifestsError> {
    let mut manifests = ManifestDir::new(dir);
    let (_watcher, mut changes) = watch::watch(manifests.root())?;
    let mut controller = Controller::new(table, metrics, config);
    let started = Instant::now();
    let (snapshot, reports) = manifests.load();
    controller.apply(started, &snapshot, reports);
    let mut stop = std::pin::pin!(stop);
    let mut clock = rebuild_clock();
    loop {
        tokio::select! {
            burst = debounce::next_burst(&mut changes) => {
                let Some(changes) = burst else { return Err(ManifestsError::WatcherStopped) };
                let started = Instant::now();
                if let Some((snapshot, reports)) = manifests.reload(&changes) {
                    controller.apply(started, &snapshot, reports);
                }
            }
            _ = clock.tick() => {
                let started = Instant::now();
                let (snapshot, reports) = manifests.load();
                controller.apply(started, &snapshot, reports);
            }
            () = &mut stop => return Ok(()),
        }
    }
}

/// How the Kubernetes mode runs.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// How often API discovery is asked whether the WebSocketRoute CRD is served, so its watch
    /// starts when the CRD is installed and stops when it is removed (`--crd-probe-interval`).
    pub crd_probe: Duration,
    /// Namespace to watch; `None`: all.
    pub namespace: Option<String>,
    /// Where the Ingress status address comes from.
    pub publish: Publish,
    /// Leader election for status writes.
    pub election: Election,
}

/// Kubernetes mode: watch the cluster, publish a table after every burst of changes (the first
/// only once every watch has listed), and let the elected leader write status. Runs until `stop`.
pub async fn run_cluster(
    client: Client,
    table: Arc<TableHandle>,
    config: BuildConfig,
    metrics: Arc<Metrics>,
    options: ClusterOptions,
    stop: impl Future<Output = ()>,
) {
    let served = match crds_served(&client).await {
        Ok(served) => served,
        Err(error) => {
            tracing::warn!(%error, "cannot tell which CRDs are installed; asking again shortly");
            Served::default()
        }
    };
    if !served.websocket_routes {
        tracing::warn!(
            "the WebSocketRoute CRD is not installed; serving Ingresses, and WebSocketRoutes as soon as it is. Install it with: kubectl apply -f crds/websocketroutes.hawser.dev.yaml (or `hawser crd | kubectl apply -f -`)"
        );
    }
    if served.gateway_api && !served.reference_grants {
        tracing::warn!(
            "ReferenceGrant v1 is not served (Gateway API CRDs older than v1.5): cross-namespace references are refused"
        );
    }
    let scope = Scope { namespace: options.namespace.clone(), served };
    let mut watches = cluster::start(&client, &scope, &metrics);
    let mut stop = std::pin::pin!(stop);
    tokio::select! {
        () = watches.inputs.wait_synced() => {}
        () = &mut stop => return,
    }
    tracing::info!(
        namespace = ?options.namespace,
        websocket_routes = served.websocket_routes,
        gateway_api = served.gateway_api,
        "every watch has synced"
    );
    let (leader_tx, leader) = channel::channel(false);
    let election = tokio::spawn(lease::run(client.clone(), options.election.clone(), leader_tx));
    let (outcomes_tx, outcomes) = channel::channel(BuildOutcome::default());
    let inputs = watches.inputs.clone();
    let writer = StatusWriter::new(
        client.clone(),
        options.publish,
        options.election.identity.clone(),
        config.gateway.controller_name.clone(),
    );
    let status = tokio::spawn(write_status(writer, inputs.clone(), outcomes, leader));
    let mut controller = Controller::new(table, metrics, config);
    let rebuild = |controller: &mut Controller| {
        let started = Instant::now();
        outcomes_tx.send_replace(controller.apply(started, &inputs.snapshot(), Vec::new()));
    };
    rebuild(&mut controller);
    let mut clock = rebuild_clock();
    let mut crd_probe =
        tokio::time::interval_at(tokio::time::Instant::now() + options.crd_probe, options.crd_probe);
    loop {
        tokio::select! {
            burst = debounce::next_burst(&mut watches.changes) => {
                if burst.is_none() {
                    break;
                }
                rebuild(&mut controller);
            }
            _ = clock.tick() => rebuild(&mut controller),
            _ = crd_probe.tick() => {
                // An unreachable API server proves nothing: the watch stays as it is.
                if let Ok(served) = crds_served(&client).await
                    && watches.follow_crds(served)
                {
                    tracing::info!(?served, "the installed CRDs changed; the watches follow");
                }
            }
            () = &mut stop => break,
        }
    }
    election.abort();
    status.abort();
}

/// The status task: after every build, and whenever this replica becomes leader, writes what
/// changed. It never holds up a table swap: it only ever sees the latest outcome.
async fn write_status(
    mut writer: StatusWriter,
    inputs: Arc<ClusterInputs>,
    mut outcomes: channel::Receiver<BuildOutcome>,
    mut leader: channel::Receiver<bool>,
) {
    loop {
        if *leader.borrow_and_update() {
            let outcome = outcomes.borrow_and_update().clone();
            writer.apply(&outcome, &inputs).await;
        }
        tokio::select! {
            changed = outcomes.changed() => if changed.is_err() { return },
            changed = leader.changed() => if changed.is_err() { return },
        }
    }
}

/// Which optional CRDs are served, from API discovery (which needs no RBAC). An error means
/// the API server could not say.
async fn crds_served(client: &Client) -> Result<Served, kube::Error> {
    let hawser = served_resources(client, "hawser.dev/v1alpha1").await?;
    let gateway = served_resources(client, "gateway.networking.k8s.io/v1").await?;
    let has = |resources: &[String], name: &str| resources.iter().any(|r| r == name);
    Ok(Served {
        websocket_routes: has(&hawser, "websocketroutes"),
        websocket_policies: has(&hawser, "websocketpolicies"),
        gateway_api: ["gatewayclasses", "gateways", "httproutes"].iter().all(|r| has(&gateway, r)),
        reference_grants: has(&gateway, "referencegrants"),
        backend_tls_policies: has(&gateway, "backendtlspolicies"),
    })
}

/// The resources the API server serves in `group_version` (none when it does not serve it).
async fn served_resources(client: &Client, group_version: &str) -> Result<Vec<String>, kube::Error> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(list.resources.into_iter().map(|r| r.name).collect()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_manifests_are_rebuilt_every_hour_without_a_change() {
        let dir = std::env::temp_dir().join(format!("hawser-rebuild-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let (table, metrics) = (Arc::new(TableHandle::new()), Arc::new(Metrics::new()));
        let mut swaps = table.subscribe();
        let serving = tokio::spawn(run_manifests(
            dir.clone(),
            table.clone(),
            metrics.clone(),
            BuildConfig::default(),
            std::future::pending(),
        ));
        swaps.wait_for(|g| *g == 1).await.expect("the first table");
        tokio::time::sleep(REBUILD_EVERY / 2).await;
        assert_eq!(metrics.table_builds(), 1, "no rebuild before the hour");
        tokio::time::sleep(REBUILD_EVERY).await;
        assert_eq!(metrics.table_builds(), 2, "one rebuild after it, and the same table kept");
        assert_eq!(table.generation(), 1);
        serving.abort();
        let _ = std::fs::remove_dir_all(dir);
    }
}
