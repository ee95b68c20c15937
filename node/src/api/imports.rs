//! `herald.v1.Imports`: import jobs of endpoints from CSV or JSONL (SPEC SEG-3, DAT-1).
//!
//! `CreateImportJob` records the job, then runs it in a spawned task: a blocking thread
//! parses rows as bytes arrive (the upload, or a file on this node's disk) with the CLI's
//! readers ([`crate::cli::import::EndpointRows`]) and validates each row with the rules of
//! `UpdateEndpointsBatch` ([`endpoint_input`]); the task writes batches through
//! [`Cluster::upsert_endpoints`] and saves the job's progress in the meta group at most
//! about once a second and at the end. Bytes and batches go through bounded channels, so
//! memory stays bounded whatever the file size: an upload waits for the writes.
//!
//! A job given `define_segment_name` creates its imported segment before reading a row and,
//! after each batch is written, records the imported endpoints as members in their shards
//! ([`Cluster::add_imported`]).
//!
//! A running job saves its progress at least every [`HEARTBEAT_MS`] even when no row
//! arrives, and the service remembers which jobs its process runs: reading a job nobody runs
//! any more ends it as FAILED ([`ImportJob::is_abandoned`]), so a job whose node stopped
//! does not stay PROCESSING.

use std::collections::HashSet;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_proto::v1::create_import_job_request::Part;
use herald_proto::v1::imports_server::Imports;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

use super::convert::endpoint_input;
use super::status::{invalid_argument, to_status, under};
use super::{ClusterHandle, check_ids, observed};
use crate::cli::ImportFormat;
use crate::cli::import::EndpointRows;
use crate::cluster::{Cluster, ClusterError, now_rfc3339};
use crate::domain::FieldViolation;
use crate::domain::endpoint::validate_id;
use crate::domain::import_job::{HEARTBEAT_MS, ImportJob, ImportRowError, ImportState};
use crate::domain::limits::Limits;

/// Uploaded chunks buffered ahead of the parser (each at most the request size limit).
const UPLOAD_CHUNKS_BUFFERED: usize = 4;

/// Parsed batches buffered ahead of the writes.
const BATCHES_BUFFERED: usize = 2;

/// How often a running job's progress is saved in the meta group.
const PROGRESS_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Refused rows gathered before they are handed over, bounding a batch of bad rows.
const REFUSED_ROWS_PER_BATCH: usize = 1_000;

/// Ids of the jobs this process runs: a job of this node missing here was abandoned.
type RunningJobs = Arc<Mutex<HashSet<String>>>;

/// The Imports service.
pub struct ImportsApi {
    cluster: ClusterHandle,
    /// Jobs running in this process, to tell abandoned jobs of this node.
    running: RunningJobs,
}

impl ImportsApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self {
            cluster,
            running: RunningJobs::default(),
        }
    }

    /// `job` as it stands: ended as FAILED first when nothing runs it any more.
    async fn judged(&self, cluster: &Cluster, job: ImportJob) -> Result<ImportJob, Status> {
        let running_here = self
            .running
            .lock()
            .expect("running jobs")
            .contains(&job.job_id);
        let now_ms = chrono::Utc::now().timestamp_millis();
        if !job.is_abandoned(cluster.node_id(), running_here, now_ms) {
            return Ok(job);
        }
        cluster.abandon_import_job(job).await.map_err(to_status)
    }
}

/// Marks a job as running in this process until dropped.
struct RunningJob {
    running: RunningJobs,
    job_id: String,
}

impl RunningJob {
    fn start(running: &RunningJobs, job_id: &str) -> Self {
        running
            .lock()
            .expect("running jobs")
            .insert(job_id.to_string());
        Self {
            running: running.clone(),
            job_id: job_id.to_string(),
        }
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&self.job_id);
        }
    }
}

/// A job's definition, validated.
struct ImportPlan {
    project_id: String,
    format: ImportFormat,
    format_name: &'static str,
    file_name: String,
    batch_size: usize,
    /// Name of the imported segment the job defines, if any.
    segment_name: Option<String>,
}

