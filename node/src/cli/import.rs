//! `herald endpoint import`: reads a CSV or JSONL file row by row (never whole), and sends
//! the rows as `UpdateEndpointsBatch` requests through [`super::bulk`].

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;
use herald_proto::v1 as proto;
use herald_proto::v1::endpoints_client::EndpointsClient;
use prost::Message;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::bulk::{self, BatchOutcome, Chunk, RowError, StopSignal};
use super::output;
use super::records::{EndpointRecord, RecordError, parse_metric};
use super::{EndpointImportArgs, ImportFormat};

/// Reads non-blank lines with their 1-based numbers, counting bytes for the progress bar.
pub struct JsonLines<R> {
    reader: R,
    buffer: Vec<u8>,
    line_number: u64,
    bytes_read: u64,
}

/// One non-blank line: its number, and its text unless it was not UTF-8.
pub type NumberedLine = (u64, Result<String, String>);

impl<R: BufRead> JsonLines<R> {
    /// Lines of `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buffer: Vec::new(),
            line_number: 0,
            bytes_read: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next non-blank line, or `None` at the end; an `Err` only when reading fails.
    pub fn next_line(&mut self) -> io::Result<Option<NumberedLine>> {
        loop {
            self.buffer.clear();
            let length = self.reader.read_until(b'\n', &mut self.buffer)?;
            if length == 0 {
                return Ok(None);
            }
            self.line_number += 1;
            self.bytes_read += length as u64;
            let text = match std::str::from_utf8(&self.buffer) {
                Ok(text) => text.trim(),
                Err(error) => {
                    return Ok(Some((
                        self.line_number,
                        Err(format!("the line is not UTF-8: {error}")),
                    )));
                }
            };
            if text.is_empty() {
                continue;
            }
            return Ok(Some((self.line_number, Ok(text.to_string()))));
        }
    }
}

/// What one CSV column holds.
#[derive(Debug, Clone, PartialEq)]
enum CsvColumn {
    Id,
    Address,
    ChannelType,
    UserId,
    OptOut,
    EndpointStatus,
    EffectiveDate,
    RequestId,
    Timezone,
    Platform,
    PlatformVersion,
    Make,
    Model,
    ModelVersion,
    AppVersion,
    Locale,
    Country,
    City,
    Region,
    PostalCode,
    Latitude,
    Longitude,
    Attribute(String),
    Metric(String),
    UserAttribute(String),
}

/// The fixed column names, for the error about an unknown one.
const CSV_COLUMN_NAMES: &str = "id, channel_type, address, user_id, opt_out, endpoint_status, \
     effective_date, request_id, timezone, platform, platform_version, make, model, \
     model_version, app_version, locale, country, city, region, postal_code, latitude, \
     longitude, attributes.NAME, metrics.NAME, user_attributes.NAME";

impl CsvColumn {
    fn from_header(name: &str) -> Result<Self, String> {
        let prefixed = [
            (
                "attributes.",
                CsvColumn::Attribute as fn(String) -> CsvColumn,
            ),
            ("metrics.", CsvColumn::Metric),
            ("user_attributes.", CsvColumn::UserAttribute),
        ];
        for (prefix, column) in prefixed {
            if let Some(attribute_name) = name.strip_prefix(prefix) {
                if attribute_name.is_empty() {
                    return Err(format!("column {name:?} has no name after {prefix:?}"));
                }
                return Ok(column(attribute_name.to_string()));
            }
        }
        Ok(match name {
            "id" => Self::Id,
            "address" => Self::Address,
            "channel_type" => Self::ChannelType,
            "user_id" => Self::UserId,
            "opt_out" => Self::OptOut,
            "endpoint_status" => Self::EndpointStatus,
            "effective_date" => Self::EffectiveDate,
            "request_id" => Self::RequestId,
            "timezone" => Self::Timezone,
            "platform" => Self::Platform,
            "platform_version" => Self::PlatformVersion,
            "make" => Self::Make,
            "model" => Self::Model,
            "model_version" => Self::ModelVersion,
            "app_version" => Self::AppVersion,
            "locale" => Self::Locale,
            "country" => Self::Country,
            "city" => Self::City,
            "region" => Self::Region,
            "postal_code" => Self::PostalCode,
            "latitude" => Self::Latitude,
            "longitude" => Self::Longitude,
            _ => {
                return Err(format!(
                    "unknown column {name:?} (expected {CSV_COLUMN_NAMES})"
                ));
            }
        })
    }
}

