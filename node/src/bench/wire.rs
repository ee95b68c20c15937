//! `PutEvents` on the wire for the bench client, kept cheap because the client shares the
//! machine's cores with the server it measures: requests are encoded once before the timed
//! phase and only their event ids are rewritten per send, and responses are decoded only as
//! far as counting accepted events.

use std::sync::Arc;

use herald_proto::v1::PutEventsRequest;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The gRPC path of `herald.v1.Events/PutEvents`.
pub const PUT_EVENTS_PATH: &str = "/herald.v1.Events/PutEvents";

/// Placeholder for the send's sequence number inside each event id of a template; as wide
/// as [`SEQUENCE_HEX_DIGITS`] so that rewriting it keeps every length prefix valid.
pub const SEQUENCE_PLACEHOLDER: &str = "############";

/// Hex digits of the sequence number written into event ids.
const SEQUENCE_HEX_DIGITS: usize = SEQUENCE_PLACEHOLDER.len();

/// The status code of an accepted item.
pub const ACCEPTED: i32 = 202;

/// A `PutEventsRequest` encoded once, whose event ids each hold [`SEQUENCE_PLACEHOLDER`].
#[derive(Debug, Clone)]
pub struct EncodedPutEvents {
    /// The encoded request, placeholders included.
    bytes: Box<[u8]>,
    /// Where each placeholder starts in `bytes`, ascending.
    placeholder_offsets: Box<[usize]>,
}

impl EncodedPutEvents {
    /// Encodes `request`, whose event ids must each contain [`SEQUENCE_PLACEHOLDER`] once
    /// (and nothing else in it may), so that sends with distinct sequence numbers carry
    /// distinct event ids.
    pub fn new(request: &PutEventsRequest) -> Result<Self, String> {
        let events: usize = request
            .batch_item
            .values()
            .map(|batch| batch.events.len())
            .sum();
        let bytes = request.encode_to_vec().into_boxed_slice();
        let placeholder = SEQUENCE_PLACEHOLDER.as_bytes();
        let mut placeholder_offsets = Vec::with_capacity(events);
        let mut offset = 0;
        while offset + placeholder.len() <= bytes.len() {
            if bytes[offset..].starts_with(placeholder) {
                placeholder_offsets.push(offset);
                offset += placeholder.len();
            } else {
                offset += 1;
            }
        }
        if placeholder_offsets.len() != events {
            return Err(format!(
                "the request has {events} events but {} sequence placeholders",
                placeholder_offsets.len()
            ));
        }
        Ok(Self {
            bytes,
            placeholder_offsets: placeholder_offsets.into_boxed_slice(),
        })
    }

    /// Events in the request.
    pub fn events(&self) -> u64 {
        self.placeholder_offsets.len() as u64
    }

    /// Writes the request with `sequence` in hex in place of every placeholder.
    pub fn write_to(&self, sequence: u64, dst: &mut impl BufMut) {
        let digits = hex_digits(sequence);
        let mut copied = 0;
        for &offset in &self.placeholder_offsets {
            dst.put_slice(&self.bytes[copied..offset]);
            dst.put_slice(&digits);
            copied = offset + SEQUENCE_HEX_DIGITS;
        }
        dst.put_slice(&self.bytes[copied..]);
    }
}

/// The low 48 bits of `value` as fixed-width lowercase hex.
fn hex_digits(value: u64) -> [u8; SEQUENCE_HEX_DIGITS] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0; SEQUENCE_HEX_DIGITS];
    for (position, digit) in digits.iter_mut().rev().enumerate() {
        *digit = HEX[((value >> (4 * position)) & 0xf) as usize];
    }
    digits
}

/// One send: which template, with which sequence number.
#[derive(Debug, Clone)]
pub struct PutEventsSend {
    /// The templates of the run, shared by every worker.
    pub templates: Arc<[EncodedPutEvents]>,
    /// The template to send.
    pub template: usize,
    /// Written into the event ids; distinct for every send of a run.
    pub sequence: u64,
}

/// What a `PutEventsResponse` says, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutEventsTally {
    /// Events answered with [`ACCEPTED`].
    pub accepted: u64,
    /// The first other answer, as `status_code message`, to explain failures.
    pub first_rejection: Option<String>,
}

/// A codec that sends [`PutEventsSend`] and receives [`PutEventsTally`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PutEventsCodec;

