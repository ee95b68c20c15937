//! `herald bench campaign`: a fresh node with the null sink on, 1,000,000 endpoints and a
//! segment of half of them; an immediate campaign with a personalised template, the project's
//! daily cap and quiet time on, timed from `CreateCampaign` until its run is COMPLETED (every
//! shard committed its outcomes). The baseline is the rate at which the same node committed
//! the same endpoints through `UpdateEndpointsBatch` earlier in the run: both are durable
//! per-endpoint writes through the shards' Raft logs, so the ratio says what a campaign
//! message costs next to one endpoint write.
//!
//! A second phase measures event-triggered sends: an EVENT campaign on the CUSTOM channel
//! posts to a webhook served by this process, matching events go out at a fixed rate
//! (open loop), and time-to-send is the webhook's arrival time minus the time the event's
//! `PutEvents` request left, both on this process's monotonic clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{Timelike, Utc};
use herald_proto::v1 as pb;
use herald_proto::v1::campaigns_client::CampaignsClient;
use herald_proto::v1::channels_client::ChannelsClient;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::events_client::EventsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use herald_proto::v1::segment_definition::Rule;
use herald_proto::v1::segments_client::SegmentsClient;
use herald_proto::v1::templates_client::TemplatesClient;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use super::BenchReport;
use super::process::ServerProcess;
use super::report::round_to;

/// `herald bench campaign` flags.
#[derive(Debug, clap::Args)]
pub struct CampaignArgs {
    /// Synthetic endpoints to load; half of them are the campaign's audience.
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(2..))]
    pub endpoints: u32,
    /// Matching events per second in the event-trigger phase.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub events_per_second: u32,
    /// Seconds of matching events in the event-trigger phase.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub trigger_seconds: u32,
    /// Concurrent import batches while loading.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub concurrency: usize,
    /// Shard groups of the node the bench starts [default: the config default].
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
}

/// Endpoints per `UpdateEndpointsBatch`, the API's most.
const LOAD_BATCH: u32 = 100;

/// The campaign's audience: the `cohort` attribute value of every even endpoint.
const AUDIENCE_COHORT: &str = "campaign";
/// The event campaign's audience: CUSTOM-channel endpoints among the odd ones.
const TRIGGER_COHORT: &str = "trigger";
/// Every other endpoint.
const OTHER_COHORT: &str = "other";
/// The event type the event campaign listens for.
const TRIGGER_EVENT: &str = "bench.purchase";

/// Endpoints' zones, so the quiet-time check has real zones to convert to.
const ZONES: [&str; 4] = [
    "Etc/UTC",
    "America/Sao_Paulo",
    "Asia/Kathmandu",
    "Asia/Tokyo",
];
const PLANS: [&str; 3] = ["free", "pro", "enterprise"];

/// The project's daily cap per endpoint: on, and above the one message each endpoint gets.
const DAILY_CAP: u32 = 5;

/// Longest a campaign run may go without any count moving before the bench gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest to wait for the last triggered message after the last event went out.
const TRIGGER_DRAIN: Duration = Duration::from_secs(30);

/// How often a tick of the trigger phase sends the events that fell due.
const TRIGGER_TICK: Duration = Duration::from_millis(10);

/// The endpoint shapes of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Population {
    endpoints: u32,
    /// CUSTOM endpoints the trigger phase sends events for, one event each.
    trigger_endpoints: u32,
}

impl Population {
    /// The campaign's audience: the even endpoints.
    fn audience(&self) -> u64 {
        u64::from(self.endpoints.div_ceil(2))
    }

    /// The `n`-th trigger endpoint's index: the odd endpoints, from the start.
    fn trigger_index(n: u32) -> u32 {
        2 * n + 1
    }

