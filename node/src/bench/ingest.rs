//! `herald bench ingest`: concurrent `PutEvents` against Herald and against the no-op
//! baseline, with the same workload for the same time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_proto::v1::projects_client::ProjectsClient;
use herald_proto::v1::{CreateProjectRequest, Event, EventsBatch, PutEventsRequest};
use indicatif::ProgressBar;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use super::load::{self, CallOutcome, LoadOutcome, LoadShape, LoadWorker};
use super::process::ServerProcess;
use super::report::{BenchReport, round_to};
use super::wire::{
    EncodedPutEvents, PUT_EVENTS_PATH, PutEventsCodec, PutEventsSend, SEQUENCE_PLACEHOLDER,
};
use crate::config::Config;

/// Requests in flight on one HTTP/2 connection; more connections spread the load over more
/// of the server's tasks instead of queueing behind a single connection.
const IN_FLIGHT_PER_CONNECTION: u32 = 16;

/// Most endpoints one `PutEvents` may carry, and most events per endpoint (SPEC limits).
const ITEMS_PER_BATCH: u32 = 100;

/// Endpoints per request when the batch allows it: the spread of the typical SDK flush of
/// several devices' events by one application backend.
const ENDPOINTS_PER_REQUEST: u32 = 10;

/// Most distinct prebuilt requests; each is about 100 bytes per event, so the pool stays small.
const MAX_TEMPLATES: u32 = 1_024;

/// How long a freshly started node may take to accept the first project.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Event types the workload draws from.
const EVENT_TYPES: [&str; 5] = [
    "app.view",
    "app.click",
    "app.search",
    "app.share",
    "app.purchase",
];
/// Values of the `screen` attribute.
const SCREENS: [&str; 5] = ["home", "search", "cart", "settings", "profile"];
/// Values of the `plan` attribute.
const PLANS: [&str; 3] = ["free", "pro", "team"];

/// Flags of `herald bench ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Client address of a running herald node; without it the bench starts a node of its own
    /// in a temporary directory.
    #[arg(long, value_name = "ADDR")]
    pub target: Option<SocketAddr>,
    /// Seconds measured, for Herald and again for the baseline.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub duration: u64,
    /// Seconds of load before measuring, not counted.
    #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4_096))]
    pub concurrency: u32,
    /// Distinct endpoint ids the events are spread over.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub endpoints: u32,
    /// Events per request, spread over several endpoints.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    /// Shard groups of the node the bench starts [default: the config default].
    #[arg(long, value_name = "N", conflicts_with = "target")]
    pub shards: Option<u32>,
}

impl IngestArgs {
    fn workload(&self) -> IngestWorkload {
        IngestWorkload {
            concurrency: self.concurrency,
            endpoints: self.endpoints,
            batch: self.batch,
        }
    }

    fn shape(&self) -> LoadShape {
        LoadShape {
            warmup: Duration::from_secs(self.warmup),
            duration: Duration::from_secs(self.duration),
        }
    }
}

/// What the ingest load consists of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestWorkload {
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Distinct endpoint ids.
    pub endpoints: u32,
    /// Events per request.
    pub batch: u32,
}

impl IngestWorkload {
    /// Endpoints in each request: [`ENDPOINTS_PER_REQUEST`], more when the batch would
    /// otherwise exceed the events allowed per endpoint, fewer when there are fewer endpoints
    /// or events.
    fn endpoints_per_request(&self) -> u32 {
        ENDPOINTS_PER_REQUEST
            .max(self.batch.div_ceil(ITEMS_PER_BATCH))
            .min(self.batch)
            .min(self.endpoints)
    }

    /// HTTP/2 connections to open.
    fn connections(&self) -> u32 {
        self.concurrency.div_ceil(IN_FLIGHT_PER_CONNECTION)
    }

    /// Distinct prebuilt requests: enough to cover every endpoint, within [`MAX_TEMPLATES`].
    fn templates(&self) -> u32 {
        self.endpoints
            .div_ceil(self.endpoints_per_request())
            .clamp(1, MAX_TEMPLATES)
    }
}

