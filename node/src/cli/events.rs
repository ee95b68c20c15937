//! `herald events put`: reads a JSONL file of events and sends them as `PutEvents`
//! requests (up to 100 endpoints per request, 100 events per endpoint) through
//! [`super::bulk`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};

use anyhow::Context;
use herald_proto::v1 as proto;
use herald_proto::v1::events_client::EventsClient;
use prost::Message;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::EventsPutArgs;
use super::bulk::{self, BatchOutcome, Chunk, RowError, StopSignal};
use super::import::JsonLines;
use super::output;
use super::records::{EventRecord, PreparedEvent};

/// Most endpoints in one `PutEvents` request (the server's `items_per_batch`).
const ENDPOINTS_PER_REQUEST: usize = 100;

/// Most events of one endpoint in one `PutEvents` request.
const EVENTS_PER_ENDPOINT: usize = 100;

/// Where one event of a request came from, to map its result back to the file.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSource {
    /// 1-based line of the file.
    pub line: u64,
    /// The endpoint the event belongs to.
    pub endpoint_id: String,
    /// The event id in the request.
    pub event_id: String,
}

impl EventSource {
    fn label(&self) -> String {
        format!("{}/{}", self.endpoint_id, self.event_id)
    }
}

/// One `PutEvents` request under construction, with the source of each event.
#[derive(Debug, Default)]
pub struct EventsBatch {
    batch_item: HashMap<String, proto::EventsBatch>,
    sources: Vec<EventSource>,
    encoded_bytes: usize,
}

impl EventsBatch {
    /// Whether `event` can join this request without passing a limit or replacing an
    /// event of the same id.
    fn has_room_for(&self, event: &PreparedEvent, event_bytes: usize) -> bool {
        if !self.sources.is_empty() && self.encoded_bytes + event_bytes > bulk::MAXIMUM_BATCH_BYTES
        {
            return false;
        }
        match self.batch_item.get(&event.endpoint_id) {
            Some(endpoint_batch) => {
                endpoint_batch.events.len() < EVENTS_PER_ENDPOINT
                    && !endpoint_batch.events.contains_key(&event.event_id)
            }
            None => self.batch_item.len() < ENDPOINTS_PER_REQUEST,
        }
    }

    fn push(&mut self, line: u64, event: PreparedEvent, event_bytes: usize) {
        self.encoded_bytes += event_bytes;
        self.sources.push(EventSource {
            line,
            endpoint_id: event.endpoint_id.clone(),
            event_id: event.event_id.clone(),
        });
        self.batch_item
            .entry(event.endpoint_id)
            .or_default()
            .events
            .insert(event.event_id, event.event);
    }
}

/// Makes the ids of events that have none: unique per run and line, so a retried request
/// sends the same ids again.
#[derive(Debug, Clone)]
pub struct EventIdGenerator {
    run_prefix: String,
}

impl EventIdGenerator {
    /// A generator whose ids start with `run_prefix`.
    pub fn new(run_prefix: impl Into<String>) -> Self {
        Self {
            run_prefix: run_prefix.into(),
        }
    }

    /// A generator for this run, from the clock and the process id.
    pub fn for_this_run() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        Self::new(format!("cli-{nanos:x}-{:x}", std::process::id()))
    }

    /// The id of the event on `line`.
    pub fn event_id(&self, line: u64) -> String {
        format!("{}-{line}", self.run_prefix)
    }
}

/// Parses one line into an event; `now` (RFC 3339) is the default timestamp.
pub fn prepare_line(
    line: u64,
    text: Result<String, String>,
    ids: &EventIdGenerator,
    now: &str,
) -> Result<PreparedEvent, RowError> {
    let record = text
        .and_then(|text| EventRecord::from_json(&text))
        .map_err(|message| RowError::local(line, "", message))?;
    let endpoint_id = record.endpoint_id.clone();
    record
        .prepare(ids.event_id(line), now)
        .map_err(|message| RowError::local(line, endpoint_id, message))
}

