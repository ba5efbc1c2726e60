//! WebSocket frame boundaries in one direction of a tunnel, tracked as the bytes pass (RFC 6455
//! §5.2): FIN, opcode, mask bit and payload length, in a small state machine that survives
//! headers split across reads. Data payloads are skipped, never copied, unmasked or inspected;
//! control frames (at most 125 bytes, §5.5) are held until complete, so that a close frame's
//! code can be read and a pong answering hawser's own ping kept off the wire. RSV bits and
//! extensions (`permessage-deflate`) pass untouched.
//!
//! Knowing the boundaries, hawser can put its own control frames on the wire between two frames
//! (§5.4 allows them between the fragments of a message too), masked towards the backend
//! (§5.3) and unmasked towards the client.

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
/// The payload of hawser's pings (then a 4-byte sequence number), to know their pongs.
const PING_MARK: &[u8] = b"hawser-";

/// Close codes hawser sends (RFC 6455 §7.4.1; 1012 from the IANA registry).
pub mod code {
    /// The endpoint is going away: shutdown, idle timeout, maximum duration, the other side gone.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message larger than the route allows.
    pub const TOO_BIG: u16 = 1009;
    /// The service is restarting: reconnect (endpoint gone, rebalancing).
    pub const SERVICE_RESTART: u16 = 1012;
}

/// Which peer a direction reads from. Client frames must be masked, backend frames must not be
/// (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The WebSocket client.
    Client,
    /// The backend (the WebSocket server).
    Backend,
}

impl Peer {
    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Backend => "backend",
        }
    }
}

/// Why a direction stopped forwarding at a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The frame breaks RFC 6455; the reason says how.
    Protocol(&'static str),
    /// The message grew past the route's limit.
    TooBig,
}

/// A close frame seen on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code; `None` when the frame carried none (§7.1.5: 1005).
    pub code: Option<u16>,
    /// The reason text (lossy UTF-8).
    pub reason: String,
}

/// How a scanned chunk goes on.
#[derive(Debug, PartialEq, Eq)]
pub enum Forward {
    /// Every byte as it was read: the common case, no copy.
    All,
    /// These bytes instead (a control frame held or dropped, a frame inserted, the rest cut).
    Bytes(Vec<u8>),
    /// These bytes (the frame start held from the last chunk, completed), then the chunk from
    /// this offset on, as it was read.
    Prefixed(Vec<u8>, usize),
}

/// The frame state of one direction.
#[derive(Debug)]
pub struct FrameTracker {
    peer: Peer,
    /// Payload bytes of the current data frame still to pass; 0 at a frame start.
    remaining: u64,
    /// Payload bytes of the fragmented message in progress (`NO_MESSAGE` between messages).
    message: u64,
    /// The start of a frame split across reads (a header, or a whole control frame), held.
    held: Option<Box<[u8]>>,
    /// hawser's frames to put on the wire at the next frame start.
    outbox: Option<Box<[u8]>>,
    /// Data messages completed (FIN of a text, binary or continuation frame).
    pub messages: u64,
    /// The first close frame the peer sent.
    pub close: Option<Box<CloseFrame>>,
    /// Set when forwarding stopped at a bad frame; nothing after it is forwarded.
    pub stopped: Option<Stop>,
    /// A pong answering hawser's ping arrived (and was taken off the stream) since last asked.
    pub ponged: bool,
    /// hawser sent a ping to this peer and waits for its pong.
    awaiting_pong: bool,
    /// hawser put a close frame on this direction's wire: what follows is dropped (§5.5.1).
    closed_by_hawser: bool,
    /// hawser's close frame waits in the outbox for the current frame to end.
    close_queued: bool,
    /// The last data frame's payload was large ([`LARGE_PAYLOAD`]): the next one may be too.
    pub large: bool,
}

const NO_MESSAGE: u64 = u64::MAX;
/// A data frame with at least this much payload is large: worth passing without a copy.
pub const LARGE_PAYLOAD: u64 = 16 * 1024;

