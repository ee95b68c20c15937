//! Import jobs through a real server (4 shards): uploads in chunks and files on the node's
//! disk, exact counts, per-row errors with their lines and fields, and bad requests.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use herald_node::config::Config;
use herald_node::server::RunningNode;
use herald_proto::v1 as pb;
use herald_proto::v1::create_import_job_request::Part;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::imports_client::ImportsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use tonic::Code;
use tonic::transport::Channel;

struct Harness {
    _dir: tempfile::TempDir,
    node: RunningNode,
    channel: Channel,
    project: String,
}

async fn start(request_bytes: Option<usize>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.cluster.shards = 4;
    if let Some(bytes) = request_bytes {
        config.limits.request_bytes = bytes;
    }
    let node = RunningNode::start(config).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", node.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let project = ProjectsClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            name: "imports".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    Harness {
        _dir: dir,
        node,
        channel,
        project,
    }
}

fn definition(project: &str, format: &str, file_name: &str) -> pb::CreateImportJobRequest {
    pb::CreateImportJobRequest {
        part: Some(Part::Definition(pb::ImportJobDefinition {
            project_id: project.into(),
            format: format.into(),
            file_name: file_name.into(),
            batch_size: 0,
        })),
    }
}

/// Uploads `data` in chunks of `chunk_bytes` after the definition and answers the job.
async fn upload(
    channel: &Channel,
    project: &str,
    format: &str,
    data: &[u8],
    chunk_bytes: usize,
) -> Result<pb::ImportJob, tonic::Status> {
    let mut messages = vec![definition(project, format, "")];
    messages.extend(
        data.chunks(chunk_bytes)
            .map(|chunk| pb::CreateImportJobRequest {
                part: Some(Part::Data(chunk.to_vec())),
            }),
    );
    let answer = ImportsClient::new(channel.clone())
        .create_import_job(tokio_stream::iter(messages))
        .await?;
    Ok(answer.into_inner().job.expect("job"))
}

