//! An upgraded connection: bytes copied both ways, unchanged, until a side closes, the route's
//! idle timeout or maximum duration runs out, or hawser shuts down.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::TunnelTotals;

/// Bytes moved per read; large enough for 64 KiB WebSocket messages in a few syscalls.
const COPY_BUFFER: usize = 16 * 1024;
/// Stand-in deadline for a timer that is off.
pub(super) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why a tunnel closed (who closed it, or which limit did).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side first.
    Client,
    /// The backend closed its side first.
    Backend,
    /// Reading from or writing to the client failed (reset, broken pipe).
    ClientError,
    /// Reading from or writing to the backend failed.
    BackendError,
    /// No byte in either direction for the route's idle timeout.
    Idle,
    /// The route's maximum connection duration passed.
    MaxDuration,
    /// hawser shut down and the drain grace period ended.
    Shutdown,
}

impl CloseReason {
    /// A stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Backend => "backend",
            Self::ClientError => "client_error",
            Self::BackendError => "backend_error",
            Self::Idle => "idle",
            Self::MaxDuration => "max_duration",
            Self::Shutdown => "shutdown",
        }
    }
}

/// The clocks a tunnel runs under.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Close after this long with no byte in either direction.
    pub idle: Option<Duration>,
    /// Close this long after the upgrade.
    pub max_duration: Option<Duration>,
}

impl Limits {
    /// The idle timer, the maximum-duration timer, and a future that completes when `shutdown`
    /// turns true (never, if its sender is gone).
    pub(super) fn clocks(
        &self,
        mut shutdown: watch::Receiver<bool>,
    ) -> (tokio::time::Sleep, tokio::time::Sleep, impl Future<Output = ()>) {
        let idle = tokio::time::sleep(self.idle.unwrap_or(FAR_FUTURE));
        let max = tokio::time::sleep(self.max_duration.unwrap_or(FAR_FUTURE));
        let drained = async move {
            if shutdown.wait_for(|draining| *draining).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        (idle, max, drained)
    }
}

/// Which end of one copy direction failed.
enum Failure {
    Read,
    Write,
}

/// Copies until both directions have ended, one fails, or a limit or `shutdown` fires.
/// End of stream on one side is passed on as a write shutdown (half-close) to the other.
pub async fn run<C, B>(
    client: C,
    backend: B,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> (CloseReason, TunnelTotals)
where
    C: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let started = Instant::now();
    let last_activity = AtomicU64::new(0);
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let (client_read, client_write) = tokio::io::split(client);
    let (backend_read, backend_write) = tokio::io::split(backend);
    let mut upstream = pin!(copy(client_read, backend_write, &up, &last_activity, started));
    let mut downstream = pin!(copy(backend_read, client_write, &down, &last_activity, started));
    let idle = limits.idle.unwrap_or(FAR_FUTURE);
    let (idle_timer, max_timer, shutdown) = limits.clocks(shutdown);
    let (mut idle_timer, mut max_timer, mut shutdown) = (pin!(idle_timer), pin!(max_timer), pin!(shutdown));
    let (mut upstream_done, mut downstream_done) = (false, false);
    let mut first_close = None;
    let reason = loop {
        tokio::select! {
            result = &mut upstream, if !upstream_done => match result {
                Ok(()) => {
                    upstream_done = true;
                    let first = *first_close.get_or_insert(CloseReason::Client);
                    if downstream_done { break first; }
                }
                Err(Failure::Read) => break CloseReason::ClientError,
                Err(Failure::Write) => break CloseReason::BackendError,
            },
            result = &mut downstream, if !downstream_done => match result {
                Ok(()) => {
                    downstream_done = true;
                    let first = *first_close.get_or_insert(CloseReason::Backend);
                    if upstream_done { break first; }
                }
                Err(Failure::Read) => break CloseReason::BackendError,
                Err(Failure::Write) => break CloseReason::ClientError,
            },
            () = &mut idle_timer => {
                let last = started + Duration::from_millis(last_activity.load(Ordering::Relaxed));
                if last.elapsed() >= idle { break CloseReason::Idle; }
                idle_timer.as_mut().reset(last + idle);
            },
            () = &mut max_timer => break CloseReason::MaxDuration,
            () = &mut shutdown => break CloseReason::Shutdown,
        }
    };
    let totals = TunnelTotals {
        client_to_backend: up.load(Ordering::Relaxed),
        backend_to_client: down.load(Ordering::Relaxed),
        duration: started.elapsed(),
    };
    (reason, totals)
}

/// One direction: read, note the activity, write, count. The idle timer reads `last_activity`
/// (milliseconds since `started`) only when it fires, so a busy tunnel never touches a timer.
async fn copy<R, W>(
    mut from: R,
    mut to: W,
    bytes: &AtomicU64,
    last_activity: &AtomicU64,
    started: Instant,
) -> Result<(), Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let read = from.read(&mut buffer).await.map_err(|_| Failure::Read)?;
        if read == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        let since_start = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        last_activity.store(since_start, Ordering::Relaxed);
        write_all(&mut to, &buffer[..read]).await.map_err(|_| Failure::Write)?;
        bytes.fetch_add(read as u64, Ordering::Relaxed);
    }
}

