//! WebSocket frames the load generator writes and reads itself (RFC 6455 §5.2), so a message
//! costs it one prepared buffer write and a byte count, never a frame object or an allocation.

/// A client frame (masked, §5.3) of `size` payload bytes, binary, final.
pub fn masked_binary(size: usize) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = header(0x82, size, true);
    frame.extend_from_slice(&mask);
    frame.extend((0..size).map(|i| 0x5a ^ mask[i % 4]));
    frame
}

/// A frame header: FIN and `opcode` in the first byte, then the length (7 bits, or 16 or 64 after
/// 126 or 127), with the mask bit when `masked`.
pub fn header(first: u8, size: usize, masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut header = vec![first];
    match size {
        0..=125 => header.push(mask_bit | size as u8),
        126..=65535 => {
            header.push(mask_bit | 126);
            header.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            header.push(mask_bit | 127);
            header.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    header
}

/// The bytes a server frame (unmasked) of `size` payload bytes takes on the wire.
pub fn server_frame_len(size: usize) -> usize {
    header(0x82, size, false).len() + size
}

/// One frame parsed from the front of `buffer`: (FIN + opcode byte, payload range, whole
/// length), or `None` until the whole frame is there. The payload is unmasked in place.
pub fn parse(buffer: &mut [u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let (&first, rest) = buffer.split_first()?;
    let (&second, _) = rest.split_first()?;
    let masked = second & 0x80 != 0;
    let (size, mut at) = match second & 0x7f {
        126 => (u16::from_be_bytes(buffer.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (usize::try_from(u64::from_be_bytes(buffer.get(2..10)?.try_into().ok()?)).ok()?, 10),
        n => (usize::from(n), 2),
    };
    let mask: Option<[u8; 4]> = if masked {
        let key = buffer.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    let end = at.checked_add(size)?;
    let payload = buffer.get_mut(at..end)?;
    if let Some(mask) = mask {
        payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    Some((first, at..end, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_frame_parses_back_to_its_payload() {
        for size in [0, 64, 125, 126, 65535, 65536] {
            let mut frame = masked_binary(size);
            let (first, payload, end) = parse(&mut frame).expect("whole");
            assert_eq!((first, end, payload.len()), (0x82, frame.len(), size));
            assert!(frame[payload].iter().all(|&b| b == 0x5a));
            assert_eq!(server_frame_len(size), frame.len() - 4);
            assert!(parse(&mut masked_binary(size)[..frame.len() - 1]).is_none());
        }
    }
}