    fn cohort(&self, i: u32) -> &'static str {
        if i.is_multiple_of(2) {
            AUDIENCE_COHORT
        } else if i / 2 < self.trigger_endpoints {
            TRIGGER_COHORT
        } else {
            OTHER_COHORT
        }
    }

    /// Endpoint `i`'s write: cohort, plan, zone and a first name to personalise with.
    fn request(&self, i: u32) -> pb::EndpointBatchItem {
        let values = |value: String| pb::AttributeValues {
            values: vec![value],
        };
        let cohort = self.cohort(i);
        let (channel, address) = if cohort == TRIGGER_COHORT {
            (pb::ChannelType::Custom, format!("hook-{i}"))
        } else {
            (pb::ChannelType::Email, format!("user{i}@example.com"))
        };
        pb::EndpointBatchItem {
            endpoint_id: endpoint_id(i),
            endpoint: Some(pb::EndpointRequest {
                address,
                channel_type: channel as i32,
                attributes: HashMap::from([
                    ("cohort".to_string(), values(cohort.to_string())),
                    (
                        "plan".to_string(),
                        values(PLANS[i as usize % PLANS.len()].to_string()),
                    ),
                ]),
                demographic: Some(pb::EndpointDemographic {
                    timezone: ZONES[(i as usize / 2) % ZONES.len()].to_string(),
                    ..Default::default()
                }),
                user: Some(pb::EndpointUser {
                    user_id: format!("user-{i}"),
                    user_attributes: HashMap::from([(
                        "FirstName".to_string(),
                        values(format!("Name{i}")),
                    )]),
                }),
                ..Default::default()
            }),
        }
    }
}

fn endpoint_id(i: u32) -> String {
    format!("endpoint-{i:08}")
}

/// An hour-long quiet time that covers none of [`ZONES`] now nor in the next hour, so every
/// endpoint is checked against it and none is inside it.
fn quiet_time_outside_now() -> pb::QuietTime {
    let now = Utc::now();
    let busy: Vec<u32> = ZONES
        .iter()
        .filter_map(|zone| zone.parse::<chrono_tz::Tz>().ok())
        .flat_map(|zone| {
            let hour = now.with_timezone(&zone).hour();
            [hour, (hour + 1) % 24]
        })
        .collect();
    let start = (0..24)
        .find(|hour| !busy.contains(hour))
        .expect("4 zones keep at most 8 hours busy");
    pb::QuietTime {
        start: format!("{start:02}:00"),
        end: format!("{:02}:00", (start + 1) % 24),
    }
}

/// The `q` quantile of `sorted`, `None` when it falls on a missing (infinite) sample.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    let value = sorted[rank - 1];
    value.is_finite().then(|| round_to(value, 3))
}

/// What the campaign phase measured.
struct CampaignOutcome {
    /// Endpoints committed per second while loading: the baseline.
    load_per_second: f64,
    /// The node's CPU time while loading, when the platform tells.
    load_cpu_seconds: Option<f64>,
    /// The node's CPU time during the run (the trigger phase not included).
    cpu_seconds: Option<f64>,
    audience: u64,
    counts: pb::RunCounts,
    /// From `CreateCampaign` returning to the run seen COMPLETED.
    seconds: f64,
    /// The run's own start to end, as the node recorded them.
    run_seconds: Option<f64>,
}

/// What the trigger phase measured.
struct TriggerOutcome {
    sent: usize,
    arrived: usize,
    refused_events: usize,
    /// Time-to-send in ms, sorted; a message that never arrived counts as infinite.
    latencies_ms: Vec<f64>,
}