/// Runs `herald bench ingest`.
pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let workload = args.workload();
    let shape = args.shape();
    let per_request = workload.endpoints_per_request();
    println!(
        "ingest: {} requests in flight over {} connections, {} events per request over {per_request} \
         endpoints, {} endpoints in all; {} s measured after {} s of warmup",
        workload.concurrency,
        workload.connections(),
        workload.batch,
        workload.endpoints,
        args.duration,
        args.warmup,
    );

    let baseline = {
        let server = ServerProcess::baseline().context("cannot start the baseline server")?;
        let outcome = measure_ingest("baseline", server.addr, workload, shape).await;
        server.stop().context("the baseline server failed")?;
        outcome.context("the baseline run failed")?
    };
    let (herald, herald_is) = match args.target {
        Some(addr) => {
            let outcome = measure_ingest("herald", addr, workload, shape).await;
            (outcome?, format!("node at {addr}"))
        }
        None => {
            let (outcome, shards) = measure_own_node(args.shards, workload, shape).await?;
            (
                outcome,
                format!("`herald serve` started by the bench, {shards} shards"),
            )
        }
    };

    print_outcome("baseline", &baseline, "no-op tonic server, its own process");
    print_outcome("herald", &herald, &herald_is);
    let report = ingest_report(workload, shape, &herald, &baseline);
    match report.ratio {
        Some(ratio) => println!("herald / baseline: {ratio:.3}"),
        None => println!("herald / baseline: none, the baseline accepted no events"),
    }
    report.print();
    Ok(())
}

/// Starts `herald serve` on a temporary directory, measures it and stops it; returns the
/// outcome and the node's shard count.
async fn measure_own_node(
    shards: Option<u32>,
    workload: IngestWorkload,
    shape: LoadShape,
) -> anyhow::Result<(LoadOutcome, u32)> {
    let data_dir = tempfile::Builder::new()
        .prefix("herald-bench-")
        .tempdir()
        .context("cannot create a temporary data directory")?;
    let shard_count = shards.unwrap_or(Config::default().cluster.shards);
    let spinner = ProgressBar::new_spinner().with_message("starting a herald node");
    spinner.enable_steady_tick(Duration::from_millis(100));
    let node = ServerProcess::herald(data_dir.path(), shards);
    spinner.finish_and_clear();
    let node = node.context("cannot start a herald node")?;
    let outcome = measure_ingest("herald", node.addr, workload, shape).await;
    let stopped = node.stop();
    let outcome = outcome?;
    stopped.context("the herald node did not stop cleanly")?;
    drop(data_dir);
    Ok((outcome, shard_count))
}

/// Creates a project at `addr` and runs the ingest workload against it.
pub async fn measure_ingest(
    label: &str,
    addr: SocketAddr,
    workload: IngestWorkload,
    shape: LoadShape,
) -> anyhow::Result<LoadOutcome> {
    let mut channels = Vec::new();
    for _ in 0..workload.connections() {
        channels.push(connect(addr).await?);
    }
    let project_id = create_project(channels[0].clone()).await?;
    let templates = build_templates(&project_id, workload, chrono::Utc::now())?;
    let workers = (0..workload.concurrency)
        .map(|worker| {
            let channel = channels[(worker % workload.connections()) as usize].clone();
            PutEventsWorker::new(
                worker,
                workload.concurrency,
                channel,
                Arc::clone(&templates),
            )
        })
        .collect();
    Ok(load::drive(label, shape, workers).await)
}

/// A new HTTP/2 connection to `addr`.
async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    // Responses of a whole batch arrive at once; larger receive windows keep them from
    // waiting on flow-control updates.
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {addr}"))
}

