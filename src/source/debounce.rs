//! Bursts of changes become one rebuild: a burst of writes to a manifests directory (an
//! editor's save, `kubectl`-style rewrites, a `git checkout`) or of watch events from the API
//! server (a Deployment rolling out changes many EndpointSlices). Each notification waits for a
//! quiet [`HOLDOFF`], but never longer than [`MAX_DELAY`] after the first change.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// Quiet time that ends a burst of changes: an editor's save or an atomic rename arrives as a
/// few events within milliseconds; a half-written file in a longer burst keeps its last good
/// content until the next event. Short, because a build costs what the change touches: waiting
/// longer would save little work and add to every change's time to go live.
pub const HOLDOFF: Duration = Duration::from_millis(10);
/// Longest wait between the first change of a burst and the rebuild.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// Waits for the next burst of changes to end; its changes. `None` when the sender is gone.
pub async fn next_burst<T>(changes: &mut mpsc::UnboundedReceiver<T>) -> Option<Vec<T>> {
    let mut burst = vec![changes.recv().await?];
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let quiet_until = (Instant::now() + HOLDOFF).min(deadline);
        match tokio::time::timeout_at(quiet_until, changes.recv()).await {
            Ok(Some(change)) => {
                burst.push(change);
                if Instant::now() >= deadline {
                    return Some(burst);
                }
            }
            Ok(None) => return None,
            Err(_) => return Some(burst),
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
        assert!(next_burst(&mut rx).await.is_some());
        assert_eq!(started.elapsed(), MAX_DELAY);
        let tx = sender.await.expect("sender");
        while rx.try_recv().is_ok() {}
        tx.send(()).expect("send");
        let started = Instant::now();
        assert!(next_burst(&mut rx).await.is_some());
        assert_eq!(started.elapsed(), HOLDOFF);
        drop(tx);
        assert!(next_burst(&mut rx).await.is_none());
    }
}