/// Runs the workload; the JSON report is the last line of stdout.
pub async fn run(args: CampaignArgs) -> anyhow::Result<()> {
    let trigger_endpoints = args
        .events_per_second
        .checked_mul(args.trigger_seconds)
        .filter(|n| *n <= args.endpoints / 2)
        .with_context(|| {
            format!(
                "--events-per-second × --trigger-seconds must be at most half of --endpoints ({})",
                args.endpoints / 2
            )
        })?;
    let population = Population {
        endpoints: args.endpoints,
        trigger_endpoints,
    };
    println!(
        "campaign: {} endpoints, audience {} (EMAIL, null sink), daily cap {DAILY_CAP}, quiet \
         time on; then {} matching events/s for {} s to CUSTOM endpoints (webhook in this process)",
        args.endpoints,
        population.audience(),
        args.events_per_second,
        args.trigger_seconds,
    );
    let data_dir = tempfile::Builder::new()
        .prefix("herald-bench-")
        .tempdir()
        .context("cannot create a temporary data directory")?;
    let node = ServerProcess::herald_with(data_dir.path(), args.shards, &["--null-sink"])
        .context("cannot start a herald node")?;
    let outcome = measure(&node, &args, population).await;
    let stopped = node.stop();
    let (campaign, trigger) = outcome?;
    stopped.context("the herald node did not stop cleanly")?;

    let messages = campaign.counts.delivered;
    let per_second = messages as f64 / campaign.seconds;
    anyhow::ensure!(
        messages == campaign.audience,
        "the campaign delivered {messages} messages to an audience of {}: {:?}",
        campaign.audience,
        campaign.counts
    );
    let p50 = quantile(&trigger.latencies_ms, 0.50);
    let p99 = quantile(&trigger.latencies_ms, 0.99);
    let max = quantile(&trigger.latencies_ms, 1.0);
    let show = |v: Option<f64>| v.map_or("none".to_string(), |v| format!("{v:.1} ms"));
    println!(
        "campaign: {messages} messages in {:.2} s = {per_second:.0} messages/s (run {}); \
         baseline: endpoints loaded at {:.0}/s",
        campaign.seconds,
        campaign
            .run_seconds
            .map_or("time unknown".to_string(), |s| format!(
                "{s:.2} s by the node's clock"
            )),
        campaign.load_per_second,
    );
    println!(
        "triggers: {} events sent, {} messages arrived, time-to-send p50 {} p99 {} max {}",
        trigger.sent,
        trigger.arrived,
        show(p50),
        show(p99),
        show(max),
    );
    // CPU per message is steadier than messages/s on a shared machine: the node's own
    // cost, whatever else ran meanwhile.
    let per_thousand = |seconds: Option<f64>, count: u64| {
        seconds
            .filter(|_| count > 0)
            .map(|s| round_to(s * 1000.0 * 1000.0 / count as f64, 1))
    };
    let cpu_ms_per_1k_messages = per_thousand(campaign.cpu_seconds, messages);
    let load_cpu_ms_per_1k_endpoints =
        per_thousand(campaign.load_cpu_seconds, u64::from(args.endpoints));
    println!(
        "node CPU: {} ms per 1,000 messages; {} ms per 1,000 endpoints loaded",
        cpu_ms_per_1k_messages.map_or("unknown".to_string(), |v| format!("{v:.1}")),
        load_cpu_ms_per_1k_endpoints.map_or("unknown".to_string(), |v| format!("{v:.1}")),
    );
    let report = BenchReport::new(
        "campaign",
        round_to(per_second, 1),
        "messages/s",
        round_to(campaign.load_per_second, 1),
    );
    match report.ratio {
        Some(ratio) => println!("campaign / endpoint load: {ratio:.3}"),
        None => println!("campaign / endpoint load: none"),
    }
    report
        .with("endpoints", args.endpoints)
        .with("audience", campaign.audience)
        .with("messages", messages)
        .with("targeted", campaign.counts.targeted)
        .with("failed", campaign.counts.failed)
        .with("capped", campaign.counts.capped)
        .with("quiet_time", campaign.counts.quiet_time)
        .with("campaign_seconds", round_to(campaign.seconds, 3))
        .with("cpu_ms_per_1k_messages", cpu_ms_per_1k_messages)
        .with("load_cpu_ms_per_1k_endpoints", load_cpu_ms_per_1k_endpoints)
        .with("run_seconds", campaign.run_seconds.map(|s| round_to(s, 3)))
        .with("events_per_second", args.events_per_second)
        .with("trigger_seconds", args.trigger_seconds)
        .with("trigger_events", trigger.sent as u64)
        .with("trigger_refused_events", trigger.refused_events as u64)
        .with("trigger_messages", trigger.arrived as u64)
        .with("trigger_p50_ms", p50)
        .with("trigger_p99_ms", p99)
        .with("trigger_max_ms", max)
        .print();
    Ok(())
}

