//! An upgraded connection for its whole life: bytes copied both ways ([`super::copy`]) until a
//! side closes, and for a WebSocket every way hawser ends it (idle timeout, maximum duration,
//! a drain order, a dead peer, a broken frame, a message too big) puts a close frame on the wire
//! first and waits a short, bounded time for the close handshake (RFC 6455 §7.1.2) before TCP is
//! closed. Other upgrades are byte tunnels, closed at once.
//!
//! [`Tunnel`] is what a live tunnel holds (its route, budget and load guards, drain
//! subscription) and its task; [`run`] drives the two connections; `clock.rs` keeps the
//! deadlines, `splice.rs` moves large payloads between plain sockets without copying them and
//! `outcome.rs` says how it ended.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::Proxy;
use super::admission::BudgetGuard;
use super::balance::LoadGuard;
use super::drain::Subscription;
use super::extended_connect::Handshake;
use super::prefixed::Prefixed;
use crate::access_log::{self, TunnelLine};
use crate::metrics::TunnelTotals;
use crate::model::Route;
use clock::{Clock, handshake_done};
use copy::Pair;
pub use outcome::{CloseCode, CloseReason, Closed, Initiator, WebSocketTotals};
use splice::Spliceable;
pub use splice::{MAX_PIPES, spliced_bytes};

mod clock;
mod copy;
mod outcome;
mod splice;
#[cfg(test)]
mod tests;

/// How long hawser waits for the close handshake it started before it closes TCP.
pub const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// Everything a live tunnel holds until it closes.
pub(super) struct Tunnel {
    pub(super) proxy: Arc<Proxy>,
    pub(super) route: Arc<Route>,
    pub(super) budget: BudgetGuard,
    pub(super) load: LoadGuard,
    pub(super) websocket: bool,
    pub(super) handshake: Handshake,
    /// The drain orders for this tunnel; it also knows the endpoint the tunnel runs to.
    pub(super) signals: Subscription,
}

/// Where an upgrade read by hawser's own HTTP/1.1 server leaves its tunnel until that server
/// has written the `101` (a request extension, hence shared and `Clone`).
#[derive(Clone, Default)]
pub(super) struct TunnelSlot(Arc<Mutex<Option<(Tunnel, BackendSide)>>>);

impl TunnelSlot {
    pub(super) fn put(&self, tunnel: Tunnel, backend: BackendSide) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((tunnel, backend));
        }
    }

    /// The tunnel left here, if the handshake succeeded.
    pub(super) fn take(&self) -> Option<(Tunnel, BackendSide)> {
        self.0.lock().ok()?.take()
    }
}

impl Tunnel {
    /// Spawns the tunnel's task, tracked with the proxy's other tunnels.
    pub(super) fn spawn(self, client: ClientSide, backend: BackendSide) {
        self.proxy.tunnels.clone().spawn(self.run(client, backend));
    }

    /// The tunnel's task. An async block rather than an async fn, so that `self` is stored once
    /// in every idle tunnel's task, not twice (rust-lang/rust#62958); the running tunnel borrows
    /// the subscription from it rather than keeping a second one.
    #[allow(clippy::manual_async_fn)]
    fn run(mut self, client: ClientSide, backend: BackendSide) -> impl Future<Output = ()> + Send {
        async move {
            let (client, backend) = match tokio::try_join!(client.ready(), backend.ready()) {
                Ok(sides) => sides,
                Err(error) => {
                    tracing::debug!(route = %self.route.name, %error, "upgrade did not complete");
                    return self.incomplete();
                }
            };
            self.proxy.metrics.upgrade(Some(&self.route.name), "upgraded", self.handshake.label());
            let open = self.proxy.metrics.tunnel_opened(&self.route.name, self.signals.endpoint());
            let closed = join(client, backend, self.limits(), &mut self.signals).await;
            let protocol = self.handshake.label();
            self.proxy.metrics.tunnel_closed(open, &self.route.name, &closed.ending(protocol));
            log_closed(&self.route.name, self.signals.endpoint(), protocol, &closed);
            drop((self.budget, self.load));
        }
    }

    /// The tunnel never started: a side went away after the `101` was sent (or while it was).
    pub(super) fn incomplete(self) {
        self.proxy.metrics.upgrade(Some(&self.route.name), "incomplete", self.handshake.label());
    }

