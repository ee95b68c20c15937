//! Import jobs through a real server (4 shards): uploads in chunks and files on the node's
//! disk, exact counts, per-row errors with their lines and fields, bad requests, imported
//! segments (SEG-3) that survive restarts, and jobs whose node stopped.

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
use herald_proto::v1::segments_client::SegmentsClient;
use tonic::Code;
use tonic::transport::Channel;

struct Harness {
    _dir: tempfile::TempDir,
    node: RunningNode,
    channel: Channel,
    project: String,
}

/// A node of 4 shards on `dir`, snapshotting often so memberships go through snapshots.
fn config(dir: &std::path::Path, request_bytes: Option<usize>) -> Config {
    let mut config = Config::ephemeral(dir);
    config.cluster.shards = 4;
    config.cluster.snapshot_every_entries = 100;
    if let Some(bytes) = request_bytes {
        config.limits.request_bytes = bytes;
    }
    config
}

async fn connect(node: &RunningNode) -> Channel {
    Channel::from_shared(format!("http://{}", node.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

impl Harness {
    /// Stops the node and starts it again on the same data directory; `between` runs while
    /// it is stopped.
    async fn restart(self, between: impl FnOnce(&std::path::Path)) -> Self {
        let Self {
            _dir: dir,
            node,
            project,
            ..
        } = self;
        node.shutdown().await.unwrap();
        between(dir.path());
        let node = RunningNode::start(config(dir.path(), None)).await.unwrap();
        let channel = connect(&node).await;
        Self {
            _dir: dir,
            node,
            channel,
            project,
        }
    }
}

async fn start(request_bytes: Option<usize>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let node = RunningNode::start(config(dir.path(), request_bytes))
        .await
        .unwrap();
    let channel = connect(&node).await;
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
            define_segment_name: String::new(),
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
    assert_eq!(job.errors[1].field, "endpoint.channel_type");
    assert!(
        job.errors[2].message.contains("score") && job.errors[2].message.contains("high"),
        "{:?}",
        job.errors[2]
    );
    assert_eq!(job.errors[2].field, "endpoint.metrics[\"score\"]");

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

/// Uploads `data` as one chunk with a job that defines the imported segment `segment_name`.
async fn upload_defining_segment(
    channel: &Channel,
    project: &str,
    format: &str,
    data: &[u8],
    segment_name: &str,
) -> Result<pb::ImportJob, tonic::Status> {
    let mut first = definition(project, format, "");
    if let Some(Part::Definition(definition)) = &mut first.part {
        definition.define_segment_name = segment_name.into();
    }
    let messages = vec![
        first,
        pb::CreateImportJobRequest {
            part: Some(Part::Data(data.to_vec())),
        },
    ];
    let answer = ImportsClient::new(channel.clone())
        .create_import_job(tokio_stream::iter(messages))
        .await?;
    Ok(answer.into_inner().job.expect("job"))
}

async fn estimate(channel: &Channel, project: &str, segment_id: &str) -> u64 {
    SegmentsClient::new(channel.clone())
        .estimate_segment_size(pb::EstimateSegmentSizeRequest {
            project_id: project.into(),
            segment_id: segment_id.into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .endpoints
}

async fn create_segment(
    channel: &Channel,
    project: &str,
    name: &str,
    rule: pb::segment_definition::Rule,
) -> Result<String, tonic::Status> {
    let created = SegmentsClient::new(channel.clone())
        .create_segment(pb::CreateSegmentRequest {
            project_id: project.into(),
            segment: Some(pb::SegmentDefinition {
                name: name.into(),
                rule: Some(rule),
            }),
        })
        .await?;
    Ok(created.into_inner().segment_id)
}

async fn update_endpoint(channel: &Channel, project: &str, id: &str, score: f64) {
    EndpointsClient::new(channel.clone())
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: project.into(),
            endpoint_id: id.into(),
            endpoint: Some(pb::EndpointRequest {
                address: format!("{id}@example.com"),
                channel_type: pb::ChannelType::Email as i32,
                metrics: HashMap::from([("score".to_string(), score)]),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

/// A job that defines a segment: the segment exists at once and names the job, its size is
/// the rows imported (refused rows and other endpoints of the project left out), deleting an
/// imported endpoint takes it out while rewriting one keeps it in, a segment group can
/// include it and exclude a dynamic segment, and all of it holds after a restart of the
/// node on the same data directory (its shards rebuilt from storage and snapshots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_job_defines_an_imported_segment_that_survives_a_restart() {
    let harness = start(None).await;
    let (channel, project) = (harness.channel.clone(), harness.project.clone());
    // Endpoints of the project that the import does not touch.
    for i in 0..5 {
        update_endpoint(&channel, &project, &format!("other{i}"), 1.0).await;
    }
    // 200 rows: the bad email (line 11) and the unknown channel (line 101) are refused.
    let data = csv_with_bad_rows(200);
    let created = upload_defining_segment(&channel, &project, "CSV", data.as_bytes(), "march list")
        .await
        .unwrap();
    assert!(!created.segment_id.is_empty(), "{created:?}");
    let job = wait_for_end(&channel, &project, &created.job_id).await;
    assert_eq!(job.state, "COMPLETED", "{job:?}");
    assert_eq!((job.imported, job.rejected), (198, 2));
    assert_eq!(job.segment_id, created.segment_id);

    let segment = SegmentsClient::new(channel.clone())
        .get_segment(pb::GetSegmentRequest {
            project_id: project.clone(),
            segment_id: job.segment_id.clone(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(segment.name, "march list");
    assert_eq!(
        segment.rule,
        Some(pb::segment_response::Rule::Imported(pb::ImportedRule {
            import_job_id: job.job_id.clone(),
        }))
    );
    assert_eq!(estimate(&channel, &project, &job.segment_id).await, 198);

    EndpointsClient::new(channel.clone())
        .delete_endpoint(pb::DeleteEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e5".into(),
        })
        .await
        .unwrap();
    // Written again after the import: still a member.
    update_endpoint(&channel, &project, "e6", 6.0).await;
    assert_eq!(estimate(&channel, &project, &job.segment_id).await, 197);

    // Scores below 50: e0..e49 of the import but the refused row of index 9 and the
    // deleted e5, and the five others.
    let low_scores = create_segment(
        &channel,
        &project,
        "low scores",
        pb::segment_definition::Rule::Dimensions(pb::SegmentDimensions {
            metrics: HashMap::from([(
                "score".to_string(),
                pb::MetricDimension {
                    comparison: "LESS_THAN".into(),
                    value: 50.0,
                    upper: None,
                },
            )]),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!(estimate(&channel, &project, &low_scores).await, 48 + 5);
    let source = |id: &str, segment_type: &str| pb::SegmentGroup {
        dimensions: Vec::new(),
        dimension_type: String::new(),
        source_segments: vec![pb::SegmentReference {
            id: id.into(),
            version: 0,
        }],
        source_type: String::new(),
        segment_type: segment_type.into(),
    };
    let imported_but_not_low = create_segment(
        &channel,
        &project,
        "imported, not low",
        pb::segment_definition::Rule::SegmentGroups(pb::SegmentGroupList {
            include: "ALL".into(),
            groups: vec![
                source(&job.segment_id, "INCLUSIVE"),
                source(&low_scores, "EXCLUSIVE"),
            ],
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        estimate(&channel, &project, &imported_but_not_low).await,
        197 - 48
    );

    // Another segment of the same job can be made by hand; an unknown job is refused.
    let by_hand = create_segment(
        &channel,
        &project,
        "same list",
        pb::segment_definition::Rule::Imported(pb::ImportedRule {
            import_job_id: job.job_id.clone(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(estimate(&channel, &project, &by_hand).await, 197);
    let unknown = create_segment(
        &channel,
        &project,
        "nobody",
        pb::segment_definition::Rule::Imported(pb::ImportedRule {
            import_job_id: "no-such-job".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument, "{unknown:?}");

    let harness = harness.restart(|_| {}).await;
    let channel = harness.channel.clone();
    assert_eq!(estimate(&channel, &project, &job.segment_id).await, 197);
    assert_eq!(
        estimate(&channel, &project, &imported_but_not_low).await,
        197 - 48
    );
    harness.node.shutdown().await.unwrap();
}

/// Rows the parser refuses name the field at fault, like rows the server refuses: an
/// unknown opt-out, a metric that is not a number, a misspelt section key; broken JSON names
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parser_errors_name_the_field() {
    let harness = start(None).await;
    let data = "{\"id\":\"k1\",\"channel_type\":\"EMAIL\",\"address\":\"k1@example.com\",\"opt_out\":\"SOMETIMES\"}\n\
                {\"id\":\"k2\",\"channel_type\":\"EMAIL\",\"address\":\"k2@example.com\",\"metrics\":{\"score\":\"high\"}}\n\
                {\"id\":\"k3\",\"channel_type\":\"EMAIL\",\"address\":\"k3@example.com\",\"demographic\":{\"plataform\":\"ios\"}}\n\
                {\"id\":\"k4\",\n\
                {\"id\":\"k5\",\"channel_type\":\"EMAIL\",\"address\":\"k5@example.com\"}\n";
    let created = upload(
        &harness.channel,
        &harness.project,
        "JSONL",
        data.as_bytes(),
        1024,
    )
    .await
    .unwrap();
    let job = wait_for_end(&harness.channel, &harness.project, &created.job_id).await;
    assert_eq!((job.imported, job.rejected), (1, 4), "{job:?}");
    let fields: Vec<(u64, &str)> = job
        .errors
        .iter()
        .map(|error| (error.line, error.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        vec![
            (1, "endpoint.opt_out"),
            (2, "endpoint.metrics[\"score\"]"),
            (3, "endpoint.demographic.plataform"),
            (4, ""),
        ]
    );
    assert_eq!(job.errors[0].endpoint_id, "k1");
    harness.node.shutdown().await.unwrap();
}

/// A job whose node stopped while it ran (its record left PROCESSING, as a crash leaves it)
/// is FAILED once the node is back, with a failure that says to run it again: nobody waits
/// on a dead job. The job's imported segment keeps what the job had written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_interrupted_by_its_node_stopping_ends_failed() {
    use herald_node::domain::import_job::{ABANDONED_FAILURE, ImportJob, ImportState};
    use herald_node::raft::state_machine::import_job_key;
    use herald_node::storage::{Store, codec};

    let harness = start(None).await;
    let data = csv_with_bad_rows(50);
    let created = upload_defining_segment(
        &harness.channel,
        &harness.project,
        "CSV",
        data.as_bytes(),
        "half done",
    )
    .await
    .unwrap();
    let job = wait_for_end(&harness.channel, &harness.project, &created.job_id).await;
    assert_eq!(job.imported, 49);
    let (project, job_id) = (harness.project.clone(), job.job_id.clone());

    // While the node is down, put the job back where a crash mid-run leaves it.
    let harness = harness
        .restart(|dir| {
            let store = Store::open(dir).unwrap();
            let key = import_job_key(&project, &job_id);
            let mut stored: ImportJob = store.get(&store.data, &key).unwrap().unwrap();
            stored.state = ImportState::Processing;
            stored.completion_date.clear();
            stored.rows_read = 20;
            stored.imported = 19;
            store.data.insert(key, codec::encode(&stored)).unwrap();
            store.sync().unwrap();
        })
        .await;

    let listed = ImportsClient::new(harness.channel.clone())
        .get_import_jobs(pb::GetImportJobsRequest {
            project_id: project.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs[0].state, "FAILED", "{:?}", listed.jobs[0]);
    let job = ImportsClient::new(harness.channel.clone())
        .get_import_job(pb::GetImportJobRequest {
            project_id: project.clone(),
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.state, "FAILED");
    assert_eq!(job.failure, ABANDONED_FAILURE);
    assert!(!job.completion_date.is_empty());
    assert_eq!(job.imported, 19, "progress saved before the stop is kept");
    assert_eq!(
        estimate(&harness.channel, &project, &job.segment_id).await,
        49
    );
    harness.node.shutdown().await.unwrap();
}