async fn write_all<W: AsyncWrite + Unpin>(to: &mut W, data: &[u8]) -> io::Result<()> {
    to.write_all(data).await?;
    to.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_closes_after_the_idle_timeout() {
        let (client, _client_peer) = duplex(64);
        let (backend, _backend_peer) = duplex(64);
        let (_tx, shutdown) = watch::channel(false);
        let limits = Limits { idle: Some(Duration::from_secs(30)), max_duration: None };
        let started = Instant::now();
        let (reason, _) = run(client, backend, limits, shutdown).await;
        assert_eq!(reason, CloseReason::Idle);
        assert_eq!(started.elapsed().as_secs(), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn activity_postpones_the_idle_timeout() {
        let (client, mut client_peer) = duplex(64);
        let (backend, mut backend_peer) = duplex(64);
        let (_tx, shutdown) = watch::channel(false);
        let limits = Limits { idle: Some(Duration::from_secs(30)), max_duration: None };
        let tunnel = tokio::spawn(run(client, backend, limits, shutdown));
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            client_peer.write_all(b"ping").await.expect("write");
            let mut got = [0u8; 4];
            backend_peer.read_exact(&mut got).await.expect("read");
        }
        let started = Instant::now();
        let (reason, totals) = tunnel.await.expect("tunnel");
        assert_eq!(reason, CloseReason::Idle);
        assert_eq!(started.elapsed().as_secs(), 30);
        assert_eq!(totals.client_to_backend, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn max_duration_closes_a_busy_tunnel() {
        let (client, mut client_peer) = duplex(64);
        let (backend, mut backend_peer) = duplex(64);
        let (_tx, shutdown) = watch::channel(false);
        let limits =
            Limits { idle: Some(Duration::from_secs(5)), max_duration: Some(Duration::from_secs(12)) };
        let tunnel = tokio::spawn(run(client, backend, limits, shutdown));
        let chatter = tokio::spawn(async move {
            let mut got = [0u8; 1];
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if client_peer.write_all(b"x").await.is_err()
                    || backend_peer.read_exact(&mut got).await.is_err()
                {
                    return;
                }
            }
        });
        let (reason, _) = tunnel.await.expect("tunnel");
        assert_eq!(reason, CloseReason::MaxDuration);
        chatter.abort();
    }

    #[tokio::test]
    async fn close_by_either_side_and_byte_counts() {
        let (client, mut client_peer) = duplex(1024);
        let (backend, mut backend_peer) = duplex(1024);
        let (_tx, shutdown) = watch::channel(false);
        let tunnel = tokio::spawn(run(client, backend, Limits::default(), shutdown));
        client_peer.write_all(b"hello").await.expect("write");
        let mut got = [0u8; 5];
        backend_peer.read_exact(&mut got).await.expect("read");
        backend_peer.write_all(b"hi").await.expect("write");
        client_peer.read_exact(&mut got[..2]).await.expect("read");
        drop(backend_peer);
        // The backend's end of stream reaches the client as a half-close first.
        assert_eq!(client_peer.read(&mut got).await.expect("eof"), 0);
        client_peer.shutdown().await.expect("shutdown");
        let (reason, totals) = tunnel.await.expect("tunnel");
        assert_eq!(reason, CloseReason::Backend);
        assert_eq!((totals.client_to_backend, totals.backend_to_client), (5, 2));
    }

    #[tokio::test]
    async fn shutdown_closes_the_tunnel() {
        let (client, _client_peer) = duplex(64);
        let (backend, _backend_peer) = duplex(64);
        let (tx, shutdown) = watch::channel(false);
        let tunnel = tokio::spawn(run(client, backend, Limits::default(), shutdown));
        tx.send_replace(true);
        assert_eq!(tunnel.await.expect("tunnel").0, CloseReason::Shutdown);
    }
}
