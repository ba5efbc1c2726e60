//! Property tests: however a stream of frames (valid or not) is cut into reads, the tracker
//! forwards the same bytes and reaches the same findings as when it sees the stream whole.

use proptest::prelude::*;

use super::*;

/// A frame's bytes: any FIN, opcode and RSV bits, a payload of any small length, masked or
/// not. Many break RFC 6455 on purpose; where the stream stops must not depend on the reads.
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300), any::<bool>(), any::<[u8; 4]>()).prop_map(
        |(first, payload, masked, key)| {
            let mut out = vec![first];
            let mask_bit = if masked { 0x80 } else { 0 };
            match payload.len() {
                n if n < 126 => out.push(mask_bit | n as u8),
                n => {
                    out.push(mask_bit | 126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
            }
            if masked {
                out.extend_from_slice(&key);
            }
            out.extend_from_slice(&payload);
            out
        },
    )
}

/// Mostly well-formed frames from a client: FIN set or not, text, binary, continuation, ping,
/// pong or close, masked.
fn client_frame() -> impl Strategy<Value = Vec<u8>> {
    let opcode = prop_oneof![Just(0x0u8), Just(0x1), Just(0x2), Just(0x8), Just(0x9), Just(0xA)];
    (any::<bool>(), opcode, proptest::collection::vec(any::<u8>(), 0..200)).prop_map(
        |(fin, opcode, payload)| {
            let payload = if opcode >= 0x8 { payload[..payload.len().min(125)].to_vec() } else { payload };
            let fin = fin || opcode >= 0x8;
            let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
            match payload.len() {
                n if n < 126 => out.push(0x80 | n as u8),
                n => {
                    out.push(0x80 | 126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
            }
            out.extend_from_slice(&[9, 8, 7, 6]);
            out.extend_from_slice(&payload);
            out
        },
    )
}

/// What the tracker forwards for `stream` cut at `cuts`, and what it found. With `unscanned`,
/// each chunk's bytes that the tracker says pass untouched go through unscanned, as a splice
/// moves them.
fn run(
    stream: &[u8],
    cuts: &[usize],
    unscanned: bool,
) -> (Vec<u8>, u64, Option<Box<CloseFrame>>, Option<Stop>) {
    let mut tracker = FrameTracker::new(Peer::Client);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.extend([0, stream.len()]);
    points.sort_unstable();
    points.dedup();
    let mut forwarded = Vec::new();
    for pair in points.windows(2) {
        let mut chunk = &stream[pair[0]..pair[1]];
        let passing = usize::try_from(tracker.passing()).unwrap_or(usize::MAX).min(chunk.len());
        if unscanned && passing > 0 {
            forwarded.extend_from_slice(&chunk[..passing]);
            forwarded.extend(tracker.passed(passing as u64).unwrap_or_default());
            chunk = &chunk[passing..];
        }
        match tracker.scan(chunk, Some(1000)) {
            Forward::All => forwarded.extend_from_slice(chunk),
            Forward::Bytes(bytes) => forwarded.extend(bytes),
            Forward::Prefixed(bytes, from) => {
                forwarded.extend(bytes);
                forwarded.extend_from_slice(&chunk[from..]);
            }
        }
    }
    (forwarded, tracker.messages, tracker.close, tracker.stopped)
}

proptest! {
    #[test]
    fn any_bytes_any_reads_same_result(
        frames in proptest::collection::vec(any_frame(), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let stream = frames.concat();
        prop_assert_eq!(run(&stream, &cuts, false), run(&stream, &[], false));
    }

    #[test]
    fn client_frames_any_reads_same_result(
        frames in proptest::collection::vec(client_frame(), 0..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let stream = frames.concat();
        let whole = run(&stream, &[], false);
        // Nothing hawser did not decide to change: without a stop, every byte goes on.
        if whole.3.is_none() {
            prop_assert_eq!(&whole.0, &stream);
        }
        prop_assert_eq!(run(&stream, &cuts, false), whole);
    }

    #[test]
    fn payload_passed_unscanned_same_result(
        frames in proptest::collection::vec(client_frame(), 0..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let stream = frames.concat();
        prop_assert_eq!(run(&stream, &cuts, true), run(&stream, &[], false));
    }
}
