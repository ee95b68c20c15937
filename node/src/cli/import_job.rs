//! `herald import create|get|list`: import jobs that run on the server (SPEC SEG-3, DAT-1).
//! `create` uploads the file in 1 MiB chunks with a progress bar, then polls the job until
//! it ends.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use herald_proto::v1 as proto;
use herald_proto::v1::create_import_job_request::Part;
use herald_proto::v1::imports_client::ImportsClient;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tonic::transport::Channel;

use super::output::{Table, print_json, status_error};
use super::{ImportCommand, ImportCreateArgs, ImportFormat, bulk, import};

/// Bytes per uploaded chunk.
const UPLOAD_CHUNK_BYTES: usize = 1 << 20;

/// How often `create` asks for the job's progress.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Runs an import command.
pub async fn run(channel: Channel, command: ImportCommand, json: bool) -> anyhow::Result<()> {
    let mut client = ImportsClient::new(channel);
    match command {
        ImportCommand::Create(arguments) => create(&mut client, arguments, json).await,
        ImportCommand::Get { project, id } => {
            let job = get(&mut client, &project, &id).await?;
            print_job(&job, json);
            Ok(())
        }
        ImportCommand::List { project } => {
            let jobs = client
                .get_import_jobs(proto::GetImportJobsRequest {
                    project_id: project,
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .jobs;
            if json {
                print_json(&Value::Array(jobs.iter().map(job_json).collect()));
            } else {
                let mut table = Table::new(&[
                    "JOB", "STATE", "FORMAT", "ROWS", "IMPORTED", "REJECTED", "CREATED",
                ]);
                for job in &jobs {
                    table.push(vec![
                        job.job_id.clone(),
                        job.state.clone(),
                        job.format.clone(),
                        job.rows_read.to_string(),
                        job.imported.to_string(),
                        job.rejected.to_string(),
                        job.creation_date.clone(),
                    ]);
                }
                print!("{}", table.render());
            }
            Ok(())
        }
    }
}

async fn get(
    client: &mut ImportsClient<Channel>,
    project: &str,
    id: &str,
) -> anyhow::Result<proto::ImportJob> {
    client
        .get_import_job(proto::GetImportJobRequest {
            project_id: project.to_string(),
            job_id: id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .job
        .context("the server answered no job")
}

fn format_name(format: ImportFormat) -> &'static str {
    match format {
        ImportFormat::Csv => "CSV",
        ImportFormat::Jsonl => "JSONL",
    }
}

async fn create(
    client: &mut ImportsClient<Channel>,
    arguments: ImportCreateArgs,
    json: bool,
) -> anyhow::Result<()> {
    let format = match arguments.format {
        Some(format) => format,
        None => import::format_from_path(&arguments.file).map_err(anyhow::Error::msg)?,
    };
    let definition = proto::CreateImportJobRequest {
        part: Some(Part::Definition(proto::ImportJobDefinition {
            project_id: arguments.project.clone(),
            format: format_name(format).to_string(),
            file_name: if arguments.on_node {
                arguments.file.to_string_lossy().into_owned()
            } else {
                String::new()
            },
            batch_size: u32::from(arguments.batch_size),
            define_segment_name: arguments.define_segment.clone().unwrap_or_default(),
        })),
    };
    let created = if arguments.on_node {
        client
            .create_import_job(tokio_stream::iter(vec![definition]))
            .await
    } else {
        let (messages, progress, reader) = upload_stream(&arguments.file, definition, json).await?;
        let answer = client.create_import_job(messages).await;
        reader.abort();
        progress.finish_and_clear();
        answer
    };
    let job = created
        .map_err(status_error)?
        .into_inner()
        .job
        .context("the server answered no job")?;
    let job = wait_for_end(client, &arguments.project, &job.job_id).await?;
    print_job(&job, json);
    if job.state == "FAILED" {
        anyhow::bail!("import job {} failed: {}", job.job_id, job.failure);
    }
    Ok(())
}

/// The definition followed by the file's chunks, read as the upload takes them; the bar
/// counts bytes handed to the upload.
async fn upload_stream(
    path: &Path,
    definition: proto::CreateImportJobRequest,
    json: bool,
) -> anyhow::Result<(
    tokio_stream::wrappers::ReceiverStream<proto::CreateImportJobRequest>,
    indicatif::ProgressBar,
    tokio::task::JoinHandle<()>,
)> {
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let total_bytes = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let progress = bulk::file_progress_bar(total_bytes, json);
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    let bar = progress.clone();
    let display = path.display().to_string();
    let reader = tokio::spawn(async move {
        if sender.send(definition).await.is_err() {
            return;
        }
        let mut buffer = vec![0u8; UPLOAD_CHUNK_BYTES];
        loop {
            let length = match file.read(&mut buffer).await {
                Ok(0) => return,
                Ok(length) => length,
                Err(error) => {
                    bar.println(format!("cannot read {display}: {error}"));
                    return;
                }
            };
            let chunk = proto::CreateImportJobRequest {
                part: Some(Part::Data(buffer[..length].to_vec())),
            };
            if sender.send(chunk).await.is_err() {
                return;
            }
            bar.inc(length as u64);
        }
    });
    Ok((
        tokio_stream::wrappers::ReceiverStream::new(receiver),
        progress,
        reader,
    ))
}

/// Polls the job until it is COMPLETED or FAILED.
async fn wait_for_end(
    client: &mut ImportsClient<Channel>,
    project: &str,
    job_id: &str,
) -> anyhow::Result<proto::ImportJob> {
    loop {
        let job = get(client, project, job_id).await?;
        if job.state == "COMPLETED" || job.state == "FAILED" {
            return Ok(job);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn job_json(job: &proto::ImportJob) -> Value {
    json!({
        "project_id": job.project_id,
        "job_id": job.job_id,
        "format": job.format,
        "file_name": job.file_name,
        "state": job.state,
        "rows_read": job.rows_read,
        "imported": job.imported,
        "rejected": job.rejected,
        "errors": job.errors.iter().map(|error| json!({
            "line": error.line,
            "endpoint_id": error.endpoint_id,
            "field": error.field,
            "message": error.message,
        })).collect::<Vec<_>>(),
        "creation_date": job.creation_date,
        "completion_date": job.completion_date,
        "failure": job.failure,
        "segment_id": job.segment_id,
    })
}

fn print_job(job: &proto::ImportJob, json: bool) {
    if json {
        print_json(&job_json(job));
        return;
    }
    println!(
        "job {} {}: {} rows read, {} imported, {} rejected",
        job.job_id, job.state, job.rows_read, job.imported, job.rejected
    );
    if !job.segment_id.is_empty() {
        println!(
            "segment {}: the endpoints this job imported",
            job.segment_id
        );
    }
    if !job.failure.is_empty() {
        println!("failure: {}", job.failure);
    }
    for error in &job.errors {
        let mut text = format!("line {}", error.line);
        if !error.endpoint_id.is_empty() {
            text.push_str(&format!(" ({})", error.endpoint_id));
        }
        text.push_str(": ");
        if !error.field.is_empty() {
            text.push_str(&format!("{}: ", error.field));
        }
        text.push_str(&error.message);
        println!("{text}");
    }
    if job.rejected > job.errors.len() as u64 {
        println!(
            "({} more rejected rows not listed)",
            job.rejected - job.errors.len() as u64
        );
    }
}