/// The meaning of each column of a CSV file, from its header row.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvLayout {
    columns: Vec<CsvColumn>,
}

impl CsvLayout {
    /// Reads the header; an unknown, nameless or repeated column, or no `id` column, is an
    /// error naming the column.
    pub fn from_header(header: &csv::StringRecord) -> Result<Self, String> {
        let mut columns = Vec::with_capacity(header.len());
        let mut seen = std::collections::HashSet::new();
        for (index, name) in header.iter().enumerate() {
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("column {} of the header has no name", index + 1));
            }
            if !seen.insert(name) {
                return Err(format!("column {name:?} appears twice in the header"));
            }
            columns.push(CsvColumn::from_header(name)?);
        }
        if !columns.contains(&CsvColumn::Id) {
            return Err("the header has no \"id\" column".to_string());
        }
        Ok(Self { columns })
    }

    /// The endpoint a data row describes; empty cells are "not given", attribute cells hold
    /// several values separated by `;`. A bad cell is an error on its field.
    pub fn record(&self, row: &csv::StringRecord) -> Result<EndpointRecord, RecordError> {
        let mut record = EndpointRecord::default();
        for (column, cell) in self.columns.iter().zip(row.iter()) {
            let cell = cell.trim();
            if cell.is_empty() {
                continue;
            }
            let text = cell.to_string();
            match column {
                CsvColumn::Id => record.id = text,
                CsvColumn::Address => record.address = text,
                CsvColumn::ChannelType => record.channel_type = text,
                CsvColumn::UserId => record.user.user_id = text,
                CsvColumn::OptOut => record.opt_out = text,
                CsvColumn::EndpointStatus => record.endpoint_status = text,
                CsvColumn::EffectiveDate => record.effective_date = text,
                CsvColumn::RequestId => record.request_id = text,
                CsvColumn::Timezone => record.demographic.timezone = text,
                CsvColumn::Platform => record.demographic.platform = text,
                CsvColumn::PlatformVersion => record.demographic.platform_version = text,
                CsvColumn::Make => record.demographic.make = text,
                CsvColumn::Model => record.demographic.model = text,
                CsvColumn::ModelVersion => record.demographic.model_version = text,
                CsvColumn::AppVersion => record.demographic.app_version = text,
                CsvColumn::Locale => record.demographic.locale = text,
                CsvColumn::Country => record.location.country = text,
                CsvColumn::City => record.location.city = text,
                CsvColumn::Region => record.location.region = text,
                CsvColumn::PostalCode => record.location.postal_code = text,
                CsvColumn::Latitude => {
                    record.location.latitude = Some(parse_coordinate("latitude", cell)?)
                }
                CsvColumn::Longitude => {
                    record.location.longitude = Some(parse_coordinate("longitude", cell)?);
                }
                CsvColumn::Attribute(name) => {
                    record.attributes.insert(name.clone(), split_values(cell));
                }
                CsvColumn::Metric(name) => {
                    let value = parse_metric(name, cell).map_err(|message| {
                        RecordError::new(format!("endpoint.metrics[{name:?}]"), message)
                    })?;
                    record.metrics.insert(name.clone(), value);
                }
                CsvColumn::UserAttribute(name) => {
                    record
                        .user
                        .user_attributes
                        .insert(name.clone(), split_values(cell));
                }
            }
        }
        Ok(record)
    }
}

fn parse_coordinate(name: &str, cell: &str) -> Result<f64, RecordError> {
    match cell.parse::<f64>() {
        Ok(number) if number.is_finite() => Ok(number),
        _ => Err(RecordError::new(
            format!("endpoint.location.{name}"),
            format!("{name} {cell:?} is not a number"),
        )),
    }
}

/// `pro; max` → `["pro", "max"]`; empty parts are dropped.
fn split_values(cell: &str) -> Vec<String> {
    cell.split(';')
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_string)
        .collect()
}

/// Keeps the bytes the csv reader has taken but whose lines are not counted yet, so the
/// line a record starts on can be told exactly: the csv crate reports the line where it
/// started looking (before blank lines, and one line early after a CRLF ending).
struct LineCountingReader<R> {
    inner: R,
    /// Bytes from `uncounted_start` to what the csv reader has taken: at most one record
    /// and one read-ahead buffer.
    uncounted: VecDeque<u8>,
    uncounted_start: u64,
    newlines_counted: u64,
}

