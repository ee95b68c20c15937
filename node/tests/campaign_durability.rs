//! Exactly-once campaign sends across a `kill -9` of a single node (SPEC CMP-3, the issue's
//! "a campaign run survives kill -9 of the process"): a paced run is killed half-way through,
//! the node restarts on the same data directory and finishes it; every endpoint of the segment
//! got the message under one message id, and the run's counts add up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use herald_proto::v1 as pb;
use herald_proto::v1::campaigns_client::CampaignsClient;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use herald_proto::v1::segment_definition::Rule;
use herald_proto::v1::segments_client::SegmentsClient;
use herald_proto::v1::templates_client::TemplatesClient;
use tonic::transport::Channel;

mod common;
use common::Server;

const SHARDS: u32 = 4;

/// Endpoints in the campaign's segment.
const AUDIENCE: usize = 2_000;

/// Endpoints per `UpdateEndpointsBatch` (the default batch limit).
const BATCH: usize = 100;

/// Slow enough that the run takes several seconds and the kill lands in the middle of it.
const MESSAGES_PER_SECOND: u32 = 300;

/// Longest wait for the run to finish after the restart.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(45);

fn endpoint_id(i: usize) -> String {
    format!("e{i:04}")
}

/// The lines of `<data dir>/outbox/email.jsonl` as (endpoint id, message id), in file order.
fn outbox_lines(data_dir: &Path) -> Vec<(String, String)> {
    let path = data_dir.join("outbox").join("email.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("outbox line {line:?} is not JSON: {error}"));
            let field = |name: &str| value[name].as_str().unwrap_or_default().to_string();
            (field("endpoint_id"), field("message_id"))
        })
        .collect()
}

