//! The request streams h3 reads and writes on, directly over quinn, so that a
//! DATA frame's payload reaches quinn without a copy.
//!
//! h3-quinn hands each frame to `quinn::SendStream::poll_write(&[u8])`, and
//! quinn copies that slice into a fresh buffer before it is copied again into
//! a packet: one allocation and one copy of every chunk for every reader
//! (`memmove` 10.5 % and malloc/free about 12 % of the origin's samples at 100
//! h3 viewers). quinn also takes `Bytes` without a copy (`write_chunks`), but
//! h3 gives its send stream a [`WriteBuf`] (frame header + payload), not the
//! payload's `Bytes`. [`SendStream`] copies the few header bytes and wraps the
//! rest of the `WriteBuf` itself as a `Bytes` (`Bytes::from_owner`): the
//! payload's memory, shared with the store, goes to quinn as it is.
//!
//! What is copied (frame headers, frames under [`COPY_BELOW`] bytes) goes into
//! blocks of [`COPY_BLOCK`] bytes that the copies share: an allocation per
//! block, not one or two per frame (at 100 h3 viewers the header copies were
//! about a third of the origin's `malloc` calls).
//!
//! Only request streams (client-initiated bidirectional) go through here; h3's
//! own unidirectional streams (control, QPACK) stay on h3-quinn.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
use quinn::VarInt;

/// Frames this short (header + payload) are copied whole: no owner to keep.
const COPY_BELOW: usize = 512;

/// Size of the blocks copies are made into. A block is freed once quinn has
/// dropped every copy in it (they are acknowledged).
const COPY_BLOCK: usize = 2048;

/// The send half of a request stream.
pub struct SendStream {
    /// The QUIC stream.
    stream: quinn::SendStream,
    /// What h3 gave to send and quinn has not taken yet; `pending[..next]`
    /// is taken (emptied by quinn).
    pending: Vec<Bytes>,
    /// First entry of `pending` not fully taken.
    next: usize,
    /// The rest of the block copies are made into.
    copies: BytesMut,
}

impl SendStream {
    pub fn new(stream: quinn::SendStream) -> Self {
        SendStream { stream, pending: Vec::with_capacity(2), next: 0, copies: BytesMut::new() }
    }
}

/// What is left of a buffer (h3's `WriteBuf`) once its leading pieces were taken: one
/// contiguous slice, which is what `Bytes` shows of it.
struct Tail<W>(W);

impl<W: Buf> AsRef<[u8]> for Tail<W> {
    fn as_ref(&self) -> &[u8] {
        self.0.chunk()
    }
}

/// `buf` as `Bytes` for quinn: all of it copied if it is short, else the
/// leading pieces copied (the frame header; for a payload that is not
/// contiguous, all but its last piece) and the last piece, which holds the
/// payload, shared without a copy. Copies go into `block` (see [`COPY_BLOCK`]).
fn to_chunks<W: Buf + Send + 'static>(mut buf: W, block: &mut BytesMut, out: &mut Vec<Bytes>) {
    let total = buf.remaining();
    if total == 0 {
        return;
    }
    let copy_all = total < COPY_BELOW;
    let mut copied = 0;
    while buf.has_remaining() && (copy_all || buf.chunk().len() < buf.remaining()) {
        let piece = buf.chunk();
        let n = piece.len();
        if block.capacity() - block.len() < n {
            // The copies of this frame so far go first: a copy is contiguous.
            if copied > 0 {
                out.push(block.split().freeze());
                copied = 0;
            }
            *block = BytesMut::with_capacity(COPY_BLOCK.max(n));
        }
        block.extend_from_slice(piece);
        copied += n;
        buf.advance(n);
    }
    if copied > 0 {
        out.push(block.split().freeze());
    }
    if buf.has_remaining() {
        out.push(Bytes::from_owner(Tail(buf)));
    }
}

impl<B: Buf + Send + 'static> quic::SendStream<B> for SendStream {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        while self.next < self.pending.len() {
            let written =
                ready!(pin!(self.stream.write_chunks(&mut self.pending[self.next..])).poll(cx)).map_err(write_error)?;
            self.next += written.chunks;
        }
        self.pending.clear();
        self.next = 0;
        Poll::Ready(Ok(()))
    }

    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        if !self.pending.is_empty() {
            // h3 sends the next frame only after poll_ready finished the last.
            return Err(StreamErrorIncoming::ConnectionErrorIncoming {
                connection_error: ConnectionErrorIncoming::InternalError(
                    "send_data called while the send stream is not ready".into(),
                ),
            });
        }
        to_chunks::<WriteBuf<B>>(data.into(), &mut self.copies, &mut self.pending);
        Ok(())
    }

    fn poll_finish(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        Poll::Ready(self.stream.finish().map_err(|e| StreamErrorIncoming::Unknown(Box::new(e))))
    }

    fn reset(&mut self, reset_code: u64) {
        let _ = self.stream.reset(VarInt::from_u64(reset_code).unwrap_or(VarInt::MAX));
    }

    fn send_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

/// The receive half of a request stream.
pub struct RecvStream {
    /// The QUIC stream.
    stream: quinn::RecvStream,
}

impl RecvStream {
    pub fn new(stream: quinn::RecvStream) -> Self {
        RecvStream { stream }
    }
}

