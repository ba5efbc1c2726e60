//! The body types of the proxy: the response body (nothing, a short message, or a backend's
//! streamed body that hands its pooled connection back once the last byte went through), and
//! the request body on its way to a backend, which tells whether it was sent whole and ends
//! with an error when its client stalls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep, sleep};

use super::balance::LoadGuard;
use super::pool::PooledConnection;

/// What a streamed backend body holds until it ends: the connection to return to the pool and
/// the endpoint's least-connections count.
#[derive(Debug, Default)]
pub struct Lease {
    /// The keep-alive connection the response came on, if it may be reused.
    pub connection: Option<PooledConnection>,
    /// Counts the request against its endpoint while the body streams.
    pub load: Option<LoadGuard>,
    /// Whether the request body has been sent whole (`None`: it had none).
    pub request_sent: Option<Arc<AtomicBool>>,
}

impl Lease {
    /// The response has ended: the connection goes back to the pool only if the request body
    /// went out whole too. A backend that answered early (a 401 or 413 on an upload) leaves the
    /// rest of the body in flight, and the next request on that connection would wait behind it.
    fn finish(self) {
        let exchange_complete = self.request_sent.is_none_or(|sent| sent.load(Ordering::Acquire));
        if let (Some(connection), true) = (self.connection, exchange_complete) {
            connection.release();
        }
    }
}

/// A client's request body on its way to a backend.
#[derive(Debug)]
pub struct RequestBody {
    /// `None`: a request hawser makes itself, without a body.
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
    /// Wraps `body`; the flag (absent for an empty body) turns true once it was sent whole.
    /// Each part of the body must come within `stall_limit` of the previous one (or of the
    /// first poll). A body past `limit` bytes ends with [`BodyTooLarge`].
    pub fn new(body: Incoming, stall_limit: Duration, limit: Option<u64>) -> (Self, Option<Arc<AtomicBool>>) {
        let sent = (!body.is_end_stream()).then(Arc::default);
        let stall = sent.is_some().then(|| Stall {
            limit: stall_limit,
            heard: Instant::now(),
            timer: Box::pin(sleep(stall_limit)),
        });
        (Self { body: Some(body), sent: sent.clone(), stall, allowance: limit.map(|l| (l, l)) }, sent)
    }

    /// Wraps `body` when nobody needs to know when it was sent (upgrades own their connection).
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

/// A response body, streamed without buffering.
#[derive(Debug)]
pub struct ProxyBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Full(Option<Bytes>),
    Backend { body: Incoming, lease: Option<Lease> },
}

impl ProxyBody {
    /// A body of known, small content.
    pub fn full(content: impl Into<Bytes>) -> Self {
        Self { inner: Inner::Full(Some(content.into())) }
    }

    /// No body.
    pub fn empty() -> Self {
        Self { inner: Inner::Full(None) }
    }

    /// A backend's body; `lease` is finished when the body ends, or dropped if it never does.
    pub fn backend(body: Incoming, lease: Lease) -> Self {
        if body.is_end_stream() {
            lease.finish();
            return Self { inner: Inner::Backend { body, lease: None } };
        }
        Self { inner: Inner::Backend { body, lease: Some(lease) } }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.inner {
            Inner::Full(content) => Poll::Ready(content.take().map(|bytes| Ok(Frame::data(bytes)))),
            Inner::Backend { body, lease } => {
                let frame = ready!(Pin::new(&mut *body).poll_frame(cx));
                let ended_cleanly = match &frame {
                    None => true,
                    Some(Ok(_)) => body.is_end_stream(),
                    Some(Err(_)) => {
                        lease.take();
                        false
                    }
                };
                if ended_cleanly && let Some(lease) = lease.take() {
                    lease.finish();
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(content) => content.is_none(),
            Inner::Backend { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(content) => SizeHint::with_exact(content.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Backend { body, .. } => body.size_hint(),
        }
    }
}
