//! Frame tracking over every chunking of real frame sequences, protocol errors, limits,
//! hawser's own pongs and frames.

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
        assert_eq!(tracker.close.as_deref(), Some(&CloseFrame { code: Some(1000), reason: "bye".into() }));
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
fn payload_passed_unscanned_ends_the_frame_and_releases_queued_frames() {
    let big = frame(true, OP_BINARY, &[3; 40_000], true);
    let mut tracker = FrameTracker::new(Peer::Client);
    assert_eq!(tracker.scan(&big[..1000], None), Forward::All);
    assert_eq!(tracker.passing(), 40_000 - (1000 - 8));
    let ping = ping_frame(1, Peer::Backend);
    assert_eq!(tracker.inject(ping.clone()), None, "mid-frame: queued");
    assert_eq!(tracker.passed(10_000), None, "still inside the frame");
    assert_eq!(tracker.passed(tracker.passing()).as_deref(), Some(&ping[..]));
    assert_eq!((tracker.passing(), tracker.messages), (0, 1));
    // What hawser drops is never passed unscanned.
    let mut closing = FrameTracker::new(Peer::Client);
    assert_eq!(closing.scan(&big[..1000], None), Forward::All);
    closing.inject(close_frame(code::GOING_AWAY, "", Peer::Backend));
    assert_ne!(closing.passing(), 0);
    closing.passed(closing.passing());
    assert!(closing.closed_by_hawser());
    assert_eq!(closing.passing(), 0);
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
