//! The engine shared by the bulk commands (`endpoint import`, `events put`): a blocking
//! thread reads the file and hands over batches, a few batches are in flight at once,
//! every row ends up counted, and the user sees a progress bar and a final report.

use std::future::Future;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use herald_proto::v1 as proto;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Most errors a report keeps (and prints); beyond it only the count grows, so a file of
/// millions of bad rows cannot exhaust memory.
const MAXIMUM_KEPT_ERRORS: usize = 10_000;

/// Most attempts of one batch while the server answers `Unavailable` (e.g. during a leader
/// election); the batch writes are upserts keyed by id, so sending twice is harmless.
const MAXIMUM_ATTEMPTS: u32 = 6;

/// Wait before the first retry; doubled on each further one.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Largest encoded size of the items of one request; the server refuses messages over
/// 4 MiB, and the envelope needs some room.
pub const MAXIMUM_BATCH_BYTES: usize = 3 * 1024 * 1024;

/// A row that was not stored: refused while reading the file, or by the server.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    /// 1-based line of the file where the row starts.
    pub line: u64,
    /// The id of what the row is about, when it could be read.
    pub id: String,
    /// The bad field as the server names it, when it names one.
    pub field: String,
    /// What was wrong.
    pub message: String,
}

impl RowError {
    /// A row refused before sending, for `message`.
    pub fn local(line: u64, id: impl Into<String>, message: impl Into<String>) -> Self {
        Self::at(line, id, "", message)
    }

    /// A row refused before sending because of `field` (empty when none is named).
    pub fn at(
        line: u64,
        id: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            line,
            id: id.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl RowError {
    /// A row the server refused: the field without `item_prefix` (the path of the item in
    /// the request, e.g. `items[3].`, since the line already says which row it is), the
    /// message without a repeated field path, and the status when it is not the usual 400.
    pub fn from_server(
        line: u64,
        id: impl Into<String>,
        result: &proto::ItemResult,
        item_prefix: &str,
    ) -> Self {
        let message = result
            .message
            .strip_prefix(&format!("{}: ", result.field))
            .filter(|_| !result.field.is_empty())
            .unwrap_or(&result.message);
        let message = if result.status_code == 400 {
            message.to_string()
        } else {
            format!("{message} (status {})", result.status_code)
        };
        let field = result
            .field
            .strip_prefix(item_prefix)
            .unwrap_or(&result.field);
        Self {
            line,
            id: id.into(),
            field: field.to_string(),
            message,
        }
    }
}

impl std::fmt::Display for RowError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "line {}", self.line)?;
        if !self.id.is_empty() {
            write!(formatter, " ({})", self.id)?;
        }
        write!(formatter, ": ")?;
        if !self.field.is_empty() {
            write!(formatter, "{}: ", self.field)?;
        }
        write!(formatter, "{}", self.message)
    }
}

/// What the file reader hands over: a batch to send (if any row of it was readable) and the
/// rows it refused on the way.
#[derive(Debug)]
pub struct Chunk<Batch> {
    /// The request to send, with what is needed to map results back to lines.
    pub batch: Option<Batch>,
    /// Rows that could not be read or converted.
    pub refused: Vec<RowError>,
    /// Rows in this chunk, sent or refused.
    pub rows_read: u64,
}

/// What sending one batch gave.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Rows the server stored.
    pub accepted: u64,
    /// Rows the server refused, with the reason.
    pub rejected: Vec<RowError>,
    /// When the whole batch failed (transport error, server error): the rows it held and why.
    pub failure: Option<(u64, String)>,
}

/// Counts and errors of a bulk command, printed at the end.
#[derive(Debug, Default)]
pub struct BulkReport {
    /// Rows (non-blank lines, CSV records) read from the file.
    pub rows_read: u64,
    /// Rows the server stored.
    pub accepted: u64,
    /// Rows refused, locally or by the server.
    pub rejected: u64,
    /// Rows read but never stored because a batch failed as a whole or the command stopped.
    pub not_sent: u64,
    /// The first errors, at most [`MAXIMUM_KEPT_ERRORS`].
    pub errors: Vec<RowError>,
    /// Errors counted but not kept.
    pub errors_omitted: u64,
    /// Why the command stopped before the end of the file, if it did.
    pub stopped_because: Option<String>,
    /// Whether the stop came from reading the file (rather than from the server).
    pub stopped_while_reading: bool,
}

impl BulkReport {
    fn keep_error(&mut self, error: RowError) {
        self.rejected += 1;
        if self.errors.len() < MAXIMUM_KEPT_ERRORS {
            self.errors.push(error);
        } else {
            self.errors_omitted += 1;
        }
    }

    fn stop(&mut self, reason: String, while_reading: bool) {
        if self.stopped_because.is_none() {
            self.stopped_because = Some(reason);
            self.stopped_while_reading = while_reading;
        }
    }