impl<R: Read> Read for LineCountingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let length = self.inner.read(buffer)?;
        self.uncounted.extend(&buffer[..length]);
        Ok(length)
    }
}

impl<R> LineCountingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            uncounted: VecDeque::new(),
            uncounted_start: 0,
            newlines_counted: 0,
        }
    }

    /// The 1-based line of the first byte at or after `start` that is not a line ending.
    /// Calls must come with `start` not decreasing.
    fn line_of_record_at(&mut self, start: u64) -> u64 {
        let passed = usize::try_from(start.saturating_sub(self.uncounted_start))
            .unwrap_or(usize::MAX)
            .min(self.uncounted.len());
        let newlines = self
            .uncounted
            .drain(..passed)
            .filter(|byte| *byte == b'\n')
            .count();
        self.newlines_counted += newlines as u64;
        self.uncounted_start += passed as u64;
        let mut line = self.newlines_counted + 1;
        for byte in &self.uncounted {
            match byte {
                b'\n' => line += 1,
                b'\r' => {}
                _ => break,
            }
        }
        line
    }
}

/// A CSV file's data rows, converted to endpoint records.
pub struct CsvEndpointRows<R> {
    reader: csv::Reader<LineCountingReader<R>>,
    layout: CsvLayout,
    row: csv::StringRecord,
}

impl<R: Read> CsvEndpointRows<R> {
    /// Reads the header of `reader`; errors name the bad column.
    pub fn new(reader: R) -> Result<Self, String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(LineCountingReader::new(reader));
        let header = reader
            .headers()
            .map_err(|error| format!("cannot read the CSV header: {error}"))?
            .clone();
        if header.is_empty() {
            return Err("the CSV file has no header row".to_string());
        }
        let layout = CsvLayout::from_header(&header)?;
        Ok(Self {
            reader,
            layout,
            row: csv::StringRecord::new(),
        })
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    fn line_at(&mut self, position: Option<&csv::Position>) -> u64 {
        let start = position.map_or(self.reader.position().byte(), csv::Position::byte);
        self.reader.get_mut().line_of_record_at(start)
    }

    /// The next data row, or `None` at the end; an `Err` only when reading fails.
    pub fn next_row(&mut self) -> io::Result<Option<(u64, Result<EndpointRecord, RecordError>)>> {
        match self.reader.read_record(&mut self.row) {
            Ok(false) => Ok(None),
            Ok(true) => {
                let position = self.row.position().cloned();
                let line = self.line_at(position.as_ref());
                Ok(Some((line, self.layout.record(&self.row))))
            }
            Err(error) => {
                let position = error.position().cloned();
                let message = match error.into_kind() {
                    csv::ErrorKind::Io(io_error) => return Err(io_error),
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("the row has {len} fields, the header has {expected_len}"),
                    csv::ErrorKind::Utf8 { err, .. } => format!("the row is not UTF-8: {err}"),
                    other => format!("cannot read the row: {other:?}"),
                };
                Ok(Some((
                    self.line_at(position.as_ref()),
                    Err(RecordError::row(message)),
                )))
            }
        }
    }
}

/// The rows of an import file, whatever its format.
pub enum EndpointRows<R> {
    /// A CSV file with a header row.
    Csv(CsvEndpointRows<R>),
    /// One JSON object per line.
    Jsonl(JsonLines<BufReader<R>>),
}

/// One row of an import file: its line, the endpoint id when readable, and the batch item.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRow {
    /// 1-based line where the row starts.
    pub line: u64,
    /// The item to send, or why the row cannot be sent.
    pub item: Result<proto::EndpointBatchItem, RowError>,
}

impl<R: Read> EndpointRows<R> {
    /// The rows of `reader` in `format`; a CSV header naming an unknown column is an error.
    pub fn open(reader: R, format: ImportFormat) -> Result<Self, String> {
        match format {
            ImportFormat::Csv => Ok(Self::Csv(CsvEndpointRows::new(reader)?)),
            ImportFormat::Jsonl => Ok(Self::Jsonl(JsonLines::new(BufReader::new(reader)))),
        }
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        match self {
            Self::Csv(rows) => rows.bytes_read(),
            Self::Jsonl(lines) => lines.bytes_read(),
        }
    }

