//! `herald bench segment`: estimate a segment of 4 dimensions over 1,000,000 endpoints in a
//! fresh node, against a baseline that evaluates the same segment naively, endpoint by
//! endpoint, in this process.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use herald_proto::v1 as pb;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use herald_proto::v1::segments_client::SegmentsClient;
use indicatif::{ProgressBar, ProgressStyle};
use tonic::transport::Channel;

use super::BenchReport;
use super::process::ServerProcess;
use crate::domain::endpoint::{
    ChannelType, Demographic, Endpoint, EndpointStatus, Location, OptOut, User,
};
use crate::domain::segment::{
    self, AttributeDimension, AttributeKind, EndpointFacts, MetricComparison, MetricDimension,
    SegmentDefinition, SegmentDimensions, SegmentRule, SetDimension, SetKind,
};

/// `herald bench segment` flags.
#[derive(Debug, clap::Args)]
pub struct SegmentArgs {
    /// Synthetic endpoints to load.
    #[arg(long, default_value_t = 1_000_000)]
    pub endpoints: u32,
    /// Estimates to time; the median is reported.
    #[arg(long, default_value_t = 7)]
    pub runs: u32,
    /// Concurrent import batches while loading.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Shards of the node the bench starts.
    #[arg(long)]
    pub shards: Option<u32>,
}

const CHANNELS: [(ChannelType, i32); 4] = [
    (ChannelType::Email, pb::ChannelType::Email as i32),
    (ChannelType::Sms, pb::ChannelType::Sms as i32),
    (ChannelType::Gcm, pb::ChannelType::Gcm as i32),
    (ChannelType::Apns, pb::ChannelType::Apns as i32),
];
const PLATFORMS: [&str; 3] = ["ios", "android", "web"];
const COUNTRIES: [&str; 8] = ["BR", "US", "PT", "NP", "IN", "DE", "FR", "JP"];
const PLANS: [&str; 3] = ["free", "pro", "enterprise"];

