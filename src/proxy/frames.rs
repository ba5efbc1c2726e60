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
}

const NO_MESSAGE: u64 = u64::MAX;

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
mod tests {
    use super::*;

    /// A frame as a client (masked, fixed key) or a server sends it.
    fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= 0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mut body = payload.to_vec();
        if masked {
            let key = [1, 2, 3, 4];
            out.extend_from_slice(&key);
            apply_mask(&mut body, key);
        }
        out.extend_from_slice(&body);
        out
    }

    /// Feeds `stream` in chunks of `size` and returns what went on.
    fn pass(tracker: &mut FrameTracker, stream: &[u8], size: usize, limit: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in stream.chunks(size) {
            match tracker.scan(chunk, limit) {
                Forward::All => out.extend_from_slice(chunk),
                Forward::Bytes(bytes) => out.extend_from_slice(&bytes),
                Forward::Prefixed(head, from) => {
                    out.extend_from_slice(&head);
                    out.extend_from_slice(&chunk[from..]);
                }
            }
        }
        out
    }

    #[test]
    fn a_header_split_across_reads_costs_no_copy_of_the_next_chunk() {
        let big = frame(true, OP_BINARY, &vec![5u8; 70_000], true);
        let mut tracker = FrameTracker::new(Peer::Client);
        // The first read ends three bytes into the header.
        assert_eq!(tracker.scan(&big[..3], None), Forward::Bytes(Vec::new()));
        match tracker.scan(&big[3..40_000], None) {
            Forward::Prefixed(head, from) => assert_eq!((head.len(), from), (14, 11)),
            other => panic!("expected the held header then the chunk unchanged, got {other:?}"),
        }
        assert_eq!(tracker.scan(&big[40_000..], None), Forward::All);
    }

    #[test]
    fn data_passes_unchanged_in_any_chunking_and_messages_are_counted() {
        let mut stream = frame(true, OP_TEXT, b"hello", true);
        stream.extend(frame(false, OP_BINARY, &vec![7; 300], true));
        stream.extend(frame(true, OP_PING, b"app ping", true));
        stream.extend(frame(true, OP_CONTINUATION, &vec![8; 70_000], true));
        stream.extend(frame(true, OP_CLOSE, &[3, 232, b'b', b'y', b'e'], true));
        for size in [1, 2, 3, 7, 64, 1000, stream.len()] {
            let mut tracker = FrameTracker::new(Peer::Client);
            assert_eq!(pass(&mut tracker, &stream, size, None), stream, "chunks of {size}");
            assert_eq!(tracker.messages, 2, "chunks of {size}");
            assert_eq!(
                tracker.close.as_deref(),
                Some(&CloseFrame { code: Some(1000), reason: "bye".into() })
            );
            assert_eq!(tracker.stopped, None);
        }
        let mut whole = FrameTracker::new(Peer::Client);
        assert_eq!(whole.scan(&stream, None), Forward::All, "no copy when nothing changes");
    }

    #[test]
    fn protocol_errors_stop_at_the_bad_frame() {
        let good = frame(true, OP_TEXT, b"ok", true);
        let cases: &[(Peer, Vec<u8>, &str)] = &[
            (Peer::Client, frame(true, 0x3, b"x", true), "reserved opcode"),
            (Peer::Client, frame(true, OP_PING, &[0; 126], true), "control frame longer than 125 bytes"),
            (Peer::Client, frame(false, OP_PING, b"x", true), "fragmented control frame"),
            (Peer::Client, frame(true, OP_TEXT, b"x", false), "unmasked frame from the client"),
            (Peer::Client, frame(true, OP_CONTINUATION, b"x", true), "continuation frame outside a message"),
        ];
        for (peer, bad, why) in cases {
            let good = if *peer == Peer::Client { good.clone() } else { frame(true, OP_TEXT, b"ok", false) };
            let mut stream = good.clone();
            stream.extend_from_slice(bad);
            stream.extend_from_slice(&good);
            let mut tracker = FrameTracker::new(*peer);
            assert_eq!(pass(&mut tracker, &stream, 3, None), good, "{why}");
            assert_eq!(tracker.stopped, Some(Stop::Protocol(why)), "{why}");
        }
        let mut interleaved = frame(false, OP_TEXT, b"a", true);
        interleaved.extend(frame(true, OP_TEXT, b"b", true));
        let mut tracker = FrameTracker::new(Peer::Client);
        pass(&mut tracker, &interleaved, 100, None);
        assert_eq!(tracker.stopped, Some(Stop::Protocol("new message inside a fragmented one")));
    }

    #[test]
    fn a_message_over_the_limit_is_cut_at_the_fragment_that_crosses_it() {
        let first = frame(false, OP_BINARY, &[1; 600], true);
        let mut stream = first.clone();
        stream.extend(frame(false, OP_CONTINUATION, &[2; 600], true));
        stream.extend(frame(true, OP_CONTINUATION, &[3; 10], true));
        let mut tracker = FrameTracker::new(Peer::Client);
        assert_eq!(pass(&mut tracker, &stream, 50, Some(1000)), first);
        assert_eq!(tracker.stopped, Some(Stop::TooBig));
        let mut within = FrameTracker::new(Peer::Client);
        assert_eq!(pass(&mut within, &stream, 50, Some(1210)), stream);
    }

    #[test]
    fn hawsers_pongs_are_taken_off_the_stream_and_others_pass() {
        let ours = {
            let mut payload = PING_MARK.to_vec();
            payload.extend_from_slice(&7u32.to_be_bytes());
            frame(true, OP_PONG, &payload, true)
        };
        let app = frame(true, OP_PONG, b"app", true);
        let text = frame(true, OP_TEXT, b"data", true);
        let stream = [text.clone(), ours.clone(), app.clone(), text.clone()].concat();
        for size in [1, 5, stream.len()] {
            let mut tracker = FrameTracker::new(Peer::Client);
            tracker.expect_pong();
            let out = pass(&mut tracker, &stream, size, None);
            assert_eq!(out, [text.clone(), app.clone(), text.clone()].concat(), "chunks of {size}");
            assert!(tracker.ponged);
        }
        // Without a ping of ours outstanding, a look-alike pong is the application's.
        let mut tracker = FrameTracker::new(Peer::Client);
        assert_eq!(pass(&mut tracker, &stream, 4, None), stream);
    }

    #[test]
    fn injected_frames_wait_for_a_boundary_and_a_close_drops_what_follows() {
        let big = frame(true, OP_BINARY, &[9; 1000], false);
        let after = frame(true, OP_TEXT, b"late", false);
        let mut tracker = FrameTracker::new(Peer::Backend);
        let mut out = pass(&mut tracker, &big[..500], 100, None);
        let close = close_frame(code::GOING_AWAY, "shutdown", Peer::Client);
        assert_eq!(tracker.inject(close.clone()), None, "mid-frame: queued");
        out.extend(pass(&mut tracker, &[&big[500..], &after[..]].concat(), 100, None));
        let want = [big.clone(), close.clone()].concat();
        assert_eq!((out.len(), out == want), (want.len(), true));
        assert!(tracker.closed_by_hawser());
        // At a boundary the frame comes straight back, to go out after what is pending.
        let mut idle = FrameTracker::new(Peer::Backend);
        assert_eq!(idle.inject(close.clone()), Some(close));
    }

    #[test]
    fn hawsers_frames_are_valid_for_their_receiver() {
        let to_client = close_frame(1001, "going away", Peer::Client);
        assert_eq!(&to_client[..4], &[0x88, 12, 0x03, 0xE9]);
        let to_backend = close_frame(1001, "going away", Peer::Backend);
        let header = Header::parse(&to_backend).expect("header");
        assert!(header.masked && header.fin && header.opcode == OP_CLOSE && header.payload == 12);
        let mut payload = to_backend[6..].to_vec();
        apply_mask(&mut payload, header.mask.expect("key"));
        assert_eq!(payload, [&[0x03, 0xE9][..], b"going away"].concat());
        let long = close_frame(1001, &"x".repeat(300), Peer::Client);
        assert_eq!(long.len(), 2 + 125);
        assert_eq!(ping_frame(3, Peer::Client)[1] as usize, PING_MARK.len() + 4);
    }
}