async fn measure(
    node: &ServerProcess,
    args: &CampaignArgs,
    population: Population,
) -> anyhow::Result<(CampaignOutcome, TriggerOutcome)> {
    let addr = node.addr;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let webhook = Webhook::start().await?;
    let project = set_up_project(&channel, &webhook.url).await?;
    let cpu_before_load = node.cpu_seconds();
    let load_per_second = load_endpoints(&channel, &project, population, args.concurrency).await?;
    let load_cpu = cpu_before_load.zip(node.cpu_seconds()).map(|(a, b)| b - a);

    let audience_segment = create_segment(&channel, &project, AUDIENCE_COHORT).await?;
    let trigger_segment = create_segment(&channel, &project, TRIGGER_COHORT).await?;
    wait_for_segment_size(&channel, &project, &audience_segment, population.audience()).await?;

    let cpu_before_campaign = node.cpu_seconds();
    let campaign = run_campaign(&channel, &project, &audience_segment).await?;
    let campaign_cpu = cpu_before_campaign
        .zip(node.cpu_seconds())
        .map(|(a, b)| b - a);
    let trigger = run_triggers(
        &channel,
        &project,
        &trigger_segment,
        args,
        population,
        &webhook,
    )
    .await?;
    Ok((
        CampaignOutcome {
            load_per_second,
            load_cpu_seconds: load_cpu,
            cpu_seconds: campaign_cpu,
            audience: population.audience(),
            ..campaign
        },
        trigger,
    ))
}

/// A project with the daily cap and a quiet time, the CUSTOM channel pointing at `hook_url`,
/// and the personalised email and push templates.
async fn set_up_project(channel: &Channel, hook_url: &str) -> anyhow::Result<String> {
    let mut projects = ProjectsClient::new(channel.clone());
    let project = projects
        .create_project(pb::CreateProjectRequest {
            name: "bench-campaign".into(),
            tags: HashMap::new(),
        })
        .await?
        .into_inner()
        .project_id;
    projects
        .update_project_settings(pb::UpdateProjectSettingsRequest {
            project_id: project.clone(),
            settings: Some(pb::ProjectSettings {
                limits: Some(pb::CampaignLimits {
                    daily: DAILY_CAP,
                    ..Default::default()
                }),
                quiet_time: Some(quiet_time_outside_now()),
                ..Default::default()
            }),
        })
        .await?;
    ChannelsClient::new(channel.clone())
        .update_custom_channel(pb::UpdateCustomChannelRequest {
            project_id: project.clone(),
            channel: Some(pb::CustomChannel {
                enabled: true,
                url: hook_url.to_string(),
                hmac_secret: "bench".into(),
                has_hmac_secret: false,
            }),
        })
        .await?;
    let mut templates = TemplatesClient::new(channel.clone());
    let fields = |name: &str| pb::TemplateFields {
        project_id: project.clone(),
        template_name: name.into(),
        ..Default::default()
    };
    templates
        .create_email_template(pb::CreateEmailTemplateRequest {
            fields: Some(fields("bench-offer")),
            template: Some(pb::EmailTemplate {
                subject: "An offer for {{User.UserAttributes.FirstName}}".into(),
                html_part: "<p>Hello {{User.UserAttributes.FirstName}}, your {{Attributes.plan}} \
                            plan has a new benefit.</p>"
                    .into(),
                text_part: "Hello {{User.UserAttributes.FirstName}}, your {{Attributes.plan}} \
                            plan has a new benefit."
                    .into(),
            }),
        })
        .await?;
    templates
        .create_push_template(pb::CreatePushTemplateRequest {
            fields: Some(fields("bench-thanks")),
            template: Some(pb::PushTemplate {
                title: "Thanks, {{User.UserAttributes.FirstName}}".into(),
                body: "Your {{Attributes.plan}} order is on its way.".into(),
                ..Default::default()
            }),
        })
        .await?;
    Ok(project)
}

