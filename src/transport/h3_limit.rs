//! A QUIC connection for h3 that caps what a client can make h3 buffer on a
//! request stream.
//!
//! h3 reads a frame whole before it looks at it: a HEADERS frame (or a frame
//! of an unknown type) announcing a huge length is buffered as it arrives,
//! without limit, and its length is re-summed on every read. `max_field_section_size`
//! only applies once the frame is complete. Reads have no body, so on a
//! listener without ingest a request stream never needs to deliver more than
//! its header section: this wrapper lets at most `cap` bytes of each
//! client-initiated bidirectional stream through to h3 (the caller sets it to
//! twice the header limit, so a section somewhat over the limit still gets
//! h3's 431), then stops the stream in both directions (STOP_SENDING and
//! RESET_STREAM with `H3_REQUEST_REJECTED`) and reports it to h3 as terminated.
//! On an ingest listener ([`Connection::with_bodies`]) request streams carry
//! upload bodies: there the frame headers are followed instead, DATA frames
//! pass whatever their length (h3 hands their payload on as it arrives; the
//! core caps the object size), and any other frame longer than `cap` stops
//! the stream the same way.
//! The client's control stream lives as long as the connection, so it is not
//! capped in total; instead its frame headers are followed as the bytes pass
//! and a frame longer than `cap` stops it (h3 then closes the connection with
//! `H3_CLOSED_CRITICAL_STREAM`). Request streams run directly over quinn
//! ([`h3_stream`]: DATA payloads reach quinn without a copy); h3's own
//! unidirectional streams go through h3-quinn unchanged.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};

use super::h3_stream::{self, connection_error};

/// `H3_REQUEST_REJECTED`.
const REQUEST_REJECTED: u64 = 0x10b;

/// A bidirectional stream being accepted or opened.
type Bidi =
    Pin<Box<dyn Future<Output = Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>> + Send + Sync>>;

/// The next stream the client opens on `conn`.
fn accept_bi(conn: &quinn::Connection) -> Bidi {
    let conn = conn.clone();
    Box::pin(async move { conn.accept_bi().await })
}

/// A QUIC connection for h3: request streams over [`h3_stream`] (zero-copy
/// DATA), capped; h3's unidirectional streams over h3-quinn.
pub struct Connection {
    /// The QUIC connection (request streams).
    conn: quinn::Connection,
    /// The next request stream.
    accepting: Bidi,
    /// The same connection through h3-quinn (unidirectional streams).
    inner: h3_quinn::Connection,
    /// What each request stream may deliver.
    cap: Cap,
}

impl Connection {
    /// Wrap `conn`; each request stream may deliver `cap` bytes.
    pub fn new(conn: quinn::Connection, cap: u64) -> Connection {
        Connection::wrap(conn, Cap::total(cap))
    }

    /// Wrap `conn` for an ingest listener: request streams may carry bodies
    /// (DATA frames of any length); every other frame is capped at `cap`.
    pub fn with_bodies(conn: quinn::Connection, cap: u64) -> Connection {
        Connection::wrap(conn, Cap::frames(cap))
    }

    fn wrap(conn: quinn::Connection, cap: Cap) -> Connection {
        Connection { accepting: accept_bi(&conn), inner: h3_quinn::Connection::new(conn.clone()), conn, cap }
    }
}

impl<B: Buf + Send + 'static> quic::Connection<B> for Connection {
    type RecvStream = UniStream;
    type OpenStreams = Opener;

    fn poll_accept_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::RecvStream, ConnectionErrorIncoming>> {
        let cap = self.cap.limit;
        quic::Connection::<B>::poll_accept_recv(&mut self.inner, cx).map_ok(|inner| UniStream {
            inner,
            frames: Frames::new(cap),
            stopped: false,
        })
    }

    fn poll_accept_bidi(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::BidiStream, ConnectionErrorIncoming>> {
        let r = ready!(self.accepting.as_mut().poll(cx));
        self.accepting = accept_bi(&self.conn);
        let (send, recv) = r.map_err(connection_error)?;
        Poll::Ready(Ok(BidiStream::new(send, recv, self.cap.clone())))
    }

    fn opener(&self) -> Self::OpenStreams {
        Opener {
            inner: quic::Connection::<B>::opener(&self.inner),
            conn: self.conn.clone(),
            opening: None,
            cap: self.cap.clone(),
        }
    }
}

