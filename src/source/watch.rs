//! Change notifications for a manifests directory: the OS's file events, or a poller where
//! they are unavailable, as the paths that changed. [`super::debounce`] turns them into reloads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How often the fallback poller looks when the OS watcher is unavailable.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What a file system event says changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// These paths (files or directories) were created, written, renamed or removed.
    Paths(Vec<PathBuf>),
    /// Anything may have changed: the watcher lost events, or could not say which.
    Anything,
}

/// Watches `dir` recursively; keep the returned watcher alive as long as changes are wanted.
pub fn watch(dir: &Path) -> notify::Result<(Box<dyn Watcher + Send>, mpsc::UnboundedReceiver<Change>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |event: notify::Result<notify::Event>| {
        let change = match event {
            Ok(event) if event.kind.is_access() => return,
            Ok(event) if event.need_rescan() || event.paths.is_empty() => Change::Anything,
            Ok(event) => Change::Paths(event.paths),
            Err(_) => Change::Anything,
        };
        let _ = tx.send(change);
    };
    let mut watcher: Box<dyn Watcher + Send> = match notify::recommended_watcher(handler.clone()) {
        Ok(watcher) => Box::new(watcher),
        Err(error) => {
            tracing::warn!(%error, "file system events unavailable, polling the manifests directory");
            let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
            Box::new(notify::PollWatcher::new(handler, config)?)
        }
    };
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok((watcher, rx))
}