/// Polls GetImportJob until the job has ended (deadline 60 s).
async fn wait_for_end(channel: &Channel, project: &str, job_id: &str) -> pb::ImportJob {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut client = ImportsClient::new(channel.clone());
    loop {
        let job = client
            .get_import_job(pb::GetImportJobRequest {
                project_id: project.into(),
                job_id: job_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .job
            .unwrap();
        if job.state == "COMPLETED" || job.state == "FAILED" {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job still {}",
            job.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn endpoint(
    channel: &Channel,
    project: &str,
    id: &str,
) -> Result<pb::Endpoint, tonic::Status> {
    EndpointsClient::new(channel.clone())
        .get_endpoint(pb::GetEndpointRequest {
            project_id: project.into(),
            endpoint_id: id.into(),
        })
        .await
        .map(|answer| answer.into_inner())
}

/// A CSV of `rows` good rows, with a bad email on line 11, an unknown channel on line 101
/// and a bad number on line 1001 (the header is line 1).
fn csv_with_bad_rows(rows: usize) -> String {
    let mut text = String::from("id,channel_type,address,attributes.plan,metrics.score\n");
    for index in 0..rows {
        let line = index + 2;
        match line {
            11 => writeln!(text, "bad-email,EMAIL,not-an-email,pro,1").unwrap(),
            101 => writeln!(text, "bad-channel,PIGEON,x@y.z,pro,1").unwrap(),
            1001 => writeln!(text, "bad-number,EMAIL,n@y.z,pro,high").unwrap(),
            _ => writeln!(text, "e{index},EMAIL,user{index}@example.com,pro,{index}").unwrap(),
        }
    }
    text
}

/// An uploaded CSV of 2,000 rows with three bad ones: the good rows are imported and
/// readable, each bad row is rejected with its line and the field or value at fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_upload_imports_good_rows_and_reports_bad_ones() {
    let harness = start(None).await;
    let data = csv_with_bad_rows(2_000);
    let created = upload(
        &harness.channel,
        &harness.project,
        "CSV",
        data.as_bytes(),
        16 * 1024,
    )
    .await
    .unwrap();
    assert_eq!(created.format, "CSV");
    assert!(!created.job_id.is_empty());
    let job = wait_for_end(&harness.channel, &harness.project, &created.job_id).await;
    assert_eq!(job.state, "COMPLETED", "{job:?}");
    assert_eq!(
        (job.rows_read, job.imported, job.rejected),
        (2_000, 1_997, 3)
    );
    assert!(!job.completion_date.is_empty());
    let lines: Vec<u64> = job.errors.iter().map(|error| error.line).collect();
    assert_eq!(lines, vec![11, 101, 1001]);
    assert_eq!(job.errors[0].endpoint_id, "bad-email");
    assert_eq!(job.errors[0].field, "endpoint.address");
    assert!(
        job.errors[1].message.contains("PIGEON"),
        "{:?}",
        job.errors[1]
    );
    assert!(
        job.errors[2].message.contains("score") && job.errors[2].message.contains("high"),
        "{:?}",
        job.errors[2]
    );

    let stored = endpoint(&harness.channel, &harness.project, "e1500")
        .await
        .unwrap();
    assert_eq!(stored.address, "user1500@example.com");
    assert_eq!(stored.attributes["plan"].values, vec!["pro"]);
    let missing = endpoint(&harness.channel, &harness.project, "bad-email")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let listed = ImportsClient::new(harness.channel.clone())
        .get_import_jobs(pb::GetImportJobsRequest {
            project_id: harness.project.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs.len(), 1);
    assert_eq!(listed.jobs[0].imported, 1_997);
    harness.node.shutdown().await.unwrap();
}

/// A JSONL upload: objects per line, blank lines skipped, a broken line rejected on its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_upload_imports_endpoints() {
    let harness = start(None).await;
    let data = "{\"id\":\"j1\",\"channel_type\":\"SMS\",\"address\":\"+5511999990001\",\"user\":{\"user_id\":\"u1\"}}\n\
                \n\
                {\"id\":\"j2\",\n\
                {\"id\":\"j3\",\"channel_type\":\"EMAIL\",\"address\":\"j3@example.com\"}\n";
    let created = upload(
        &harness.channel,
        &harness.project,
        "JSONL",
        data.as_bytes(),
        7,
    )
    .await
    .unwrap();
    let job = wait_for_end(&harness.channel, &harness.project, &created.job_id).await;
    assert_eq!(job.state, "COMPLETED", "{job:?}");
    assert_eq!((job.rows_read, job.imported, job.rejected), (3, 2, 1));
    assert_eq!(job.errors[0].line, 3);
    let stored = endpoint(&harness.channel, &harness.project, "j1")
        .await
        .unwrap();
    assert_eq!(stored.user.unwrap().user_id, "u1");
    harness.node.shutdown().await.unwrap();
}

/// A file on the node's disk is imported without any upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_on_the_node_is_imported() {
    let harness = start(None).await;
    let path = harness._dir.path().join("endpoints.csv");
    std::fs::write(&path, csv_with_bad_rows(300)).unwrap();
    let answer = ImportsClient::new(harness.channel.clone())
        .create_import_job(tokio_stream::iter(vec![definition(
            &harness.project,
            "csv",
            path.to_str().unwrap(),
        )]))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(answer.file_name, path.to_str().unwrap());
    let job = wait_for_end(&harness.channel, &harness.project, &answer.job_id).await;
    assert_eq!(job.state, "COMPLETED", "{job:?}");
    assert_eq!((job.rows_read, job.imported, job.rejected), (300, 298, 2));
    assert!(
        endpoint(&harness.channel, &harness.project, "e299")
            .await
            .is_ok()
    );

    let missing_file = ImportsClient::new(harness.channel.clone())
        .create_import_job(tokio_stream::iter(vec![definition(
            &harness.project,
            "CSV",
            "/nonexistent/endpoints.csv",
        )]))
        .await
        .unwrap_err();
    assert_eq!(missing_file.code(), Code::InvalidArgument);
    harness.node.shutdown().await.unwrap();
}

/// Unknown projects and job ids are NOT_FOUND; a bad format or a missing definition is
/// INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_project_and_job_are_not_found() {
    let harness = start(None).await;
    let unknown_project = upload(&harness.channel, "nope", "CSV", b"id\ne1\n", 1024)
        .await
        .unwrap_err();
    assert_eq!(unknown_project.code(), Code::NotFound);
    let unknown_job = ImportsClient::new(harness.channel.clone())
        .get_import_job(pb::GetImportJobRequest {
            project_id: harness.project.clone(),
            job_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_job.code(), Code::NotFound);
    let bad_format = upload(&harness.channel, &harness.project, "XML", b"<a/>", 1024)
        .await
        .unwrap_err();
    assert_eq!(bad_format.code(), Code::InvalidArgument);
    let no_definition = ImportsClient::new(harness.channel.clone())
        .create_import_job(tokio_stream::iter(vec![pb::CreateImportJobRequest {
            part: Some(Part::Data(b"id\n".to_vec())),
        }]))
        .await
        .unwrap_err();
    assert_eq!(no_definition.code(), Code::InvalidArgument);
    harness.node.shutdown().await.unwrap();
}

/// A file several times the request size limit, uploaded in many chunks, is imported whole:
/// the server streams it rather than taking it as one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_larger_than_the_request_limit_streams_in_chunks() {
    let request_bytes = 16 * 1024;
    let harness = start(Some(request_bytes)).await;
    let mut data = String::from("id,channel_type,address,attributes.note\n");
    let padding = "x".repeat(100);
    let rows = 1_500;
    for index in 0..rows {
        writeln!(data, "big{index},EMAIL,big{index}@example.com,{padding}").unwrap();
    }
    assert!(data.len() > 8 * request_bytes, "{} bytes", data.len());
    let whole = upload(
        &harness.channel,
        &harness.project,
        "CSV",
        data.as_bytes(),
        data.len(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(whole.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{whole:?}"
    );
    let created = upload(
        &harness.channel,
        &harness.project,
        "CSV",
        data.as_bytes(),
        8 * 1024,
    )
    .await
    .unwrap();
    let job = wait_for_end(&harness.channel, &harness.project, &created.job_id).await;
    assert_eq!(job.state, "COMPLETED", "{job:?}");
    assert_eq!((job.rows_read, job.imported, job.rejected), (rows, rows, 0));
    assert!(
        endpoint(&harness.channel, &harness.project, "big1499")
            .await
            .is_ok()
    );
    harness.node.shutdown().await.unwrap();
}

/// `herald import create` uploads a file and prints the final counts and row errors;
/// `herald import get` and `list` show the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_gets_and_lists_import_jobs() {
    let harness = start(None).await;
    let server = harness.node.client_addr.to_string();
    let path = harness._dir.path().join("cli.csv");
    std::fs::write(&path, csv_with_bad_rows(150)).unwrap();
    let herald = |arguments: Vec<String>| {
        let server = server.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                    .args(&arguments)
                    .args(["--server", &server])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let created = herald(vec![
        "import".into(),
        "create".into(),
        "--project".into(),
        harness.project.clone(),
        path.to_str().unwrap().into(),
        "--json".into(),
    ])
    .await;
    assert!(created.status.success(), "{created:?}");
    let job: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(job["state"], "COMPLETED");
    assert_eq!(
        (job["imported"].as_u64(), job["rejected"].as_u64()),
        (Some(148), Some(2))
    );
    assert_eq!(job["errors"][0]["line"], 11);
    let job_id = job["job_id"].as_str().unwrap().to_string();

    let got = herald(vec![
        "import".into(),
        "get".into(),
        "--project".into(),
        harness.project.clone(),
        "--id".into(),
        job_id.clone(),
    ])
    .await;
    let text = String::from_utf8_lossy(&got.stdout);
    assert!(
        got.status.success() && text.contains("148 imported"),
        "{got:?}"
    );
    assert!(
        text.contains("line 11 (bad-email): endpoint.address"),
        "{text}"
    );
    let listed = herald(vec![
        "import".into(),
        "list".into(),
        "--project".into(),
        harness.project.clone(),
    ])
    .await;
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&job_id),
        "{listed:?}"
    );

    harness.node.shutdown().await.unwrap();
}