/// Loads every endpoint through concurrent `UpdateEndpointsBatch` calls; answers endpoints
/// committed per second.
async fn load_endpoints(
    channel: &Channel,
    project: &str,
    population: Population,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let progress = ProgressBar::new(u64::from(population.endpoints)).with_style(
        ProgressStyle::with_template(
            "loading {bar:40} {pos}/{len} endpoints ({per_sec}, eta {eta})",
        )
        .expect("static template"),
    );
    let batches: Vec<(u32, u32)> = (0..population.endpoints)
        .step_by(LOAD_BATCH as usize)
        .map(|start| (start, (start + LOAD_BATCH).min(population.endpoints)))
        .collect();
    let queue = Arc::new(Mutex::new(batches.into_iter()));
    let started = Instant::now();
    let mut loaders = Vec::new();
    for _ in 0..concurrency.max(1) {
        let queue = queue.clone();
        let mut client = EndpointsClient::new(channel.clone());
        let project = project.to_string();
        let progress = progress.clone();
        loaders.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("lock").next();
                let Some((start, end)) = next else {
                    return Ok::<_, anyhow::Error>(());
                };
                let items = (start..end).map(|i| population.request(i)).collect();
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
    let seconds = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    Ok(f64::from(population.endpoints) / seconds)
}

/// A segment of the endpoints whose `cohort` attribute is `cohort`.
async fn create_segment(channel: &Channel, project: &str, cohort: &str) -> anyhow::Result<String> {
    Ok(SegmentsClient::new(channel.clone())
        .create_segment(pb::CreateSegmentRequest {
            project_id: project.to_string(),
            segment: Some(pb::SegmentDefinition {
                name: format!("bench: cohort {cohort}"),
                rule: Some(Rule::Dimensions(pb::SegmentDimensions {
                    attributes: HashMap::from([(
                        "cohort".to_string(),
                        pb::AttributeDimension {
                            kind: "INCLUSIVE".into(),
                            values: vec![cohort.to_string()],
                        },
                    )]),
                    ..Default::default()
                })),
            }),
        })
        .await?
        .into_inner()
        .segment_id)
}

/// Waits until the node estimates the segment at `expected` endpoints, so the campaign starts
/// with every endpoint indexed.
async fn wait_for_segment_size(
    channel: &Channel,
    project: &str,
    segment_id: &str,
    expected: u64,
) -> anyhow::Result<()> {
    let mut segments = SegmentsClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let size = segments
            .estimate_segment_size(pb::EstimateSegmentSizeRequest {
                project_id: project.to_string(),
                segment_id: segment_id.to_string(),
                version: 0,
            })
            .await?
            .into_inner()
            .endpoints;
        if size == expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the segment holds {size} endpoints, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The personalised message of both campaigns: email for the audience, push content for the
/// CUSTOM channel.
fn templates() -> pb::TemplateConfiguration {
    let reference = |name: &str| pb::TemplateReference {
        name: name.into(),
        version: 0,
    };
    pb::TemplateConfiguration {
        email: Some(reference("bench-offer")),
        push: Some(reference("bench-thanks")),
        ..Default::default()
    }
}

/// Creates the immediate campaign and waits until its run is COMPLETED.
async fn run_campaign(
    channel: &Channel,
    project: &str,
    segment_id: &str,
) -> anyhow::Result<CampaignOutcome> {
    let mut campaigns = CampaignsClient::new(channel.clone());
    let campaign_id = campaigns
        .create_campaign(pb::CreateCampaignRequest {
            project_id: project.to_string(),
            campaign: Some(pb::WriteCampaign {
                name: "bench: immediate".into(),
                segment_id: segment_id.to_string(),
                template_configuration: Some(templates()),
                schedule: Some(pb::Schedule {
                    start_time: "IMMEDIATE".into(),
                    frequency: "ONCE".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .campaign_id;
    let started = Instant::now();
    let progress = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("campaign {spinner} {msg} ({elapsed})")
            .expect("static template"),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    let mut last_counts = None;
    let mut last_change = Instant::now();
    loop {
        let activities = campaigns
            .get_campaign_activities(pb::GetCampaignActivitiesRequest {
                project_id: project.to_string(),
                campaign_id: campaign_id.clone(),
            })
            .await?
            .into_inner()
            .activities;
        if let Some(run) = activities.first() {
            let counts = run.counts.unwrap_or_default();
            if run.state == "COMPLETED" {
                let seconds = started.elapsed().as_secs_f64();
                progress.finish_and_clear();
                let instant = |text: &str| chrono::DateTime::parse_from_rfc3339(text).ok();
                let run_seconds = instant(&run.start_time)
                    .zip(instant(&run.end_time))
                    .map(|(start, end)| (end - start).as_seconds_f64());
                return Ok(CampaignOutcome {
                    load_per_second: 0.0,
                    load_cpu_seconds: None,
                    cpu_seconds: None,
                    audience: 0,
                    counts,
                    seconds,
                    run_seconds,
                });
            }
            progress.set_message(format!(
                "{}: {} targeted, {} delivered so far",
                run.state, counts.targeted, counts.delivered
            ));
            if last_counts.as_ref() != Some(&counts) {
                last_counts = Some(counts);
                last_change = Instant::now();
            }
        }
        anyhow::ensure!(
            last_change.elapsed() < STALL_TIMEOUT,
            "the campaign run made no progress for {} s: {activities:?}",
            STALL_TIMEOUT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates the event campaign, waits until it is live, sends one matching event to each
/// trigger endpoint at the target rate and times each message to the webhook.
async fn run_triggers(
    channel: &Channel,
    project: &str,
    segment_id: &str,
    args: &CampaignArgs,
    population: Population,
    webhook: &Webhook,
) -> anyhow::Result<TriggerOutcome> {
    let mut campaigns = CampaignsClient::new(channel.clone());
    let campaign_id = campaigns
        .create_campaign(pb::CreateCampaignRequest {
            project_id: project.to_string(),
            campaign: Some(pb::WriteCampaign {
                name: "bench: after purchase".into(),
                segment_id: segment_id.to_string(),
                template_configuration: Some(templates()),
                schedule: Some(pb::Schedule {
                    start_time: "IMMEDIATE".into(),
                    end_time: (Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
                    frequency: "EVENT".into(),
                    ..Default::default()
                }),
                event_filter: Some(pb::EventFilter {
                    event_types: vec![TRIGGER_EVENT.into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .campaign_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = campaigns
            .get_campaign(pb::GetCampaignRequest {
                project_id: project.to_string(),
                campaign_id: campaign_id.clone(),
                version: 0,
            })
            .await?
            .into_inner()
            .state;
        if state == "EXECUTING" {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the event campaign is still {state} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each node refreshes its list of live event campaigns every 250 ms.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let total = population.trigger_endpoints;
    let progress = ProgressBar::new(u64::from(total)).with_style(
        ProgressStyle::with_template("triggers {bar:40} {pos}/{len} events ({per_sec})")
            .expect("static template"),
    );
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut requests = Vec::new();
    let rate = f64::from(args.events_per_second);
    let started = tokio::time::Instant::now();
    let mut next = 0u32;
    while next < total {
        let tick_end = started.elapsed() + TRIGGER_TICK;
        // Events due before the end of this tick, at `rate` per second from the start.
        let due = ((tick_end.as_secs_f64() * rate) as u32).min(total);
        if due > next {
            let ids: Vec<String> = (next..due)
                .map(|n| endpoint_id(Population::trigger_index(n)))
                .collect();
            next = due;
            let mut client = EventsClient::new(channel.clone());
            let request = purchase_events(project, &ids);
            let sent_at = sent_at.clone();
            let refused = refused.clone();
            let progress = progress.clone();
            requests.push(tokio::spawn(async move {
                {
                    let now = Instant::now();
                    let mut sent_at = sent_at.lock().expect("lock");
                    for id in &ids {
                        sent_at.insert(id.clone(), now);
                    }
                }
                let results = client.put_events(request).await?.into_inner().results;
                let accepted = results
                    .values()
                    .flat_map(|item| item.events_item_response.values())
                    .filter(|result| result.status_code == 202)
                    .count();
                refused.fetch_add(ids.len() - accepted, std::sync::atomic::Ordering::Relaxed);
                progress.inc(ids.len() as u64);
                Ok::<_, anyhow::Error>(())
            }));
        }
        tokio::time::sleep_until(started + tick_end).await;
    }
    for request in requests {
        request.await??;
    }
    progress.finish_and_clear();

    let spinner =
        ProgressBar::new_spinner().with_message("waiting for the last triggered messages");
    spinner.enable_steady_tick(Duration::from_millis(200));
    let deadline = Instant::now() + TRIGGER_DRAIN;
    while webhook.arrivals.lock().expect("lock").len() < total as usize && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    spinner.finish_and_clear();

    let sent_at = sent_at.lock().expect("lock");
    let arrivals = webhook.arrivals.lock().expect("lock");
    let mut latencies_ms: Vec<f64> = sent_at
        .iter()
        .map(|(id, sent)| {
            arrivals.get(id).map_or(f64::INFINITY, |arrived| {
                arrived.saturating_duration_since(*sent).as_secs_f64() * 1e3
            })
        })
        .collect();
    latencies_ms.sort_by(f64::total_cmp);
    Ok(TriggerOutcome {
        sent: sent_at.len(),
        arrived: sent_at
            .keys()
            .filter(|id| arrivals.contains_key(*id))
            .count(),
        refused_events: refused.load(std::sync::atomic::Ordering::Relaxed),
        latencies_ms,
    })
}

/// One matching event for each endpoint of `ids`, timestamped now.
fn purchase_events(project: &str, ids: &[String]) -> pb::PutEventsRequest {
    let timestamp = Utc::now().to_rfc3339();
    pb::PutEventsRequest {
        project_id: project.to_string(),
        batch_item: ids
            .iter()
            .map(|id| {
                let event = pb::Event {
                    event_type: TRIGGER_EVENT.into(),
                    timestamp: timestamp.clone(),
                    ..Default::default()
                };
                let batch = pb::EventsBatch {
                    endpoint: None,
                    events: HashMap::from([(format!("purchase-{id}"), event)]),
                };
                (id.clone(), batch)
            })
            .collect(),
    }
}

/// The CUSTOM channel's receiver: a minimal HTTP/1.1 server on loopback that answers 200 to
/// every POST and records when the first message for each endpoint arrived.
struct Webhook {
    url: String,
    /// Endpoint id → when its first message arrived.
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    /// The accept loop; aborted with the bench.
    accept: tokio::task::JoinHandle<()>,
}

impl Webhook {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let recorded = arrivals.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve_connection(stream, recorded).await {
                        tracing::debug!(%error, "webhook connection ended");
                    }
                });
            }
        });
        Ok(Self {
            url,
            arrivals,
            accept,
        })
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Answers the requests of one keep-alive connection until the client closes it.
async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
) -> std::io::Result<()> {
    const ANSWER: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 14\r\n\r\n{\"id\":\"bench\"}";
    let mut buffer: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut chunk = [0u8; 8 * 1024];
    loop {
        // One request: headers up to the blank line, then content-length bytes of body.
        let (head_end, body_len) = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]);
                let length = head
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (end + 4, length);
            }
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..read]);
        };
        while buffer.len() < head_end + body_len {
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        let arrived = Instant::now();
        let body: serde_json::Value =
            serde_json::from_slice(&buffer[head_end..head_end + body_len]).unwrap_or_default();
        if let Some(endpoint_id) = body["endpoint_id"].as_str() {
            arrivals
                .lock()
                .expect("lock")
                .entry(endpoint_id.to_string())
                .or_insert(arrived);
        }
        buffer.drain(..head_end + body_len);
        stream.write_all(ANSWER).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Half the endpoints (the even ones) are the audience; trigger endpoints are odd, so the
    /// two campaigns never share an endpoint.
    #[test]
    fn audience_is_half_and_trigger_endpoints_are_outside_it() {
        let population = Population {
            endpoints: 11,
            trigger_endpoints: 3,
        };
        let cohorts: Vec<&str> = (0..11).map(|i| population.cohort(i)).collect();
        let count = |cohort: &str| cohorts.iter().filter(|c| **c == cohort).count();
        assert_eq!(count(AUDIENCE_COHORT) as u64, population.audience());
        assert_eq!(count(TRIGGER_COHORT), 3);
        for n in 0..3 {
            assert_eq!(
                population.cohort(Population::trigger_index(n)),
                TRIGGER_COHORT
            );
        }
    }

    /// The quiet time is an hour long and covers none of the endpoints' zones now.
    #[test]
    fn quiet_time_misses_every_zone_now() {
        let quiet = quiet_time_outside_now();
        let start: u32 = quiet.start[..2].parse().unwrap();
        let now = Utc::now();
        for zone in ZONES {
            let zone: chrono_tz::Tz = zone.parse().unwrap();
            assert_ne!(now.with_timezone(&zone).hour(), start, "{zone}");
        }
    }

    /// A missing arrival counts as infinitely late: no p99 when more than 1% are missing.
    #[test]
    fn quantiles_treat_missing_as_infinite() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&samples, 0.99), Some(99.0));
        samples[99] = f64::INFINITY;
        assert_eq!(quantile(&samples, 0.99), Some(99.0));
        samples[98] = f64::INFINITY;
        assert_eq!(quantile(&samples, 0.99), None);
    }
}