impl ImportPlan {
    fn from_definition(
        definition: pb::ImportJobDefinition,
        limits: &Limits,
    ) -> Result<Self, Status> {
        check_ids(&[("definition.project_id", &definition.project_id)], limits)?;
        let mut violations = Vec::new();
        let format = match definition.format.trim().to_ascii_uppercase().as_str() {
            "CSV" => Some((ImportFormat::Csv, "CSV")),
            "JSONL" | "NDJSON" => Some((ImportFormat::Jsonl, "JSONL")),
            _ => {
                violations.push(FieldViolation::new(
                    "definition.format",
                    format!("{:?} is not CSV or JSONL", definition.format),
                ));
                None
            }
        };
        let batch_size = match definition.batch_size as usize {
            0 => limits.items_per_batch,
            size if size <= limits.items_per_batch => size,
            size => {
                violations.push(FieldViolation::new(
                    "definition.batch_size",
                    format!("{size} is above the limit of {}", limits.items_per_batch),
                ));
                limits.items_per_batch
            }
        };
        let segment_name = match definition.define_segment_name.as_str() {
            "" => None,
            name if name.trim().is_empty() => {
                violations.push(FieldViolation::new(
                    "definition.define_segment_name",
                    "must not be blank (leave it empty to define no segment)",
                ));
                None
            }
            name if name.chars().any(char::is_control) => {
                violations.push(FieldViolation::new(
                    "definition.define_segment_name",
                    "must not contain control characters",
                ));
                None
            }
            name => Some(name.to_string()),
        };
        match format {
            Some((format, format_name)) if violations.is_empty() => Ok(Self {
                project_id: definition.project_id,
                format,
                format_name,
                file_name: definition.file_name,
                batch_size,
                segment_name,
            }),
            _ => Err(invalid_argument(&violations)),
        }
    }
}

/// A job as the API answers it; `with_errors` false leaves the row errors out.
fn job_to_proto(job: &ImportJob, with_errors: bool) -> pb::ImportJob {
    pb::ImportJob {
        project_id: job.project_id.clone(),
        job_id: job.job_id.clone(),
        format: job.format.clone(),
        file_name: job.file_name.clone(),
        state: job.state.as_str().to_string(),
        rows_read: job.rows_read,
        imported: job.imported,
        rejected: job.rejected,
        errors: if with_errors {
            job.errors
                .iter()
                .map(|error| pb::ImportRowError {
                    line: error.line,
                    endpoint_id: error.endpoint_id.clone(),
                    field: error.field.clone(),
                    message: error.message.clone(),
                })
                .collect()
        } else {
            Vec::new()
        },
        creation_date: job.creation_date.clone(),
        completion_date: job.completion_date.clone(),
        failure: job.failure.clone(),
        segment_id: job.segment_id.clone(),
    }
}

/// Reads uploaded chunks as one byte stream, on the parser's blocking thread.
struct UploadReader {
    chunks: mpsc::Receiver<Result<Vec<u8>, String>>,
    current: Vec<u8>,
    position: usize,
}

impl Read for UploadReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.position >= self.current.len() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = chunk;
                    self.position = 0;
                }
                Some(Err(message)) => return Err(io::Error::other(message)),
                None => return Ok(0),
            }
        }
        let length = buffer.len().min(self.current.len() - self.position);
        buffer[..length].copy_from_slice(&self.current[self.position..self.position + length]);
        self.position += length;
        Ok(length)
    }
}

/// Rows parsed since the last hand-over: the valid ones to write and the refused ones.
#[derive(Default)]
struct ParsedBatch {
    rows_read: u64,
    /// Line, endpoint id and validated input of each row to write, ids distinct.
    items: Vec<(u64, String, crate::domain::endpoint::EndpointInput)>,
    refused: Vec<ImportRowError>,
}