    /// The report as JSON; `accepted_label` names the stored rows (`imported`, `accepted`).
    pub fn to_json(&self, accepted_label: &str) -> serde_json::Value {
        let errors: Vec<serde_json::Value> = self
            .errors
            .iter()
            .map(|error| {
                json!({
                    "line": error.line,
                    "id": error.id,
                    "field": error.field,
                    "message": error.message,
                })
            })
            .collect();
        let mut report = serde_json::Map::new();
        report.insert("rows_read".into(), json!(self.rows_read));
        report.insert(accepted_label.into(), json!(self.accepted));
        report.insert("rejected".into(), json!(self.rejected));
        report.insert("not_sent".into(), json!(self.not_sent));
        report.insert("errors".into(), json!(errors));
        report.insert("errors_omitted".into(), json!(self.errors_omitted));
        report.insert("stopped_because".into(), json!(self.stopped_because));
        serde_json::Value::Object(report)
    }

    /// The report for people: one line per error, then the counts.
    pub fn to_text(&self, accepted_label: &str) -> String {
        let mut text = String::new();
        for error in &self.errors {
            text.push_str(&format!("{error}\n"));
        }
        if self.errors_omitted > 0 {
            text.push_str(&format!("... and {} more errors\n", self.errors_omitted));
        }
        if let Some(reason) = &self.stopped_because {
            text.push_str(&format!("stopped early: {reason}\n"));
        }
        text.push_str(&format!(
            "rows read {}, {accepted_label} {}, rejected {}",
            self.rows_read, self.accepted, self.rejected
        ));
        if self.not_sent > 0 {
            text.push_str(&format!(", not sent {}", self.not_sent));
        }
        text.push('\n');
        text
    }

    /// Prints the report, then fails if the file could not be read to the end, or if nothing
    /// was stored because the server could not be reached.
    pub fn finish(mut self, json: bool, accepted_label: &str) -> anyhow::Result<()> {
        self.errors.sort_by_key(|error| error.line);
        if json {
            println!("{:#}", self.to_json(accepted_label));
        } else {
            print!("{}", self.to_text(accepted_label));
        }
        let Some(reason) = &self.stopped_because else {
            return Ok(());
        };
        if self.stopped_while_reading {
            anyhow::bail!("the file could not be read to the end: {reason}");
        }
        if self.accepted == 0 {
            anyhow::bail!("nothing was {accepted_label}: {reason}");
        }
        Ok(())
    }

    fn progress_message(&self, accepted_label: &str) -> String {
        format!(
            "{accepted_label} {}, rejected {}",
            self.accepted, self.rejected
        )
    }
}

/// A progress bar over the bytes of a file, on stderr; hidden when stderr is not a terminal
/// or when the output is JSON (scripts read it).
pub fn file_progress_bar(total_bytes: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let progress = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "[{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta}) {msg}",
    ) {
        progress.set_style(style);
    }
    progress
}

/// Tells the reader thread and the sender to stop taking new rows.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What became of one chunk.
enum ChunkOutcome {
    Read {
        rows_read: u64,
        refused: Vec<RowError>,
        sent: Option<BatchOutcome>,
    },
    ReadFailed(anyhow::Error),
}

/// Sends the chunks the reader produces, at most `concurrency` batches at once, and counts
/// every row; after a failed batch or a read error it stops taking new chunks, lets the
/// batches in flight finish, and counts the rest as not sent.
pub async fn send_chunks<Batch, Send, Sending>(
    chunks: mpsc::Receiver<anyhow::Result<Chunk<Batch>>>,
    stop: StopSignal,
    concurrency: usize,
    send: Send,
    progress: &ProgressBar,
    accepted_label: &str,
) -> BulkReport
where
    Send: Fn(Batch) -> Sending,
    Sending: Future<Output = BatchOutcome>,
{
    let send = &send;
    let stop_for_sending = stop.clone();
    let stop_for_sending = &stop_for_sending;
    let mut outcomes = ReceiverStream::new(chunks)
        .map(|chunk| async move {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => return ChunkOutcome::ReadFailed(error),
            };
            let sent = match chunk.batch {
                Some(_) if stop_for_sending.is_set() => Some(BatchOutcome {
                    failure: Some((chunk.rows_read - chunk.refused.len() as u64, String::new())),
                    ..BatchOutcome::default()
                }),
                Some(batch) => Some(send(batch).await),
                None => None,
            };
            ChunkOutcome::Read {
                rows_read: chunk.rows_read,
                refused: chunk.refused,
                sent,
            }
        })
        .buffer_unordered(concurrency.max(1));

    let mut report = BulkReport::default();
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            ChunkOutcome::ReadFailed(error) => {
                report.stop(format!("{error:#}"), true);
                stop.set();
            }
            ChunkOutcome::Read {
                rows_read,
                refused,
                sent,
            } => {
                report.rows_read += rows_read;
                for error in refused {
                    report.keep_error(error);
                }
                if let Some(sent) = sent {
                    report.accepted += sent.accepted;
                    for error in sent.rejected {
                        report.keep_error(error);
                    }
                    if let Some((rows, reason)) = sent.failure {
                        report.not_sent += rows;
                        if !reason.is_empty() {
                            report.stop(reason, false);
                        }
                        stop.set();
                    }
                }
            }
        }
        progress.set_message(report.progress_message(accepted_label));
    }
    progress.finish_and_clear();
    report
}