    fn limits(&self) -> Limits {
        let policy = &self.route.policy;
        let websocket = self.websocket.then(|| WebSocketLimits {
            ping: policy
                .ping_interval
                .duration()
                .map(|interval| Ping { interval, timeout: policy.ping_timeout }),
            max_message: policy.max_message_bytes,
        });
        Limits {
            idle: policy.idle_timeout.duration(),
            max_duration: policy.max_connection_duration.duration(),
            websocket,
        }
    }
}

/// The tunnel's access-log line: how it ended, the first close frame, what it carried.
fn log_closed(route: &Arc<str>, endpoint: std::net::SocketAddr, protocol: &'static str, closed: &Closed) {
    if !access_log::enabled() {
        return;
    }
    let close = closed.websocket.as_ref().and_then(|w| w.close.as_ref());
    access_log::tunnel(TunnelLine {
        route: route.clone(),
        endpoint,
        protocol,
        closed_by: closed.reason.label(),
        close: close.map(|c| (c.code, c.reason.clone(), c.by.label())),
        duration: closed.totals.duration,
        bytes_from_client: closed.totals.client_to_backend,
        bytes_from_backend: closed.totals.backend_to_client,
        messages: closed.websocket.as_ref().map(|w| w.messages),
    });
}

/// Runs the tunnel between two upgraded connections. Plain TCP sockets are taken back from
/// hyper and driven directly (bytes hyper had already read past the handshake go first,
/// through the frame tracker like the rest); TLS on either side stays behind hyper's upgraded
/// wrapper. Those tunnels are boxed, so that their larger state does not size every plain
/// tunnel's task.
fn join(
    client: Ready,
    backend: Ready,
    limits: Limits,
    signals: &mut Subscription,
) -> Either<impl Future<Output = Closed>, Pin<Box<dyn Future<Output = Closed> + Send + '_>>> {
    let client = match client {
        Ready::Socket(socket, early) => Ok((socket, early)),
        Ready::Upgraded(upgraded) => upgraded.downcast::<TokioIo<Prefixed<TcpStream>>>().map(|parts| {
            // The listener's first read goes to hyper whole (its read buffer is larger), so
            // nothing of it is left unread; were some left, it would follow what hyper read.
            let (socket, unread) = parts.io.into_inner().into_parts();
            let early =
                if unread.is_empty() { parts.read_buf } else { [parts.read_buf, unread].concat().into() };
            (socket, early)
        }),
    };
    let (client, from_client) = match client {
        Ok(sides) => sides,
        Err(client) => {
            let client = TokioIo::new(client);
            return Either::Right(match backend {
                Ready::Socket(backend, from_backend) => {
                    let early = Early { from_client: Bytes::new(), from_backend };
                    Box::pin(run(client, backend, limits, signals, early))
                }
                Ready::Upgraded(backend) => {
                    Box::pin(run(client, TokioIo::new(backend), limits, signals, Early::default()))
                }
            });
        }
    };
    match backend {
        Ready::Socket(backend, from_backend) => {
            Either::Left(run(client, backend, limits, signals, Early { from_client, from_backend }))
        }
        Ready::Upgraded(backend) => {
            let early = Early { from_client, from_backend: Bytes::new() };
            Either::Right(Box::pin(run(client, TokioIo::new(backend), limits, signals, early)))
        }
    }
}

/// One side of a tunnel as its handshake left it.
#[derive(Debug)]
pub(super) enum Side {
    /// The clear-text socket itself, and the bytes its peer sent behind the handshake: from
    /// hawser's own HTTP/1.1 server after it wrote the `101`, or its own client after it read
    /// one.
    Socket(TcpStream, Bytes),
    /// Still inside a hyper connection (its server's, or its client's over TLS), handed over
    /// once hyper lets go.
    Upgrade(hyper::upgrade::OnUpgrade),
}

/// The client's side of a tunnel.
pub(super) type ClientSide = Side;
/// The backend's side of a tunnel.
pub(super) type BackendSide = Side;

/// A side, ready to tunnel.
enum Ready {
    Socket(TcpStream, Bytes),
    Upgraded(hyper::upgrade::Upgraded),
}

impl Side {
    async fn ready(self) -> hyper::Result<Ready> {
        match self {
            Self::Socket(socket, early) => Ok(Ready::Socket(socket, early)),
            Self::Upgrade(upgrade) => upgrade.await.map(Ready::Upgraded),
        }
    }
}