/// Opens streams on a [`Connection`] (h3 uses it for its own unidirectional streams).
pub struct Opener {
    /// The wrapped opener (unidirectional streams).
    inner: h3_quinn::OpenStreams,
    /// The QUIC connection (bidirectional streams).
    conn: quinn::Connection,
    /// A bidirectional stream being opened.
    opening: Option<Bidi>,
    /// What each bidirectional stream may deliver.
    cap: Cap,
}

/// Open a bidirectional stream (an HTTP/3 server never does; the trait asks for it).
fn poll_open_bi(
    conn: &quinn::Connection,
    opening: &mut Option<Bidi>,
    cap: &Cap,
    cx: &mut Context<'_>,
) -> Poll<Result<BidiStream, StreamErrorIncoming>> {
    let fut = opening.get_or_insert_with(|| {
        let conn = conn.clone();
        Box::pin(async move { conn.open_bi().await })
    });
    let r = ready!(fut.as_mut().poll(cx));
    *opening = None;
    let (send, recv) =
        r.map_err(|e| StreamErrorIncoming::ConnectionErrorIncoming { connection_error: connection_error(e) })?;
    Poll::Ready(Ok(BidiStream::new(send, recv, cap.clone())))
}

impl<B: Buf + Send + 'static> quic::OpenStreams<B> for Opener {
    type BidiStream = BidiStream;
    type SendStream = h3_quinn::SendStream<B>;

    fn poll_open_bidi(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::BidiStream, StreamErrorIncoming>> {
        poll_open_bi(&self.conn, &mut self.opening, &self.cap, cx)
    }

    fn poll_open_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_send(&mut self.inner, cx)
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        quic::OpenStreams::<B>::close(&mut self.inner, code, reason)
    }
}

impl<B: Buf + Send + 'static> quic::OpenStreams<B> for Connection {
    type BidiStream = BidiStream;
    type SendStream = h3_quinn::SendStream<B>;

    fn poll_open_bidi(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::BidiStream, StreamErrorIncoming>> {
        // Rare enough (never, for a server) that a fresh future each time is fine.
        poll_open_bi(&self.conn, &mut None, &self.cap, cx)
    }

    fn poll_open_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_send(&mut self.inner, cx)
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        quic::OpenStreams::<B>::close(&mut self.inner, code, reason)
    }
}

/// What a request stream may still deliver to h3.
#[derive(Debug, Clone)]
struct Cap {
    /// The configured cap: bytes in total, or bytes per frame other than DATA.
    limit: u64,
    /// Bytes it may still deliver (not counted when `frames` is set).
    left: u64,
    /// Ingest listener: the frame headers, followed as bytes pass.
    frames: Option<Frames>,
    /// Set once the cap was hit and the stream stopped.
    stopped: bool,
}

impl Cap {
    /// At most `limit` bytes in total.
    fn total(limit: u64) -> Cap {
        Cap { limit, left: limit, frames: None, stopped: false }
    }

    /// DATA frames of any length, any other frame at most `limit` bytes.
    fn frames(limit: u64) -> Cap {
        Cap { limit, left: u64::MAX, frames: Some(Frames::request(limit)), stopped: false }
    }

    /// Pass `r` on while under the cap; past it, stop the stream (once) and
    /// report it terminated from then on.
    fn poll_data<R: quic::RecvStream<Buf = Bytes>>(
        &mut self,
        inner: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        if self.stopped {
            return Poll::Ready(Err(StreamErrorIncoming::StreamTerminated { error_code: REQUEST_REJECTED }));
        }
        let r = inner.poll_data(cx);
        if let Poll::Ready(Ok(Some(data))) = &r {
            let n = data.len() as u64;
            let over = match self.frames.as_mut() {
                Some(frames) => !frames.feed(data),
                None => n > self.left,
            };
            if over {
                tracing::debug!("h3: request stream sent more than a header section may hold: stopped");
                self.stopped = true;
                inner.stop_sending(REQUEST_REJECTED);
                return Poll::Ready(Err(StreamErrorIncoming::StreamTerminated { error_code: REQUEST_REJECTED }));
            }
            self.left = self.left.saturating_sub(n);
        }
        r
    }
}