impl Codec for PutEventsCodec {
    type Encode = PutEventsSend;
    type Decode = PutEventsTally;
    type Encoder = PutEventsCodec;
    type Decoder = PutEventsCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for PutEventsCodec {
    type Item = PutEventsSend;
    type Error = Status;

    fn encode(&mut self, send: PutEventsSend, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        send.templates[send.template].write_to(send.sequence, dst);
        Ok(())
    }
}

impl Decoder for PutEventsCodec {
    type Item = PutEventsTally;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<PutEventsTally>, Status> {
        tally_response(src)
            .map(Some)
            .map_err(|error| Status::internal(format!("cannot decode PutEventsResponse: {error}")))
    }
}

/// Counts the accepted events of an encoded `PutEventsResponse`.
pub fn tally_response(encoded: impl Buf) -> Result<PutEventsTally, prost::DecodeError> {
    let response = ResponseResults::decode(encoded)?;
    let mut tally = PutEventsTally::default();
    let results = response
        .results
        .iter()
        .filter_map(|entry| entry.value.as_ref());
    for result in results.flat_map(|endpoint| &endpoint.events) {
        let status = result.value.as_ref().map_or(0, |status| status.status_code);
        if status == ACCEPTED {
            tally.accepted += 1;
        } else if tally.first_rejection.is_none() {
            let message = result
                .value
                .as_ref()
                .map_or("", |status| status.message.as_str());
            tally.first_rejection = Some(format!("event answered {status} {message}"));
        }
    }
    Ok(tally)
}

// The types below read `PutEventsResponse` (herald/v1/events.proto) decoding only status codes
// and messages: a map is on the wire a repeated entry message with the key as field 1 and the
// value as field 2, and the keys (ids), which the tally does not need, are skipped unread.

/// `PutEventsResponse`.
#[derive(Clone, PartialEq, Message)]
struct ResponseResults {
    /// `results`: endpoint id -> its results.
    #[prost(message, repeated, tag = "1")]
    results: Vec<EndpointResultsEntry>,
}

/// An entry of `PutEventsResponse.results`, without its key.
#[derive(Clone, PartialEq, Message)]
struct EndpointResultsEntry {
    #[prost(message, optional, tag = "2")]
    value: Option<EventResults>,
}

/// `EventsItemResponse`, without `endpoint_item_response`.
#[derive(Clone, PartialEq, Message)]
struct EventResults {
    /// `events_item_response`: event id -> its result.
    #[prost(message, repeated, tag = "2")]
    events: Vec<EventResultEntry>,
}

/// An entry of `EventsItemResponse.events_item_response`, without its key.
#[derive(Clone, PartialEq, Message)]
struct EventResultEntry {
    #[prost(message, optional, tag = "2")]
    value: Option<ItemStatus>,
}

/// `ItemResult`, without `field`.
#[derive(Clone, PartialEq, Message)]
struct ItemStatus {
    #[prost(int32, tag = "1")]
    status_code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use herald_proto::v1::{Event, EventsBatch, EventsItemResponse, ItemResult, PutEventsResponse};

    use super::*;

    fn request_with_placeholders(endpoints: usize, events_per_endpoint: usize) -> PutEventsRequest {
        let batch_item = (0..endpoints)
            .map(|endpoint| {
                let events = (0..events_per_endpoint)
                    .map(|event| {
                        let id = format!("ev-{SEQUENCE_PLACEHOLDER}-{endpoint}-{event}");
                        let event = Event {
                            event_type: "app.view".to_owned(),
                            timestamp: "2026-11-25T12:00:00Z".to_owned(),
                            ..Event::default()
                        };
                        (id, event)
                    })
                    .collect();
                (
                    format!("endpoint-{endpoint}"),
                    EventsBatch {
                        endpoint: None,
                        events,
                    },
                )
            })
            .collect();
        PutEventsRequest {
            project_id: "project".to_owned(),
            batch_item,
        }
    }

    fn send(template: &EncodedPutEvents, sequence: u64) -> PutEventsRequest {
        let mut bytes = Vec::new();
        template.write_to(sequence, &mut bytes);
        PutEventsRequest::decode(bytes.as_slice()).unwrap()
    }

    fn event_ids(request: &PutEventsRequest) -> HashSet<String> {
        request
            .batch_item
            .values()
            .flat_map(|batch| batch.events.keys().cloned())
            .collect()
    }

    /// Two sends of one template decode as the same request except for their event ids, which
    /// differ between sends, so a server never sees a repeated event id.
    #[test]
    fn sends_of_a_template_carry_distinct_event_ids() {
        let request = request_with_placeholders(3, 4);
        let template = EncodedPutEvents::new(&request).unwrap();
        assert_eq!(template.events(), 12);
        let first = send(&template, 1);
        let second = send(&template, 0xabc_def);
        let first_ids = event_ids(&first);
        let second_ids = event_ids(&second);
        assert_eq!(first_ids.len(), 12);
        assert_eq!(second_ids.len(), 12);
        assert!(first_ids.is_disjoint(&second_ids));
        assert!(second_ids.contains("ev-000000abcdef-2-3"));
        assert_eq!(first.project_id, "project");
        assert_eq!(first.batch_item.len(), 3);
    }

    /// A request whose events lack the placeholder cannot become a template.
    #[test]
    fn template_needs_a_placeholder_per_event() {
        let mut request = request_with_placeholders(1, 2);
        let batch = request.batch_item.values_mut().next().unwrap();
        let event = batch
            .events
            .remove(&format!("ev-{SEQUENCE_PLACEHOLDER}-0-0"))
            .unwrap();
        batch.events.insert("fixed-id".to_owned(), event);
        assert!(EncodedPutEvents::new(&request).is_err());
    }

    /// The tally reads a full `PutEventsResponse`, counting only 202 answers and keeping the
    /// first rejection's message.
    #[test]
    fn tally_counts_accepted_events_of_a_full_response() {
        let item = |status_code: i32, message: &str| ItemResult {
            status_code,
            message: message.to_owned(),
            field: String::new(),
        };
        let mut events_item_response = HashMap::new();
        events_item_response.insert("a".to_owned(), item(202, "Accepted"));
        events_item_response.insert("b".to_owned(), item(202, "Accepted"));
        events_item_response.insert("c".to_owned(), item(400, "timestamp is invalid"));
        let mut results = HashMap::new();
        results.insert(
            "endpoint".to_owned(),
            EventsItemResponse {
                endpoint_item_response: Some(item(202, "Accepted")),
                events_item_response,
            },
        );
        let encoded = PutEventsResponse { results }.encode_to_vec();
        let tally = tally_response(encoded.as_slice()).unwrap();
        assert_eq!(tally.accepted, 2);
        assert_eq!(
            tally.first_rejection.as_deref(),
            Some("event answered 400 timestamp is invalid")
        );
    }
}