/// A project with `AUDIENCE` email endpoints in the segment `audience = campaign`, an email
/// template `notice`, and a paced IMMEDIATE campaign over that segment; returns the project
/// and campaign ids.
async fn create_paced_campaign(channel: &Channel) -> (String, String) {
    let project = ProjectsClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            name: "campaign-durability".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    let mut endpoints = EndpointsClient::new(channel.clone());
    for first in (0..AUDIENCE).step_by(BATCH) {
        let items = (first..first + BATCH)
            .map(|i| pb::EndpointBatchItem {
                endpoint_id: endpoint_id(i),
                endpoint: Some(pb::EndpointRequest {
                    address: format!("user{i}@example.com"),
                    channel_type: pb::ChannelType::Email.into(),
                    attributes: HashMap::from([(
                        "audience".to_string(),
                        pb::AttributeValues {
                            values: vec!["campaign".into()],
                        },
                    )]),
                    ..Default::default()
                }),
            })
            .collect();
        let results = endpoints
            .update_endpoints_batch(pb::UpdateEndpointsBatchRequest {
                project_id: project.clone(),
                items,
            })
            .await
            .unwrap()
            .into_inner()
            .results;
        for result in results {
            assert_eq!(
                result.result.as_ref().map(|r| r.status_code),
                Some(202),
                "{result:?}"
            );
        }
    }
    let segment = SegmentsClient::new(channel.clone())
        .create_segment(pb::CreateSegmentRequest {
            project_id: project.clone(),
            segment: Some(pb::SegmentDefinition {
                name: "audience".into(),
                rule: Some(Rule::Dimensions(pb::SegmentDimensions {
                    attributes: HashMap::from([(
                        "audience".to_string(),
                        pb::AttributeDimension {
                            kind: "INCLUSIVE".into(),
                            values: vec!["campaign".into()],
                        },
                    )]),
                    ..Default::default()
                })),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .segment_id;
    TemplatesClient::new(channel.clone())
        .create_email_template(pb::CreateEmailTemplateRequest {
            fields: Some(pb::TemplateFields {
                project_id: project.clone(),
                template_name: "notice".into(),
                ..Default::default()
            }),
            template: Some(pb::EmailTemplate {
                subject: "A notice".into(),
                html_part: "<p>Hello {{Attributes.audience}}</p>".into(),
                text_part: "Hello".into(),
            }),
        })
        .await
        .unwrap();
    let campaign = CampaignsClient::new(channel.clone())
        .create_campaign(pb::CreateCampaignRequest {
            project_id: project.clone(),
            campaign: Some(pb::WriteCampaign {
                name: "paced".into(),
                segment_id: segment,
                template_configuration: Some(pb::TemplateConfiguration {
                    email: Some(pb::TemplateReference {
                        name: "notice".into(),
                        version: 0,
                    }),
                    ..Default::default()
                }),
                schedule: Some(pb::Schedule {
                    start_time: "IMMEDIATE".into(),
                    frequency: "ONCE".into(),
                    ..Default::default()
                }),
                limits: Some(pb::CampaignLimitOverrides {
                    messages_per_second: Some(MESSAGES_PER_SECOND),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .campaign_id;
    (project, campaign)
}

/// The single-node guarantee: a campaign run killed with `kill -9` while its messages
/// are going out finishes after a restart on the same data directory, and every endpoint of
/// its segment has exactly one message id for the run (the same id may be written twice: a
/// message out before the crash whose outcome was not committed is sent again with its id).
/// The run's counts say every endpoint was targeted and delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_run_killed_half_way_sends_each_endpoint_one_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), SHARDS);
    let channel = server.channel().await;
    let (project, campaign) = create_paced_campaign(&channel).await;

    // Kill while the outbox holds some but not all of the run's messages.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let lines_before_kill = loop {
        let lines = outbox_lines(dir.path()).len();
        if lines >= AUDIENCE / 5 {
            break lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run wrote {lines} messages in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(channel);
    server.kill_9();
    let written_at_kill = outbox_lines(dir.path());
    assert!(
        written_at_kill.len() < AUDIENCE,
        "the run was over ({} lines) before the kill: nothing was proved; slow it down",
        written_at_kill.len()
    );
    eprintln!(
        "killed with {} of {AUDIENCE} messages in the outbox (polled {lines_before_kill})",
        written_at_kill.len()
    );

    let server = Server::start(dir.path(), SHARDS);
    let channel = server.channel().await;
    let mut campaigns = CampaignsClient::new(channel.clone());
    let deadline = tokio::time::Instant::now() + COMPLETION_TIMEOUT;
    loop {
        let state = campaigns
            .get_campaign(pb::GetCampaignRequest {
                project_id: project.clone(),
                campaign_id: campaign.clone(),
                version: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .state;
        if state == "COMPLETED" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "campaign still {state} {COMPLETION_TIMEOUT:?} after the restart; outbox has {} lines",
            outbox_lines(dir.path()).len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let lines = outbox_lines(dir.path());
    let mut ids_by_endpoint: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (endpoint, message_id) in &lines {
        ids_by_endpoint
            .entry(endpoint.clone())
            .or_default()
            .insert(message_id.clone());
    }
    let expected: BTreeSet<String> = (0..AUDIENCE).map(endpoint_id).collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|e| !ids_by_endpoint.contains_key(*e))
        .collect();
    assert!(
        missing.is_empty(),
        "{} endpoints never got the message, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let strangers: Vec<&String> = ids_by_endpoint
        .keys()
        .filter(|e| !expected.contains(*e))
        .collect();
    assert!(
        strangers.is_empty(),
        "sent outside the segment: {strangers:?}"
    );
    let two_ids: Vec<(&String, &BTreeSet<String>)> = ids_by_endpoint
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(
        two_ids.is_empty(),
        "EXACTLY-ONCE VIOLATED: {} endpoints got two different message ids for one run, e.g. {:?}",
        two_ids.len(),
        &two_ids[..two_ids.len().min(5)]
    );
    // A message written before the kill keeps its id when it is sent again.
    let ids: HashMap<&String, &BTreeSet<String>> = ids_by_endpoint.iter().collect();
    for (endpoint, message_id) in &written_at_kill {
        assert!(
            ids[endpoint].contains(message_id),
            "{endpoint} was sent {message_id} before the kill and something else after"
        );
    }
    let repeats = lines.len() - AUDIENCE;
    eprintln!(
        "{} outbox lines: {repeats} repeats of a message id sent before the kill",
        lines.len()
    );

    let runs = campaigns
        .get_campaign_activities(pb::GetCampaignActivitiesRequest {
            project_id: project.clone(),
            campaign_id: campaign.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .activities;
    assert_eq!(runs.len(), 1, "one run for a ONCE campaign: {runs:?}");
    assert_eq!(runs[0].state, "COMPLETED", "{runs:?}");
    let counts = runs[0].counts.unwrap_or_default();
    assert_eq!(
        (counts.targeted, counts.delivered),
        (AUDIENCE as u64, AUDIENCE as u64),
        "every endpoint targeted and delivered once: {counts:?}"
    );
    drop(channel);
    server.kill_9();
}
