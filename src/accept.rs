//! The accept loop every listener shares: hand each connection over until told to stop, and
//! back off briefly when accepting fails (EMFILE must not become a busy loop).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Calls `on_accept` for every connection until `stop` completes; `what` names the listener
/// in logs. The listener is dropped (the port closed) on return.
pub async fn accept_until(
    listener: TcpListener,
    what: &'static str,
    stop: impl Future<Output = ()>,
    mut on_accept: impl FnMut(TcpStream, SocketAddr),
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => on_accept(stream, peer),
                Err(error) => {
                    tracing::warn!(listener = what, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = &mut stop => return,
        }
    }
}