impl FrameTracker {
    /// The state of a direction reading from `peer`, at the start of the stream.
    pub fn new(peer: Peer) -> Self {
        Self {
            peer,
            remaining: 0,
            message: NO_MESSAGE,
            held: None,
            outbox: None,
            messages: 0,
            close: None,
            stopped: None,
            ponged: false,
            awaiting_pong: false,
            closed_by_hawser: false,
            close_queued: false,
            large: false,
        }
    }

    /// Whether hawser has sent (or queued) a close frame on this direction.
    pub fn closed_by_hawser(&self) -> bool {
        self.closed_by_hawser || self.close_queued
    }

    /// Queues `frame` (from [`control_frame`]) for the next frame boundary. Returns it back when
    /// the stream is at a boundary now, to be written at once after what is pending. A close
    /// frame makes the direction drop everything after it.
    pub fn inject(&mut self, frame: Vec<u8>) -> Option<Vec<u8>> {
        if self.closed_by_hawser() {
            return None;
        }
        let close = frame.first().is_some_and(|b| b & 0x0F == OP_CLOSE);
        // A stopped stream was cut at the start of the bad frame: a boundary.
        if self.stopped.is_some() || (self.remaining == 0 && self.held.is_none()) {
            self.closed_by_hawser |= close;
            return Some(frame);
        }
        self.close_queued |= close;
        self.outbox = Some(match self.outbox.take() {
            Some(queued) => [&queued[..], &frame].concat().into_boxed_slice(),
            None => frame.into_boxed_slice(),
        });
        None
    }

    /// Notes that hawser pinged the peer this direction reads from.
    pub fn expect_pong(&mut self) {
        self.awaiting_pong = true;
    }

    /// Payload bytes of the current data frame that will go on untouched, unread: what may pass
    /// without being scanned (spliced). None while hawser drops what follows its own close
    /// frame, or after a bad frame.
    pub fn passing(&self) -> u64 {
        if self.closed_by_hawser || self.stopped.is_some() { 0 } else { self.remaining }
    }

    /// Notes `count` bytes of [`Self::passing`] gone on unscanned. At the end of the frame,
    /// hands back hawser's queued frames, to be written next.
    pub fn passed(&mut self, count: u64) -> Option<Box<[u8]>> {
        self.remaining = self.remaining.saturating_sub(count);
        if self.remaining > 0 {
            return None;
        }
        let frames = self.outbox.take()?;
        self.closed_by_hawser |= std::mem::take(&mut self.close_queued);
        Some(frames)
    }

    /// Scans the next bytes of the direction; `max_message` limits a message's payload (the sum
    /// of its fragments). Says how they go on; findings land in the public fields.
    pub fn scan(&mut self, data: &[u8], max_message: Option<u64>) -> Forward {
        let Some(held) = self.held.take() else { return self.scan_chunk(data, max_message) };
        // Complete the held frame start with only the bytes it needs, so the rest of the chunk
        // (most of a large message) still goes on without a copy.
        let mut start = held.into_vec();
        let mut taken = 0;
        while let Some(more) = still_needed(&start).filter(|&n| n > 0 && taken < data.len()) {
            let take = more.min(data.len() - taken);
            start.extend_from_slice(&data[taken..taken + take]);
            taken += take;
        }
        let head = match self.scan_chunk(&start, max_message) {
            Forward::All => start,
            Forward::Bytes(bytes) | Forward::Prefixed(bytes, _) => bytes,
        };
        if taken == data.len() {
            return Forward::Bytes(head);
        }
        match self.scan_chunk(&data[taken..], max_message) {
            Forward::All => Forward::Prefixed(head, taken),
            Forward::Bytes(rest) | Forward::Prefixed(rest, _) => Forward::Bytes([head, rest].concat()),
        }
    }

