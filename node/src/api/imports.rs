//! `herald.v1.Imports`: import jobs of endpoints from CSV or JSONL (SPEC SEG-3, DAT-1).
//!
//! `CreateImportJob` records the job, then runs it in a spawned task: a blocking thread
//! parses rows as bytes arrive (the upload, or a file on this node's disk) with the CLI's
//! readers ([`crate::cli::import::EndpointRows`]) and validates each row with the rules of
//! `UpdateEndpointsBatch` ([`endpoint_input`]); the task writes batches through
//! [`Cluster::upsert_endpoints`] and saves the job's progress in the meta group at most
//! about once a second and at the end. Bytes and batches go through bounded channels, so
//! memory stays bounded whatever the file size: an upload waits for the writes.

use std::io::{self, Read};
use std::sync::Arc;
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
use crate::domain::import_job::{ImportJob, ImportRowError, ImportState};
use crate::domain::limits::Limits;

/// Uploaded chunks buffered ahead of the parser (each at most the request size limit).
const UPLOAD_CHUNKS_BUFFERED: usize = 4;

/// Parsed batches buffered ahead of the writes.
const BATCHES_BUFFERED: usize = 2;

/// How often a running job's progress is saved in the meta group.
const PROGRESS_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Refused rows gathered before they are handed over, bounding a batch of bad rows.
const REFUSED_ROWS_PER_BATCH: usize = 1_000;

/// The Imports service.
pub struct ImportsApi {
    cluster: ClusterHandle,
}

impl ImportsApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

/// A job's definition, validated.
struct ImportPlan {
    project_id: String,
    format: ImportFormat,
    format_name: &'static str,
    file_name: String,
    batch_size: usize,
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
        match format {
            Some((format, format_name)) if violations.is_empty() => Ok(Self {
                project_id: definition.project_id,
                format,
                format_name,
                file_name: definition.file_name,
                batch_size,
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

/// Saves the job's progress in the meta group and publishes it to the creating call.
async fn save_progress(cluster: &Cluster, job: &ImportJob, progress: &watch::Sender<ImportJob>) {
    progress.send_replace(job.clone());
    if let Err(error) = cluster.update_import_job(job.clone()).await {
        tracing::warn!(job_id = %job.job_id, %error, "cannot save import progress");
    }
}

/// Runs a job to its end: parses `reader` on a blocking thread, writes the batches, saves
/// progress, and records COMPLETED or FAILED.
async fn run_import(
    cluster: Arc<Cluster>,
    mut job: ImportJob,
    reader: Box<dyn Read + Send>,
    plan: ImportPlan,
    progress: watch::Sender<ImportJob>,
) {
    let limits = cluster.limits().clone();
    let (batch_sender, mut batch_receiver) = mpsc::channel(BATCHES_BUFFERED);
    let parser = tokio::task::spawn_blocking(move || {
        parse_rows(reader, plan.format, plan.batch_size, &limits, &batch_sender)
    });
    job.state = ImportState::Processing;
    save_progress(&cluster, &job, &progress).await;
    let mut last_saved = Instant::now();
    let mut failure = None;
    while let Some(batch) = batch_receiver.recv().await {
        job.rows_read += batch.rows_read;
        let mut refused = batch.refused;
        if !batch.items.is_empty() {
            let (rows, items): (Vec<(u64, String)>, Vec<_>) = batch
                .items
                .into_iter()
                .map(|(line, id, input)| ((line, id.clone()), (id, input)))
                .unzip();
            match cluster.upsert_endpoints(&job.project_id, items).await {
                Ok(outcomes) => {
                    for ((line, endpoint_id), outcome) in rows.into_iter().zip(outcomes) {
                        match outcome.map_err(|error| under("endpoint", error)) {
                            Ok(_) => job.imported += 1,
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
                }
                Err(error) => {
                    failure = Some(format!("cannot write endpoints: {error}"));
                    break;
                }
            }
        }
        refused.sort_by_key(|error| error.line);
        for error in refused {
            job.reject(error);
        }
        progress.send_replace(job.clone());
        if last_saved.elapsed() >= PROGRESS_SAVE_INTERVAL {
            save_progress(&cluster, &job, &progress).await;
            last_saved = Instant::now();
        }
    }
    drop(batch_receiver);
    let parsed = parser.await;
    if failure.is_none() {
        failure = match parsed {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(message),
            Err(error) => Some(format!("the parser stopped: {error}")),
        };
    }
    job.finish(failure, now_rfc3339());
    save_progress(&cluster, &job, &progress).await;
    tracing::info!(
        job_id = %job.job_id,
        state = job.state.as_str(),
        imported = job.imported,
        rejected = job.rejected,
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
            let job = cluster
                .create_import_job(&plan.project_id, plan.format_name, &plan.file_name)
                .await
                .map_err(to_status)?;
            let (progress, watched) = watch::channel(job.clone());
            let Some(file) = file else {
                let (chunks, receiver) = mpsc::channel(UPLOAD_CHUNKS_BUFFERED);
                let reader = UploadReader {
                    chunks: receiver,
                    current: Vec::new(),
                    position: 0,
                };
                tokio::spawn(run_import(cluster, job, Box::new(reader), plan, progress));
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
            tokio::spawn(run_import(cluster, job, Box::new(file), plan, progress));
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
            let jobs = cluster
                .list_import_jobs(&request.project_id)
                .await
                .map_err(to_status)?;
            Ok(pb::GetImportJobsResponse {
                jobs: jobs.iter().map(|job| job_to_proto(job, false)).collect(),
            })
        })
        .await
    }
}
