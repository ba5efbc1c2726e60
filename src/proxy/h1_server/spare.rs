//! Read buffers set aside by connections that went idle, for the next connection of the same
//! thread that has bytes to read.
//!
//! An idle keep-alive connection holds no read buffer (`serve_requests`), so each request used
//! to allocate one and free it at the next wait: a 4 KiB block freed and wanted again at once,
//! which mimalloc serves from its slow path (a freed block is not on the list its next
//! allocation takes from), some 500 instructions a request. A few spare buffers per thread make
//! that a push and a pop, and a reused buffer is split without allocating its shared header
//! again. What idle connections hold is unchanged; each thread keeps at most [`SPARES`] spare
//! buffers (256 KiB), which only that many connections between requests at once fill.

use std::cell::RefCell;

use bytes::BytesMut;

/// The room a read buffer starts with: most request heads whole.
pub(in crate::proxy) const READ_SIZE: usize = 4096;

/// Spare buffers a thread keeps at most: as many as there are connections between two requests
/// of a busy exchange at one moment, up to 256 KiB.
const SPARES: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for [`READ_SIZE`] bytes: a spare one if the thread has one.
pub(in crate::proxy) fn take() -> BytesMut {
    SPARE.with_borrow_mut(Vec::pop).unwrap_or_else(|| BytesMut::with_capacity(READ_SIZE))
}

/// Sets `buffer` aside for [`take`], if it can serve as a fresh one: its bytes are cleared, and
/// it is kept only when the room is there without an allocation (no request still holds a view
/// of it) and it did not grow past [`READ_SIZE`] (for a long head). Otherwise it is dropped.
pub(in crate::proxy) fn give_back(mut buffer: BytesMut) {
    buffer.clear();
    if !buffer.try_reclaim(READ_SIZE) || buffer.capacity() > READ_SIZE {
        return;
    }
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < SPARES {
            spare.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty_with_its_room() {
        let mut buffer = take();
        buffer.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let address = buffer.as_ptr();
        give_back(buffer);
        let again = take();
        assert!(again.is_empty());
        assert!(again.capacity() >= READ_SIZE);
        assert_eq!(again.as_ptr(), address, "the same allocation");
    }

    #[test]
    fn a_buffer_still_viewed_or_oversized_is_not_kept() {
        let mut viewed = take();
        viewed.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let head = viewed.split().freeze();
        give_back(viewed);
        assert_eq!(SPARE.with_borrow(Vec::len), 0, "a request still holds a view of it");
        let mut large = BytesMut::with_capacity(4 * READ_SIZE);
        large.extend_from_slice(b"x");
        give_back(large);
        assert_eq!(SPARE.with_borrow(Vec::len), 0, "too large to keep");
        assert_eq!(&head[..], b"GET / HTTP/1.1\r\n\r\n", "the view is intact");
        drop(head);
        give_back(take());
        assert_eq!(SPARE.with_borrow(Vec::len), 1);
    }

    #[test]
    fn a_thread_keeps_at_most_its_share() {
        for _ in 0..SPARES + 4 {
            give_back(BytesMut::with_capacity(READ_SIZE));
        }
        assert_eq!(SPARE.with_borrow(Vec::len), SPARES);
    }
}
