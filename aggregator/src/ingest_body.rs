//! The agent stream's request body, handed to tonic one gRPC message piece
//! at a time.
//!
//! tonic copies each DATA frame whole into the stream's decode buffer, and
//! that buffer never gives capacity back. A frame may hold the end of one
//! message and the start of the next; tonic then reserves room for the
//! whole next message on top of what the buffer already holds, and the
//! buffer doubles its way up. A heap profile of the scale bench found it at
//! about 8 KiB for every agent stream, idle or not, though no message on it
//! was over 2 KiB. So each frame tonic sees here lies within one message:
//! its 5-byte prefix alone, or a run of its body. After a prefix tonic
//! reserves exactly the message's length in an empty buffer, and the body
//! fills it; the buffer never holds more than the largest message the
//! stream carried (a Part at most, see `aicr::parts`). Pieces share the
//! frame's memory; nothing is copied here.
//!
//! Owns only the body: trailers and errors pass through untouched, and the
//! service it wraps sees the same requests otherwise. It reads the framing
//! only to know where messages end; tonic still validates every prefix.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use tonic::server::NamedService;
use tower_service::Service;

/// gRPC's length prefix: a compression flag and a big-endian `u32` length.
const PREFIX: usize = 5;

/// Where the body stands in gRPC's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// `got` bytes of a prefix seen; `len` holds the length bytes so far.
    Prefix { got: usize, len: u32 },
    /// `left` bytes of a message body still to come.
    Message { left: usize },
}

impl At {
    const START: At = At::Prefix { got: 0, len: 0 };

    /// How many of the `available` bytes belong to the current prefix or
    /// message.
    fn take(self, available: usize) -> usize {
        match self {
            At::Prefix { got, .. } => (PREFIX - got).min(available),
            At::Message { left } => left.min(available),
        }
    }

    /// The state after `piece`, which [`At::take`] measured.
    fn after(self, piece: &[u8]) -> At {
        match self {
            At::Prefix { mut got, mut len } => {
                for b in piece {
                    // Byte 0 is the compression flag; 1 to 4 the length.
                    if got > 0 {
                        len = len << 8 | u32::from(*b);
                    }
                    got += 1;
                }
                match (got == PREFIX, len as usize) {
                    (false, _) => At::Prefix { got, len },
                    (true, 0) => At::START,
                    (true, left) => At::Message { left },
                }
            }
            At::Message { left } => match left - piece.len() {
                0 => At::START,
                left => At::Message { left },
            },
        }
    }
}

/// A body whose data frames each lie within one gRPC message.
#[derive(Debug)]
pub struct AlignedBody<B> {
    inner: B,
    /// What is left of the frame being cut.
    rest: Bytes,
    at: At,
}

impl<B> AlignedBody<B> {
    pub fn new(inner: B) -> AlignedBody<B> {
        AlignedBody {
            inner,
            rest: Bytes::new(),
            at: At::START,
        }
    }

    /// The first piece of `data`; the remainder waits in `rest`.
    fn cut(&mut self, mut data: Bytes) -> Bytes {
        let n = self.at.take(data.len());
        if n < data.len() {
            self.rest = data.split_off(n);
        }
        self.at = self.at.after(&data);
        data
    }
}

