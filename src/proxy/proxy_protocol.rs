//! PROXY protocol v1 and v2 (haproxy.org's PROXY protocol specification), read before anything
//! else on a connection when `--proxy-protocol` is on. The header is peeked until complete and
//! then consumed exactly, so the bytes after it reach TLS or HTTP untouched.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longest header accepted: v1 is at most 107 bytes; v2 with the usual TLVs is far below this.
const MAX_HEADER: usize = 1024;
/// Pause between looks at an incomplete header (it nearly always arrives in one segment).
const RETRY: Duration = Duration::from_millis(2);

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("not a valid PROXY protocol header")]
    Invalid,
    #[error("the connection closed before a PROXY protocol header")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the header; returns the client address it carries, or `None` for a header that names
/// none (v1 `UNKNOWN`, v2 `LOCAL`, health checks of the load balancer) — then the TCP peer is
/// the client.
pub async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, HeaderError> {
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; MAX_HEADER];
    loop {
        let seen = tokio::time::timeout_at(deadline, stream.peek(&mut buffer))
            .await
            .map_err(|_| HeaderError::Timeout(timeout))??;
        if seen == 0 {
            return Err(HeaderError::Closed);
        }
        let parsed = HeaderResult::parse(&buffer[..seen]);
        if parsed.is_incomplete() {
            if seen == MAX_HEADER || Instant::now() >= deadline {
                return Err(HeaderError::Invalid);
            }
            tokio::time::sleep(RETRY).await;
            continue;
        }
        let (length, client) = header(&parsed).ok_or(HeaderError::Invalid)?;
        stream.read_exact(&mut buffer[..length]).await?;
        return Ok(client);
    }
}

/// Length and client address of a complete, valid header.
fn header(parsed: &HeaderResult<'_>) -> Option<(usize, Option<SocketAddr>)> {
    match parsed {
        HeaderResult::V1(Ok(h)) => {
            let client = match &h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Some((h.header.len(), client))
        }
        HeaderResult::V2(Ok(h)) => {
            let client = match (&h.command, &h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
                (_, v2::Addresses::IPv6(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
                _ => None,
            };
            Some((h.header.len(), client))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_bytes_are_a_header_or_not_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some((length, _)) = header(&HeaderResult::parse(&bytes)) {
                prop_assert!(length <= bytes.len());
            }
        }

        #[test]
        fn v1_headers_give_their_source_and_length(
            source in any::<u32>(), destination in any::<u32>(), ports in any::<(u16, u16)>(),
            rest in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let (source, destination) = (Ipv4Addr::from(source), Ipv4Addr::from(destination));
            let line = format!("PROXY TCP4 {source} {destination} {} {}\r\n", ports.0, ports.1);
            let mut bytes = line.clone().into_bytes();
            bytes.extend(rest);
            let parsed = header(&HeaderResult::parse(&bytes));
            prop_assert_eq!(parsed, Some((line.len(), Some(SocketAddr::from((source, ports.0))))));
        }
    }
}
