//! A response body read straight from the backend's socket and decoded as its head framed it
//! (RFC 9112 §6–7); once it has ended cleanly its connection goes back to the pool.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};

use super::head::{Framing, take_trailers};
use super::{Connection, Error, Head, MAX_HEAD};

/// The longest chunk-size line taken, extensions included.
const MAX_CHUNK_LINE: usize = 4096;

/// A backend's response body.
#[derive(Debug)]
pub struct ResponseBody {
    /// `None` once the body has ended (or failed).
    connection: Option<Box<Connection>>,
    state: State,
    keep_alive: bool,
}

/// Where the decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// This many bytes of a `Content-Length` body to come.
    Fixed(u64),
    /// A chunk-size line is next.
    ChunkSize,
    /// This many bytes of the current chunk to come.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// The trailer section after the last chunk.
    Trailers,
    /// Everything until the backend closes.
    UntilClose,
    Ended,
}

impl ResponseBody {
    /// The body of the response whose head `head` is, on `connection`.
    pub fn new(connection: Box<Connection>, head: &Head) -> Self {
        let state = match head.framing {
            Framing::Length(0) => State::Ended,
            Framing::Length(length) => State::Fixed(length),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        let mut body = Self { connection: Some(connection), state, keep_alive: head.keep_alive };
        if state == State::Ended {
            body.finish();
        }
        body
    }

    /// After a `101`, which has no body: the connection, to become the tunnel's.
    pub fn take_connection(&mut self) -> Option<Box<Connection>> {
        self.connection.take()
    }

    /// The body has ended: its connection goes back to the pool, unless the backend asked to
    /// close it or sent more than the response (which would be read as the next one's).
    fn finish(&mut self) {
        self.state = State::Ended;
        if let Some(connection) = self.connection.take().filter(|c| self.keep_alive && c.read.is_empty()) {
            connection.release();
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        loop {
            let Some(connection) = self.connection.as_mut() else { return Poll::Ready(None) };
            let buffered = connection.read.len();
            match self.state {
                State::Ended => return Poll::Ready(None),
                State::Fixed(_) | State::ChunkData(_) | State::UntilClose if buffered > 0 => {
                    return Poll::Ready(Some(Ok(Frame::data(self.take_data()))));
                }
                State::Fixed(_) | State::ChunkData(_) | State::UntilClose => {}
                // A size line must start with a hex digit (httparse would read an empty one as 0).
                State::ChunkSize if connection.read.first().is_some_and(|b| !b.is_ascii_hexdigit()) => {
                    return Poll::Ready(Some(Err(Error::Malformed("chunk size line"))));
                }
                State::ChunkSize => match httparse::parse_chunk_size(&connection.read) {
                    Ok(httparse::Status::Complete((line, size))) => {
                        connection.read.advance(line);
                        self.state = if size == 0 { State::Trailers } else { State::ChunkData(size) };
                        continue;
                    }
                    Ok(httparse::Status::Partial) if buffered < MAX_CHUNK_LINE => {}
                    _ => return Poll::Ready(Some(Err(Error::Malformed("chunk size line")))),
                },
                State::ChunkEnd if buffered >= 2 => {
                    if &connection.read[..2] != b"\r\n" {
                        return Poll::Ready(Some(Err(Error::Malformed("chunk data longer than its size"))));
                    }
                    connection.read.advance(2);
                    self.state = State::ChunkSize;
                    continue;
                }
                State::ChunkEnd => {}
                State::Trailers => match take_trailers(&mut connection.read)? {
                    Some(trailers) => {
                        self.finish();
                        let frame = (!trailers.is_empty()).then(|| Ok(Frame::trailers(trailers)));
                        return Poll::Ready(frame);
                    }
                    None if buffered < MAX_HEAD => {}
                    None => return Poll::Ready(Some(Err(Error::HeadTooLarge))),
                },
            }
            // More bytes are needed.
            if ready!(connection.poll_fill(cx))? == 0 {
                if self.state == State::UntilClose {
                    self.finish();
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Err(Error::Truncated)));
            }
        }
    }

    /// The buffered bytes of the body (as many as the current chunk or length allows).
    fn take_data(&mut self) -> Bytes {
        let Some(connection) = self.connection.as_mut() else { return Bytes::new() };
        let buffered = connection.read.len();
        let (taken, next) = match self.state {
            State::Fixed(left) | State::ChunkData(left) => {
                let taken = usize::try_from(left).map_or(buffered, |left| left.min(buffered));
                let left = left - taken as u64;
                let next = match self.state {
                    State::Fixed(_) if left == 0 => State::Ended,
                    State::Fixed(_) => State::Fixed(left),
                    _ if left == 0 => State::ChunkEnd,
                    _ => State::ChunkData(left),
                };
                (taken, next)
            }
            state => (buffered, state),
        };
        let data = connection.read.split_to(taken).freeze();
        self.state = next;
        if next == State::Ended {
            self.finish();
        }
        data
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let frame = ready!(this.poll_next(cx));
        if let Some(Err(_)) = frame {
            // A broken body ends its connection.
            this.connection = None;
            this.state = State::Ended;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Fixed(left) => SizeHint::with_exact(left),
            State::Ended => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