/// A request stream that delivers at most `cap` bytes to h3.
pub struct BidiStream {
    /// The send half.
    send: h3_stream::SendStream,
    /// The receive half.
    recv: h3_stream::RecvStream,
    /// What it may still deliver.
    cap: Cap,
}

impl BidiStream {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream, cap: Cap) -> Self {
        BidiStream { send: h3_stream::SendStream::new(send), recv: h3_stream::RecvStream::new(recv), cap }
    }
}

impl quic::RecvStream for BidiStream {
    type Buf = Bytes;

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        let was_stopped = self.cap.stopped;
        let r = self.cap.poll_data(&mut self.recv, cx);
        if self.cap.stopped && !was_stopped {
            // No response will come: say so instead of finishing empty.
            quic::SendStream::<Bytes>::reset(&mut self.send, REQUEST_REJECTED);
        }
        r
    }

    fn stop_sending(&mut self, error_code: u64) {
        quic::RecvStream::stop_sending(&mut self.recv, error_code)
    }

    fn recv_id(&self) -> StreamId {
        quic::RecvStream::recv_id(&self.recv)
    }
}

impl<B: Buf + Send + 'static> quic::SendStream<B> for BidiStream {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        quic::SendStream::<B>::poll_ready(&mut self.send, cx)
    }

    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        quic::SendStream::<B>::send_data(&mut self.send, data)
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        quic::SendStream::<B>::poll_finish(&mut self.send, cx)
    }

    fn reset(&mut self, reset_code: u64) {
        quic::SendStream::<B>::reset(&mut self.send, reset_code)
    }

    fn send_id(&self) -> StreamId {
        quic::SendStream::<B>::send_id(&self.send)
    }
}

impl<B: Buf + Send + 'static> quic::BidiStream<B> for BidiStream {
    type SendStream = h3_stream::SendStream;
    type RecvStream = CappedRecv;

    fn split(self) -> (Self::SendStream, Self::RecvStream) {
        (self.send, CappedRecv { inner: self.recv, cap: self.cap })
    }
}

/// The receive half of a split [`BidiStream`], still capped.
pub struct CappedRecv {
    /// The wrapped stream.
    inner: h3_stream::RecvStream,
    /// What it may still deliver.
    cap: Cap,
}

impl quic::RecvStream for CappedRecv {
    type Buf = Bytes;

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        self.cap.poll_data(&mut self.inner, cx)
    }

    fn stop_sending(&mut self, error_code: u64) {
        quic::RecvStream::stop_sending(&mut self.inner, error_code)
    }

    fn recv_id(&self) -> StreamId {
        quic::RecvStream::recv_id(&self.inner)
    }
}

/// A client-initiated unidirectional stream (control, QPACK, or unknown)
/// whose frames may each be at most `cap` bytes long if it is the control
/// stream.
pub struct UniStream {
    /// The wrapped stream.
    inner: h3_quinn::RecvStream,
    /// Where the frame parser is.
    frames: Frames,
    /// Set once a frame was too long.
    stopped: bool,
}

impl quic::RecvStream for UniStream {
    type Buf = Bytes;

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        if self.stopped {
            return Poll::Ready(Err(StreamErrorIncoming::StreamTerminated { error_code: FRAME_ERROR }));
        }
        let r = quic::RecvStream::poll_data(&mut self.inner, cx);
        if let Poll::Ready(Ok(Some(data))) = &r {
            if !self.frames.feed(data) {
                tracing::debug!("h3: oversized frame on the client's control stream: stopped");
                self.stopped = true;
                quic::RecvStream::stop_sending(&mut self.inner, FRAME_ERROR);
                return Poll::Ready(Err(StreamErrorIncoming::StreamTerminated { error_code: FRAME_ERROR }));
            }
        }
        r
    }

    fn stop_sending(&mut self, error_code: u64) {
        quic::RecvStream::stop_sending(&mut self.inner, error_code)
    }

    fn recv_id(&self) -> StreamId {
        quic::RecvStream::recv_id(&self.inner)
    }
}

/// `H3_FRAME_ERROR`.
const FRAME_ERROR: u64 = 0x106;

