//! The agent stream's request body, handed to tonic in small slices.
//!
//! tonic copies every DATA frame whole into the stream's decode buffer
//! before it looks for a message there, and that buffer never gives
//! capacity back. h2 delivers frames of up to 16 KiB, several at once while
//! an agent sends a full snapshot faster than it is decoded, so each agent
//! stream kept tens of KiB for its whole life: most of what an agent cost
//! the aggregator. Sliced, a frame enters the buffer at most
//! [`SLICE_BYTES`] at a time, each slice only once the messages before it
//! are decoded, so the buffer holds at most one incomplete message (a Part
//! at most, see `aicr::parts`) plus one slice. Slices share the frame's
//! memory; nothing is copied here.
//!
//! Owns only the body: trailers and errors pass through untouched, and the
//! service it wraps sees the same requests otherwise.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use tonic::server::NamedService;
use tower_service::Service;

/// Largest slice of a frame tonic is given at once.
pub const SLICE_BYTES: usize = 1024;

/// A body whose data frames are at most `max` bytes.
#[derive(Debug)]
pub struct SlicedBody<B> {
    inner: B,
    /// What is left of the frame being sliced.
    rest: Bytes,
    max: usize,
}

impl<B> SlicedBody<B> {
    pub fn new(inner: B, max: usize) -> SlicedBody<B> {
        SlicedBody {
            inner,
            rest: Bytes::new(),
            max: max.max(1),
        }
    }

    fn slice(&mut self, mut data: Bytes) -> Bytes {
        if data.len() > self.max {
            self.rest = data.split_off(self.max);
        }
        data
    }
}

impl<B> Body for SlicedBody<B>
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
            return Poll::Ready(Some(Ok(Frame::data(this.slice(rest)))));
        }
        Poll::Ready(match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => Some(Ok(match frame.into_data() {
                Ok(data) => Frame::data(this.slice(data)),
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

/// A gRPC service whose requests arrive as [`SlicedBody`]s of at most
/// [`SLICE_BYTES`].
#[derive(Debug, Clone)]
pub struct Sliced<S>(pub S);

impl<S: NamedService> NamedService for Sliced<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<tonic::body::Body>> for Sliced<S>
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
            .call(request.map(|body| tonic::body::Body::new(SlicedBody::new(body, SLICE_BYTES))))
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

    /// Every frame the sliced body yields, in order.
    fn drain(
        frames: Vec<Result<Frame<Bytes>, &'static str>>,
        max: usize,
    ) -> Vec<Result<Frame<Bytes>, &'static str>> {
        let mut body = SlicedBody::new(Frames(frames.into()), max);
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
    fn slices_are_bounded_and_bytes_round_trip() {
        let sent = [data(16 * 1024, 1), data(1, 2), data(1024, 3), data(2500, 4)];
        let out = drain(
            sent.iter().map(|d| Ok(Frame::data(d.clone()))).collect(),
            1024,
        );
        let mut got = Vec::new();
        for f in out {
            let d = f.unwrap().into_data().unwrap();
            assert!(!d.is_empty() && d.len() <= 1024, "slice of {}", d.len());
            got.extend_from_slice(&d);
        }
        assert_eq!(got, sent.concat());
    }

    #[test]
    fn slices_share_the_frame_memory() {
        let frame = data(4096, 5);
        let out = drain(vec![Ok(Frame::data(frame.clone()))], 1024);
        for (i, f) in out.into_iter().enumerate() {
            let d = f.unwrap().into_data().unwrap();
            assert_eq!(d.as_ptr(), frame[i * 1024..].as_ptr());
        }
    }

    #[test]
    fn trailers_pass_through_after_the_data() {
        let out = drain(
            vec![
                Ok(Frame::data(data(3000, 6))),
                Ok(Frame::trailers(trailers())),
            ],
            1024,
        );
        assert_eq!(out.len(), 4);
        let last = out.into_iter().last().unwrap().unwrap();
        assert_eq!(last.into_trailers().unwrap(), trailers());
    }

    #[test]
    fn errors_pass_through_after_the_data_before_them() {
        let out = drain(vec![Ok(Frame::data(data(2048, 7))), Err("reset")], 1024);
        assert_eq!(out.len(), 3);
        assert!(
            out[..2]
                .iter()
                .all(|f| f.as_ref().is_ok_and(Frame::is_data))
        );
        assert_eq!(out[2].as_ref().unwrap_err(), &"reset");
    }

    /// What the wrapped service sees: tonic decodes whole messages from
    /// slices that cut through them and through their length prefixes.
    #[tokio::test]
    async fn tonic_decodes_messages_across_slices() {
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
        let body = tonic::body::Body::new(SlicedBody::new(
            Frames(vec![Ok(Frame::data(Bytes::from(frame)))].into()),
            1000,
        ));
        let mut codec = aicr::codec::CompactCodec::<AgentMessage, AgentMessage>::default();
        let mut stream = tonic::Streaming::new_request(codec.decoder(), body, None, None);
        let mut got = Vec::new();
        while let Some(m) = stream.message().await.unwrap() {
            got.push(m);
        }
        assert_eq!(got, sent);
    }

    #[test]
    fn size_hint_counts_the_unsliced_rest() {
        let mut body = SlicedBody::new(Frames(vec![Ok(Frame::data(data(3000, 8)))].into()), 1024);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let _ = Pin::new(&mut body).poll_frame(&mut cx);
        assert_eq!(body.size_hint().lower(), 3000 - 1024);
        assert!(!body.is_end_stream());
    }
}
