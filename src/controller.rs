//! The control loop: load the inputs, build, publish the table if it changed, and log what the
//! build found (each finding once, when it first appears). Standalone mode reloads the
//! manifests directory after every debounced burst of changes.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use crate::build::{BuildConfig, Built, Level, Report, build};
use crate::handle::TableHandle;
use crate::snapshot::Snapshot;
use crate::source::{ManifestDir, watch};

/// Builds tables and publishes them into one [`TableHandle`].
#[derive(Debug)]
pub struct Controller {
    table: Arc<TableHandle>,
    config: BuildConfig,
    logged: BTreeSet<Report>,
}

impl Controller {
    /// A controller publishing into `table`.
    pub fn new(table: Arc<TableHandle>, config: BuildConfig) -> Self {
        Self { table, config, logged: BTreeSet::new() }
    }

    /// Builds `snapshot` (adding the source's own findings), publishes the table, logs new
    /// findings, and returns the generation now live.
    pub fn apply(&mut self, snapshot: &Snapshot, source_reports: Vec<Report>) -> u64 {
        let config = BuildConfig { now: std::time::SystemTime::now(), ..self.config.clone() };
        let built = build_with(snapshot, &config, source_reports);
        self.log(&built.reports);
        let routes: usize = built.table.hosts().iter().map(|h| h.routes.len()).sum();
        let generation = self.table.publish(built.table);
        tracing::info!(
            generation,
            routes,
            problems = built.reports.iter().filter(|r| r.level() != Level::Info).count(),
            "routing table built"
        );
        generation
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

/// [`build`], with findings from the source merged in and sorted.
pub fn build_with(snapshot: &Snapshot, config: &BuildConfig, source_reports: Vec<Report>) -> Built {
    let mut built = build(snapshot, config);
    built.reports.extend(source_reports);
    built.reports.sort();
    built
}

/// Standalone mode: serve the manifests under `dir`, rebuilding after each burst of changes,
/// until `stop` completes. The first table is published before this returns control.
pub async fn run_manifests(
    dir: PathBuf,
    table: Arc<TableHandle>,
    config: BuildConfig,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut manifests = ManifestDir::new(dir);
    let (_watcher, mut changes) = watch::watch(manifests.root())?;
    let mut controller = Controller::new(table, config);
    let (snapshot, reports) = manifests.load();
    controller.apply(&snapshot, reports);
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            more = watch::next_burst(&mut changes) => {
                if !more {
                    anyhow::bail!("the manifests watcher stopped");
                }
                let (snapshot, reports) = manifests.load();
                controller.apply(&snapshot, reports);
            }
            () = &mut stop => return Ok(()),
        }
    }
}