/// The error of a row whose violations are `violations` (paths relative to the row).
fn row_error(line: u64, endpoint_id: &str, violations: &[FieldViolation]) -> ImportRowError {
    ImportRowError {
        line,
        endpoint_id: endpoint_id.to_string(),
        field: violations
            .first()
            .map(|violation| violation.field.clone())
            .unwrap_or_default(),
        message: violations
            .iter()
            .map(|violation| violation.reason.clone())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Reads every row of `reader`, validates it and hands over batches of at most `batch_size`
/// endpoints; answers why it stopped early. Runs on a blocking thread.
fn parse_rows<R: Read>(
    reader: R,
    format: ImportFormat,
    batch_size: usize,
    limits: &Limits,
    batches: &mpsc::Sender<ParsedBatch>,
) -> Result<(), String> {
    let mut rows = EndpointRows::open(reader, format)?;
    let hand_over = |batch: &mut ParsedBatch| {
        batches
            .blocking_send(std::mem::take(batch))
            .map_err(|_| "the import stopped".to_string())
    };
    let mut batch = ParsedBatch::default();
    loop {
        let row = match rows.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(error) => return Err(format!("cannot read the file: {error}")),
        };
        batch.rows_read += 1;
        match row.item {
            Err(error) => batch.refused.push(ImportRowError {
                line: error.line,
                endpoint_id: error.id,
                field: error.field,
                message: error.message,
            }),
            Ok(item) => {
                let mut violations = Vec::new();
                validate_id("endpoint_id", &item.endpoint_id, limits, &mut violations);
                match endpoint_input("endpoint", item.endpoint, limits) {
                    Ok(input) if violations.is_empty() => {
                        // A later row of the same endpoint must be written after this one.
                        if batch.items.iter().any(|(_, id, _)| *id == item.endpoint_id) {
                            hand_over(&mut batch)?;
                        }
                        batch.items.push((row.line, item.endpoint_id, input));
                    }
                    Ok(_) => {
                        batch
                            .refused
                            .push(row_error(row.line, &item.endpoint_id, &violations))
                    }
                    Err(more) => {
                        violations.extend(more);
                        batch
                            .refused
                            .push(row_error(row.line, &item.endpoint_id, &violations));
                    }
                }
            }
        }
        if batch.items.len() >= batch_size || batch.refused.len() >= REFUSED_ROWS_PER_BATCH {
            hand_over(&mut batch)?;
        }
    }
    if batch.rows_read > 0 {
        hand_over(&mut batch)?;
    }
    Ok(())
}

/// Saves the job's progress in the meta group and publishes it to the creating call; false
/// when the stored job has ended meanwhile (judged abandoned): the run must stop.
async fn save_progress(
    cluster: &Cluster,
    job: &ImportJob,
    progress: &watch::Sender<ImportJob>,
) -> bool {
    progress.send_replace(job.clone());
    match cluster.update_import_job(job.clone()).await {
        Ok(_) => true,
        Err(ClusterError::NotFound(_)) => {
            tracing::warn!(job_id = %job.job_id, "import job ended by another node, stopping it");
            false
        }
        Err(error) => {
            tracing::warn!(job_id = %job.job_id, %error, "cannot save import progress");
            true
        }
    }
}

/// Writes one parsed batch: upserts its endpoints, puts the imported ones in the job's
/// segment, and counts its rows in `job`. An `Err` is why the job must stop.
async fn write_batch(
    cluster: &Cluster,
    job: &mut ImportJob,
    batch: ParsedBatch,
) -> Result<(), String> {
    job.rows_read += batch.rows_read;
    let mut refused = batch.refused;
    if !batch.items.is_empty() {
        let (rows, items): (Vec<(u64, String)>, Vec<_>) = batch
            .items
            .into_iter()
            .map(|(line, id, input)| ((line, id.clone()), (id, input)))
            .unzip();
        let outcomes = cluster
            .upsert_endpoints(&job.project_id, items)
            .await
            .map_err(|error| format!("cannot write endpoints: {error}"))?;
        let mut imported = Vec::new();
        for ((line, endpoint_id), outcome) in rows.into_iter().zip(outcomes) {
            match outcome.map_err(|error| under("endpoint", error)) {
                Ok(_) => {
                    job.imported += 1;
                    imported.push(endpoint_id);
                }
                Err(ClusterError::InvalidArgument(violations)) => {
                    refused.push(row_error(line, &endpoint_id, &violations));
                }
                Err(other) => refused.push(ImportRowError {
                    line,
                    endpoint_id,
                    field: String::new(),
                    message: other.to_string(),
                }),
            }
        }
        if !job.segment_id.is_empty() && !imported.is_empty() {
            cluster
                .add_imported(&job.project_id, &job.job_id, imported)
                .await
                .map_err(|error| format!("cannot record the imported segment: {error}"))?;
        }
    }
    refused.sort_by_key(|error| error.line);
    for error in refused {
        job.reject(error);
    }
    Ok(())
}

/// Runs a job to its end: parses `reader` on a blocking thread, writes the batches, saves
/// progress (at least every [`HEARTBEAT_MS`]), and records COMPLETED or FAILED. The job
/// counts as running in this process while `running` lives.
async fn run_import(
    cluster: Arc<Cluster>,
    mut job: ImportJob,
    reader: Box<dyn Read + Send>,
    plan: ImportPlan,
    progress: watch::Sender<ImportJob>,
    running: RunningJob,
) {
    let limits = cluster.limits().clone();
    let (batch_sender, mut batch_receiver) = mpsc::channel(BATCHES_BUFFERED);
    let parser = tokio::task::spawn_blocking(move || {
        parse_rows(reader, plan.format, plan.batch_size, &limits, &batch_sender)
    });
    job.state = ImportState::Processing;
    let mut ours = save_progress(&cluster, &job, &progress).await;
    let mut last_saved = Instant::now();
    let heartbeat = Duration::from_millis(HEARTBEAT_MS as u64);
    let mut failure = None;
    while ours {
        let batch = tokio::select! {
            batch = batch_receiver.recv() => batch,
            () = tokio::time::sleep(heartbeat.saturating_sub(last_saved.elapsed())) => {
                ours = save_progress(&cluster, &job, &progress).await;
                last_saved = Instant::now();
                continue;
            }
        };
        let Some(batch) = batch else {
            break;
        };
        if let Err(reason) = write_batch(&cluster, &mut job, batch).await {
            failure = Some(reason);
            break;
        }
        progress.send_replace(job.clone());
        if last_saved.elapsed() >= PROGRESS_SAVE_INTERVAL {
            ours = save_progress(&cluster, &job, &progress).await;
            last_saved = Instant::now();
        }
    }
    drop(batch_receiver);
    let parsed = parser.await;
    if !ours {
        return;
    }
    if failure.is_none() {
        failure = match parsed {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(message),
            Err(error) => Some(format!("the parser stopped: {error}")),
        };
    }
    job.finish(failure, now_rfc3339());
    save_progress(&cluster, &job, &progress).await;
    drop(running);
    tracing::info!(
        job_id = %job.job_id,
        state = job.state.as_str(),
        imported = job.imported,
        rejected = job.rejected,
        segment_id = %job.segment_id,
        "import job ended"
    );
}

fn no_definition() -> Status {
    invalid_argument(&[FieldViolation::new(
        "definition",
        "the first message must carry the job's definition",
    )])
}

fn no_second_definition() -> Status {
    invalid_argument(&[FieldViolation::new(
        "data",
        "only the first message may carry a definition",
    )])
}

#[tonic::async_trait]
impl Imports for ImportsApi {
    async fn create_import_job(
        &self,
        request: Request<Streaming<pb::CreateImportJobRequest>>,
    ) -> Result<Response<pb::ImportJobResponse>, Status> {
        observed("CreateImportJob", async {
            let mut upload = request.into_inner();
            let cluster = self.cluster.get()?.clone();
            let Some(Part::Definition(definition)) =
                upload.message().await?.and_then(|first| first.part)
            else {
                return Err(no_definition());
            };
            let plan = ImportPlan::from_definition(definition, cluster.limits())?;
            let file = if plan.file_name.is_empty() {
                None
            } else {
                let file = std::fs::File::open(&plan.file_name).map_err(|error| {
                    invalid_argument(&[FieldViolation::new(
                        "definition.file_name",
                        format!("cannot open {:?} on the node: {error}", plan.file_name),
                    )])
                })?;
                Some(file)
            };
            let job_id = uuid::Uuid::new_v4().simple().to_string();
            // Running before its record exists, so no reader takes it for abandoned.
            let running = RunningJob::start(&self.running, &job_id);
            let job = cluster
                .create_import_job(
                    &plan.project_id,
                    &job_id,
                    plan.format_name,
                    &plan.file_name,
                    plan.segment_name.as_deref(),
                )
                .await
                .map_err(|error| to_status(under("definition", error)))?;
            let (progress, watched) = watch::channel(job.clone());
            let Some(file) = file else {
                let (chunks, receiver) = mpsc::channel(UPLOAD_CHUNKS_BUFFERED);
                let reader = UploadReader {
                    chunks: receiver,
                    current: Vec::new(),
                    position: 0,
                };
                tokio::spawn(run_import(
                    cluster,
                    job,
                    Box::new(reader),
                    plan,
                    progress,
                    running,
                ));
                // A broken upload fails the job and is answered with its own status.
                let mut broken = None;
                loop {
                    let chunk = match upload.message().await {
                        Ok(Some(pb::CreateImportJobRequest {
                            part: Some(Part::Data(data)),
                        })) => Ok(data),
                        Ok(Some(pb::CreateImportJobRequest { part: None })) => continue,
                        Ok(Some(_)) => {
                            broken = Some(no_second_definition());
                            Err("a second definition arrived in the upload".to_string())
                        }
                        Ok(None) => break,
                        Err(status) => {
                            let message = format!("the upload broke: {}", status.message());
                            broken = Some(status);
                            Err(message)
                        }
                    };
                    // The job stopped reading (it failed): nothing more to feed it.
                    if chunks.send(chunk).await.is_err() || broken.is_some() {
                        break;
                    }
                }
                drop(chunks);
                if let Some(status) = broken {
                    return Err(status);
                }
                let job = watched.borrow().clone();
                return Ok(pb::ImportJobResponse {
                    job: Some(job_to_proto(&job, true)),
                });
            };
            if upload.message().await?.is_some() {
                tracing::warn!(job_id = %job.job_id, "data uploaded with a file on the node is ignored");
            }
            tokio::spawn(run_import(
                cluster,
                job,
                Box::new(file),
                plan,
                progress,
                running,
            ));
            let job = watched.borrow().clone();
            Ok(pb::ImportJobResponse {
                job: Some(job_to_proto(&job, true)),
            })
        })
        .await
    }

    async fn get_import_job(
        &self,
        request: Request<pb::GetImportJobRequest>,
    ) -> Result<Response<pb::ImportJobResponse>, Status> {
        observed("GetImportJob", async {
            let request = request.into_inner();
            let cluster = self.cluster.get()?;
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("job_id", &request.job_id),
                ],
                cluster.limits(),
            )?;
            let job = cluster
                .get_import_job(&request.project_id, &request.job_id)
                .await
                .map_err(to_status)?;
            let job = self.judged(cluster, job).await?;
            Ok(pb::ImportJobResponse {
                job: Some(job_to_proto(&job, true)),
            })
        })
        .await
    }

    async fn get_import_jobs(
        &self,
        request: Request<pb::GetImportJobsRequest>,
    ) -> Result<Response<pb::GetImportJobsResponse>, Status> {
        observed("GetImportJobs", async {
            let request = request.into_inner();
            let cluster = self.cluster.get()?;
            check_ids(&[("project_id", &request.project_id)], cluster.limits())?;
            let mut jobs = Vec::new();
            for job in cluster
                .list_import_jobs(&request.project_id)
                .await
                .map_err(to_status)?
            {
                jobs.push(self.judged(cluster, job).await?);
            }
            Ok(pb::GetImportJobsResponse {
                jobs: jobs.iter().map(|job| job_to_proto(job, false)).collect(),
            })
        })
        .await
    }
}