/// Keepalive pings for one tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    /// Ping a side after it has sent nothing for this long.
    pub interval: Duration,
    /// A side that answers nothing within this long after a ping is dead.
    pub timeout: Duration,
}

/// The clocks and limits a tunnel runs under.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Close after this long with no byte in either direction.
    pub idle: Option<Duration>,
    /// Close this long after the upgrade.
    pub max_duration: Option<Duration>,
    /// WebSocket settings; `None` for any other upgrade, which stays a byte tunnel.
    pub websocket: Option<WebSocketLimits>,
}

/// What a WebSocket tunnel enforces besides the byte tunnel's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct WebSocketLimits {
    /// Keepalive pings to each side; `None`: off.
    pub ping: Option<Ping>,
    /// The largest message (payload bytes of all its fragments) either side may send.
    pub max_message: Option<u64>,
}

/// Bytes each side sent right behind the handshake, read already (by hyper).
#[derive(Debug, Default)]
pub struct Early {
    /// From the client, for the backend.
    pub from_client: Bytes,
    /// From the backend, for the client.
    pub from_backend: Bytes,
}

/// The tunnel between `client` and `backend`, which runs until it is over.
pub fn run<C, B>(
    client: C,
    backend: B,
    limits: Limits,
    drains: &mut Subscription,
    early: Early,
) -> impl Future<Output = Closed>
where
    C: AsyncRead + AsyncWrite + Spliceable + Unpin,
    B: AsyncRead + AsyncWrite + Spliceable + Unpin,
{
    let max_message = limits.websocket.and_then(|w| w.max_message);
    let mut tunnel = Pair::new(client, backend, limits.websocket.is_some(), max_message);
    tunnel.up.seed(&early.from_client, max_message);
    tunnel.down.seed(&early.from_backend, max_message);
    let mut clock = Clock::new(limits);
    // An async block, not an async fn: its captures are stored once, where an async fn would
    // keep a second copy of its arguments (rust-lang/rust#62958), and every idle tunnel pays.
    async move {
        let mut timer = pin!(tokio::time::sleep_until(clock.next_deadline()));
        // The timer is polled only when it fired or was just armed: its waker stays registered
        // in between, and a poll on every wake-up would replace it (a waker clone and drop per
        // message).
        let mut armed = true;
        let reason = poll_fn(|cx| {
            loop {
                let copied = tunnel.poll_copy(cx);
                clock.note_first_close(&tunnel);
                if let Poll::Ready(reason) = copied {
                    return Poll::Ready(clock.ending.as_ref().map_or(reason, |e| e.reason));
                }
                clock.heard(&tunnel);
                if clock.drain_at.is_none()
                    && let Poll::Ready((cause, at)) = drains.poll_order(cx)
                {
                    clock.drain_at = Some((cause, at));
                    timer.as_mut().reset(clock.next_deadline());
                    armed = true;
                }
                let mut acted = clock.frame_events(&mut tunnel);
                if acted {
                    // The close handshake's deadline is sooner than anything armed.
                    timer.as_mut().reset(clock.next_deadline());
                    armed = true;
                }
                if std::mem::take(&mut armed) || timer.is_elapsed() {
                    while timer.as_mut().poll(cx).is_ready() {
                        match clock.on_timer(&mut tunnel) {
                            Some(reason) => return Poll::Ready(reason),
                            None => acted = true,
                        }
                        timer.as_mut().reset(clock.next_deadline());
                    }
                }
                if clock.ending.is_some()
                    && handshake_done(&tunnel)
                    && !(tunnel.up.ended() && tunnel.down.ended())
                {
                    tunnel.up.finish();
                    tunnel.down.finish();
                    acted = true;
                }
                if !acted {
                    return Poll::Pending;
                }
            }
        })
        .await;
        let totals = TunnelTotals {
            client_to_backend: tunnel.up.bytes,
            backend_to_client: tunnel.down.bytes,
            duration: clock.started.elapsed(),
        };
        let websocket = match (&tunnel.up.frames, &tunnel.down.frames) {
            (Some(up), Some(down)) => Some(WebSocketTotals {
                close: clock.first_close(reason, &tunnel),
                messages: (up.messages, down.messages),
            }),
            _ => None,
        };
        Closed { reason, totals, websocket }
    }
}