    /// The next row, or `None` at the end; an `Err` only when reading fails.
    pub fn next_row(&mut self) -> io::Result<Option<EndpointRow>> {
        let (line, record) = match self {
            Self::Csv(rows) => match rows.next_row()? {
                Some(row) => row,
                None => return Ok(None),
            },
            Self::Jsonl(lines) => match lines.next_line()? {
                Some((line, text)) => (
                    line,
                    text.map_err(RecordError::row)
                        .and_then(|text| EndpointRecord::from_json(&text)),
                ),
                None => return Ok(None),
            },
        };
        let item = match record {
            Err(error) => Err(RowError::at(line, "", error.field, error.message)),
            Ok(record) => {
                let endpoint_id = record.id.clone();
                record
                    .into_batch_item()
                    .map_err(|error| RowError::at(line, endpoint_id, error.field, error.message))
            }
        };
        Ok(Some(EndpointRow { line, item }))
    }
}

/// The format a file name implies: `.csv` or `.jsonl` (also `.ndjson`, `.json`).
pub fn format_from_path(path: &Path) -> Result<ImportFormat, String> {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("csv") => Ok(ImportFormat::Csv),
        Some("jsonl" | "ndjson" | "json") => Ok(ImportFormat::Jsonl),
        _ => Err(format!(
            "cannot tell the format of {} from its extension (use .csv or .jsonl, or --format)",
            path.display()
        )),
    }
}

/// Items of one `UpdateEndpointsBatch` request and the line of each, in request order.
#[derive(Debug, Default)]
pub struct EndpointBatch {
    items: Vec<proto::EndpointBatchItem>,
    lines: Vec<u64>,
    encoded_bytes: usize,
}

/// Reads every row, handing over a chunk each time `batch_size` items are ready (or the
/// encoded items near the request size limit); stops early when `stop` is set or the
/// receiver is gone. Runs on a blocking thread.
fn read_endpoint_chunks<R: Read>(
    mut rows: EndpointRows<R>,
    batch_size: usize,
    chunks: &mpsc::Sender<anyhow::Result<Chunk<EndpointBatch>>>,
    stop: &StopSignal,
    progress: &indicatif::ProgressBar,
) {
    let mut chunk = empty_chunk();
    loop {
        if stop.is_set() {
            return;
        }
        let row = match rows.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(error) => {
                let _ = chunks.blocking_send(Err(
                    anyhow::Error::new(error).context("cannot read the file")
                ));
                return;
            }
        };
        progress.set_position(rows.bytes_read());
        match row.item {
            Err(error) => chunk.refused.push(error),
            Ok(item) => {
                let item_bytes = item.encoded_len();
                let gathered_bytes = chunk.batch.as_ref().map_or(0, |batch| batch.encoded_bytes);
                if gathered_bytes > 0 && gathered_bytes + item_bytes > bulk::MAXIMUM_BATCH_BYTES {
                    let full = std::mem::replace(&mut chunk, empty_chunk());
                    if chunks.blocking_send(Ok(full)).is_err() {
                        return;
                    }
                }
                let batch = chunk.batch.get_or_insert_with(EndpointBatch::default);
                batch.encoded_bytes += item_bytes;
                batch.items.push(item);
                batch.lines.push(row.line);
            }
        }
        chunk.rows_read += 1;
        let items = chunk.batch.as_ref().map_or(0, |batch| batch.items.len());
        if items >= batch_size || chunk.refused.len() >= batch_size {
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

fn empty_chunk() -> Chunk<EndpointBatch> {
    Chunk {
        batch: None,
        refused: Vec::new(),
        rows_read: 0,
    }
}

/// Maps the per-item results of a batch, in request order, back to file lines.
pub fn batch_outcome(
    lines: &[u64],
    items: &[proto::EndpointBatchItem],
    response: &proto::UpdateEndpointsBatchResponse,
) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    for (index, (line, item)) in lines.iter().zip(items).enumerate() {
        let Some(result) = response.results.get(index) else {
            outcome.rejected.push(RowError::local(
                *line,
                item.endpoint_id.clone(),
                "the server sent no result for this row",
            ));
            continue;
        };
        let item_result = result.result.clone().unwrap_or_default();
        if bulk::is_accepted(item_result.status_code) {
            outcome.accepted += 1;
            continue;
        }
        outcome.rejected.push(RowError::from_server(
            *line,
            item.endpoint_id.clone(),
            &item_result,
            &format!("items[{index}]."),
        ));
    }
    outcome
}

async fn send_endpoint_batch(
    client: EndpointsClient<Channel>,
    project_id: String,
    batch: EndpointBatch,
) -> BatchOutcome {
    let request = proto::UpdateEndpointsBatchRequest {
        project_id,
        items: batch.items,
    };
    let answer = bulk::call_with_retry(|| {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.update_endpoints_batch(request).await }
    })
    .await;
    match answer {
        Ok(response) => batch_outcome(&batch.lines, &request.items, response.get_ref()),
        Err(status) => BatchOutcome {
            failure: Some((batch.lines.len() as u64, output::status_text(&status))),
            ..BatchOutcome::default()
        },
    }
}

