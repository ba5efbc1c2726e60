//! Change notifications for a manifests directory, debounced: a burst of writes (an editor's
//! save, `kubectl`-style rewrites, a `git checkout`) becomes one reload. Each notification waits
//! for a quiet [`HOLDOFF`], but never longer than [`MAX_DELAY`] after the first change.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Quiet time that ends a burst of changes: an editor's save or an atomic rename arrives as a
/// few events within milliseconds; a half-written file in a longer burst keeps its last good
/// content until the next event.
pub const HOLDOFF: Duration = Duration::from_millis(25);
/// Longest wait between the first change of a burst and the reload.
pub const MAX_DELAY: Duration = Duration::from_secs(1);
/// How often the fallback poller looks when the OS watcher is unavailable.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Watches `dir` recursively; keep the returned watcher alive as long as changes are wanted.
pub fn watch(dir: &Path) -> notify::Result<(Box<dyn Watcher + Send>, mpsc::UnboundedReceiver<()>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
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

/// Waits for the next burst of changes to end. `false` when the watcher is gone.
pub async fn next_burst(changes: &mut mpsc::UnboundedReceiver<()>) -> bool {
    if changes.recv().await.is_none() {
        return false;
    }
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let quiet_until = (Instant::now() + HOLDOFF).min(deadline);
        match tokio::time::timeout_at(quiet_until, changes.recv()).await {
            Ok(Some(())) if Instant::now() < deadline => continue,
            Ok(None) => return false,
            _ => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_notification_and_never_waits_past_the_max_delay() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sender = tokio::spawn(async move {
            // Changes closer together than the holdoff, for longer than the maximum delay.
            let spacing = HOLDOFF / 2;
            for _ in 0..=MAX_DELAY.as_millis() / spacing.as_millis() + 10 {
                let _ = tx.send(());
                tokio::time::sleep(spacing).await;
            }
            tx
        });
        let started = Instant::now();
        assert!(next_burst(&mut rx).await);
        assert_eq!(started.elapsed(), MAX_DELAY);
        let tx = sender.await.expect("sender");
        while rx.try_recv().is_ok() {}
        tx.send(()).expect("send");
        let started = Instant::now();
        assert!(next_burst(&mut rx).await);
        assert_eq!(started.elapsed(), HOLDOFF);
        drop(tx);
        assert!(!next_burst(&mut rx).await);
    }
}
