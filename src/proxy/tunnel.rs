//! An upgraded connection for its whole life: bytes copied both ways ([`super::copy`]) until a
//! side closes, and for a WebSocket every way hawser ends it (idle timeout, maximum duration,
//! a drain order, a dead peer, a broken frame, a message too big) puts a close frame on the wire
//! first and waits a short, bounded time for the close handshake (RFC 6455 §7.1.2) before TCP is
//! closed. Other upgrades are byte tunnels, closed at once.
//!
//! One timer serves every clock: it is re-armed to the earliest deadline only when it fires,
//! never per message.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::copy::{Half, Pair};
use super::drain::{Cause, OrderWake, Subscription};
use super::frames::{Peer, close_frame, code, ping_frame};
use crate::metrics::TunnelTotals;

/// How long hawser waits for the close handshake it started before it closes TCP.
pub const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

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
    /// A drain order (shutdown, endpoint gone, admin, rebalance) closed it.
    Drained(Cause),
    /// This peer answered no ping within the route's ping timeout.
    PingTimeout(Peer),
    /// This peer broke the WebSocket protocol.
    ProtocolError(Peer),
    /// This peer sent a message larger than the route allows.
    MessageTooBig(Peer),
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
            Self::Drained(Cause::Shutdown) => "shutdown",
            Self::Drained(Cause::EndpointGone) => "endpoint_gone",
            Self::Drained(Cause::Admin) => "admin_drain",
            Self::Drained(Cause::Rebalance) => "rebalance",
            Self::PingTimeout(_) => "ping_timeout",
            Self::ProtocolError(_) => "protocol_error",
            Self::MessageTooBig(_) => "message_too_big",
        }
    }

    /// The close frames hawser sends when it ends a WebSocket for this reason: (to the
    /// client, to the backend), each a code and a reason.
    fn close_frames(self) -> [(u16, &'static str); 2] {
        let away = |why| (code::GOING_AWAY, why);
        match self {
            Self::Idle => [away("idle timeout"); 2],
            Self::MaxDuration => [away("max connection duration"); 2],
            Self::Drained(cause) => [(cause.close_code(), cause.label()), away("client going away")],
            Self::PingTimeout(Peer::Client) => [away("ping timeout"), away("client not responding")],
            Self::PingTimeout(Peer::Backend) => [away("backend not responding"), away("ping timeout")],
            Self::ProtocolError(Peer::Client) => {
                [(code::PROTOCOL_ERROR, "protocol error"), away("client error")]
            }
            Self::ProtocolError(Peer::Backend) => {
                [away("backend error"), (code::PROTOCOL_ERROR, "protocol error")]
            }
            Self::MessageTooBig(Peer::Client) => [(code::TOO_BIG, "message too big"), away("client error")],
            Self::MessageTooBig(Peer::Backend) => [away("backend error"), (code::TOO_BIG, "message too big")],
            _ => [away("going away"); 2],
        }
    }
}

/// Who sent the first close frame of a WebSocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    /// The client.
    Client,
    /// The backend.
    Backend,
    /// hawser itself.
    Hawser,
}

impl Initiator {
    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Backend => "backend",
            Self::Hawser => "hawser",
        }
    }
}

/// The first close frame of a WebSocket: its code (`None`: no code, 1005) and sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseCode {
    /// The status code.
    pub code: Option<u16>,
    /// The reason text.
    pub reason: String,
    /// Who sent it.
    pub by: Initiator,
}

/// How a tunnel ended.
#[derive(Debug)]
pub struct Closed {
    /// Why.
    pub reason: CloseReason,
    /// What it carried.
    pub totals: TunnelTotals,
    /// For a WebSocket: its close frame and messages.
    pub websocket: Option<WebSocketTotals>,
}

