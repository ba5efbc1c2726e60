//! Every deadline of one tunnel (idle, maximum duration, drain, pings, the close handshake) and
//! what hawser does when one passes. One timer serves them all: it is re-armed to the earliest
//! deadline only when it fires or an ending begins, never per message.

use std::time::Duration;

use tokio::time::Instant;

use super::super::drain::Cause;
use super::super::frames::{Peer, Stop, close_frame, ping_frame};
use super::copy::{Half, Pair};
use super::{CLOSE_HANDSHAKE, CloseCode, CloseReason, Initiator, Limits, Ping};

/// Stand-in deadline for a timer that is off.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A hawser-initiated ending in progress.
#[derive(Debug)]
pub(super) struct Ending {
    pub(super) reason: CloseReason,
    deadline: Instant,
}

/// Per side: when it last sent something, and whether a ping is out (sent when).
#[derive(Debug)]
struct Liveness {
    heard: Instant,
    ping_sent: Option<Instant>,
}

/// Whether both peers have answered hawser's close frame (or ended their stream).
pub(super) fn handshake_done<C, B>(tunnel: &Pair<C, B>) -> bool {
    let answered = |half: &Half| half.ended() || half.frames.as_ref().is_some_and(|f| f.close.is_some());
    answered(&tunnel.up) && answered(&tunnel.down)
}

/// Every deadline of one tunnel.
#[derive(Debug)]
pub(super) struct Clock {
    /// The tunnel's limits, but the message size (the frame trackers enforce it).
    idle: Option<Duration>,
    max_duration: Option<Duration>,
    ping: Option<Ping>,
    pub(super) started: Instant,
    last_activity: Instant,
    client: Liveness,
    backend: Liveness,
    pings_sent: u32,
    pub(super) drain_at: Option<(Cause, Instant)>,
    pub(super) ending: Option<Ending>,
    /// Who sent the first close frame, when a peer did before hawser.
    first_close_by: Option<Initiator>,
}

impl Clock {
    pub(super) fn new(limits: Limits) -> Self {
        let now = Instant::now();
        let live = || Liveness { heard: now, ping_sent: None };
        Self {
            idle: limits.idle,
            max_duration: limits.max_duration,
            ping: limits.websocket.and_then(|w| w.ping),
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
    pub(super) fn note_first_close<C, B>(&mut self, tunnel: &Pair<C, B>) {
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
    pub(super) fn first_close<C, B>(&self, reason: CloseReason, tunnel: &Pair<C, B>) -> Option<CloseCode> {
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
    pub(super) fn heard<C, B>(&mut self, tunnel: &Pair<C, B>) {
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
    pub(super) fn frame_events<C, B>(&mut self, tunnel: &mut Pair<C, B>) -> bool {
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
    pub(super) fn on_timer<C, B>(&mut self, tunnel: &mut Pair<C, B>) -> Option<CloseReason> {
        let now = Instant::now();
        if let Some(ending) = &self.ending {
            return (now >= ending.deadline).then_some(ending.reason);
        }
        let reason = match self.drain_at {
            Some((cause, at)) if now >= at => Some(CloseReason::Drained(cause)),
            _ if now >= self.started + self.max_duration.unwrap_or(FAR_FUTURE) => {
                Some(CloseReason::MaxDuration)
            }
            _ if now >= self.last_activity + self.idle.unwrap_or(FAR_FUTURE) => Some(CloseReason::Idle),
            _ => self.ping.and_then(|ping| self.pings(tunnel, ping, now)),
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
    pub(super) fn next_deadline(&self) -> Instant {
        if let Some(ending) = &self.ending {
            return ending.deadline;
        }
        let mut next = self.last_activity + self.idle.unwrap_or(FAR_FUTURE);
        next = next.min(self.started + self.max_duration.unwrap_or(FAR_FUTURE));
        if let Some((_, at)) = self.drain_at {
            next = next.min(at);
        }
        if let Some(ping) = self.ping {
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

fn stop_reason(stop: Stop, peer: Peer) -> CloseReason {
    match stop {
        Stop::Protocol(_) => CloseReason::ProtocolError(peer),
        Stop::TooBig => CloseReason::MessageTooBig(peer),
    }
}
