//! Large agent messages in pieces. gRPC's receive buffer for a stream grows
//! to hold the largest message it has carried and keeps that size for the
//! life of the stream; a full snapshot is tens of KiB, so ten thousand
//! agent streams would pin hundreds of MiB in buffers that sit idle between
//! snapshots. Splitting the encoding of big messages into `Part`s bounds
//! that buffer; the aggregator reassembles them into the original message.
//!
//! The wire convention lives here once, for the agent, the aggregator and
//! the simulated agents of tests and benchmarks.

use prost::Message;

use crate::proto::agent_message::Body;
use crate::proto::{AgentMessage, Part};

/// What the aggregator asks for (`CollectionSettings.part_bytes`). The
/// aggregator's receive buffer for an agent stream holds about one Part
/// (`ingest_body` in the aggregator keeps it from holding more), so this
/// sets it: at 10,000 agents, 2 KiB Parts cost about 5 KiB per agent less
/// than 8 KiB and 1.5 KiB less than 4 KiB; 1 KiB saved one more KiB for
/// twice the messages, and is not worth them.
pub const PART_BYTES: u32 = 2 * 1024;

/// Room for a Part's own framing: the oneof and chunk tags with their
/// lengths, and the `last` flag.
const FRAMING: usize = 16;

/// `m` as it goes on the wire: itself when its encoding fits `part_bytes`
/// (or `part_bytes` is 0), else Parts whose encodings each fit.
pub fn split(m: AgentMessage, part_bytes: u32) -> Vec<AgentMessage> {
    let limit = part_bytes as usize;
    if limit == 0 || m.encoded_len() <= limit {
        return vec![m];
    }
    let chunk = limit.saturating_sub(FRAMING).max(FRAMING);
    let bytes = m.encode_to_vec();
    let n = bytes.len().div_ceil(chunk);
    bytes
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| AgentMessage {
            body: Some(Body::Part(Part {
                chunk: c.to_vec(),
                last: i + 1 == n,
            })),
        })
        .collect()
}

/// Why Parts could not be put back together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    /// The reassembled message would exceed the bound on one message.
    #[error("a message in parts exceeds {0} bytes")]
    TooLarge(usize),
    /// The Parts break the protocol.
    #[error("{0}")]
    Malformed(&'static str),
    #[error("parts do not decode to a message: {0}")]
    Undecodable(String),
}

/// Puts Parts back together on the receiving side of one stream.
#[derive(Debug, Default)]
pub struct Assembler {
    pending: Vec<u8>,
}

impl Assembler {
    /// Feed the next message of the stream: `Ok(None)` while a parted
    /// message is incomplete, then the whole message; other messages pass
    /// through. `Err` (a protocol violation) names what was wrong; the
    /// reassembled encoding may not exceed `max_bytes`, the same bound a
    /// whole message has.
    pub fn push(
        &mut self,
        m: AgentMessage,
        max_bytes: usize,
    ) -> Result<Option<AgentMessage>, PartsError> {
        let part = match m.body {
            Some(Body::Part(p)) => p,
            _ if !self.pending.is_empty() => {
                return Err(PartsError::Malformed(
                    "a message arrived between the parts of another",
                ));
            }
            _ => return Ok(Some(m)),
        };
        if self.pending.len() + part.chunk.len() > max_bytes {
            self.pending = Vec::new();
            return Err(PartsError::TooLarge(max_bytes));
        }
        self.pending.extend_from_slice(&part.chunk);
        if !part.last {
            return Ok(None);
        }
        // Taken, not cleared: the buffer's memory goes with it.
        let bytes = std::mem::take(&mut self.pending);
        let whole = AgentMessage::decode(bytes.as_slice())
            .map_err(|e| PartsError::Undecodable(e.to_string()))?;
        if matches!(whole.body, Some(Body::Part(_))) {
            return Err(PartsError::Malformed("parts decode to another Part"));
        }
        Ok(Some(whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{FullSnapshot, Heartbeat, SubtypeState};

    fn full(bytes: usize) -> AgentMessage {
        AgentMessage {
            body: Some(Body::Full(FullSnapshot {
                seq: 7,
                subtypes: vec![SubtypeState {
                    r#type: "OS".into(),
                    subtype: "sysctl".into(),
                    subtype_json: vec![b'x'; bytes],
                    digest: "d".into(),
                }],
            })),
        }
    }

    fn heartbeat() -> AgentMessage {
        AgentMessage {
            body: Some(Body::Heartbeat(Heartbeat {
                seq: 1,
                unix_millis: 2,
            })),
        }
    }

    #[test]
    fn big_messages_travel_in_parts_that_fit_and_come_back_whole() {
        let m = full(40_000);
        let parts = split(m.clone(), PART_BYTES);
        let n = m.encoded_len().div_ceil(PART_BYTES as usize - FRAMING);
        assert_eq!(parts.len(), n);
        assert!(parts.iter().all(|p| p.encoded_len() <= PART_BYTES as usize));
        let mut a = Assembler::default();
        let mut out = Vec::new();
        for p in parts {
            out.push(a.push(p, 1 << 20).unwrap());
        }
        assert!(out[..n - 1].iter().all(Option::is_none));
        assert_eq!(out[n - 1].as_ref(), Some(&m));
        assert!(
            a.pending.capacity() == 0,
            "the reassembly buffer is released"
        );
    }

    #[test]
    fn small_messages_and_zero_part_size_go_whole() {
        assert_eq!(split(heartbeat(), PART_BYTES), vec![heartbeat()]);
        assert_eq!(split(full(40_000), 0).len(), 1);
        let mut a = Assembler::default();
        assert_eq!(a.push(heartbeat(), 10).unwrap(), Some(heartbeat()));
    }

    #[test]
    fn protocol_violations_are_errors() {
        let parts = split(full(20_000), PART_BYTES);
        let mut a = Assembler::default();
        a.push(parts[0].clone(), 1 << 20).unwrap();
        let e = a.push(heartbeat(), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("between the parts"), "{e}");

        let mut a = Assembler::default();
        let e = parts
            .iter()
            .find_map(|p| a.push(p.clone(), 10_000).err())
            .expect("too big");
        assert_eq!(e, PartsError::TooLarge(10_000));

        let garbage = AgentMessage {
            body: Some(Body::Part(Part {
                chunk: vec![0xff; 8],
                last: true,
            })),
        };
        let e = Assembler::default().push(garbage, 100).unwrap_err();
        assert!(matches!(e, PartsError::Undecodable(_)), "{e}");

        let nested = split(split(full(20_000), PART_BYTES).remove(0), 64);
        let mut a = Assembler::default();
        let e = nested
            .into_iter()
            .find_map(|p| a.push(p, 1 << 20).err())
            .expect("nested parts refused");
        assert_eq!(e, PartsError::Malformed("parts decode to another Part"));
    }
}