/// What a WebSocket tunnel saw.
#[derive(Debug)]
pub struct WebSocketTotals {
    /// The first close frame; `None` when TCP ended without one.
    pub close: Option<CloseCode>,
    /// Data messages: (from the client, from the backend).
    pub messages: (u64, u64),
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

/// A hawser-initiated ending in progress.
#[derive(Debug)]
struct Ending {
    reason: CloseReason,
    deadline: Instant,
}

/// Per side: when it last sent something, and whether a ping is out (sent when).
#[derive(Debug)]
struct Liveness {
    heard: Instant,
    ping_sent: Option<Instant>,
}

/// Bytes each side sent right behind the handshake, read already (by hyper).
#[derive(Debug, Default)]
pub struct Early {
    /// From the client, for the backend.
    pub from_client: bytes::Bytes,
    /// From the backend, for the client.
    pub from_backend: bytes::Bytes,
}

/// The tunnel between `client` and `backend`, which runs until it is over.
pub fn run<C, B>(
    client: C,
    backend: B,
    limits: Limits,
    drains: Subscription,
    early: Early,
) -> impl Future<Output = Closed>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let max_message = limits.websocket.and_then(|w| w.max_message);
    let mut tunnel = Pair::new(client, backend, limits.websocket.is_some(), max_message);
    tunnel.up.seed(&early.from_client, max_message);
    tunnel.down.seed(&early.from_backend, max_message);
    let mut clock = Clock::new(limits);
    let mut drains = drains;
    // An async block, not an async fn: its captures are stored once, where an async fn would
    // keep a second copy of its arguments (rust-lang/rust#62958), and every idle tunnel pays.
    async move {
        let mut order_wake = OrderWake::default();
        let mut ordered = pin!(drains.next());
        let mut timer = pin!(tokio::time::sleep_until(clock.next_deadline()));
        let reason = poll_fn(|cx| {
            loop {
                let copied = tunnel.poll_copy(cx);
                clock.note_first_close(&tunnel);
                if let Poll::Ready(reason) = copied {
                    return Poll::Ready(clock.ending.as_ref().map_or(reason, |e| e.reason));
                }
                clock.heard(&tunnel);
                if clock.drain_at.is_none()
                    && let Poll::Ready((cause, at)) = order_wake.poll(ordered.as_mut(), cx)
                {
                    clock.drain_at = Some((cause, at));
                    timer.as_mut().reset(clock.next_deadline());
                }
                let mut acted = clock.frame_events(&mut tunnel);
                if acted {
                    // The close handshake's deadline is sooner than anything armed.
                    timer.as_mut().reset(clock.next_deadline());
                }
                while timer.as_mut().poll(cx).is_ready() {
                    match clock.on_timer(&mut tunnel) {
                        Some(reason) => return Poll::Ready(reason),
                        None => acted = true,
                    }
                    timer.as_mut().reset(clock.next_deadline());
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

/// Whether both peers have answered hawser's close frame (or ended their stream).
fn handshake_done<C, B>(tunnel: &Pair<C, B>) -> bool {
    let answered = |half: &Half| half.ended() || half.frames.as_ref().is_some_and(|f| f.close.is_some());
    answered(&tunnel.up) && answered(&tunnel.down)
}

/// Every deadline of one tunnel.
#[derive(Debug)]
struct Clock {
    limits: Limits,
    started: Instant,
    last_activity: Instant,
    client: Liveness,
    backend: Liveness,
    pings_sent: u32,
    drain_at: Option<(Cause, Instant)>,
    ending: Option<Ending>,
    /// Who sent the first close frame, when a peer did before hawser.
    first_close_by: Option<Initiator>,
}

impl Clock {
    fn new(limits: Limits) -> Self {
        let now = Instant::now();
        let live = || Liveness { heard: now, ping_sent: None };
        Self {
            limits,
            started: now,
            last_activity: now,
            client: live(),
            backend: live(),
            pings_sent: 0,
            drain_at: None,
            ending: None,
            first_close_by: None,
        }
    }

    /// Notes which peer sent a close frame first, unless hawser's came first.
    fn note_first_close<C, B>(&mut self, tunnel: &Pair<C, B>) {
        if self.first_close_by.is_some() || self.ending.is_some() {
            return;
        }
        let closed = |half: &Half| half.frames.as_ref().is_some_and(|f| f.close.is_some());
        self.first_close_by = match (closed(&tunnel.up), closed(&tunnel.down)) {
            (true, _) => Some(Initiator::Client),
            (_, true) => Some(Initiator::Backend),
            _ => None,
        };
    }

    /// The first close frame of the WebSocket: hawser's when it began the close, else the
    /// first peer's.
    fn first_close<C, B>(&self, reason: CloseReason, tunnel: &Pair<C, B>) -> Option<CloseCode> {
        if self.ending.is_some() {
            let [(code, why), _] = reason.close_frames();
            return Some(CloseCode { code: Some(code), reason: why.to_owned(), by: Initiator::Hawser });
        }
        let by = self.first_close_by?;
        let half = if by == Initiator::Client { &tunnel.up } else { &tunnel.down };
        let close = half.frames.as_ref()?.close.as_deref()?;
        Some(CloseCode { code: close.code, reason: close.reason.clone(), by })
    }

    /// Notes what the last copy moved: forwarded bytes for the idle clock (hawser's pings and
    /// their pongs keep no tunnel from idling out), any byte from a side as a sign of life.
    fn heard<C, B>(&mut self, tunnel: &Pair<C, B>) {
        if !(tunnel.moved || tunnel.up.heard || tunnel.down.heard) {
            return;
        }
        let now = Instant::now();
        if tunnel.moved {
            self.last_activity = now;
        }
        for (half, side) in [(&tunnel.up, &mut self.client), (&tunnel.down, &mut self.backend)] {
            if half.heard {
                *side = Liveness { heard: now, ping_sent: None };
            }
        }
    }

    /// A broken frame or an oversized message stops its direction: the tunnel is closed.
    fn frame_events<C, B>(&mut self, tunnel: &mut Pair<C, B>) -> bool {
        let stopped = |half: &Half| half.frames.as_ref().and_then(|f| f.stopped);
        let reason = match (stopped(&tunnel.up), stopped(&tunnel.down)) {
            (Some(stop), _) => Some(stop_reason(stop, Peer::Client)),
            (None, Some(stop)) => Some(stop_reason(stop, Peer::Backend)),
            (None, None) => None,
        };
        match reason {
            Some(reason) if self.ending.is_none() => {
                self.begin(reason, tunnel);
                true
            }
            _ => false,
        }
    }

    /// The timer fired: whichever deadlines passed act. `Some` ends the tunnel now.
    fn on_timer<C, B>(&mut self, tunnel: &mut Pair<C, B>) -> Option<CloseReason> {
        let ping = self.limits.websocket.and_then(|w| w.ping);
        let now = Instant::now();
        if let Some(ending) = &self.ending {
            return (now >= ending.deadline).then_some(ending.reason);
        }
        let reason = match self.drain_at {
            Some((cause, at)) if now >= at => Some(CloseReason::Drained(cause)),
            _ if now >= self.started + self.limits.max_duration.unwrap_or(FAR_FUTURE) => {
                Some(CloseReason::MaxDuration)
            }
            _ if now >= self.last_activity + self.limits.idle.unwrap_or(FAR_FUTURE) => {
                Some(CloseReason::Idle)
            }
            _ => ping.and_then(|ping| self.pings(tunnel, ping, now)),
        };
        let reason = reason?;
        self.begin(reason, tunnel)
    }

    /// Pings quiet sides; a side silent for the ping timeout after a ping is dead.
    fn pings<C, B>(&mut self, tunnel: &mut Pair<C, B>, ping: Ping, now: Instant) -> Option<CloseReason> {
        for (peer, live, half) in [
            (Peer::Client, &mut self.client, &mut tunnel.down),
            (Peer::Backend, &mut self.backend, &mut tunnel.up),
        ] {
            match live.ping_sent {
                Some(sent) if now >= sent + ping.timeout => return Some(CloseReason::PingTimeout(peer)),
                None if now >= live.heard + ping.interval => {
                    self.pings_sent = self.pings_sent.wrapping_add(1);
                    half.inject(ping_frame(self.pings_sent, peer));
                    // The pong comes back on the other direction, read from `peer`.
                    live.ping_sent = Some(now);
                }
                _ => {}
            }
        }
        let expect = |half: &mut Half, waiting: bool| {
            if let (Some(frames), true) = (half.frames.as_mut(), waiting) {
                frames.expect_pong();
            }
        };
        expect(&mut tunnel.up, self.client.ping_sent.is_some());
        expect(&mut tunnel.down, self.backend.ping_sent.is_some());
        None
    }

    /// hawser ends the tunnel for `reason`: a WebSocket gets close frames on both sides and
    /// the handshake a bounded time; a byte tunnel ends now (`Some`).
    fn begin<C, B>(&mut self, reason: CloseReason, tunnel: &mut Pair<C, B>) -> Option<CloseReason> {
        if tunnel.up.frames.is_none() {
            return Some(reason);
        }
        let [to_client, to_backend] = reason.close_frames();
        tunnel.down.inject(close_frame(to_client.0, to_client.1, Peer::Client));
        tunnel.up.inject(close_frame(to_backend.0, to_backend.1, Peer::Backend));
        self.ending = Some(Ending { reason, deadline: Instant::now() + CLOSE_HANDSHAKE });
        None
    }

    /// The earliest moment something may have to happen.
    fn next_deadline(&self) -> Instant {
        if let Some(ending) = &self.ending {
            return ending.deadline;
        }
        let mut next = self.last_activity + self.limits.idle.unwrap_or(FAR_FUTURE);
        next = next.min(self.started + self.limits.max_duration.unwrap_or(FAR_FUTURE));
        if let Some((_, at)) = self.drain_at {
            next = next.min(at);
        }
        if let Some(ping) = self.limits.websocket.and_then(|w| w.ping) {
            for live in [&self.client, &self.backend] {
                next = next.min(match live.ping_sent {
                    Some(sent) => sent + ping.timeout,
                    None => live.heard + ping.interval,
                });
            }
        }
        next
    }
}

fn stop_reason(stop: super::frames::Stop, peer: Peer) -> CloseReason {
    match stop {
        super::frames::Stop::Protocol(_) => CloseReason::ProtocolError(peer),
        super::frames::Stop::TooBig => CloseReason::MessageTooBig(peer),
    }
}

#[cfg(test)]
mod tests;