/// Runs `herald endpoint import`.
pub async fn run(
    channel: Channel,
    arguments: EndpointImportArgs,
    json: bool,
) -> anyhow::Result<()> {
    let path = arguments.file;
    let format = match arguments.format {
        Some(format) => format,
        None => format_from_path(&path).map_err(anyhow::Error::msg)?,
    };
    let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let total_bytes = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let rows = EndpointRows::open(file, format)
        .map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))?;

    let concurrency = usize::from(arguments.concurrency);
    let (sender, receiver) = mpsc::channel(concurrency);
    let stop = StopSignal::default();
    let progress = bulk::file_progress_bar(total_bytes, json);
    let batch_size = usize::from(arguments.batch_size);
    let reader = {
        let stop = stop.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            read_endpoint_chunks(rows, batch_size, &sender, &stop, &progress);
        })
    };

    let client = EndpointsClient::new(channel);
    let project_id = arguments.project;
    let report = bulk::send_chunks(
        receiver,
        stop,
        concurrency,
        |batch| send_endpoint_batch(client.clone(), project_id.clone(), batch),
        &progress,
        "imported",
    )
    .await;
    reader.await.context("the file reader failed")?;
    report.finish(json, "imported")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(format: ImportFormat, text: &str) -> Vec<EndpointRow> {
        let mut rows = EndpointRows::open(text.as_bytes(), format).expect("valid header");
        let mut all = Vec::new();
        while let Some(row) = rows.next_row().expect("in-memory read") {
            all.push(row);
        }
        all
    }

    fn endpoint(row: &EndpointRow) -> proto::EndpointRequest {
        row.item
            .clone()
            .expect("valid row")
            .endpoint
            .expect("endpoint")
    }

    /// CSV rows carry the line they start on, counting the header as line 1, and a row
    /// that cannot be converted is an error on its own line while the others go on.
    #[test]
    fn csv_rows_keep_their_line_numbers() {
        let text = "id,channel_type,address,metrics.score\n\
                    e1,EMAIL,a@b.c,1.5\n\
                    e2,PIGEON,x,2\n\
                    \n\
                    e3,SMS,+5511999999999,\n";
        let rows = rows(ImportFormat::Csv, text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].line, 2);
        assert_eq!(endpoint(&rows[0]).metrics["score"], 1.5);
        let error = rows[1].item.clone().expect_err("unknown channel");
        assert_eq!(error.line, 3);
        assert_eq!(error.id, "e2");
        assert_eq!(error.field, "endpoint.channel_type");
        assert!(error.message.contains("\"PIGEON\""), "{}", error.message);
        assert_eq!(rows[2].line, 5);
        assert!(
            endpoint(&rows[2]).metrics.is_empty(),
            "an empty cell is not given"
        );
    }

    /// Line numbers stay exact with CRLF endings, blank lines and quoted multi-line cells.
    #[test]
    fn csv_line_numbers_survive_crlf_blank_lines_and_quoted_newlines() {
        let crlf = rows(ImportFormat::Csv, "id,address\r\ne1,a\r\n\r\n\r\ne2,b\r\n");
        let lines: Vec<u64> = crlf.iter().map(|row| row.line).collect();
        assert_eq!(lines, vec![2, 5]);
        let quoted = rows(
            ImportFormat::Csv,
            "id,attributes.note\ne1,\"two\nlines\"\n\ne2,x\ne3\n",
        );
        let lines: Vec<u64> = quoted.iter().map(|row| row.line).collect();
        assert_eq!(lines, vec![2, 5, 6]);
        assert!(
            quoted[2].item.is_err(),
            "the short row is an error on line 6"
        );
    }

    /// `;` separates several values of one attribute, for endpoint and user attributes.
    #[test]
    fn csv_attribute_cells_hold_several_values() {
        let text = "id,channel_type,address,attributes.plan,user_id,user_attributes.name\n\
                    e1,EMAIL,a@b.c,pro; max,u1,Ana\n";
        let rows = rows(ImportFormat::Csv, text);
        let endpoint = endpoint(&rows[0]);
        assert_eq!(endpoint.attributes["plan"].values, vec!["pro", "max"]);
        let user = endpoint.user.expect("user");
        assert_eq!(user.user_id, "u1");
        assert_eq!(user.user_attributes["name"].values, vec!["Ana"]);
    }

    /// Every fixed column lands in its proto field.
    #[test]
    fn csv_fixed_columns_fill_the_request() {
        let text = "id,channel_type,address,opt_out,endpoint_status,timezone,platform,country,city,latitude,longitude\n\
                    e1,FCM,token,ALL,INACTIVE,America/Sao_Paulo,android,BR,Recife,-8.05,-34.9\n";
        let rows = rows(ImportFormat::Csv, text);
        let endpoint = endpoint(&rows[0]);
        assert_eq!(endpoint.channel_type, proto::ChannelType::Gcm as i32);
        assert_eq!(endpoint.opt_out, proto::OptOut::All as i32);
        assert_eq!(
            endpoint.endpoint_status,
            proto::EndpointStatus::Inactive as i32
        );
        let demographic = endpoint.demographic.expect("demographic");
        assert_eq!(demographic.timezone, "America/Sao_Paulo");
        assert_eq!(demographic.platform, "android");
        let location = endpoint.location.expect("location");
        assert_eq!(location.country, "BR");
        assert_eq!(location.city, "Recife");
        assert_eq!(location.latitude, Some(-8.05));
        assert_eq!(location.longitude, Some(-34.9));
    }

    /// An unknown column stops the import before any row is sent, naming the column.
    #[test]
    fn csv_unknown_column_is_an_error_naming_it() {
        let error = EndpointRows::open("id,adress\ne1,a@b.c\n".as_bytes(), ImportFormat::Csv)
            .err()
            .expect("unknown column");
        assert!(error.contains("\"adress\""), "{error}");
    }

    /// The header must name the endpoint id column, once.
    #[test]
    fn csv_header_needs_one_id_column() {
        let missing = EndpointRows::open("address\na@b.c\n".as_bytes(), ImportFormat::Csv)
            .err()
            .expect("no id");
        assert!(missing.contains("\"id\""), "{missing}");
        let twice = EndpointRows::open("id,id\ne1,e1\n".as_bytes(), ImportFormat::Csv)
            .err()
            .expect("repeated id");
        assert!(twice.contains("twice"), "{twice}");
        let nameless = EndpointRows::open("id,attributes.\ne1,x\n".as_bytes(), ImportFormat::Csv)
            .err()
            .expect("nameless attribute");
        assert!(nameless.contains("attributes."), "{nameless}");
    }

    /// A row with a missing or extra cell is an error on its line.
    #[test]
    fn csv_row_with_wrong_field_count_is_an_error() {
        let rows = rows(ImportFormat::Csv, "id,address\ne1,a@b.c\ne2\ne3,c@d.e\n");
        assert_eq!(rows.len(), 3);
        let error = rows[1].item.clone().expect_err("short row");
        assert_eq!(error.line, 3);
        assert!(error.message.contains("1 fields"), "{}", error.message);
        assert!(rows[2].item.is_ok());
    }

    /// A bad number is an error naming the column and the value.
    #[test]
    fn csv_bad_number_is_an_error_naming_the_value() {
        let rows = rows(
            ImportFormat::Csv,
            "id,metrics.score,latitude\ne1,high,\ne2,1,north\n",
        );
        let metric = rows[0].item.clone().expect_err("bad metric");
        assert!(metric.message.contains("\"score\"") && metric.message.contains("\"high\""));
        assert_eq!(metric.field, "endpoint.metrics[\"score\"]");
        let latitude = rows[1].item.clone().expect_err("bad latitude");
        assert!(
            latitude.message.contains("\"north\""),
            "{}",
            latitude.message
        );
        assert_eq!(latitude.field, "endpoint.location.latitude");
    }

    /// JSONL lines are numbered in the file, blank lines skipped, bad lines reported.
    #[test]
    fn jsonl_rows_keep_their_line_numbers() {
        let text = "{\"id\":\"e1\",\"channel_type\":\"EMAIL\",\"address\":\"a@b.c\"}\n\
                    \n\
                    {\"id\":\"e2\",\n\
                    {\"address\":\"c@d.e\"}\n\
                    {\"id\":\"e4\",\"attributes\":{\"plan\":[\"pro\",\"max\"]}}";
        let rows = rows(ImportFormat::Jsonl, text);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].line, 1);
        let broken = rows[1].item.clone().expect_err("broken JSON");
        assert_eq!(broken.line, 3);
        let no_id = rows[2].item.clone().expect_err("no id");
        assert_eq!(no_id.line, 4);
        assert_eq!(rows[3].line, 5);
        assert_eq!(
            endpoint(&rows[3]).attributes["plan"].values,
            vec!["pro", "max"]
        );
    }

    /// The extension picks the format; an unknown one asks for --format.
    #[test]
    fn format_follows_the_extension() {
        assert_eq!(
            format_from_path(Path::new("a/b.CSV")),
            Ok(ImportFormat::Csv)
        );
        assert_eq!(
            format_from_path(Path::new("b.jsonl")),
            Ok(ImportFormat::Jsonl)
        );
        let error = format_from_path(Path::new("b.txt")).expect_err("unknown");
        assert!(error.contains("--format"), "{error}");
    }

    /// Server results map back to lines in request order, with the item prefix of the
    /// field dropped.
    #[test]
    fn batch_results_map_back_to_lines() {
        let items: Vec<proto::EndpointBatchItem> = ["e1", "e2"]
            .into_iter()
            .map(|id| proto::EndpointBatchItem {
                endpoint_id: id.to_string(),
                endpoint: None,
            })
            .collect();
        let response = proto::UpdateEndpointsBatchResponse {
            results: vec![
                proto::EndpointBatchResult {
                    endpoint_id: "e1".to_string(),
                    result: Some(proto::ItemResult {
                        status_code: 202,
                        message: "accepted".to_string(),
                        field: String::new(),
                    }),
                },
                proto::EndpointBatchResult {
                    endpoint_id: "e2".to_string(),
                    result: Some(proto::ItemResult {
                        status_code: 400,
                        message: "items[1].endpoint.address: \"x\" is not an email address"
                            .to_string(),
                        field: "items[1].endpoint.address".to_string(),
                    }),
                },
            ],
        };
        let outcome = batch_outcome(&[2, 7], &items, &response);
        assert_eq!(outcome.accepted, 1);
        assert_eq!(outcome.rejected.len(), 1);
        let error = &outcome.rejected[0];
        assert_eq!((error.line, error.id.as_str()), (7, "e2"));
        assert_eq!(error.field, "endpoint.address");
        assert_eq!(error.message, "\"x\" is not an email address");
    }

    /// Rows are handed over in batches of the asked size, with refused rows counted.
    #[test]
    fn reader_hands_over_batches_of_the_asked_size() {
        let text = "id,address\ne1,a\ne2,b\ne3,c\n\"e4\n";
        let rows = EndpointRows::open(text.as_bytes(), ImportFormat::Csv).expect("valid header");
        let (sender, mut receiver) = mpsc::channel(16);
        read_endpoint_chunks(
            rows,
            2,
            &sender,
            &StopSignal::default(),
            &indicatif::ProgressBar::hidden(),
        );
        drop(sender);
        let mut sizes = Vec::new();
        let mut rows_read = 0;
        while let Ok(chunk) = receiver.try_recv() {
            let chunk = chunk.expect("no read error");
            rows_read += chunk.rows_read;
            sizes.push(chunk.batch.map_or(0, |batch| batch.items.len()));
        }
        assert_eq!(sizes, vec![2, 1]);
        assert_eq!(rows_read, 4);
    }
}
