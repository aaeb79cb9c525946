//! The gRPC codec of every AICR service: prost, with small per-stream
//! buffers. Each open stream holds an encode and a decode buffer; tonic's
//! default of 8 KiB each is most of what an idle agent stream costs the
//! aggregator, tens of thousands of times over. Agents send large messages
//! in Parts (`parts`), so a buffer rarely needs to grow, and grows when it
//! must. Generated code names this type (see `build.rs`).

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial size of a stream's encode and decode buffers.
const BUFFER_BYTES: usize = 1024;
/// tonic's default: an encoder yields to the runtime after this much.
const YIELD_BYTES: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_BYTES)
}

/// [`tonic_prost::ProstCodec`] with 1 KiB buffers (`BUFFER_BYTES`).
#[derive(Debug, Clone)]
pub struct CompactCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for CompactCodec<T, U> {
    fn default() -> Self {
        CompactCodec(PhantomData)
    }
}

impl<T, U> Codec for CompactCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