/// Reads every line, grouping events into requests and handing a chunk over each time a
/// request is full; stops early when `stop` is set or the receiver is gone. Runs on a
/// blocking thread.
fn read_event_chunks<R: Read>(
    mut lines: JsonLines<BufReader<R>>,
    ids: &EventIdGenerator,
    chunks: &mpsc::Sender<anyhow::Result<Chunk<EventsBatch>>>,
    stop: &StopSignal,
    progress: &indicatif::ProgressBar,
) {
    let mut chunk = empty_chunk();
    loop {
        if stop.is_set() {
            return;
        }
        let (line, text) = match lines.next_line() {
            Ok(Some(numbered)) => numbered,
            Ok(None) => break,
            Err(error) => {
                let _ = chunks.blocking_send(Err(
                    anyhow::Error::new(error).context("cannot read the file")
                ));
                return;
            }
        };
        progress.set_position(lines.bytes_read());
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match prepare_line(line, text, ids, &now) {
            Err(error) => chunk.refused.push(error),
            Ok(event) => {
                let event_bytes =
                    event.event.encoded_len() + event.endpoint_id.len() + event.event_id.len();
                let has_room = chunk
                    .batch
                    .as_ref()
                    .is_none_or(|batch| batch.has_room_for(&event, event_bytes));
                if !has_room {
                    let full = std::mem::replace(&mut chunk, empty_chunk());
                    if chunks.blocking_send(Ok(full)).is_err() {
                        return;
                    }
                }
                chunk
                    .batch
                    .get_or_insert_with(EventsBatch::default)
                    .push(line, event, event_bytes);
            }
        }
        chunk.rows_read += 1;
        if chunk.refused.len() >= EVENTS_PER_ENDPOINT {
            let full = std::mem::replace(&mut chunk, empty_chunk());
            if chunks.blocking_send(Ok(full)).is_err() {
                return;
            }
        }
    }
    if chunk.rows_read > 0 {
        let _ = chunks.blocking_send(Ok(chunk));
    }
}

fn empty_chunk() -> Chunk<EventsBatch> {
    Chunk {
        batch: None,
        refused: Vec::new(),
        rows_read: 0,
    }
}

/// Maps the results of a `PutEvents` answer back to file lines: an event is stored when its
/// own result is 2xx; without its own result, the endpoint's result decides.
pub fn events_outcome(
    sources: &[EventSource],
    response: &proto::PutEventsResponse,
) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    for source in sources {
        let endpoint_results = response.results.get(&source.endpoint_id);
        let result = endpoint_results.and_then(|results| {
            results
                .events_item_response
                .get(&source.event_id)
                .or(results.endpoint_item_response.as_ref())
        });
        let Some(result) = result else {
            outcome.rejected.push(RowError::local(
                source.line,
                source.label(),
                "the server sent no result for this event",
            ));
            continue;
        };
        if bulk::is_accepted(result.status_code) {
            outcome.accepted += 1;
            continue;
        }
        let endpoint_prefix = format!("batch_item[{:?}].", source.endpoint_id);
        let event_prefix = format!("{endpoint_prefix}events[{:?}].", source.event_id);
        let prefix = if result.field.starts_with(&event_prefix) {
            event_prefix
        } else {
            endpoint_prefix
        };
        outcome.rejected.push(RowError::from_server(
            source.line,
            source.label(),
            result,
            &prefix,
        ));
    }
    outcome
}

async fn send_events_batch(
    client: EventsClient<Channel>,
    project_id: String,
    batch: EventsBatch,
) -> BatchOutcome {
    let request = proto::PutEventsRequest {
        project_id,
        batch_item: batch.batch_item,
    };
    let answer = bulk::call_with_retry(|| {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.put_events(request).await }
    })
    .await;
    match answer {
        Ok(response) => events_outcome(&batch.sources, response.get_ref()),
        Err(status) => BatchOutcome {
            failure: Some((batch.sources.len() as u64, output::status_text(&status))),
            ..BatchOutcome::default()
        },
    }
}