    fn scan_chunk(&mut self, data: &[u8], max_message: Option<u64>) -> Forward {
        let mut out = Rewrite { data, from: 0, bytes: None };
        let mut pos = 0;
        while pos < data.len() {
            if self.stopped.is_some() {
                out.skip(pos, data.len());
                break;
            }
            if self.remaining > 0 {
                let take = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(data.len() - pos);
                if self.closed_by_hawser {
                    out.skip(pos, pos + take);
                }
                self.remaining -= take as u64;
                pos += take;
                continue;
            }
            self.flush_outbox(&mut out, pos);
            let Some(header) = Header::parse(&data[pos..]) else {
                self.held = Some(data[pos..].into());
                out.skip(pos, data.len());
                break;
            };
            if let Err(stop) = self.check(&header, max_message) {
                self.stopped = Some(stop);
                continue;
            }
            let end = pos + header.len;
            if header.opcode >= OP_CLOSE {
                let Some(frame) = data.get(pos..end + header.payload as usize) else {
                    self.held = Some(data[pos..].into());
                    out.skip(pos, data.len());
                    break;
                };
                let next = end + header.payload as usize;
                if !self.control(&header, &frame[header.len..]) || self.closed_by_hawser {
                    out.skip(pos, next);
                }
                pos = next;
                continue;
            }
            if self.closed_by_hawser {
                out.skip(pos, end);
            }
            self.remaining = header.payload;
            self.large = header.payload >= LARGE_PAYLOAD;
            pos = end;
        }
        if self.remaining == 0 && self.held.is_none() && self.stopped.is_none() {
            self.flush_outbox(&mut out, data.len());
        }
        out.finish()
    }

    /// Puts the queued frames in at `at`, a frame boundary.
    fn flush_outbox(&mut self, out: &mut Rewrite<'_>, at: usize) {
        if let Some(frames) = self.outbox.take() {
            out.insert(at, &frames);
            self.closed_by_hawser |= std::mem::take(&mut self.close_queued);
        }
    }

    /// Validates a frame header against RFC 6455 and the message limit, and follows the
    /// message it belongs to.
    fn check(&mut self, header: &Header, max_message: Option<u64>) -> Result<(), Stop> {
        let protocol = |why| Err(Stop::Protocol(why));
        let control = header.opcode >= OP_CLOSE;
        match header.opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
            _ => return protocol("reserved opcode"),
        }
        if control && header.payload > 125 {
            return protocol("control frame longer than 125 bytes");
        }
        if control && !header.fin {
            return protocol("fragmented control frame");
        }
        // A masked frame from the backend is the client's to refuse (§5.1); hawser passes it.
        if self.peer == Peer::Client && !header.masked {
            return protocol("unmasked frame from the client");
        }
        if control {
            return Ok(());
        }
        let in_message = self.message != NO_MESSAGE;
        match (header.opcode, in_message) {
            (OP_CONTINUATION, false) => return protocol("continuation frame outside a message"),
            (OP_TEXT | OP_BINARY, true) => return protocol("new message inside a fragmented one"),
            _ => {}
        }
        let size = if in_message { self.message } else { 0 }.saturating_add(header.payload);
        if max_message.is_some_and(|limit| size > limit) {
            return Err(Stop::TooBig);
        }
        if header.fin {
            self.message = NO_MESSAGE;
            self.messages += 1;
        } else {
            self.message = size;
        }
        Ok(())
    }

    /// Reads a complete control frame; false when it must not be forwarded (hawser's pong).
    fn control(&mut self, header: &Header, payload: &[u8]) -> bool {
        let mut payload = payload.to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key);
        }
        match header.opcode {
            OP_CLOSE if self.close.is_none() => {
                let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                self.close = Some(Box::new(CloseFrame { code, reason }));
                true
            }
            OP_PONG if self.awaiting_pong && payload.starts_with(PING_MARK) => {
                self.awaiting_pong = false;
                self.ponged = true;
                false
            }
            _ => true,
        }
    }
}