/// Creates the project the events go to, retrying while a fresh node is still electing.
async fn create_project(channel: Channel) -> anyhow::Result<String> {
    let mut client = ProjectsClient::new(channel);
    let request = CreateProjectRequest {
        name: format!(
            "bench-ingest-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ),
        tags: [("created_by".to_owned(), "herald bench ingest".to_owned())].into(),
    };
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        match client.create_project(request.clone()).await {
            Ok(project) => return Ok(project.into_inner().project_id),
            Err(status) if is_permanent(&status) || tokio::time::Instant::now() >= deadline => {
                return Err(anyhow::anyhow!("cannot create the bench project: {status}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Whether retrying a call that failed with `status` cannot help.
fn is_permanent(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::InvalidArgument
            | Code::Unimplemented
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::AlreadyExists
            | Code::OutOfRange
    )
}

/// Encodes the pool of requests the workers cycle through. Request `t` carries the endpoints
/// of slots `t * per_request ..`, spread evenly over all endpoint ids (round-robin when there
/// are fewer endpoints than slots); every event id holds the sequence placeholder.
fn build_templates(
    project_id: &str,
    workload: IngestWorkload,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Arc<[EncodedPutEvents]>> {
    let per_request = workload.endpoints_per_request();
    let templates = workload.templates();
    let slots = u64::from(templates) * u64::from(per_request);
    let endpoint_of_slot = |slot: u64| {
        if u64::from(workload.endpoints) >= slots {
            slot * u64::from(workload.endpoints) / slots
        } else {
            slot % u64::from(workload.endpoints)
        }
    };
    (0..templates)
        .map(|template| {
            let mut event_index = 0u32;
            let batch_item = (0..per_request)
                .map(|position| {
                    let slot = u64::from(template) * u64::from(per_request) + u64::from(position);
                    let endpoint_id = format!("bench-endpoint-{:08}", endpoint_of_slot(slot));
                    let mut events_here = workload.batch / per_request;
                    if position < workload.batch % per_request {
                        events_here += 1;
                    }
                    let events = (0..events_here)
                        .map(|_| {
                            let event = bench_event(mix(slot, event_index), now);
                            let event_id = format!("ev-{SEQUENCE_PLACEHOLDER}-{event_index:05}");
                            event_index += 1;
                            (event_id, event)
                        })
                        .collect();
                    (
                        endpoint_id,
                        EventsBatch {
                            endpoint: None,
                            events,
                        },
                    )
                })
                .collect();
            let request = PutEventsRequest {
                project_id: project_id.to_owned(),
                batch_item,
            };
            EncodedPutEvents::new(&request).map_err(|error| anyhow::anyhow!(error))
        })
        .collect()
}

/// An event drawn from the workload's small vocabulary by `random`, within the last minute.
fn bench_event(random: u64, now: chrono::DateTime<chrono::Utc>) -> Event {
    let pick = |values: &[&str], shift: u32| {
        values[((random >> shift) % values.len() as u64) as usize].to_owned()
    };
    let age = chrono::Duration::milliseconds(((random >> 32) % 60_000) as i64);
    Event {
        event_type: pick(&EVENT_TYPES, 0),
        timestamp: (now - age).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        attributes: [
            ("screen".to_owned(), pick(&SCREENS, 8)),
            ("plan".to_owned(), pick(&PLANS, 16)),
        ]
        .into(),
        metrics: [("duration_ms".to_owned(), ((random >> 48) % 5_000) as f64)].into(),
        ..Event::default()
    }
}

/// A well-mixed 64-bit value of `a` and `b` (splitmix64), so the workload is varied yet the
/// same on every run.
fn mix(a: u64, b: u32) -> u64 {
    let mut z = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(b);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One in-flight slot: sends the templates in turn, each time with a new sequence number.
struct PutEventsWorker {
    /// Client over a channel shared with other workers.
    grpc: Grpc<Channel>,
    /// The run's prebuilt requests.
    templates: Arc<[EncodedPutEvents]>,
    /// The template sent next.
    next_template: usize,
    /// The sequence number sent next; the worker's index is in the high bits, so workers
    /// never repeat each other's event ids.
    next_sequence: u64,
}

impl PutEventsWorker {
    fn new(
        worker: u32,
        workers: u32,
        channel: Channel,
        templates: Arc<[EncodedPutEvents]>,
    ) -> Self {
        // Workers start spread over the pool so they do not all send the same endpoints.
        let next_template = worker as usize * templates.len() / workers as usize;
        Self {
            grpc: Grpc::new(channel),
            templates,
            next_template,
            next_sequence: u64::from(worker) << 32,
        }
    }
}

impl LoadWorker for PutEventsWorker {
    async fn call(&mut self) -> CallOutcome {
        let template = self.next_template;
        let events = self.templates[template].events();
        let send = PutEventsSend {
            templates: Arc::clone(&self.templates),
            template,
            sequence: self.next_sequence,
        };
        self.next_template = (template + 1) % self.templates.len();
        self.next_sequence += 1;

        if let Err(error) = self.grpc.ready().await {
            return CallOutcome::request_failed(events, format!("connection failed: {error}"));
        }
        let path = PathAndQuery::from_static(PUT_EVENTS_PATH);
        match self
            .grpc
            .unary(tonic::Request::new(send), path, PutEventsCodec)
            .await
        {
            Ok(response) => {
                let tally = response.into_inner();
                CallOutcome {
                    succeeded: tally.accepted,
                    failed: events.saturating_sub(tally.accepted),
                    request_failed: false,
                    error: tally.first_rejection,
                }
            }
            Err(status) => {
                CallOutcome::request_failed(events, format!("PutEvents failed: {status}"))
            }
        }
    }
}

/// The JSON report of a run.
pub fn ingest_report(
    workload: IngestWorkload,
    shape: LoadShape,
    herald: &LoadOutcome,
    baseline: &LoadOutcome,
) -> BenchReport {
    let rounded_ms = |ms: Option<f64>| ms.map(|ms| round_to(ms, 3));
    BenchReport::new(
        "ingest",
        round_to(herald.per_second(), 1),
        "events/s",
        round_to(baseline.per_second(), 1),
    )
    .with("p50_ms", rounded_ms(herald.latency.p50_ms))
    .with("p99_ms", rounded_ms(herald.latency.p99_ms))
    .with("baseline_p50_ms", rounded_ms(baseline.latency.p50_ms))
    .with("baseline_p99_ms", rounded_ms(baseline.latency.p99_ms))
    .with("duration_s", shape.duration.as_secs_f64())
    .with("concurrency", workload.concurrency)
    .with("batch", workload.batch)
    .with("endpoints", workload.endpoints)
    .with("failed_events", herald.failed)
}

/// One human line per measured server, and the first failure if any.
fn print_outcome(label: &str, outcome: &LoadOutcome, what: &str) {
    let ms = |ms: Option<f64>| ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2} ms"));
    println!(
        "{label:>9}: {:>12.0} events/s, p50 {}, p99 {}, {} requests ({what})",
        outcome.per_second(),
        ms(outcome.latency.p50_ms),
        ms(outcome.latency.p99_ms),
        outcome.requests,
    );
    if outcome.failed > 0 || outcome.failed_requests > 0 {
        println!(
            "{:>9}  {} events and {} requests failed; first failure: {}",
            "",
            outcome.failed,
            outcome.failed_requests,
            outcome.first_error.as_deref().unwrap_or("unknown"),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use prost::Message;
    use serde_json::Value;

    use super::*;

    /// The default workload puts 10 endpoints of 10 events in each request, and every endpoint
    /// id appears in some request, never twice in one.
    #[test]
    fn templates_cover_every_endpoint() {
        let workload = IngestWorkload {
            concurrency: 8,
            endpoints: 95,
            batch: 100,
        };
        assert_eq!(workload.endpoints_per_request(), 10);
        let templates = build_templates("p", workload, chrono::Utc::now()).unwrap();
        assert_eq!(templates.len(), 10);
        let mut endpoints = HashSet::new();
        for template in templates.iter() {
            let mut bytes = Vec::new();
            template.write_to(7, &mut bytes);
            let request = PutEventsRequest::decode(bytes.as_slice()).unwrap();
            assert_eq!(request.batch_item.len(), 10);
            for batch in request.batch_item.values() {
                assert_eq!(batch.events.len(), 10);
            }
            endpoints.extend(request.batch_item.into_keys());
        }
        assert_eq!(endpoints.len(), 95);
    }

    /// Large batches grow the endpoints per request rather than exceed 100 events per endpoint.
    #[test]
    fn large_batches_stay_within_item_limits() {
        let workload = IngestWorkload {
            concurrency: 1,
            endpoints: 10_000,
            batch: 2_500,
        };
        assert_eq!(workload.endpoints_per_request(), 25);
        let few = IngestWorkload {
            endpoints: 3,
            ..workload
        };
        assert_eq!(few.endpoints_per_request(), 3);
    }

    /// A short run against the baseline counts accepted events, loses none, and its report
    /// is one JSON line with the run's figures.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn baseline_run_counts_events_and_reports_json() {
        let server = crate::bench::baseline::BaselineServer::start()
            .await
            .unwrap();
        let workload = IngestWorkload {
            concurrency: 4,
            endpoints: 50,
            batch: 20,
        };
        let shape = LoadShape {
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
        };
        let outcome = measure_ingest("baseline", server.addr, workload, shape)
            .await
            .unwrap();
        server.shutdown().await.unwrap();

        assert!(outcome.succeeded > 0, "{outcome:?}");
        assert_eq!(outcome.succeeded % 20, 0, "whole batches are accepted");
        assert_eq!(outcome.failed, 0, "{outcome:?}");
        assert!(outcome.latency.p99_ms.is_some());

        let line = ingest_report(workload, shape, &outcome, &outcome).json_line();
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["workload"], "ingest");
        assert_eq!(parsed["unit"], "events/s");
        assert!(parsed["value"].as_f64().unwrap() > 0.0);
        assert_eq!(parsed["value"], parsed["baseline"]);
        assert_eq!(parsed["ratio"], 1.0);
        assert_eq!(parsed["batch"], 20);
        assert_eq!(parsed["concurrency"], 4);
        assert!(parsed["p99_ms"].as_f64().is_some());
    }
}
