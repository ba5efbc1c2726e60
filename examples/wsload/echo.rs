//! `wsload echo`: the benchmark's backend. HTTP/1.1 GETs get `200 ok` on a kept-alive
//! connection; a WebSocket upgrade gets its `101`, then every data frame comes back unmasked in
//! the same read-and-write turn, pings get pongs and a close is answered and ends the
//! connection. Frames are parsed in the read buffer and answers gathered into one write, so the
//! backend costs little next to any proxy in front of it.

use base64::Engine as _;
use sha1::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::frames;

/// RFC 6455 §1.3.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Serves `listener` until the process ends.
pub async fn serve(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream));
    }
}

async fn connection(mut stream: TcpStream) {
    let mut buffer = Vec::with_capacity(16 * 1024);
    loop {
        let Some(head_end) = read_head(&mut stream, &mut buffer).await else { return };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let upgrade = header(&head, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        if upgrade && let Some(key) = header(&head, "sec-websocket-key") {
            buffer.drain(..head_end);
            let accept = base64::engine::general_purpose::STANDARD
                .encode(sha1::Sha1::digest(format!("{key}{ACCEPT_GUID}").as_bytes()));
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
            );
            if stream.write_all(answer.as_bytes()).await.is_ok() {
                websocket(stream, buffer).await;
            }
            return;
        }
        buffer.drain(..head_end);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// Reads until `buffer` holds a whole request head; its length, or `None` at the end.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at + 4);
        }
        if buffer.len() > 64 * 1024 || read_more(stream, buffer).await == 0 {
            return None;
        }
    }
}

/// A header's value (its name compared without case).
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Reads what is there into `buffer`'s spare room (nothing is zeroed first); 0 at the end.
pub async fn read_more<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, buffer: &mut Vec<u8>) -> usize {
    buffer.reserve(64 * 1024);
    stream.read_buf(buffer).await.unwrap_or(0)
}

/// Echoes frames until a close or the end of the stream.
async fn websocket(mut stream: TcpStream, mut buffer: Vec<u8>) {
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        let mut used = 0;
        let mut closing = false;
        while let Some((first, payload, end)) = frames::parse(&mut buffer[used..]) {
            let (payload, end) = (payload.start + used..payload.end + used, end + used);
            let opcode = first & 0x0f;
            let answer = match opcode {
                0x9 => 0x80 | 0xA,
                0x8 => {
                    closing = true;
                    first
                }
                0xA => {
                    used = end;
                    continue;
                }
                _ => first,
            };
            out.extend_from_slice(&frames::header(answer, payload.len(), false));
            out.extend_from_slice(&buffer[payload]);
            used = end;
            if closing {
                break;
            }
        }
        buffer.drain(..used);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if closing || read_more(&mut stream, &mut buffer).await == 0 {
            return;
        }
    }
}