/// How many more bytes the frame starting `bytes` needs before hawser can decide on it: its
/// whole header, and for a control frame its payload too.
fn still_needed(bytes: &[u8]) -> Option<usize> {
    let Some(&second) = bytes.get(1) else { return Some(2 - bytes.len()) };
    let extended = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header = 2 + extended + if second & 0x80 != 0 { 4 } else { 0 };
    if bytes.len() < header {
        return Some(header - bytes.len());
    }
    let control = bytes[0] & 0x0F >= OP_CLOSE;
    let payload = if control { Header::parse(bytes)?.payload.min(126) as usize } else { 0 };
    Some((header + payload).saturating_sub(bytes.len()))
}

/// A parsed frame header.
#[derive(Debug)]
struct Header {
    fin: bool,
    opcode: u8,
    masked: bool,
    mask: Option<[u8; 4]>,
    /// Header length in bytes (2 to 14).
    len: usize,
    payload: u64,
}

impl Header {
    /// The header at the start of `bytes`; `None` until all of it is there.
    fn parse(bytes: &[u8]) -> Option<Self> {
        let (first, second) = (*bytes.first()?, *bytes.get(1)?);
        let masked = second & 0x80 != 0;
        let extended = match second & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let len = 2 + extended + if masked { 4 } else { 0 };
        let header = bytes.get(..len)?;
        let payload = match extended {
            0 => u64::from(second & 0x7F),
            2 => u64::from(u16::from_be_bytes([header[2], header[3]])),
            _ => header[2..10].iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)),
        };
        let mask = masked.then(|| {
            let key = &header[len - 4..len];
            [key[0], key[1], key[2], key[3]]
        });
        Some(Self { fin: first & 0x80 != 0, opcode: first & 0x0F, masked, mask, len, payload })
    }
}

/// A chunk going on unchanged, unless something is cut out or put in; copies only then.
struct Rewrite<'a> {
    data: &'a [u8],
    /// Bytes of `data` before this are accounted for.
    from: usize,
    bytes: Option<Vec<u8>>,
}

impl Rewrite<'_> {
    fn skip(&mut self, start: usize, end: usize) {
        let bytes = self.bytes.get_or_insert_with(|| Vec::with_capacity(self.data.len()));
        bytes.extend_from_slice(&self.data[self.from..start]);
        self.from = end;
    }

    fn insert(&mut self, at: usize, extra: &[u8]) {
        self.skip(at, at);
        if let Some(bytes) = &mut self.bytes {
            bytes.extend_from_slice(extra);
        }
    }

    fn finish(self) -> Forward {
        match self.bytes {
            None => Forward::All,
            Some(mut bytes) => {
                bytes.extend_from_slice(&self.data[self.from..]);
                Forward::Bytes(bytes)
            }
        }
    }
}

fn apply_mask(payload: &mut [u8], key: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// A control frame from hawser to `to`: masked with a fresh random key towards the backend
/// (hawser is its client, §5.3), unmasked towards the client. `payload` is at most 125 bytes.
fn control_frame(opcode: u8, payload: &[u8], to: Peer) -> Vec<u8> {
    let payload = &payload[..payload.len().min(125)];
    let mut frame = Vec::with_capacity(payload.len() + 6);
    frame.push(0x80 | opcode);
    let length = payload.len() as u8;
    match to {
        Peer::Client => {
            frame.push(length);
            frame.extend_from_slice(payload);
        }
        Peer::Backend => {
            let mut key = [0u8; 4];
            // A weak key only makes the frame easier to predict, never invalid.
            let _ = getrandom::fill(&mut key);
            frame.push(0x80 | length);
            frame.extend_from_slice(&key);
            let start = frame.len();
            frame.extend_from_slice(payload);
            apply_mask(&mut frame[start..], key);
        }
    }
    frame
}

/// A close frame with `code` and `reason` (cut to fit 125 bytes) for `to`.
pub fn close_frame(code: u16, reason: &str, to: Peer) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    payload.extend_from_slice(reason);
    control_frame(OP_CLOSE, &payload, to)
}

/// hawser's ping number `sequence` for `to`.
pub fn ping_frame(sequence: u32, to: Peer) -> Vec<u8> {
    let mut payload = PING_MARK.to_vec();
    payload.extend_from_slice(&sequence.to_be_bytes());
    control_frame(OP_PING, &payload, to)
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
