//! The response body: nothing, a short message, or a backend's streamed body (from hyper's
//! client or hawser's own) that hands its pooled connection back once the last byte went
//! through. The request body is [`super::request_body`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::balance::LoadGuard;
use super::error::BoxError;
use super::h1;
use super::pool::PooledConnection;

/// What a streamed backend body holds until it ends: the connection to return to the pool and
/// the endpoint's least-connections count.
#[derive(Debug, Default)]
pub struct Lease {
    /// The hyper keep-alive connection the response came on, if it may be reused (hawser's own
    /// client's connection is in its [`h1::ResponseBody`]).
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
        // The endpoint's least-connections count falls with the response.
        drop(self.load);
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
    Backend { body: BackendBody, lease: Option<Lease> },
}

/// A backend's response body, as one of the two clients reads it.
#[derive(Debug)]
pub enum BackendBody {
    Hyper(Incoming),
    Own(h1::ResponseBody),
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match self.get_mut() {
            Self::Hyper(body) => ready!(Pin::new(body).poll_frame(cx)).map(|f| f.map_err(BoxError::from)),
            Self::Own(body) => ready!(Pin::new(body).poll_frame(cx)).map(|f| f.map_err(BoxError::from)),
        };
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(body) => body.is_end_stream(),
            Self::Own(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Hyper(body) => body.size_hint(),
            Self::Own(body) => body.size_hint(),
        }
    }
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
    pub fn backend(body: BackendBody, lease: Lease) -> Self {
        if body.is_end_stream() {
            lease.finish();
            return Self { inner: Inner::Backend { body, lease: None } };
        }
        Self { inner: Inner::Backend { body, lease: Some(lease) } }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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
