//! Connections to endpoints: opening them (TCP, TLS, hyper's HTTP/1.1 handshake) and keeping
//! idle keep-alive connections, of hyper's client or hawser's own (`h1.rs`), for reuse by later
//! requests to the same endpoint.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::OwnKeyMap;
use super::backend_tls::BackendTls;
use super::error::ProxyError;
use super::h1;
use super::request_body::RequestBody;

/// A client half of one backend connection.
pub type Sender = SendRequest<RequestBody>;

/// Where a pooled connection goes: an endpoint, in clear text or over TLS with one server name
/// and one CA bundle. A connection is lent only under the same key, so one opened for another
/// route's TLS settings, or verified against a CA bundle since replaced, is never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The endpoint.
    pub addr: SocketAddr,
    /// TLS: a hash of the server name and the CA bundle's fingerprint. `None`: clear text.
    /// (Non-zero, so the key stays as small as a response body holds it.)
    tls: Option<NonZeroU64>,
}

impl PoolKey {
    pub fn new(addr: SocketAddr, tls: Option<BackendTlsParams<'_>>) -> Self {
        let tls = tls.map(|(_, server_name, ca)| {
            let name = server_name.unwrap_or_default().as_bytes();
            let hash = xxhash_rust::xxh3::xxh3_64_with_seed(name, ca.map_or(0, |ca| ca.fingerprint));
            NonZeroU64::new(hash).unwrap_or(NonZeroU64::MIN)
        });
        Self { addr, tls }
    }
}

/// Idle keep-alive connections, per endpoint, newest last.
#[derive(Debug)]
pub struct BackendPool {
    idle: Mutex<OwnKeyMap<PoolKey, VecDeque<Idle>>>,
    max_idle_per_endpoint: usize,
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    connection: Reusable,
    since: Instant,
}

/// An idle keep-alive connection, of either client.
#[derive(Debug)]
pub enum Reusable {
    /// Driven by hyper's client in a task of its own.
    Hyper(Sender),
    /// hawser's own client's (`h1.rs`), driven by whichever request holds it.
    Own(Box<h1::Connection>),
}

impl Reusable {
    /// Whether it can take another exchange; a hyper connection is waited on until it can.
    async fn is_fit(&mut self) -> bool {
        match self {
            Self::Hyper(sender) => !sender.is_closed() && sender.ready().await.is_ok(),
            Self::Own(connection) => connection.is_fit(),
        }
    }
}

/// Where a connection goes back to once its response has ended.
#[derive(Clone, Debug)]
pub struct Home {
    pool: Arc<BackendPool>,
    key: PoolKey,
}

impl Home {
    pub fn new(pool: Arc<BackendPool>, key: PoolKey) -> Self {
        Self { pool, key }
    }

    /// Hands the connection back for reuse (dropped instead if it has closed).
    pub fn take_back(self, connection: Reusable) {
        self.pool.checkin(self.key, connection);
    }
}

/// A hyper connection on loan to one request; [`Self::release`] returns it once the response
/// ended.
#[derive(Debug)]
pub struct PooledConnection {
    home: Home,
    sender: Sender,
}

impl PooledConnection {
    /// Wraps a connection that goes back to `home` when released.
    pub fn new(home: Home, sender: Sender) -> Self {
        Self { home, sender }
    }

    /// Hands the connection back for reuse (dropped instead if it has closed).
    pub fn release(self) {
        self.home.take_back(Reusable::Hyper(self.sender));
    }
}

impl BackendPool {
    /// Keeps at most `max_idle_per_endpoint` idle connections per endpoint, each for at most
    /// `idle_timeout` (keep it below the backends' own keep-alive timeout).
    pub fn new(max_idle_per_endpoint: usize, idle_timeout: Duration) -> Self {
        Self { idle: Mutex::default(), max_idle_per_endpoint, idle_timeout }
    }

    /// The most recently used idle connection to `key` that is still open and ready.
    pub async fn checkout(&self, key: PoolKey) -> Option<Reusable> {
        loop {
            let mut idle = self.pop(key)?;
            if idle.since.elapsed() <= self.idle_timeout && idle.connection.is_fit().await {
                return Some(idle.connection);
            }
        }
    }

    fn pop(&self, key: PoolKey) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&key)?;
        let popped = list.pop_back();
        if list.is_empty() {
            idle.remove(&key);
        }
        popped
    }

    fn checkin(&self, key: PoolKey, connection: Reusable) {
        if matches!(&connection, Reusable::Hyper(sender) if sender.is_closed())
            || self.max_idle_per_endpoint == 0
        {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(key).or_default();
        if list.len() >= self.max_idle_per_endpoint {
            list.pop_front();
        }
        list.push_back(Idle { connection, since: Instant::now() });
    }
}

/// How to open TLS to a backend: the connector, the SNI name, the CA to verify against.
pub type BackendTlsParams<'a> = (&'a BackendTls, Option<&'a str>, Option<&'a crate::model::BackendCa>);

/// Opens a connection to `addr` within `timeout` for hyper's client — TCP, then TLS when
/// `tls` is given (with the SNI name) — and speaks HTTP/1.1 on it, driven by a task of its own
/// (with upgrades) until every sender is dropped.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<BackendTlsParams<'_>>,
) -> Result<Sender, ProxyError> {
    let stream = open(addr, timeout).await?;
    let Some((connector, server_name, ca)) = tls else { return to_hyper(stream, addr).await };
    let stream = match tokio::time::timeout(timeout, connector.connect(stream, addr, server_name, ca)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(ProxyError::Connect { endpoint: addr, source }),
        Err(_) => return Err(ProxyError::ConnectTimeout { endpoint: addr, timeout }),
    };
    to_hyper(stream, addr).await
}

/// Opens a TCP connection to `addr` within `timeout`.
pub async fn open(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let opening = async {
        let stream = TcpStream::connect(addr).await?;
        // Small WebSocket frames and request heads must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok::<_, std::io::Error>(stream)
    };
    match tokio::time::timeout(timeout, opening).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(ProxyError::Connect { endpoint: addr, source }),
        Err(_) => Err(ProxyError::ConnectTimeout { endpoint: addr, timeout }),
    }
}

/// hyper's client takes over `io`: a connection just opened, or an idle one of hawser's own
/// client for a request that has a body.
pub async fn to_hyper<I>(io: I, addr: SocketAddr) -> Result<Sender, ProxyError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|source| ProxyError::Backend { endpoint: addr, source: source.into() })?;
    spawn(connection, addr);
    Ok(sender)
}

/// Drives `connection` in a task of its own until it closes, with upgrades.
fn spawn<I>(connection: http1::Connection<TokioIo<I>, RequestBody>, addr: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%addr, %error, "backend connection ended with an error");
        }
    });
}
