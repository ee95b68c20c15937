//! Campaign runs through a real server (SPEC CMP): the scheduler starts runs, shards send to
//! the segment's endpoints through the outbox (no channel configured), and the activities and
//! KPIs count what happened. Holdout, caps across campaigns, quiet time, local time and event
//! triggers are checked from what lands in the outbox.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use chrono::{Timelike, Utc};
use herald_node::config::Config;
use herald_node::domain::campaign::bucket;
use herald_node::domain::hashing::cohort_of;
use herald_node::server::RunningNode;
use herald_proto::v1 as pb;
use herald_proto::v1::analytics_client::AnalyticsClient;
use herald_proto::v1::campaigns_client::CampaignsClient;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::events_client::EventsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use herald_proto::v1::segment_definition::Rule;
use herald_proto::v1::segments_client::SegmentsClient;
use herald_proto::v1::templates_client::TemplatesClient;
use tonic::transport::Channel;

const SHARDS: u32 = 4;

struct Fixture {
    _node: RunningNode,
    channel: Channel,
    project: String,
    segment: String,
}

fn values(items: &[&str]) -> pb::AttributeValues {
    pb::AttributeValues {
        values: items.iter().map(|v| v.to_string()).collect(),
    }
}

/// A node with a project, a segment `plan = gold` and an email template `offer`.
async fn start(dir: &Path, settings: pb::ProjectSettings) -> Fixture {
    let mut config = Config::ephemeral(dir);
    config.cluster.shards = SHARDS;
    let node = RunningNode::start(config).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", node.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut projects = ProjectsClient::new(channel.clone());
    let project = projects
        .create_project(pb::CreateProjectRequest {
            name: "campaigns".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    projects
        .update_project_settings(pb::UpdateProjectSettingsRequest {
            project_id: project.clone(),
            settings: Some(settings),
        })
        .await
        .unwrap();
    let segment = SegmentsClient::new(channel.clone())
        .create_segment(pb::CreateSegmentRequest {
            project_id: project.clone(),
            segment: Some(pb::SegmentDefinition {
                name: "gold".into(),
                rule: Some(Rule::Dimensions(pb::SegmentDimensions {
                    attributes: HashMap::from([(
                        "plan".to_string(),
                        pb::AttributeDimension {
                            kind: "INCLUSIVE".into(),
                            values: vec!["gold".into()],
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
                template_name: "offer".into(),
                ..Default::default()
            }),
            template: Some(pb::EmailTemplate {
                subject: "An offer for {{User.UserAttributes.FirstName}}".into(),
                html_part: "<p>Plan {{Attributes.plan}}</p>".into(),
                text_part: "Plan {{Attributes.plan}}".into(),
            }),
        })
        .await
        .unwrap();
    Fixture {
        _node: node,
        channel,
        project,
        segment,
    }
}

/// An email endpoint `id` with `plan`, a first name and optionally a time zone.
async fn put_endpoint(fixture: &Fixture, id: &str, plan: &str, zone: &str, opted_out: bool) {
    put_channel_endpoint(
        fixture,
        id,
        pb::ChannelType::Email,
        &format!("{id}@example.com"),
        plan,
        zone,
        opted_out,
    )
    .await;
}

async fn put_channel_endpoint(
    fixture: &Fixture,
    id: &str,
    channel: pb::ChannelType,
    address: &str,
    plan: &str,
    zone: &str,
    opted_out: bool,
) {
    EndpointsClient::new(fixture.channel.clone())
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: fixture.project.clone(),
            endpoint_id: id.into(),
            endpoint: Some(pb::EndpointRequest {
                address: address.into(),
                channel_type: channel.into(),
                opt_out: if opted_out {
                    pb::OptOut::All.into()
                } else {
                    pb::OptOut::None.into()
                },
                attributes: HashMap::from([("plan".to_string(), values(&[plan]))]),
                demographic: Some(pb::EndpointDemographic {
                    timezone: zone.into(),
                    ..Default::default()
                }),
                user: Some(pb::EndpointUser {
                    user_id: format!("user-{id}"),
                    user_attributes: HashMap::from([(
                        "FirstName".to_string(),
                        values(&[&format!("Name-{id}")]),
                    )]),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

fn once_now() -> pb::Schedule {
    pb::Schedule {
        start_time: "IMMEDIATE".into(),
        frequency: "ONCE".into(),
        ..Default::default()
    }
}

fn write(fixture: &Fixture, name: &str, schedule: pb::Schedule, holdout: u32) -> pb::WriteCampaign {
    pb::WriteCampaign {
        name: name.into(),
        segment_id: fixture.segment.clone(),
        template_configuration: Some(pb::TemplateConfiguration {
            email: Some(pb::TemplateReference {
                name: "offer".into(),
                version: 0,
            }),
            ..Default::default()
        }),
        holdout_percent: holdout,
        schedule: Some(schedule),
        ..Default::default()
    }
}

async fn create(fixture: &Fixture, campaign: pb::WriteCampaign) -> pb::Campaign {
    CampaignsClient::new(fixture.channel.clone())
        .create_campaign(pb::CreateCampaignRequest {
            project_id: fixture.project.clone(),
            campaign: Some(campaign),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn get(fixture: &Fixture, campaign_id: &str) -> pb::Campaign {
    CampaignsClient::new(fixture.channel.clone())
        .get_campaign(pb::GetCampaignRequest {
            project_id: fixture.project.clone(),
            campaign_id: campaign_id.into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn activities(fixture: &Fixture, campaign_id: &str) -> Vec<pb::CampaignActivity> {
    CampaignsClient::new(fixture.channel.clone())
        .get_campaign_activities(pb::GetCampaignActivitiesRequest {
            project_id: fixture.project.clone(),
            campaign_id: campaign_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .activities
}

/// Waits (bounded) until the campaign reaches `state`.
async fn wait_for_state(fixture: &Fixture, campaign_id: &str, state: &str) -> pb::Campaign {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let campaign = get(fixture, campaign_id).await;
        if campaign.state == state {
            return campaign;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "campaign still {} after 30 s: {:?}",
            campaign.state,
            activities(fixture, campaign_id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Outbox email lines: endpoint id → message ids in order.
fn outbox(dir: &Path) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut lines: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("outbox").join("email.jsonl")) {
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let endpoint = value["endpoint_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            lines.entry(endpoint).or_default().push(value);
        }
    }
    lines
}

async fn kpi(fixture: &Fixture, campaign_id: &str, name: &str) -> f64 {
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let rows = AnalyticsClient::new(fixture.channel.clone())
        .get_campaign_date_range_kpi(pb::GetCampaignDateRangeKpiRequest {
            project_id: fixture.project.clone(),
            campaign_id: campaign_id.into(),
            kpi_name: name.into(),
            start_date: today.clone(),
            end_date: today,
            by_treatment: false,
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].value
}

/// CMP-1, CMP-4, CMP-8: an immediate campaign reaches each member of its segment exactly once
/// with its personalised message, never the holdout, the opted out or non-members; its run
/// counts and KPIs say so, and an `_email.open` event moves the open KPIs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_immediate_campaign_reaches_its_segment_once_except_the_holdout() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path(), pb::ProjectSettings::default()).await;
    for i in 0..40 {
        let plan = if i < 30 { "gold" } else { "silver" };
        put_endpoint(
            &fixture,
            &format!("e{i:02}"),
            plan,
            "",
            (28..30).contains(&i),
        )
        .await;
    }
    let campaign = create(&fixture, write(&fixture, "spring", once_now(), 20)).await;
    let id = campaign.campaign_id.clone();
    wait_for_state(&fixture, &id, "COMPLETED").await;

    let held_out: HashSet<String> = (0..40)
        .map(|i| format!("e{i:02}"))
        .filter(|e| bucket(&id, cohort_of(&fixture.project, e)) < 20)
        .collect();
    let expected: BTreeMap<String, usize> = (0..28)
        .map(|i| format!("e{i:02}"))
        .filter(|e| !held_out.contains(e))
        .map(|e| (e, 1))
        .collect();
    let lines = outbox(dir.path());
    let received: BTreeMap<String, usize> =
        lines.iter().map(|(e, l)| (e.clone(), l.len())).collect();
    assert_eq!(received, expected);
    let first = &lines.values().next().unwrap()[0];
    let endpoint = first["endpoint_id"].as_str().unwrap();
    assert_eq!(
        first["content"]["Email"]["subject"],
        format!("An offer for Name-{endpoint}")
    );

    let runs = activities(&fixture, &id).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].state, "COMPLETED");
    let counts = runs[0].counts.unwrap();
    let gold_held_out = (0..30)
        .filter(|i| held_out.contains(&format!("e{i:02}")))
        .count() as u64;
    let opted_out = (28..30)
        .filter(|i| !held_out.contains(&format!("e{i:02}")))
        .count() as u64;
    assert_eq!(counts.holdout, gold_held_out);
    assert_eq!(counts.opted_out, opted_out);
    assert_eq!(counts.delivered, expected.len() as u64);
    assert_eq!(counts.targeted, expected.len() as u64 + opted_out);

    assert_eq!(
        kpi(&fixture, &id, "attempted-deliveries").await,
        expected.len() as f64
    );
    assert_eq!(kpi(&fixture, &id, "successful-delivery-rate").await, 1.0);
    assert_eq!(kpi(&fixture, &id, "direct-email-opens").await, 0.0);
    let message_id = first["message_id"].as_str().unwrap().to_string();
    let open = pb::Event {
        event_type: "_email.open".into(),
        timestamp: Utc::now().to_rfc3339(),
        attributes: HashMap::from([
            ("campaign_id".to_string(), id.clone()),
            ("treatment_id".to_string(), "0".to_string()),
            ("message_id".to_string(), message_id),
        ]),
        ..Default::default()
    };
    for event_id in ["open-1", "open-2", "open-1"] {
        EventsClient::new(fixture.channel.clone())
            .put_events(pb::PutEventsRequest {
                project_id: fixture.project.clone(),
                batch_item: HashMap::from([(
                    endpoint.to_string(),
                    pb::EventsBatch {
                        endpoint: None,
                        events: HashMap::from([(event_id.to_string(), open.clone())]),
                    },
                )]),
            })
            .await
            .unwrap();
    }
    assert_eq!(kpi(&fixture, &id, "direct-email-opens").await, 2.0);
    assert_eq!(
        kpi(&fixture, &id, "email-open-rate").await,
        1.0 / expected.len() as f64
    );
}

/// CMP-5: with the project's daily cap of one message per endpoint, two campaigns running at
/// the same time reach each endpoint once between them; the other send counts as capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_campaigns_never_exceed_the_project_daily_cap() {
    let dir = tempfile::tempdir().unwrap();
    let settings = pb::ProjectSettings {
        limits: Some(pb::CampaignLimits {
            daily: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let fixture = start(dir.path(), settings).await;
    for i in 0..30 {
        put_endpoint(&fixture, &format!("e{i:02}"), "gold", "", false).await;
    }
    let (a, b) = tokio::join!(
        create(&fixture, write(&fixture, "a", once_now(), 0)),
        create(&fixture, write(&fixture, "b", once_now(), 0)),
    );
    wait_for_state(&fixture, &a.campaign_id, "COMPLETED").await;
    wait_for_state(&fixture, &b.campaign_id, "COMPLETED").await;
    let lines = outbox(dir.path());
    assert_eq!(lines.len(), 30, "every endpoint got a message");
    for (endpoint, messages) in &lines {
        assert_eq!(messages.len(), 1, "{endpoint} got {messages:?}");
    }
    let mut delivered = 0;
    let mut capped = 0;
    for campaign in [&a, &b] {
        let runs = activities(&fixture, &campaign.campaign_id).await;
        let counts = runs[0].counts.unwrap();
        assert_eq!(counts.targeted, 30, "capped sends count as targeted");
        delivered += counts.delivered;
        capped += counts.capped;
    }
    assert_eq!((delivered, capped), (30, 30));
}

/// CMP-6: endpoints inside the quiet time (in their zone) are skipped and counted as targeted;
/// the others get the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quiet_time_skips_endpoints_in_their_quiet_hours() {
    let dir = tempfile::tempdir().unwrap();
    // Quiet from an hour before to an hour after now in UTC: endpoints in UTC are inside it,
    // endpoints in Asia/Kathmandu (UTC+05:45) are well outside it.
    let hour = Utc::now().hour();
    let quiet = pb::QuietTime {
        start: format!("{:02}:00", (hour + 23) % 24),
        end: format!("{:02}:00", (hour + 1) % 24),
    };
    let settings = pb::ProjectSettings {
        quiet_time: Some(quiet),
        ..Default::default()
    };
    let fixture = start(dir.path(), settings).await;
    for i in 0..10 {
        put_endpoint(&fixture, &format!("utc{i}"), "gold", "Etc/UTC", false).await;
        put_endpoint(
            &fixture,
            &format!("ktm{i}"),
            "gold",
            "Asia/Kathmandu",
            false,
        )
        .await;
    }
    let campaign = create(&fixture, write(&fixture, "quiet", once_now(), 0)).await;
    wait_for_state(&fixture, &campaign.campaign_id, "COMPLETED").await;
    let lines = outbox(dir.path());
    let expected: Vec<String> = (0..10).map(|i| format!("ktm{i}")).collect();
    assert_eq!(lines.keys().cloned().collect::<Vec<_>>(), expected);
    let counts = activities(&fixture, &campaign.campaign_id).await[0]
        .counts
        .unwrap();
    assert_eq!(
        (counts.targeted, counts.quiet_time, counts.delivered),
        (20, 10, 10)
    );
}

/// CMP-2: a local-time run reaches endpoints whose clock has passed the run's time and waits
/// for the others: the run stays EXECUTING.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_time_run_waits_for_each_endpoint_clock() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path(), pb::ProjectSettings::default()).await;
    for i in 0..5 {
        // UTC+13 and UTC+05:45 are past the run's time already; New York is hours behind.
        put_endpoint(
            &fixture,
            &format!("tbu{i}"),
            "gold",
            "Pacific/Tongatapu",
            false,
        )
        .await;
        put_endpoint(
            &fixture,
            &format!("ktm{i}"),
            "gold",
            "Asia/Kathmandu",
            false,
        )
        .await;
        put_endpoint(
            &fixture,
            &format!("nyc{i}"),
            "gold",
            "America/New_York",
            false,
        )
        .await;
    }
    // The run's clock time is now in UTC.
    let schedule = pb::Schedule {
        start_time: (Utc::now() + chrono::Duration::seconds(1)).to_rfc3339(),
        frequency: "ONCE".into(),
        is_local_time: true,
        timezone: "UTC".into(),
        ..Default::default()
    };
    let campaign = create(&fixture, write(&fixture, "local", schedule, 0)).await;
    let id = campaign.campaign_id.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lines = outbox(dir.path());
        if lines.len() >= 10 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a slow pass the chance to send what it must not.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lines = outbox(dir.path());
    let mut expected: Vec<String> = (0..5)
        .flat_map(|i| [format!("ktm{i}"), format!("tbu{i}")])
        .collect();
    expected.sort();
    assert_eq!(lines.keys().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(get(&fixture, &id).await.state, "EXECUTING");
    let runs = activities(&fixture, &id).await;
    assert_eq!(runs[0].state, "EXECUTING");
}

/// CMP-3, CMP-5: an event campaign sends to the endpoint whose event matches its filter,
/// within seconds; a retried event and non-matching events send nothing, and the campaign's
/// total cap of one holds across triggers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn matching_events_trigger_one_send_within_the_caps() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path(), pb::ProjectSettings::default()).await;
    for i in 0..3 {
        put_endpoint(&fixture, &format!("e{i}"), "gold", "", false).await;
    }
    put_endpoint(&fixture, "silver", "silver", "", false).await;
    let mut campaign = write(
        &fixture,
        "after purchase",
        pb::Schedule {
            start_time: "IMMEDIATE".into(),
            end_time: (Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            frequency: "EVENT".into(),
            ..Default::default()
        },
        0,
    );
    campaign.event_filter = Some(pb::EventFilter {
        event_types: vec!["purchase".into()],
        ..Default::default()
    });
    campaign.limits = Some(pb::CampaignLimitOverrides {
        total: Some(1),
        ..Default::default()
    });
    let campaign = create(&fixture, campaign).await;
    wait_for_state(&fixture, &campaign.campaign_id, "EXECUTING").await;
    // The node's list of live event campaigns refreshes every tick.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let send = |endpoint: &'static str, event_id: &'static str, event_type: &'static str| {
        let channel = fixture.channel.clone();
        let project = fixture.project.clone();
        async move {
            EventsClient::new(channel)
                .put_events(pb::PutEventsRequest {
                    project_id: project,
                    batch_item: HashMap::from([(
                        endpoint.to_string(),
                        pb::EventsBatch {
                            endpoint: None,
                            events: HashMap::from([(
                                event_id.to_string(),
                                pb::Event {
                                    event_type: event_type.into(),
                                    timestamp: Utc::now().to_rfc3339(),
                                    ..Default::default()
                                },
                            )]),
                        },
                    )]),
                })
                .await
                .unwrap();
        }
    };
    send("e0", "ev-1", "purchase").await;
    send("e0", "ev-1", "purchase").await;
    send("e1", "ev-2", "browse").await;
    send("silver", "ev-3", "purchase").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outbox(dir.path()).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no triggered send");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send("e0", "ev-4", "purchase").await;
    send("e2", "ev-5", "purchase").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !outbox(dir.path()).contains_key("e2") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no second triggered send"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received: BTreeMap<String, usize> = outbox(dir.path())
        .into_iter()
        .map(|(e, l)| (e, l.len()))
        .collect();
    assert_eq!(
        received,
        BTreeMap::from([("e0".to_string(), 1), ("e2".to_string(), 1)])
    );
}

/// An SMS provider API on 127.0.0.1: answers 200 to every request and records when each
/// arrived.
async fn sms_provider() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
) {
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = arrivals.clone();
    let app = axum::Router::new().fallback(move || {
        let recorded = recorded.clone();
        async move {
            recorded.lock().unwrap().push(std::time::Instant::now());
            axum::Json(serde_json::json!({"message_id": "provider-id"}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/sms"), arrivals)
}

/// CHN-2: a campaign's burst of SMS over the channel's rate is not refused but spread at the
/// configured rate, as the provider's own clock sees it (bounds generous for a loaded machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_campaign_burst_is_spread_at_the_channel_rate() {
    const RATE: u32 = 10;
    const MESSAGES: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path(), pb::ProjectSettings::default()).await;
    let (url, arrivals) = sms_provider().await;
    herald_proto::v1::channels_client::ChannelsClient::new(fixture.channel.clone())
        .update_sms_channel(pb::UpdateSmsChannelRequest {
            project_id: fixture.project.clone(),
            channel: Some(pb::PhoneChannel {
                enabled: true,
                base_url: url,
                account: "acct".into(),
                api_key: "key".into(),
                origination_identities: vec![pb::OriginationIdentity {
                    kind: "TOLL_FREE".into(),
                    value: "+18005550000".into(),
                    country: String::new(),
                }],
                rate_per_second: RATE,
                has_api_key: false,
            }),
        })
        .await
        .unwrap();
    for i in 0..MESSAGES {
        put_channel_endpoint(
            &fixture,
            &format!("p{i:02}"),
            pb::ChannelType::Sms,
            &format!("+1415555{i:04}"),
            "gold",
            "",
            false,
        )
        .await;
    }
    let mut campaign = write(&fixture, "sms burst", once_now(), 0);
    campaign.template_configuration = None;
    campaign.message = Some(pb::DirectMessageConfiguration {
        sms: Some(pb::SmsTemplate {
            body: "Hi {{User.UserAttributes.FirstName}}".into(),
        }),
        ..Default::default()
    });
    let campaign = create(&fixture, campaign).await;
    wait_for_state(&fixture, &campaign.campaign_id, "COMPLETED").await;
    let counts = activities(&fixture, &campaign.campaign_id).await[0]
        .counts
        .unwrap();
    assert_eq!(
        counts.delivered,
        MESSAGES as u64,
        "{counts:?} arrivals {}",
        arrivals.lock().unwrap().len()
    );
    let mut arrivals = arrivals.lock().unwrap().clone();
    arrivals.sort();
    assert_eq!(arrivals.len(), MESSAGES);
    // At RATE per second with a burst of RATE, 40 messages need at least 3 s.
    let span = arrivals[MESSAGES - 1] - arrivals[0];
    assert!(span >= Duration::from_millis(2_500), "all within {span:?}");
    // No one-second window holds more than the rate plus its burst.
    for (i, first) in arrivals.iter().enumerate() {
        let in_window = arrivals[i..]
            .iter()
            .take_while(|t| **t - *first < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 2 * RATE as usize,
            "{in_window} within a second"
        );
    }
}

/// CMP-1: a campaign whose segment is deleted before its run becomes INVALID and its run is
/// cancelled; nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_campaign_without_its_segment_becomes_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path(), pb::ProjectSettings::default()).await;
    put_endpoint(&fixture, "e1", "gold", "", false).await;
    let schedule = pb::Schedule {
        start_time: (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339(),
        frequency: "ONCE".into(),
        ..Default::default()
    };
    let campaign = create(&fixture, write(&fixture, "orphan", schedule, 0)).await;
    assert_eq!(campaign.state, "SCHEDULED");
    SegmentsClient::new(fixture.channel.clone())
        .delete_segment(pb::DeleteSegmentRequest {
            project_id: fixture.project.clone(),
            segment_id: fixture.segment.clone(),
        })
        .await
        .unwrap();
    wait_for_state(&fixture, &campaign.campaign_id, "INVALID").await;
    let runs = activities(&fixture, &campaign.campaign_id).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, "CANCELLED");
    assert!(outbox(dir.path()).is_empty());
}

fn email_treatment(size: u32, subject: &str) -> pb::Treatment {
    pb::Treatment {
        name: subject.into(),
        size_percent: size,
        message: Some(pb::DirectMessageConfiguration {
            email: Some(pb::EmailTemplate {
                subject: subject.into(),
                html_part: "<p>{{Attributes.plan}}</p>".into(),
                text_part: "{{Attributes.plan}}".into(),
            }),
            ..Default::default()
        }),
        template_configuration: None,
        schedule: None,
    }
}

/// CMP-4, ANL-3: an A/B campaign sends each endpoint the treatment of its cohort, and the
/// KPIs split by treatment add up to the whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ab_treatments_follow_the_cohorts_and_split_the_kpis() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path(), pb::ProjectSettings::default()).await;
    for i in 0..60 {
        put_endpoint(&fixture, &format!("e{i:02}"), "gold", "", false).await;
    }
    let mut campaign = write(&fixture, "ab", once_now(), 10);
    campaign.template_configuration = None;
    campaign.treatments = vec![email_treatment(30, "A"), email_treatment(60, "B")];
    let campaign = create(&fixture, campaign).await;
    let id = campaign.campaign_id.clone();
    wait_for_state(&fixture, &id, "COMPLETED").await;
    let lines = outbox(dir.path());
    let mut per_treatment = [0u64; 2];
    for i in 0..60 {
        let endpoint = format!("e{i:02}");
        let b = bucket(&id, cohort_of(&fixture.project, &endpoint));
        let expected = match b {
            0..10 => None,
            10..40 => Some("A"),
            _ => Some("B"),
        };
        let got = lines.get(&endpoint).map(|l| {
            assert_eq!(l.len(), 1);
            l[0]["content"]["Email"]["subject"]
                .as_str()
                .unwrap()
                .to_string()
        });
        assert_eq!(got.as_deref(), expected, "{endpoint} in bucket {b}");
        match expected {
            Some("A") => per_treatment[0] += 1,
            Some(_) => per_treatment[1] += 1,
            None => {}
        }
    }
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let rows = AnalyticsClient::new(fixture.channel.clone())
        .get_campaign_date_range_kpi(pb::GetCampaignDateRangeKpiRequest {
            project_id: fixture.project.clone(),
            campaign_id: id.clone(),
            kpi_name: "unique-deliveries".into(),
            start_date: today.clone(),
            end_date: today,
            by_treatment: true,
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    let by_treatment: BTreeMap<u32, f64> = rows
        .iter()
        .map(|row| (row.treatment_id.unwrap(), row.value))
        .collect();
    let expected: BTreeMap<u32, f64> = [(0, per_treatment[0]), (1, per_treatment[1])]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| (t, n as f64))
        .collect();
    assert_eq!(by_treatment, expected);
}

/// CMP-1: pausing a running campaign stops its sends; resuming finishes the run, with one
/// message per endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_stops_a_run_and_resume_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path(), pb::ProjectSettings::default()).await;
    for i in 0..30 {
        put_endpoint(&fixture, &format!("e{i:02}"), "gold", "", false).await;
    }
    let mut write_request = write(&fixture, "slow", once_now(), 0);
    write_request.limits = Some(pb::CampaignLimitOverrides {
        messages_per_second: Some(5),
        ..Default::default()
    });
    let campaign = create(&fixture, write_request.clone()).await;
    let id = campaign.campaign_id.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while outbox(dir.path()).len() < 3 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut paused = write_request.clone();
    paused.is_paused = true;
    let update = |campaign: pb::WriteCampaign| {
        let channel = fixture.channel.clone();
        let project = fixture.project.clone();
        let id = id.clone();
        async move {
            CampaignsClient::new(channel)
                .update_campaign(pb::UpdateCampaignRequest {
                    project_id: project,
                    campaign_id: id,
                    campaign: Some(campaign),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert_eq!(update(paused).await.state, "PAUSED");
    // Sends already handed over finish; then nothing more goes out while paused.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let while_paused = outbox(dir.path()).len();
    assert!(while_paused < 30, "the run was not paused");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(outbox(dir.path()).len(), while_paused);
    assert_eq!(get(&fixture, &id).await.state, "PAUSED");

    update(write_request).await;
    wait_for_state(&fixture, &id, "COMPLETED").await;
    let lines = outbox(dir.path());
    assert_eq!(lines.len(), 30);
    assert!(lines.values().all(|l| l.len() == 1));
}

/// The project's campaign hook (FILTER): the audience goes to the hook before sending, and
/// only the endpoints it answers get the message; the others count as filtered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_campaign_hook_decides_who_is_sent() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorded = seen.clone();
    let app =
        axum::Router::new().fallback(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let recorded = recorded.clone();
            async move {
                let endpoints = body["Endpoints"].as_object().cloned().unwrap_or_default();
                recorded.lock().unwrap().extend(endpoints.keys().cloned());
                // Keep the endpoints whose number is even.
                let kept: serde_json::Map<String, serde_json::Value> = endpoints
                    .into_iter()
                    .filter(|(id, _)| id[1..].parse::<u32>().unwrap() % 2 == 0)
                    .collect();
                axum::Json(serde_json::Value::Object(kept))
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let settings = pb::ProjectSettings {
        campaign_hook: Some(pb::CampaignHook {
            web_url: format!("http://{addr}/filter"),
            mode: "FILTER".into(),
        }),
        ..Default::default()
    };
    let fixture = start(dir.path(), settings).await;
    for i in 0..10 {
        put_endpoint(&fixture, &format!("e{i}"), "gold", "", false).await;
    }
    let campaign = create(&fixture, write(&fixture, "hooked", once_now(), 0)).await;
    wait_for_state(&fixture, &campaign.campaign_id, "COMPLETED").await;
    let mut asked = seen.lock().unwrap().clone();
    asked.sort();
    assert_eq!(asked, (0..10).map(|i| format!("e{i}")).collect::<Vec<_>>());
    let sent: Vec<String> = outbox(dir.path()).into_keys().collect();
    assert_eq!(sent, ["e0", "e2", "e4", "e6", "e8"]);
    let counts = activities(&fixture, &campaign.campaign_id).await[0]
        .counts
        .unwrap();
    assert_eq!((counts.filtered, counts.delivered), (5, 5));
}

/// CMP-3, CMP-5: an event older than the campaign's maximum duration sends nothing and is
/// recorded as expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trigger_past_the_maximum_duration_is_dropped_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path(), pb::ProjectSettings::default()).await;
    put_endpoint(&fixture, "late", "gold", "", false).await;
    put_endpoint(&fixture, "fresh", "gold", "", false).await;
    let mut campaign = write(
        &fixture,
        "late",
        pb::Schedule {
            start_time: (Utc::now() - chrono::Duration::hours(3)).to_rfc3339(),
            end_time: (Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            frequency: "EVENT".into(),
            ..Default::default()
        },
        0,
    );
    campaign.event_filter = Some(pb::EventFilter {
        event_types: vec!["purchase".into()],
        ..Default::default()
    });
    campaign.limits = Some(pb::CampaignLimitOverrides {
        maximum_duration_secs: Some(60),
        ..Default::default()
    });
    let campaign = create(&fixture, campaign).await;
    wait_for_state(&fixture, &campaign.campaign_id, "EXECUTING").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    for (endpoint, age) in [
        ("late", chrono::Duration::hours(2)),
        ("fresh", chrono::Duration::zero()),
    ] {
        EventsClient::new(fixture.channel.clone())
            .put_events(pb::PutEventsRequest {
                project_id: fixture.project.clone(),
                batch_item: HashMap::from([(
                    endpoint.to_string(),
                    pb::EventsBatch {
                        endpoint: None,
                        events: HashMap::from([(
                            format!("ev-{endpoint}"),
                            pb::Event {
                                event_type: "purchase".into(),
                                timestamp: (Utc::now() - age).to_rfc3339(),
                                ..Default::default()
                            },
                        )]),
                    },
                )]),
            })
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let runs = activities(&fixture, &campaign.campaign_id).await;
        let counts = runs.first().and_then(|run| run.counts).unwrap_or_default();
        if counts.expired == 1 && counts.delivered == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent: Vec<String> = outbox(dir.path()).into_keys().collect();
    assert_eq!(sent, ["fresh"]);
}
