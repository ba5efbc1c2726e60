//! How a tunnel ended: why, the WebSocket's first close frame and who sent it, what it carried.

use super::super::drain::Cause;
use super::super::frames::{Peer, code};
use crate::metrics::{TunnelEnding, TunnelTotals, WebSocketEnding};

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

    /// Who ended a WebSocket that saw no close frame: whoever dropped TCP, else hawser.
    fn dropped_by(self) -> &'static str {
        match self {
            Self::Client | Self::ClientError => "client",
            Self::Backend | Self::BackendError => "backend",
            _ => "hawser",
        }
    }

    /// The close frames hawser sends when it ends a WebSocket for this reason: (to the
    /// client, to the backend), each a code and a reason.
    pub(super) fn close_frames(self) -> [(u16, &'static str); 2] {
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

impl Closed {
    /// What the metrics count of this ending, for a client that used `protocol`.
    pub fn ending(&self, protocol: &'static str) -> TunnelEnding {
        let websocket = self.websocket.as_ref().map(|websocket| {
            let (code, initiator) = match &websocket.close {
                Some(close) => (close.code.unwrap_or(1005), close.by.label()),
                None => (1006, self.reason.dropped_by()),
            };
            let protocol_error_by = match self.reason {
                CloseReason::ProtocolError(peer) => Some(peer.label()),
                _ => None,
            };
            let drained_by = match self.reason {
                CloseReason::Drained(cause) => Some(cause.label()),
                _ => None,
            };
            WebSocketEnding {
                code,
                initiator,
                protocol,
                messages: websocket.messages,
                protocol_error_by,
                drained_by,
            }
        });
        TunnelEnding { reason: self.reason.label(), totals: self.totals, websocket }
    }
}