impl quic::RecvStream for RecvStream {
    type Buf = Bytes;

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        // `read_chunk` keeps no state between polls (it is cancel-safe).
        let chunk = ready!(pin!(self.stream.read_chunk(usize::MAX, true)).poll(cx)).map_err(read_error)?;
        Poll::Ready(Ok(chunk.map(|c| c.bytes)))
    }

    fn stop_sending(&mut self, error_code: u64) {
        let _ = self.stream.stop(VarInt::from_u64(error_code).unwrap_or(VarInt::MAX));
    }

    fn recv_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

fn stream_id(id: quinn::StreamId) -> StreamId {
    StreamId::try_from(u64::from(id)).expect("a QUIC stream id is a valid h3 stream id")
}

/// quinn's connection error as h3 reports it.
pub fn connection_error(e: quinn::ConnectionError) -> ConnectionErrorIncoming {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => {
            ConnectionErrorIncoming::ApplicationClose { error_code: close.error_code.into_inner() }
        }
        quinn::ConnectionError::TimedOut => ConnectionErrorIncoming::Timeout,
        e => ConnectionErrorIncoming::Undefined(Arc::new(e)),
    }
}

fn write_error(e: quinn::WriteError) -> StreamErrorIncoming {
    match e {
        quinn::WriteError::Stopped(code) => StreamErrorIncoming::StreamTerminated { error_code: code.into_inner() },
        quinn::WriteError::ConnectionLost(e) => {
            StreamErrorIncoming::ConnectionErrorIncoming { connection_error: connection_error(e) }
        }
        e => StreamErrorIncoming::Unknown(Box::new(e)),
    }
}

fn read_error(e: quinn::ReadError) -> StreamErrorIncoming {
    match e {
        quinn::ReadError::Reset(code) => StreamErrorIncoming::StreamTerminated { error_code: code.into_inner() },
        quinn::ReadError::ConnectionLost(e) => {
            StreamErrorIncoming::ConnectionErrorIncoming { connection_error: connection_error(e) }
        }
        e => StreamErrorIncoming::Unknown(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(chunks: &[Bytes]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn a_long_payload_is_shared_not_copied() {
        // A DATA frame: type 0x00, length 0x4800 (a 2-byte varint), payload.
        let payload = Bytes::from(vec![7u8; 0x800]);
        let frame = Bytes::from_static(&[0x00, 0x48, 0x00]).chain(payload.clone());
        let mut out = Vec::new();
        to_chunks(frame, &mut BytesMut::new(), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(&out[0][..], &[0x00, 0x48, 0x00]);
        assert_eq!(out[1].as_ptr(), payload.as_ptr(), "payload memory handed over as it is");
        assert_eq!(out[1].len(), payload.len());
    }

    #[test]
    fn pieces_before_the_last_are_copied_in_order() {
        let a = Bytes::from(vec![1u8; 300]);
        let b = Bytes::from(vec![2u8; 300]);
        let c = Bytes::from(vec![3u8; 300]);
        let buf = Bytes::from_static(&[9]).chain(a.clone()).chain(b.clone()).chain(c.clone());
        let mut out = Vec::new();
        to_chunks(buf, &mut BytesMut::new(), &mut out);
        let want: Vec<u8> = [&[9u8][..], &a, &b, &c].concat();
        assert_eq!(joined(&out), want);
        assert_eq!(out.last().unwrap().as_ptr(), c.as_ptr());
    }

    #[test]
    fn a_short_frame_is_one_copy_and_an_empty_one_nothing() {
        let mut out = Vec::new();
        let mut block = BytesMut::new();
        to_chunks(Bytes::from_static(&[0x01, 0x02]).chain(Bytes::from_static(b"abc")), &mut block, &mut out);
        assert_eq!(out, vec![Bytes::from_static(&[0x01, 0x02, b'a', b'b', b'c'])]);
        out.clear();
        to_chunks(Bytes::new(), &mut block, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn copies_share_a_block_until_it_is_full() {
        let payload = Bytes::from(vec![7u8; 0x800]);
        let mut block = BytesMut::new();
        let mut heads = Vec::new();
        for _ in 0..(COPY_BLOCK / 3 + 1) {
            let mut out = Vec::new();
            to_chunks(Bytes::from_static(&[0x00, 0x48, 0x00]).chain(payload.clone()), &mut block, &mut out);
            assert_eq!(out.len(), 2);
            assert_eq!(&out[0][..], &[0x00, 0x48, 0x00]);
            heads.push(out.swap_remove(0));
        }
        // Each header follows the previous one in the same allocation...
        let adjacent = heads.windows(2).filter(|w| w[0].as_ptr().wrapping_add(3) == w[1].as_ptr()).count();
        assert_eq!(adjacent, heads.len() - 2, "one new block after {} headers", COPY_BLOCK / 3);
        // ...and a short frame is copied whole into the block.
        let mut out = Vec::new();
        to_chunks(Bytes::from_static(&[0x00, 0x05]).chain(Bytes::from_static(b"hello")), &mut block, &mut out);
        assert_eq!(out, vec![Bytes::from_static(b"\x00\x05hello")]);
        assert_eq!(out[0].as_ptr(), heads.last().unwrap().as_ptr().wrapping_add(3));
    }

    #[test]
    fn a_copy_larger_than_a_block_gets_its_own() {
        let mut block = BytesMut::new();
        let mut out = Vec::new();
        let big = Bytes::from(vec![5u8; COPY_BLOCK + 10]);
        // Not contiguous: everything but the last piece is copied.
        to_chunks(big.clone().chain(Bytes::from(vec![6u8; 600])), &mut block, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], big);
        assert_eq!(out[1].len(), 600);
    }
}
