//! A client's request body on its way to a backend: it tells whether it was sent whole, ends
//! with an error when its client stalls, and stops at the route's size limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep, sleep};

/// A client's request body on its way to a backend. It comes untracked (`Self::untracked`,
/// `Self::empty`); a plain request's is given its limits by [`Self::guard`] once its route is
/// known, in place, so the request is not rebuilt around a new body.
#[derive(Debug)]
pub struct RequestBody {
    /// `None`: no body (a request hawser makes itself, or one its own server read, which takes
    /// only requests without a body, `h1_server.rs`).
    body: Option<Incoming>,
    /// Set once the last frame went out; `None` for a body that was empty from the start.
    sent: Option<Arc<AtomicBool>>,
    /// The client must send the next part of the body within this (nginx's
    /// `client_body_timeout`), so a slow body cannot hold a backend connection for ever.
    stall: Option<Stall>,
    /// The route's limit (`proxy-body-size`) and the bytes the body may still bring; `None`: any.
    allowance: Option<(u64, u64)>,
}

/// The deadline for the next part of a request body. Each part only notes when it came; the
/// timer is moved on when it fires, not per part (re-arming a timer per frame would cost every
/// upload a timer-wheel update per read).
#[derive(Debug)]
struct Stall {
    limit: Duration,
    heard: Instant,
    timer: Pin<Box<Sleep>>,
}

/// The error a request body ends with when it is larger than its route allows.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than the route's limit of {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// The error a request body ends with when its client stalled.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no part of the request body for {0:?}")]
pub struct BodyStalled(pub Duration);

impl RequestBody {
    /// Guards the body on its way to a backend; the flag returned (absent for an empty body)
    /// turns true once it was sent whole. Each part of the body must come within `stall_limit`
    /// of the previous one (or of the first poll). A body past `limit` bytes ends with
    /// [`BodyTooLarge`].
    pub fn guard(&mut self, stall_limit: Duration, limit: Option<u64>) -> Option<Arc<AtomicBool>> {
        let sent = self.body.as_ref().is_some_and(|body| !body.is_end_stream()).then(Arc::default);
        self.stall = sent.is_some().then(|| Stall {
            limit: stall_limit,
            heard: Instant::now(),
            timer: Box::pin(sleep(stall_limit)),
        });
        self.sent = sent.clone();
        self.allowance = limit.map(|l| (l, l));
        sent
    }

    /// A client's body as hyper's server read it, unguarded (an upgrade's goes as it is: the
    /// upgrade owns its connection).
    pub fn untracked(body: Incoming) -> Self {
        Self { body: Some(body), sent: None, stall: None, allowance: None }
    }

    /// No body: for requests hawser makes itself (error pages).
    pub fn empty() -> Self {
        Self { body: None, sent: None, stall: None, allowance: None }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(body) = self.body.as_mut() else { return Poll::Ready(None) };
        let frame = match Pin::new(body).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                let Some(stall) = &mut self.stall else { return Poll::Pending };
                while stall.timer.as_mut().poll(cx).is_ready() {
                    let due = stall.heard + stall.limit;
                    if due <= Instant::now() {
                        return Poll::Ready(Some(Err(Box::new(BodyStalled(stall.limit)))));
                    }
                    stall.timer.as_mut().reset(due);
                }
                return Poll::Pending;
            }
        };
        if let Some(stall) = &mut self.stall {
            stall.heard = Instant::now();
        }
        let size = match &frame {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |data| data.len() as u64),
            _ => 0,
        };
        if let Some((limit, left)) = &mut self.allowance {
            match left.checked_sub(size) {
                Some(rest) => *left = rest,
                None => return Poll::Ready(Some(Err(Box::new(BodyTooLarge(*limit))))),
            }
        }
        let ended = match &frame {
            None => true,
            Some(Ok(_)) => self.is_end_stream(),
            Some(Err(_)) => false,
        };
        if let (true, Some(sent)) = (ended, &self.sent) {
            sent.store(true, Ordering::Release);
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.as_ref().map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}