/// Calls `call` until it succeeds, fails for a reason other than `Unavailable`, or has been
/// tried [`MAXIMUM_ATTEMPTS`] times.
pub async fn call_with_retry<Answer, Call, Calling>(mut call: Call) -> Result<Answer, tonic::Status>
where
    Call: FnMut() -> Calling,
    Calling: Future<Output = Result<Answer, tonic::Status>>,
{
    let mut attempt = 1;
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        match call().await {
            Err(status)
                if status.code() == tonic::Code::Unavailable && attempt < MAXIMUM_ATTEMPTS =>
            {
                tokio::time::sleep(delay).await;
                attempt += 1;
                delay *= 2;
            }
            answer => return answer,
        }
    }
}

/// Whether an item result means "stored" (2xx).
pub fn is_accepted(status_code: i32) -> bool {
    (200..300).contains(&status_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(
        rows_read: u64,
        batch: Option<u64>,
        refused_lines: &[u64],
    ) -> anyhow::Result<Chunk<u64>> {
        Ok(Chunk {
            batch,
            refused: refused_lines
                .iter()
                .map(|line| RowError::local(*line, "", "bad"))
                .collect(),
            rows_read,
        })
    }

    /// Every row is counted once: stored, refused locally, refused by the server, or not
    /// sent after a batch failed; the failure stops the command and is reported.
    #[tokio::test]
    async fn every_row_is_counted_once() {
        let (sender, receiver) = mpsc::channel(8);
        sender.send(chunk(3, Some(3), &[])).await.expect("open");
        sender.send(chunk(2, Some(1), &[4])).await.expect("open");
        sender.send(chunk(2, Some(99), &[])).await.expect("open");
        drop(sender);
        let report = send_chunks(
            receiver,
            StopSignal::default(),
            1,
            |rows: u64| async move {
                if rows == 99 {
                    return BatchOutcome {
                        failure: Some((2, "server unavailable".to_string())),
                        ..BatchOutcome::default()
                    };
                }
                BatchOutcome {
                    accepted: rows - 1,
                    rejected: vec![RowError::local(10 + rows, "e", "refused")],
                    failure: None,
                }
            },
            &ProgressBar::hidden(),
            "imported",
        )
        .await;
        assert_eq!(report.rows_read, 7);
        assert_eq!(report.accepted, 2);
        assert_eq!(report.rejected, 3);
        assert_eq!(report.not_sent, 2);
        assert_eq!(
            report.stopped_because.as_deref(),
            Some("server unavailable")
        );
        assert!(
            report.finish(true, "imported").is_ok(),
            "some rows were imported"
        );
    }

    /// A server that is down for the whole import makes the command fail.
    #[tokio::test]
    async fn nothing_imported_because_of_the_server_is_an_error() {
        let (sender, receiver) = mpsc::channel(8);
        sender.send(chunk(1, Some(1), &[])).await.expect("open");
        drop(sender);
        let report = send_chunks(
            receiver,
            StopSignal::default(),
            2,
            |rows: u64| async move {
                BatchOutcome {
                    failure: Some((rows, "connection refused".to_string())),
                    ..BatchOutcome::default()
                }
            },
            &ProgressBar::hidden(),
            "imported",
        )
        .await;
        let error = report
            .finish(true, "imported")
            .expect_err("nothing imported");
        assert!(error.to_string().contains("connection refused"), "{error}");
    }

    /// The text report names the line, the id and the field of each error.
    #[test]
    fn text_report_lists_errors_then_counts() {
        let mut report = BulkReport {
            rows_read: 2,
            accepted: 1,
            ..BulkReport::default()
        };
        report.keep_error(RowError {
            line: 3,
            id: "e2".to_string(),
            field: "endpoint.address".to_string(),
            message: "\"x\" is not an email address".to_string(),
        });
        assert_eq!(
            report.to_text("imported"),
            "line 3 (e2): endpoint.address: \"x\" is not an email address\n\
             rows read 2, imported 1, rejected 1\n"
        );
    }
}