impl<B> Body for AlignedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if !this.rest.is_empty() {
            let rest = std::mem::take(&mut this.rest);
            return Poll::Ready(Some(Ok(Frame::data(this.cut(rest)))));
        }
        Poll::Ready(match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => Some(Ok(match frame.into_data() {
                Ok(data) => Frame::data(this.cut(data)),
                Err(other) => other,
            })),
            other => other,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

/// A gRPC service whose requests arrive as [`AlignedBody`]s.
#[derive(Debug, Clone)]
pub struct Aligned<S>(pub S);

impl<S: NamedService> NamedService for Aligned<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<tonic::body::Body>> for Aligned<S>
where
    S: Service<Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        self.0
            .call(request.map(|body| tonic::body::Body::new(AlignedBody::new(body))))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http::HeaderMap;

    use super::*;

    /// A body that yields the frames it was given, then ends.
    struct Frames(VecDeque<Result<Frame<Bytes>, &'static str>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            Poll::Ready(self.0.pop_front())
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn data(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn trailers() -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        t
    }

    /// gRPC messages of these body lengths back to back, and the offsets
    /// where a prefix or a body starts.
    fn wire(lens: &[usize]) -> (Bytes, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for (i, len) in lens.iter().enumerate() {
            starts.push(out.len());
            out.push(0);
            out.extend_from_slice(&(*len as u32).to_be_bytes());
            starts.push(out.len());
            out.extend_from_slice(&data(*len, i as u8));
        }
        (Bytes::from(out), starts)
    }

    /// `bytes` cut into frames of these sizes, the last taking the rest.
    fn frames(bytes: &Bytes, sizes: &[usize]) -> Vec<Result<Frame<Bytes>, &'static str>> {
        let mut rest = bytes.clone();
        let mut out = Vec::new();
        for n in sizes {
            out.push(Ok(Frame::data(rest.split_to((*n).min(rest.len())))));
        }
        out.push(Ok(Frame::data(rest)));
        out
    }

    /// Every frame the aligned body yields, in order.
    fn drain(
        frames: Vec<Result<Frame<Bytes>, &'static str>>,
    ) -> Vec<Result<Frame<Bytes>, &'static str>> {
        let mut body = AlignedBody::new(Frames(frames.into()));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(f)) = Pin::new(&mut body).poll_frame(&mut cx) {
            out.push(f);
        }
        assert!(body.is_end_stream());
        out
    }

    #[test]
    fn no_piece_crosses_a_prefix_or_message_boundary() {
        let (bytes, starts) = wire(&[2048, 0, 1, 300, 16 * 1024, 7]);
        // One frame with everything, frames cutting through prefixes and
        // bodies, and one byte at a time.
        let cuts: [Vec<usize>; 3] = [vec![], vec![3, 2047, 5000, 6, 9000, 2], vec![1; 20_000]];
        for sizes in cuts {
            let mut got = Vec::new();
            for f in drain(frames(&bytes, &sizes)) {
                let d = f.unwrap().into_data().unwrap();
                let (from, to) = (got.len(), got.len() + d.len());
                assert!(
                    !starts.iter().any(|s| from < *s && *s < to),
                    "piece {from}..{to} crosses a boundary (cut by {sizes:?})"
                );
                got.extend_from_slice(&d);
            }
            assert_eq!(got, bytes);
        }
    }

    #[test]
    fn pieces_share_the_frame_memory() {
        let (bytes, starts) = wire(&[100, 200]);
        let mut at = 0;
        for (f, start) in drain(frames(&bytes, &[])).into_iter().zip(starts) {
            let d = f.unwrap().into_data().unwrap();
            assert_eq!((at, d.as_ptr()), (start, bytes[start..].as_ptr()));
            at += d.len();
        }
    }

    #[test]
    fn trailers_pass_through_after_the_data() {
        let (bytes, _) = wire(&[3000]);
        let mut sent = frames(&bytes, &[]);
        sent.push(Ok(Frame::trailers(trailers())));
        let out = drain(sent);
        assert_eq!(out.len(), 3);
        let last = out.into_iter().last().unwrap().unwrap();
        assert_eq!(last.into_trailers().unwrap(), trailers());
    }

    #[test]
    fn errors_pass_through_after_the_data_before_them() {
        let (bytes, _) = wire(&[2048]);
        let out = drain(vec![Ok(Frame::data(bytes)), Err("reset")]);
        assert_eq!(out.len(), 3);
        assert!(
            out[..2]
                .iter()
                .all(|f| f.as_ref().is_ok_and(Frame::is_data))
        );
        assert_eq!(out[2].as_ref().unwrap_err(), &"reset");
    }

    /// What the wrapped service sees: tonic decodes whole messages from
    /// frames that cut through them and through their length prefixes.
    #[tokio::test]
    async fn tonic_decodes_messages_cut_anywhere() {
        use aicr::proto::{AgentMessage, Heartbeat, Part, agent_message};
        use prost::Message;
        use tonic::codec::Codec;

        let sent: Vec<AgentMessage> = (0..6u64)
            .map(|i| AgentMessage {
                body: Some(if i % 2 == 0 {
                    agent_message::Body::Part(Part {
                        chunk: data(1500 + i as usize * 700, i as u8).to_vec(),
                        last: i == 4,
                    })
                } else {
                    agent_message::Body::Heartbeat(Heartbeat {
                        seq: i,
                        unix_millis: 1,
                    })
                }),
            })
            .collect();
        // One DATA frame holding every message, as h2 may deliver it.
        let mut frame = Vec::new();
        for m in &sent {
            frame.push(0);
            frame.extend_from_slice(&(m.encoded_len() as u32).to_be_bytes());
            m.encode(&mut frame).unwrap();
        }
        let frame = Bytes::from(frame);
        let body = tonic::body::Body::new(AlignedBody::new(Frames(
            frames(&frame, &[3, 1000, 4, 2, 1500]).into(),
        )));
        let mut codec = aicr::codec::CompactCodec::<AgentMessage, AgentMessage>::default();
        let mut stream = tonic::Streaming::new_request(codec.decoder(), body, None, None);
        let mut got = Vec::new();
        while let Some(m) = stream.message().await.unwrap() {
            got.push(m);
        }
        assert_eq!(got, sent);
    }

    #[test]
    fn size_hint_counts_the_uncut_rest() {
        let (bytes, _) = wire(&[3000]);
        let mut body = AlignedBody::new(Frames(frames(&bytes, &[]).into()));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let _ = Pin::new(&mut body).poll_frame(&mut cx);
        assert_eq!(body.size_hint().lower(), 3000);
        assert!(!body.is_end_stream());
    }
}