/// Runs `herald events put`.
pub async fn run(channel: Channel, arguments: EventsPutArgs, json: bool) -> anyhow::Result<()> {
    let path = arguments.file;
    let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let total_bytes = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let lines = JsonLines::new(BufReader::new(file));

    let concurrency = usize::from(arguments.concurrency);
    let (sender, receiver) = mpsc::channel(concurrency);
    let stop = StopSignal::default();
    let progress = bulk::file_progress_bar(total_bytes, json);
    let reader = {
        let stop = stop.clone();
        let progress = progress.clone();
        let ids = EventIdGenerator::for_this_run();
        tokio::task::spawn_blocking(move || {
            read_event_chunks(lines, &ids, &sender, &stop, &progress);
        })
    };

    let client = EventsClient::new(channel);
    let project_id = arguments.project;
    let report = bulk::send_chunks(
        receiver,
        stop,
        concurrency,
        |batch| send_events_batch(client.clone(), project_id.clone(), batch),
        &progress,
        "accepted",
    )
    .await;
    reader.await.context("the file reader failed")?;
    report.finish(json, "accepted")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks_of(text: &str) -> Vec<Chunk<EventsBatch>> {
        let lines = JsonLines::new(BufReader::new(text.as_bytes()));
        let (sender, mut receiver) = mpsc::channel(1024);
        read_event_chunks(
            lines,
            &EventIdGenerator::new("run"),
            &sender,
            &StopSignal::default(),
            &indicatif::ProgressBar::hidden(),
        );
        drop(sender);
        let mut chunks = Vec::new();
        while let Ok(chunk) = receiver.try_recv() {
            chunks.push(chunk.expect("no read error"));
        }
        chunks
    }

    fn event_line(endpoint_id: &str, event_id: &str) -> String {
        format!(
            "{{\"endpoint_id\":\"{endpoint_id}\",\"event_id\":\"{event_id}\",\"event_type\":\"purchase\",\"timestamp\":\"2026-01-01T00:00:00Z\"}}\n"
        )
    }

    /// Events of one endpoint share its batch item; bad lines are errors on their line and
    /// events without an id get one made from the line.
    #[test]
    fn events_group_by_endpoint_and_keep_lines() {
        let text = format!(
            "{}not json\n{}{{\"endpoint_id\":\"e2\",\"event_type\":\"open\"}}\n",
            event_line("e1", "a"),
            event_line("e1", "b"),
        );
        let chunks = chunks_of(&text);
        assert_eq!(chunks.len(), 1);
        let chunk = &chunks[0];
        assert_eq!(chunk.rows_read, 4);
        assert_eq!(chunk.refused.len(), 1);
        assert_eq!(chunk.refused[0].line, 2);
        let batch = chunk.batch.as_ref().expect("batch");
        assert_eq!(batch.batch_item["e1"].events.len(), 2);
        let generated = &batch.batch_item["e2"].events["run-4"];
        assert_eq!(generated.event_type, "open");
        assert!(
            !generated.timestamp.is_empty(),
            "the timestamp defaults to now"
        );
        let lines: Vec<u64> = batch.sources.iter().map(|source| source.line).collect();
        assert_eq!(lines, vec![1, 3, 4]);
    }

    /// A request holds at most 100 events per endpoint and 100 endpoints.
    #[test]
    fn requests_respect_the_batch_limits() {
        let same_endpoint: String = (0..150)
            .map(|index| event_line("e1", &index.to_string()))
            .collect();
        let per_endpoint: Vec<usize> = chunks_of(&same_endpoint)
            .iter()
            .map(|chunk| {
                chunk.batch.as_ref().expect("batch").batch_item["e1"]
                    .events
                    .len()
            })
            .collect();
        assert_eq!(per_endpoint, vec![100, 50]);

        let many_endpoints: String = (0..250)
            .map(|index| event_line(&format!("e{index}"), "x"))
            .collect();
        let endpoints: Vec<usize> = chunks_of(&many_endpoints)
            .iter()
            .map(|chunk| chunk.batch.as_ref().expect("batch").batch_item.len())
            .collect();
        assert_eq!(endpoints, vec![100, 100, 50]);
    }

    /// Two events with the same id for one endpoint go in separate requests rather than
    /// one silently replacing the other.
    #[test]
    fn repeated_event_id_starts_a_new_request() {
        let text = format!("{}{}", event_line("e1", "a"), event_line("e1", "a"));
        assert_eq!(chunks_of(&text).len(), 2);
    }

    /// Each event's result maps back to its line; the endpoint's result stands in for
    /// events without their own.
    #[test]
    fn results_map_back_to_lines() {
        let sources = vec![
            EventSource {
                line: 1,
                endpoint_id: "e1".into(),
                event_id: "a".into(),
            },
            EventSource {
                line: 2,
                endpoint_id: "e1".into(),
                event_id: "b".into(),
            },
            EventSource {
                line: 3,
                endpoint_id: "e2".into(),
                event_id: "c".into(),
            },
            EventSource {
                line: 4,
                endpoint_id: "e3".into(),
                event_id: "d".into(),
            },
        ];
        let item = |status_code: i32, message: &str, field: &str| proto::ItemResult {
            status_code,
            message: message.to_string(),
            field: field.to_string(),
        };
        let mut response = proto::PutEventsResponse::default();
        response.results.insert(
            "e1".into(),
            proto::EventsItemResponse {
                endpoint_item_response: Some(item(202, "accepted", "")),
                events_item_response: HashMap::from([
                    ("a".to_string(), item(202, "accepted", "")),
                    (
                        "b".to_string(),
                        item(400, "is not an RFC 3339 timestamp", "timestamp"),
                    ),
                ]),
            },
        );
        response.results.insert(
            "e2".into(),
            proto::EventsItemResponse {
                endpoint_item_response: Some(item(500, "storage failed", "")),
                events_item_response: HashMap::new(),
            },
        );
        let outcome = events_outcome(&sources, &response);
        assert_eq!(outcome.accepted, 1);
        let rejected: Vec<(u64, &str)> = outcome
            .rejected
            .iter()
            .map(|error| (error.line, error.id.as_str()))
            .collect();
        assert_eq!(rejected, vec![(2, "e1/b"), (3, "e2/c"), (4, "e3/d")]);
        assert_eq!(outcome.rejected[0].field, "timestamp");
        assert_eq!(outcome.rejected[1].message, "storage failed (status 500)");
    }
}
