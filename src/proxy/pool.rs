//! Connections to endpoints: opening them (TCP + HTTP/1.1 handshake) and keeping idle
//! keep-alive connections for reuse by later requests to the same endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::ProxyError;

/// A client half of one backend connection.
pub type Sender = SendRequest<Incoming>;

/// Idle keep-alive connections, per endpoint, newest last.
#[derive(Debug)]
pub struct BackendPool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    max_idle_per_endpoint: usize,
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

/// A connection on loan to one request; [`Self::release`] returns it once the response ended.
#[derive(Debug)]
pub struct PooledConnection {
    pool: Arc<BackendPool>,
    addr: SocketAddr,
    sender: Sender,
}

impl PooledConnection {
    /// Wraps a connection that goes back to `pool` when released.
    pub fn new(pool: Arc<BackendPool>, addr: SocketAddr, sender: Sender) -> Self {
        Self { pool, addr, sender }
    }

    /// Hands the connection back for reuse (dropped instead if it has closed).
    pub fn release(self) {
        self.pool.checkin(self.addr, self.sender);
    }
}

impl BackendPool {
    /// Keeps at most `max_idle_per_endpoint` idle connections per endpoint, each for at most
    /// `idle_timeout` (keep it below the backends' own keep-alive timeout).
    pub fn new(max_idle_per_endpoint: usize, idle_timeout: Duration) -> Self {
        Self { idle: Mutex::default(), max_idle_per_endpoint, idle_timeout }
    }

    /// The most recently used idle connection to `addr` that is still open and ready.
    pub async fn checkout(&self, addr: SocketAddr) -> Option<Sender> {
        loop {
            let mut idle = self.pop(addr)?;
            if idle.since.elapsed() > self.idle_timeout || idle.sender.is_closed() {
                continue;
            }
            if idle.sender.ready().await.is_ok() {
                return Some(idle.sender);
            }
        }
    }

    fn pop(&self, addr: SocketAddr) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&addr)?;
        let popped = list.pop();
        if list.is_empty() {
            idle.remove(&addr);
        }
        popped
    }

    fn checkin(&self, addr: SocketAddr, sender: Sender) {
        if sender.is_closed() || self.max_idle_per_endpoint == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(addr).or_default();
        if list.len() >= self.max_idle_per_endpoint {
            list.remove(0);
        }
        list.push(Idle { sender, since: Instant::now() });
    }
}

/// Opens a TCP connection to `addr` within `timeout` and speaks HTTP/1.1 on it. The connection
/// is driven by its own task and supports upgrades; it closes when every sender is dropped.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ProxyError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(ProxyError::Connect { endpoint: addr, source }),
        Err(_) => return Err(ProxyError::ConnectTimeout { endpoint: addr, timeout }),
    };
    // Small WebSocket frames and request heads must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ProxyError::Backend { endpoint: addr, source })?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%addr, %error, "backend connection ended with an error");
        }
    });
    Ok(sender)
}