/// Follows the frame headers of a stream as bytes pass: a unidirectional
/// stream (only the control stream's frames are followed) or a request stream
/// on an ingest listener (DATA frames are not capped).
#[derive(Debug, Clone)]
struct Frames {
    /// Longest frame payload accepted (on a request stream: other than DATA).
    cap: u64,
    /// What the next bytes are.
    state: FrameState,
    /// Type of the frame whose length is being read.
    frame_type: u64,
    /// A request stream: DATA frames pass whatever their length.
    request: bool,
    /// The varint being read: its length (0 before its first byte), bytes
    /// read, value so far.
    varint: (usize, usize, u64),
}

/// Parser states of [`Frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameState {
    /// The stream type (a varint).
    StreamType,
    /// A frame type (control stream).
    FrameType,
    /// A frame length (control stream).
    FrameLen,
    /// Payload bytes still to pass.
    Payload(u64),
    /// Not a control stream: not followed.
    Other,
}

impl Frames {
    fn new(cap: u64) -> Frames {
        Frames { cap, state: FrameState::StreamType, frame_type: 0, request: false, varint: (0, 0, 0) }
    }

    /// A request stream's frames (no stream type first).
    fn request(cap: u64) -> Frames {
        Frames { cap, state: FrameState::FrameType, frame_type: 0, request: true, varint: (0, 0, 0) }
    }

    /// One byte of a QUIC varint (RFC 9000 16); its value once complete.
    fn varint_byte(&mut self, b: u8) -> Option<u64> {
        let (len, read, v) = self.varint;
        let (len, v) =
            if read == 0 { (1usize << (b >> 6), u64::from(b & 0x3f)) } else { (len, (v << 8) | u64::from(b)) };
        if read + 1 == len {
            self.varint = (0, 0, 0);
            Some(v)
        } else {
            self.varint = (len, read + 1, v);
            None
        }
    }

    /// Pass `data` through the parser; false if a followed frame (other than
    /// DATA on a request stream) is longer than the cap.
    fn feed(&mut self, data: &[u8]) -> bool {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                FrameState::Other => return true,
                FrameState::Payload(left) => {
                    let take = left.min((data.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left { FrameState::FrameType } else { FrameState::Payload(left - take) };
                }
                state => {
                    let b = data[i];
                    i += 1;
                    let Some(v) = self.varint_byte(b) else { continue };
                    self.state = match state {
                        // 0x00: the control stream.
                        FrameState::StreamType if v == 0 => FrameState::FrameType,
                        FrameState::StreamType => FrameState::Other,
                        FrameState::FrameType => {
                            self.frame_type = v;
                            FrameState::FrameLen
                        }
                        // 0x00: DATA, an upload body's frames.
                        _ if self.request && self.frame_type == 0 && v > 0 => FrameState::Payload(v),
                        _ if v > self.cap => return false,
                        _ if v == 0 => FrameState::FrameType,
                        _ => FrameState::Payload(v),
                    };
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_stream_frames_are_followed_across_pieces() {
        let mut f = Frames::new(100);
        // Control stream, SETTINGS (0x04) of 3 bytes, an unknown frame 0x21 of 100 bytes.
        assert!(f.feed(&[0x00, 0x04, 0x03, 1, 2]));
        assert!(f.feed(&[3, 0x21, 0x40]));
        assert!(f.feed(&[100]));
        assert!(f.feed(&[0u8; 100]));
        // A frame announcing 1 TiB (8-byte varint), split mid-varint.
        assert!(f.feed(&[0x21, 0xc0, 0, 0]));
        assert!(!f.feed(&[1, 0, 0, 0, 0]));
        // Other stream types are not followed.
        let mut f = Frames::new(100);
        assert!(f.feed(&[0x02, 0xff, 0xff, 0xff]));
    }

    #[test]
    fn request_streams_pass_long_data_frames_only() {
        let mut f = Frames::request(100);
        // HEADERS (0x01) of 3 bytes, DATA (0x00) of 1 MiB (4-byte varint), split.
        assert!(f.feed(&[0x01, 0x03, 1, 2, 3, 0x00, 0x80, 0x10]));
        assert!(f.feed(&[0x00, 0x00]));
        for _ in 0..16 {
            assert!(f.feed(&[7u8; 65536]));
        }
        // Then a trailing HEADERS frame announcing 1000 bytes: over the cap.
        assert!(!f.feed(&[0x01, 0x43, 0xe8]));
    }
}