/// The synthetic endpoint `i`: channel, platform, country, plan and score spread by a fixed
/// mixing function, so the bench and its baseline see the same data.
fn synthetic(i: u32) -> (String, usize, usize, usize, usize, f64) {
    let mixed = (u64::from(i)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let pick = |shift: u32, n: usize| ((mixed >> shift) % n as u64) as usize;
    (
        format!("endpoint-{i:08}"),
        pick(3, CHANNELS.len()),
        pick(11, PLATFORMS.len()),
        pick(19, COUNTRIES.len()),
        pick(27, PLANS.len()),
        (mixed >> 35) as f64 % 100.0,
    )
}

fn request(i: u32) -> pb::EndpointBatchItem {
    let (id, channel, platform, country, plan, score) = synthetic(i);
    let address = match CHANNELS[channel].0 {
        ChannelType::Email => format!("user{i}@example.com"),
        ChannelType::Sms => format!("+55119{:08}", i % 100_000_000),
        _ => format!("token-{i}"),
    };
    pb::EndpointBatchItem {
        endpoint_id: id,
        endpoint: Some(pb::EndpointRequest {
            address,
            channel_type: CHANNELS[channel].1,
            attributes: HashMap::from([(
                "plan".to_string(),
                pb::AttributeValues {
                    values: vec![PLANS[plan].to_string()],
                },
            )]),
            metrics: HashMap::from([("score".to_string(), score)]),
            demographic: Some(pb::EndpointDemographic {
                platform: PLATFORMS[platform].to_string(),
                app_version: format!("1.{}", i % 5),
                ..Default::default()
            }),
            location: Some(pb::EndpointLocation {
                country: COUNTRIES[country].to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn facts(i: u32) -> EndpointFacts {
    let (id, channel, platform, country, plan, score) = synthetic(i);
    let endpoint = Endpoint {
        project_id: "bench".into(),
        endpoint_id: id,
        address: String::new(),
        channel_type: CHANNELS[channel].0,
        attributes: BTreeMap::from([("plan".to_string(), vec![PLANS[plan].to_string()])]),
        metrics: BTreeMap::from([("score".to_string(), score)]),
        demographic: Demographic {
            platform: PLATFORMS[platform].to_string(),
            app_version: format!("1.{}", i % 5),
            ..Default::default()
        },
        location: Location {
            country: COUNTRIES[country].to_string(),
            ..Default::default()
        },
        opt_out: OptOut::None,
        status: EndpointStatus::Active,
        user: User::default(),
        effective_date: String::new(),
        creation_date: String::new(),
        request_id: String::new(),
        cohort_id: 0,
    };
    EndpointFacts::from_endpoint(&endpoint, None)
}

/// Four dimensions: channel, platform, country and a metric comparison; about 10% match.
fn definition() -> SegmentDefinition {
    let set = |values: &[&str]| SetDimension {
        kind: SetKind::Inclusive,
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    let mut dimensions = SegmentDimensions::default();
    dimensions.demographic.channel = Some(set(&["EMAIL", "SMS"]));
    dimensions.demographic.platform = Some(set(&["ios", "android"]));
    dimensions.location.country = Some(set(&["BR", "US", "PT"]));
    dimensions.metrics.insert(
        "score".into(),
        MetricDimension {
            comparison: MetricComparison::GreaterThanOrEqual,
            value: 50.0,
            upper: None,
        },
    );
    let _ = AttributeDimension {
        kind: AttributeKind::Inclusive,
        values: vec![],
    };
    SegmentDefinition {
        name: "bench: email/sms on mobile in BR/US/PT with score >= 50".into(),
        rule: SegmentRule::Dimensions(dimensions),
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Runs the workload; the JSON report is the last line of stdout.
pub async fn run(args: SegmentArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.endpoints > 0 && args.runs > 0,
        "--endpoints and --runs must be positive"
    );
    let data_dir = tempfile::Builder::new().prefix("herald-bench-").tempdir()?;
    let node = ServerProcess::herald(data_dir.path(), args.shards)?;
    let outcome = measure(&node, &args).await;
    let stopped = node.stop();
    let (estimate_ms, baseline_ms, count, naive_count, index_bytes, indexed) = outcome?;
    stopped?;
    anyhow::ensure!(
        count == naive_count,
        "the node counted {count} members but the naive evaluation {naive_count}"
    );
    let bytes_per_endpoint = index_bytes / indexed.max(1.0);
    println!(
        "segment: {} endpoints, {count} members; estimate median {estimate_ms:.1} ms (naive scan in process: {baseline_ms:.1} ms); index {bytes_per_endpoint:.0} bytes/endpoint",
        args.endpoints
    );
    BenchReport::new("segment", estimate_ms, "ms", baseline_ms)
        .with("endpoints", args.endpoints)
        .with("members", count)
        .with("runs", args.runs)
        .with(
            "index_bytes_per_endpoint",
            (bytes_per_endpoint * 10.0).round() / 10.0,
        )
        .print();
    Ok(())
}

async fn measure(
    node: &ServerProcess,
    args: &SegmentArgs,
) -> anyhow::Result<(f64, f64, u64, u64, f64, f64)> {
    let channel = Channel::from_shared(format!("http://{}", node.addr))?
        .connect()
        .await?;
    let project = ProjectsClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            name: "bench-segment".into(),
            tags: HashMap::new(),
        })
        .await?
        .into_inner()
        .project_id;

    let progress = ProgressBar::new(u64::from(args.endpoints)).with_style(
        ProgressStyle::with_template(
            "loading {bar:40} {pos}/{len} endpoints ({per_sec}, eta {eta})",
        )
        .expect("static template"),
    );
    let batches: Vec<(u32, u32)> = (0..args.endpoints)
        .step_by(100)
        .map(|start| (start, (start + 100).min(args.endpoints)))
        .collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(batches.into_iter()));
    let mut loaders = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let queue = queue.clone();
        let mut client = EndpointsClient::new(channel.clone());
        let project = project.clone();
        let progress = progress.clone();
        loaders.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("lock").next();
                let Some((start, end)) = next else {
                    return Ok::<_, anyhow::Error>(());
                };
                let items = (start..end).map(request).collect();
                let results = client
                    .update_endpoints_batch(pb::UpdateEndpointsBatchRequest {
                        project_id: project.clone(),
                        items,
                    })
                    .await?
                    .into_inner()
                    .results;
                if let Some(bad) = results
                    .iter()
                    .find(|r| r.result.as_ref().is_none_or(|r| r.status_code != 202))
                {
                    anyhow::bail!("endpoint {} was refused: {:?}", bad.endpoint_id, bad.result);
                }
                progress.inc(u64::from(end - start));
            }
        }));
    }
    for loader in loaders {
        loader.await??;
    }
    progress.finish_and_clear();

    let definition = definition();
    let mut segments = SegmentsClient::new(channel);
    let segment_id = segments
        .create_segment(pb::CreateSegmentRequest {
            project_id: project.clone(),
            segment: Some(crate::api::segments::definition_to_proto(&definition)),
        })
        .await?
        .into_inner()
        .segment_id;
    let mut samples = Vec::new();
    let mut count = 0;
    for _ in 0..args.runs {
        let started = Instant::now();
        count = segments
            .estimate_segment_size(pb::EstimateSegmentSizeRequest {
                project_id: project.clone(),
                segment_id: segment_id.clone(),
                version: 0,
            })
            .await?
            .into_inner()
            .endpoints;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }

    // Baseline: the same segment evaluated endpoint by endpoint over the same facts.
    let all: Vec<EndpointFacts> = (0..args.endpoints).map(facts).collect();
    let now = Utc::now();
    let mut baseline = Vec::new();
    let mut naive_count = 0;
    for _ in 0..args.runs.min(3) {
        let started = Instant::now();
        naive_count = 0u64;
        for endpoint in &all {
            if segment::matches(&definition, endpoint, now, &segment::NoSegments)? {
                naive_count += 1;
            }
        }
        baseline.push(started.elapsed().as_secs_f64() * 1e3);
    }

    // Index size, from the node's metrics, once the once-a-second gauges caught up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (bytes, indexed) = loop {
        let metrics = node
            .scrape_metrics()
            .context("reading the node's metrics")?;
        let gauge = |name: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(name) && !l.starts_with('#'))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let indexed = gauge("herald_segment_index_endpoints");
        if indexed >= f64::from(args.endpoints) || Instant::now() > deadline {
            break (gauge("herald_segment_index_bytes"), indexed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Ok((
        median(samples),
        median(baseline),
        count,
        naive_count,
        bytes,
        indexed,
    ))
}
