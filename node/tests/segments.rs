//! Segments through a real server with four shards: every dimension family of SEG-1 and the
//! groups of SEG-2 select exactly the endpoints counted by hand below, versions keep their
//! old definitions (SEG-4), bad input is refused naming the field, and the CLI drives it all.

use std::collections::HashMap;

use chrono::{SecondsFormat, Utc};
use herald_node::config::Config;
use herald_node::server::RunningNode;
use herald_proto::v1 as pb;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::events_client::EventsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use herald_proto::v1::segments_client::SegmentsClient;
use pb::segment_definition::Rule;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// One endpoint of the fixture: the facts segments look at.
struct Fixture {
    id: &'static str,
    channel: pb::ChannelType,
    address: &'static str,
    platform: &'static str,
    make: &'static str,
    model: &'static str,
    app_version: &'static str,
    country: &'static str,
    coordinates: Option<(f64, f64)>,
    plan: &'static [&'static str],
    signup: Option<&'static str>,
    visits: Option<f64>,
    tier: Option<&'static str>,
    /// Days since its last `_session.start`; `None`: never seen.
    seen_days_ago: Option<i64>,
}

const RECIFE: (f64, f64) = (-8.05, -34.9);

/// Eight endpoints spread over channels, devices, countries, attributes, metrics, users and
/// activity. Every expected count below is read off this table.
const ENDPOINTS: &[Fixture] = &[
    Fixture {
        id: "e1",
        channel: pb::ChannelType::Gcm,
        address: "token-e1",
        platform: "android",
        make: "samsung",
        model: "Galaxy S23",
        app_version: "2.0",
        country: "BR",
        coordinates: Some(RECIFE),
        plan: &["pro"],
        signup: Some("2026-01-15"),
        visits: Some(10.0),
        tier: Some("gold"),
        seen_days_ago: Some(1),
    },
    Fixture {
        id: "e2",
        channel: pb::ChannelType::Gcm,
        address: "token-e2",
        platform: "android",
        make: "google",
        model: "Pixel 8",
        app_version: "1.9",
        country: "BR",
        coordinates: Some((-23.55, -46.63)), // São Paulo
        plan: &["free"],
        signup: Some("2025-06-01"),
        visits: Some(2.0),
        tier: Some("silver"),
        seen_days_ago: Some(2),
    },
    Fixture {
        id: "e3",
        channel: pb::ChannelType::Apns,
        address: "token-e3",
        platform: "ios",
        make: "apple",
        model: "iPhone 15",
        app_version: "2.0",
        country: "US",
        coordinates: Some((40.71, -74.0)), // New York
        plan: &["pro"],
        signup: Some("2026-03-01"),
        visits: Some(5.0),
        tier: Some("gold"),
        seen_days_ago: Some(40),
    },
    Fixture {
        id: "e4",
        channel: pb::ChannelType::Apns,
        address: "token-e4",
        platform: "ios",
        make: "apple",
        model: "iPad",
        app_version: "2.0",
        country: "PT",
        coordinates: Some((38.72, -9.14)), // Lisbon
        plan: &["pro", "annual"],
        signup: Some("2024-12-31"),
        visits: Some(0.0),
        tier: None,
        seen_days_ago: Some(3),
    },
    Fixture {
        id: "e5",
        channel: pb::ChannelType::Email,
        address: "e5@example.com",
        platform: "",
        make: "",
        model: "",
        app_version: "",
        country: "BR",
        coordinates: Some((-8.01, -34.86)), // Olinda, about 6 km from Recife
        plan: &["free"],
        signup: None,
        visits: None,
        tier: Some("gold"),
        seen_days_ago: None,
    },
    Fixture {
        id: "e6",
        channel: pb::ChannelType::Sms,
        address: "+5581999990006",
        platform: "",
        make: "",
        model: "",
        app_version: "",
        country: "US",
        coordinates: None,
        plan: &["pro"],
        signup: Some("2026-02-10"),
        visits: Some(7.0),
        tier: Some("bronze"),
        seen_days_ago: Some(0),
    },
    Fixture {
        id: "e7",
        channel: pb::ChannelType::Email,
        address: "e7@example.com",
        platform: "",
        make: "",
        model: "",
        app_version: "",
        country: "DE",
        coordinates: Some((52.52, 13.40)), // Berlin
        plan: &["enterprise"],
        signup: Some("2026-01-01"),
        visits: Some(20.0),
        tier: Some("gold"),
        seen_days_ago: Some(10),
    },
    Fixture {
        id: "e8",
        channel: pb::ChannelType::Gcm,
        address: "token-e8",
        platform: "android",
        make: "xiaomi",
        model: "Redmi",
        app_version: "1.0",
        country: "IN",
        coordinates: Some((19.08, 72.88)), // Mumbai
        plan: &["free"],
        signup: None,
        visits: Some(1.0),
        tier: None,
        seen_days_ago: None,
    },
];

fn values(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

fn endpoint_request(fixture: &Fixture) -> pb::EndpointRequest {
    let mut attributes = HashMap::from([(
        "plan".to_string(),
        pb::AttributeValues {
            values: values(fixture.plan),
        },
    )]);
    if let Some(signup) = fixture.signup {
        attributes.insert(
            "signup".to_string(),
            pb::AttributeValues {
                values: values(&[signup]),
            },
        );
    }
    let user_attributes = fixture
        .tier
        .map(|tier| {
            HashMap::from([(
                "tier".to_string(),
                pb::AttributeValues {
                    values: values(&[tier]),
                },
            )])
        })
        .unwrap_or_default();
    pb::EndpointRequest {
        address: fixture.address.to_string(),
        attributes,
        channel_type: fixture.channel as i32,
        demographic: Some(pb::EndpointDemographic {
            app_version: fixture.app_version.to_string(),
            make: fixture.make.to_string(),
            model: fixture.model.to_string(),
            platform: fixture.platform.to_string(),
            ..Default::default()
        }),
        location: Some(pb::EndpointLocation {
            country: fixture.country.to_string(),
            latitude: fixture.coordinates.map(|(latitude, _)| latitude),
            longitude: fixture.coordinates.map(|(_, longitude)| longitude),
            ..Default::default()
        }),
        metrics: fixture
            .visits
            .map(|visits| HashMap::from([("visits".to_string(), visits)]))
            .unwrap_or_default(),
        user: Some(pb::EndpointUser {
            user_id: format!("user-{}", fixture.id),
            user_attributes,
        }),
        ..Default::default()
    }
}

/// A node with four shards, a project holding the fixture endpoints and their sessions.
struct Setup {
    _dir: tempfile::TempDir,
    node: RunningNode,
    channel: Channel,
    project: String,
}

async fn start() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.cluster.shards = 4;
    let node = RunningNode::start(config).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", node.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let project = ProjectsClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            name: "segments".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    Setup {
        _dir: dir,
        node,
        channel,
        project,
    }
}

async fn load_fixture(setup: &Setup) {
    let answer = EndpointsClient::new(setup.channel.clone())
        .update_endpoints_batch(pb::UpdateEndpointsBatchRequest {
            project_id: setup.project.clone(),
            items: ENDPOINTS
                .iter()
                .map(|fixture| pb::EndpointBatchItem {
                    endpoint_id: fixture.id.to_string(),
                    endpoint: Some(endpoint_request(fixture)),
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner();
    for result in &answer.results {
        let item = result.result.as_ref().unwrap();
        assert_eq!(
            item.status_code, 202,
            "{}: {}",
            result.endpoint_id, item.message
        );
    }
    let now = Utc::now();
    let batch_item = ENDPOINTS
        .iter()
        .filter_map(|fixture| {
            let days = fixture.seen_days_ago?;
            // An hour past the day boundary, so "1 day ago" is outside HR_24 and "10 days
            // ago" outside DAY_7 whatever the clock does meanwhile; "0 days" is a minute ago.
            let seen = if days == 0 {
                now - chrono::Duration::minutes(1)
            } else {
                now - chrono::Duration::days(days) - chrono::Duration::hours(1)
            };
            let event = pb::Event {
                event_type: "_session.start".to_string(),
                timestamp: seen.to_rfc3339_opts(SecondsFormat::Secs, true),
                ..Default::default()
            };
            let events = HashMap::from([(format!("start-{}", fixture.id), event)]);
            Some((
                fixture.id.to_string(),
                pb::EventsBatch {
                    endpoint: None,
                    events,
                },
            ))
        })
        .collect();
    let answer = EventsClient::new(setup.channel.clone())
        .put_events(pb::PutEventsRequest {
            project_id: setup.project.clone(),
            batch_item,
        })
        .await
        .unwrap()
        .into_inner();
    for (endpoint_id, result) in &answer.results {
        for (event_id, item) in &result.events_item_response {
            assert_eq!(
                item.status_code, 202,
                "{endpoint_id}/{event_id}: {}",
                item.message
            );
        }
    }
}

fn set(kind: &str, listed: &[&str]) -> Option<pb::SetDimension> {
    Some(pb::SetDimension {
        kind: kind.to_string(),
        values: values(listed),
    })
}

fn attribute(kind: &str, listed: &[&str]) -> pb::AttributeDimension {
    pb::AttributeDimension {
        kind: kind.to_string(),
        values: values(listed),
    }
}

fn metric(comparison: &str, value: f64, upper: Option<f64>) -> pb::MetricDimension {
    pb::MetricDimension {
        comparison: comparison.to_string(),
        value,
        upper,
    }
}

fn recency(duration: &str, kind: &str) -> pb::SegmentDimensions {
    pb::SegmentDimensions {
        recency: Some(pb::Recency {
            duration: duration.to_string(),
            kind: kind.to_string(),
        }),
        ..Default::default()
    }
}

fn demographic(demographic: pb::SegmentDemographics) -> pb::SegmentDimensions {
    pb::SegmentDimensions {
        demographic: Some(demographic),
        ..Default::default()
    }
}

fn location(location: pb::SegmentLocation) -> pb::SegmentDimensions {
    pb::SegmentDimensions {
        location: Some(location),
        ..Default::default()
    }
}

fn country(kind: &str, codes: &[&str]) -> pb::SegmentDimensions {
    location(pb::SegmentLocation {
        country: set(kind, codes),
        gps_point: None,
    })
}

fn attributes(name: &str, condition: pb::AttributeDimension) -> pb::SegmentDimensions {
    pb::SegmentDimensions {
        attributes: HashMap::from([(name.to_string(), condition)]),
        ..Default::default()
    }
}

fn metrics(name: &str, condition: pb::MetricDimension) -> pb::SegmentDimensions {
    pb::SegmentDimensions {
        metrics: HashMap::from([(name.to_string(), condition)]),
        ..Default::default()
    }
}

fn definition(name: &str, dimensions: pb::SegmentDimensions) -> pb::SegmentDefinition {
    pb::SegmentDefinition {
        name: name.to_string(),
        rule: Some(Rule::Dimensions(dimensions)),
    }
}

fn group_definition(
    name: &str,
    include: &str,
    groups: Vec<pb::SegmentGroup>,
) -> pb::SegmentDefinition {
    pb::SegmentDefinition {
        name: name.to_string(),
        rule: Some(Rule::SegmentGroups(pb::SegmentGroupList {
            include: include.to_string(),
            groups,
        })),
    }
}

fn sources(ids: &[&str], source_type: &str, segment_type: &str) -> pb::SegmentGroup {
    pb::SegmentGroup {
        source_segments: ids
            .iter()
            .map(|id| pb::SegmentReference {
                id: id.to_string(),
                version: 0,
            })
            .collect(),
        source_type: source_type.to_string(),
        segment_type: segment_type.to_string(),
        ..Default::default()
    }
}

async fn create(
    segments: &mut SegmentsClient<Channel>,
    project: &str,
    segment: pb::SegmentDefinition,
) -> pb::SegmentResponse {
    let name = segment.name.clone();
    segments
        .create_segment(pb::CreateSegmentRequest {
            project_id: project.to_string(),
            segment: Some(segment),
        })
        .await
        .unwrap_or_else(|status| panic!("create {name}: {status:?}"))
        .into_inner()
}

async fn estimate(
    segments: &mut SegmentsClient<Channel>,
    project: &str,
    segment_id: &str,
    version: u32,
) -> u64 {
    segments
        .estimate_segment_size(pb::EstimateSegmentSizeRequest {
            project_id: project.to_string(),
            segment_id: segment_id.to_string(),
            version,
        })
        .await
        .unwrap()
        .into_inner()
        .endpoints
}

/// Creates the segment and checks its estimate is the members listed by hand.
async fn assert_members(
    segments: &mut SegmentsClient<Channel>,
    project: &str,
    segment: pb::SegmentDefinition,
    members: &[&str],
) -> String {
    let name = segment.name.clone();
    let created = create(segments, project, segment).await;
    let count = estimate(segments, project, &created.segment_id, 0).await;
    assert_eq!(
        count,
        members.len() as u64,
        "segment {name:?} should select {members:?}"
    );
    created.segment_id
}

/// Each dimension family of SEG-1 alone and combined, and groups with ALL/ANY/NONE that
/// include or exclude other segments, count exactly the endpoints listed by hand, summed
/// over four shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimates_match_hand_counts() {
    let setup = start().await;
    load_fixture(&setup).await;
    let project = setup.project.as_str();
    let mut segments = SegmentsClient::new(setup.channel.clone());
    let s = &mut segments;

    // Behaviour.
    assert_members(
        s,
        project,
        definition("seen 7d", recency("DAY_7", "ACTIVE")),
        &["e1", "e2", "e4", "e6"],
    )
    .await;
    assert_members(
        s,
        project,
        definition("unseen 7d", recency("DAY_7", "INACTIVE")),
        &["e3", "e5", "e7", "e8"],
    )
    .await;
    assert_members(
        s,
        project,
        definition("seen 24h", recency("HR_24", "ACTIVE")),
        &["e6"],
    )
    .await;
    assert_members(
        s,
        project,
        definition("seen 14d", recency("day_14", "active")),
        &["e1", "e2", "e4", "e6", "e7"],
    )
    .await;
    assert_members(
        s,
        project,
        definition("seen 30d", recency("DAY_30", "ACTIVE")),
        &["e1", "e2", "e4", "e6", "e7"],
    )
    .await;

    // Demographic.
    let apps_2 = pb::SegmentDemographics {
        channel: set("INCLUSIVE", &["APNS", "FCM"]),
        app_version: set("", &["2.0"]),
        ..Default::default()
    };
    assert_members(
        s,
        project,
        definition("push on 2.0", demographic(apps_2)),
        &["e1", "e3", "e4"],
    )
    .await;
    let apple_phones = pb::SegmentDemographics {
        make: set("INCLUSIVE", &["APPLE"]),
        device_type: set("EXCLUSIVE", &["ipad"]),
        ..Default::default()
    };
    assert_members(
        s,
        project,
        definition("apple phones", demographic(apple_phones)),
        &["e3"],
    )
    .await;
    let not_email = pb::SegmentDemographics {
        channel: set("EXCLUSIVE", &["EMAIL"]),
        model: set("EXCLUSIVE", &["Redmi"]),
        ..Default::default()
    };
    assert_members(
        s,
        project,
        definition("not email", demographic(not_email)),
        &["e1", "e2", "e3", "e4", "e6"],
    )
    .await;
    let android = pb::SegmentDemographics {
        platform: set("INCLUSIVE", &["Android"]),
        ..Default::default()
    };
    let android_id = assert_members(
        s,
        project,
        definition("android", demographic(android)),
        &["e1", "e2", "e8"],
    )
    .await;

    // Location.
    assert_members(
        s,
        project,
        definition("brazil", country("INCLUSIVE", &["br"])),
        &["e1", "e2", "e5"],
    )
    .await;
    assert_members(
        s,
        project,
        definition("not BR/US", country("EXCLUSIVE", &["BR", "US"])),
        &["e4", "e7", "e8"],
    )
    .await;
    let near_recife = location(pb::SegmentLocation {
        country: None,
        gps_point: Some(pb::GpsPoint {
            latitude: RECIFE.0,
            longitude: RECIFE.1,
            range_km: 20.0,
        }),
    });
    assert_members(
        s,
        project,
        definition("near recife", near_recife),
        &["e1", "e5"],
    )
    .await;

    // Endpoint attributes.
    let pro_id = assert_members(
        s,
        project,
        definition("pro", attributes("plan", attribute("INCLUSIVE", &["PRO"]))),
        &["e1", "e3", "e4", "e6"],
    )
    .await;
    assert_members(
        s,
        project,
        definition(
            "not pro",
            attributes("plan", attribute("EXCLUSIVE", &["pro"])),
        ),
        &["e2", "e5", "e7", "e8"],
    )
    .await;
    assert_members(
        s,
        project,
        definition("ann*", attributes("plan", attribute("CONTAINS", &["ann"]))),
        &["e4"],
    )
    .await;
    assert_members(
        s,
        project,
        definition(
            "signed up after",
            attributes("signup", attribute("AFTER", &["2026-01-01"])),
        ),
        &["e1", "e3", "e6"],
    )
    .await;
    assert_members(
        s,
        project,
        definition(
            "signed up before",
            attributes("signup", attribute("BEFORE", &["2025-01-01"])),
        ),
        &["e4"],
    )
    .await;
    assert_members(
        s,
        project,
        definition(
            "signed up on",
            attributes("signup", attribute("ON", &["2026-01-01", "2025-06-01"])),
        ),
        &["e2", "e7"],
    )
    .await;
    assert_members(
        s,
        project,
        definition(
            "signed up between",
            attributes(
                "signup",
                attribute("BETWEEN", &["2026-01-01", "2026-02-10T00:00:00Z"]),
            ),
        ),
        &["e1", "e6", "e7"],
    )
    .await;

    // Metrics: endpoints without the metric meet no comparison.
    assert_members(
        s,
        project,
        definition(
            "> 5 visits",
            metrics("visits", metric("GREATER_THAN", 5.0, None)),
        ),
        &["e1", "e6", "e7"],
    )
    .await;
    assert_members(
        s,
        project,
        definition(
            ">= 5 visits",
            metrics("visits", metric("GREATER_THAN_OR_EQUAL", 5.0, None)),
        ),
        &["e1", "e3", "e6", "e7"],
    )
    .await;
    assert_members(
        s,
        project,
        definition(
            "< 2 visits",
            metrics("visits", metric("LESS_THAN", 2.0, None)),
        ),
        &["e4", "e8"],
    )
    .await;
    assert_members(
        s,
        project,
        definition(
            "<= 2 visits",
            metrics("visits", metric("LESS_THAN_OR_EQUAL", 2.0, None)),
        ),
        &["e2", "e4", "e8"],
    )
    .await;
    assert_members(
        s,
        project,
        definition("0 visits", metrics("visits", metric("EQUAL", 0.0, None))),
        &["e4"],
    )
    .await;
    assert_members(
        s,
        project,
        definition(
            "2..7 visits",
            metrics("visits", metric("BETWEEN", 2.0, Some(7.0))),
        ),
        &["e2", "e3", "e6"],
    )
    .await;

    // User attributes.
    let gold = pb::SegmentDimensions {
        user_attributes: HashMap::from([("tier".to_string(), attribute("", &["Gold"]))]),
        ..Default::default()
    };
    let gold_id = assert_members(
        s,
        project,
        definition("gold", gold),
        &["e1", "e3", "e5", "e7"],
    )
    .await;

    // Every family at once: all must hold.
    let everything = pb::SegmentDimensions {
        recency: recency("DAY_7", "ACTIVE").recency,
        demographic: Some(pb::SegmentDemographics {
            platform: set("INCLUSIVE", &["android"]),
            ..Default::default()
        }),
        location: Some(pb::SegmentLocation {
            country: set("INCLUSIVE", &["BR"]),
            gps_point: None,
        }),
        attributes: HashMap::from([("plan".to_string(), attribute("INCLUSIVE", &["pro"]))]),
        metrics: HashMap::from([("visits".to_string(), metric("GREATER_THAN", 1.0, None))]),
        user_attributes: HashMap::from([("tier".to_string(), attribute("INCLUSIVE", &["gold"]))]),
    };
    assert_members(s, project, definition("all families", everything), &["e1"]).await;
    // No condition at all selects every endpoint.
    assert_members(
        s,
        project,
        definition("everyone", pb::SegmentDimensions::default()),
        &["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"],
    )
    .await;

    // Groups. G1: in BR or in US = e1 e2 e3 e5 e6. G2: not in "pro" = e2 e5 e7 e8.
    let g1 = pb::SegmentGroup {
        dimensions: vec![country("INCLUSIVE", &["BR"]), country("INCLUSIVE", &["US"])],
        dimension_type: "ANY".to_string(),
        ..Default::default()
    };
    let g2 = sources(&[&pro_id], "ALL", "EXCLUSIVE");
    let both = || vec![g1.clone(), g2.clone()];
    assert_members(
        s,
        project,
        group_definition("g1 and g2", "ALL", both()),
        &["e2", "e5"],
    )
    .await;
    assert_members(
        s,
        project,
        group_definition("g1 or g2", "ANY", both()),
        &["e1", "e2", "e3", "e5", "e6", "e7", "e8"],
    )
    .await;
    assert_members(
        s,
        project,
        group_definition("neither", "NONE", both()),
        &["e4"],
    )
    .await;
    // Android = e1 e2 e8; gold = e1 e3 e5 e7.
    assert_members(
        s,
        project,
        group_definition(
            "android and gold",
            "ALL",
            vec![sources(&[&android_id, &gold_id], "ALL", "INCLUSIVE")],
        ),
        &["e1"],
    )
    .await;
    let either_unseen = pb::SegmentGroup {
        dimensions: vec![recency("DAY_7", "ACTIVE")],
        dimension_type: "NONE".to_string(),
        ..sources(&[&android_id, &gold_id], "ANY", "INCLUSIVE")
    };
    let either_unseen_id = assert_members(
        s,
        project,
        group_definition(
            "android or gold, not seen in 7 days",
            "ALL",
            vec![either_unseen],
        ),
        &["e3", "e5", "e7", "e8"],
    )
    .await;
    // A segment over a segment over segments.
    assert_members(
        s,
        project,
        group_definition(
            "nested",
            "ALL",
            vec![pb::SegmentGroup {
                dimensions: vec![country("EXCLUSIVE", &["DE"])],
                ..sources(&[&either_unseen_id], "ALL", "INCLUSIVE")
            }],
        ),
        &["e3", "e5", "e8"],
    )
    .await;

    setup.node.shutdown().await.unwrap();
}

/// Updating a segment writes version 2; version 1 stays readable and estimable, listings
/// show the latest, and deleting removes every version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_keep_old_definitions() {
    let setup = start().await;
    load_fixture(&setup).await;
    let project = setup.project.as_str();
    let mut segments = SegmentsClient::new(setup.channel.clone());
    let platform = |name: &str| {
        demographic(pb::SegmentDemographics {
            platform: set("INCLUSIVE", &[name]),
            ..Default::default()
        })
    };
    let v1 = create(
        &mut segments,
        project,
        definition("mobile", platform("android")),
    )
    .await;
    assert_eq!(v1.version, 1);
    assert_eq!(v1.project_id, project);
    assert!(!v1.segment_id.is_empty());
    let v2 = segments
        .update_segment(pb::UpdateSegmentRequest {
            project_id: project.to_string(),
            segment_id: v1.segment_id.clone(),
            segment: Some(definition("mobile (ios)", platform("ios"))),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (v2.segment_id.as_str(), v2.version),
        (v1.segment_id.as_str(), 2)
    );

    let get = |version: u32| pb::GetSegmentRequest {
        project_id: project.to_string(),
        segment_id: v1.segment_id.clone(),
        version,
    };
    let latest = segments.get_segment(get(0)).await.unwrap().into_inner();
    assert_eq!((latest.version, latest.name.as_str()), (2, "mobile (ios)"));
    let old = segments.get_segment(get(1)).await.unwrap().into_inner();
    assert_eq!((old.version, old.name.as_str()), (1, "mobile"));
    let Some(pb::segment_response::Rule::Dimensions(old_rule)) = &old.rule else {
        panic!("version 1 has dimensions: {old:?}");
    };
    let old_platform = old_rule
        .demographic
        .as_ref()
        .unwrap()
        .platform
        .as_ref()
        .unwrap();
    assert_eq!(old_platform.kind, "INCLUSIVE");
    assert_eq!(old_platform.values, vec!["android"]);

    // Latest: ios = e3 e4; version 1: android = e1 e2 e8.
    let latest_size = segments
        .estimate_segment_size(pb::EstimateSegmentSizeRequest {
            project_id: project.to_string(),
            segment_id: v1.segment_id.clone(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((latest_size.version, latest_size.endpoints), (2, 2));
    assert_eq!(latest_size.segment_id, v1.segment_id);
    assert_eq!(estimate(&mut segments, project, &v1.segment_id, 1).await, 3);

    let versions = segments
        .get_segment_versions(pb::GetSegmentVersionsRequest {
            project_id: project.to_string(),
            segment_id: v1.segment_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .segments;
    let numbers: Vec<u32> = versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, vec![1, 2]);

    let other = create(
        &mut segments,
        project,
        definition("brazil", country("INCLUSIVE", &["BR"])),
    )
    .await;
    let mut listed: Vec<(String, u32)> = segments
        .get_segments(pb::GetSegmentsRequest {
            project_id: project.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .segments
        .into_iter()
        .map(|segment| (segment.segment_id, segment.version))
        .collect();
    listed.sort();
    let mut expected = vec![(v1.segment_id.clone(), 2), (other.segment_id.clone(), 1)];
    expected.sort();
    assert_eq!(listed, expected);

    let deleted = segments
        .delete_segment(pb::DeleteSegmentRequest {
            project_id: project.to_string(),
            segment_id: v1.segment_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.version, 2);
    for version in [0, 1, 2] {
        let error = segments.get_segment(get(version)).await.unwrap_err();
        assert_eq!(error.code(), Code::NotFound, "version {version}: {error:?}");
    }
    let listed = segments
        .get_segments(pb::GetSegmentsRequest {
            project_id: project.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .segments;
    assert_eq!(listed.len(), 1);

    setup.node.shutdown().await.unwrap();
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    let details = status.get_error_details();
    let mut fields: Vec<String> = details
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default();
    fields.sort();
    fields
}

/// Bad definitions are refused with INVALID_ARGUMENT naming every bad field; unknown
/// projects and segments are NOT_FOUND; a reference to a missing segment is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused() {
    let setup = start().await;
    let project = setup.project.as_str();
    let mut segments = SegmentsClient::new(setup.channel.clone());
    let create_status = |segment: pb::SegmentDefinition, project: &str| pb::CreateSegmentRequest {
        project_id: project.to_string(),
        segment: Some(segment),
    };

    // Unknown operator, empty value list and BETWEEN with one date, all in one answer.
    let bad = pb::SegmentDimensions {
        demographic: Some(pb::SegmentDemographics {
            platform: set("SOMETIMES", &["ios"]),
            ..Default::default()
        }),
        location: Some(pb::SegmentLocation {
            country: set("INCLUSIVE", &[]),
            gps_point: None,
        }),
        attributes: HashMap::from([("signup".to_string(), attribute("BETWEEN", &["2026-01-01"]))]),
        metrics: HashMap::from([("visits".to_string(), metric("BETWEEN", 1.0, None))]),
        ..Default::default()
    };
    let error = segments
        .create_segment(create_status(definition("bad", bad), project))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert_eq!(
        violated_fields(&error),
        vec![
            "segment.dimensions.attributes[\"signup\"].values",
            "segment.dimensions.demographic.platform.kind",
            "segment.dimensions.location.country.values",
            "segment.dimensions.metrics[\"visits\"].upper",
        ]
    );
    assert!(
        error.message().contains("\"SOMETIMES\""),
        "{}",
        error.message()
    );

    // A recency without its window, a group list without groups, no rule at all.
    let error = segments
        .create_segment(create_status(
            definition("no window", recency("", "ACTIVE")),
            project,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&error),
        vec!["segment.dimensions.recency.duration"]
    );
    let error = segments
        .create_segment(create_status(
            group_definition("empty", "SOME", vec![]),
            project,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&error),
        vec![
            "segment.segment_groups.groups",
            "segment.segment_groups.include"
        ]
    );
    let error = segments
        .create_segment(create_status(
            pb::SegmentDefinition {
                name: "x".into(),
                rule: None,
            },
            project,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&error), vec!["segment.rule"]);

    // A reference to a segment that does not exist.
    let error = segments
        .create_segment(create_status(
            group_definition(
                "dangling",
                "ALL",
                vec![sources(&["no-such-segment"], "ALL", "INCLUSIVE")],
            ),
            project,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.code(),
            Code::InvalidArgument | Code::FailedPrecondition
        ),
        "{error:?}"
    );
    assert!(
        error.message().contains("no-such-segment"),
        "{}",
        error.message()
    );

    // Unknown project, unknown segment.
    let fine = || definition("brazil", country("INCLUSIVE", &["BR"]));
    let error = segments
        .create_segment(create_status(fine(), "no-such-project"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    let error = segments
        .get_segments(pb::GetSegmentsRequest {
            project_id: "no-such-project".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    let error = segments
        .get_segment(pb::GetSegmentRequest {
            project_id: project.into(),
            segment_id: "no-such-segment".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    let error = segments
        .update_segment(pb::UpdateSegmentRequest {
            project_id: project.into(),
            segment_id: "no-such-segment".into(),
            segment: Some(fine()),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    let error = segments
        .estimate_segment_size(pb::EstimateSegmentSizeRequest {
            project_id: project.into(),
            segment_id: "no-such-segment".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    let error = segments
        .delete_segment(pb::DeleteSegmentRequest {
            project_id: project.into(),
            segment_id: "no-such-segment".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    let created = create(&mut segments, project, fine()).await;
    let error = segments
        .get_segment(pb::GetSegmentRequest {
            project_id: project.into(),
            segment_id: created.segment_id.clone(),
            version: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    let error = segments
        .get_segment(pb::GetSegmentRequest {
            project_id: project.into(),
            segment_id: String::new(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&error), vec!["segment_id"]);

    setup.node.shutdown().await.unwrap();
}

/// Runs the `herald` binary against the node and returns its standard output.
async fn herald(addr: &str, args: &[&str]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command.args(args).args(["--server", addr]);
    let output = tokio::task::spawn_blocking(move || command.output().expect("run herald"))
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "herald {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A user defines a segment from a JSON file with the CLI, estimates it, writes version 2,
/// reads both versions back and deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_create_estimate_update() {
    let setup = start().await;
    load_fixture(&setup).await;
    let addr = setup.node.client_addr.to_string();
    let project = setup.project.as_str();
    let dir = tempfile::tempdir().unwrap();
    // The JSON form of a segment, as `herald segment create --help` documents it.
    let file = dir.path().join("segment.json");
    std::fs::write(
        &file,
        r#"{
          "name": "active in Brazil",
          "rule": {"Dimensions": {
            "recency": {"duration": "Day7", "kind": "Active"},
            "demographic": {},
            "location": {"country": {"kind": "Inclusive", "values": ["BR"]}},
            "attributes": {},
            "metrics": {"visits": {"comparison": "GreaterThanOrEqual", "value": 2.0}},
            "user_attributes": {}
          }}
        }"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let created: serde_json::Value = serde_json::from_str(
        &herald(
            &addr,
            &[
                "segment",
                "create",
                "--project",
                project,
                "--file",
                file,
                "--json",
            ],
        )
        .await,
    )
    .unwrap();
    assert_eq!(created["version"], 1);
    assert_eq!(created["definition"]["name"], "active in Brazil");
    let id = created["segment_id"].as_str().unwrap().to_string();

    // Seen in 7 days, in BR, at least 2 visits: e1 (10) and e2 (2).
    let count = herald(
        &addr,
        &["segment", "estimate", "--project", project, "--id", &id],
    )
    .await;
    assert_eq!(count.trim(), "2");

    // Version 2 from the printed definition with a changed country: US = e3 (unseen), e6.
    let mut definition = created["definition"].clone();
    definition["rule"]["Dimensions"]["location"]["country"]["values"] = serde_json::json!(["US"]);
    std::fs::write(dir.path().join("v2.json"), definition.to_string()).unwrap();
    let v2 = dir.path().join("v2.json");
    let updated = herald(
        &addr,
        &[
            "segment",
            "update",
            "--project",
            project,
            "--id",
            &id,
            "--file",
            v2.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        updated.contains("version") && updated.contains('2'),
        "{updated}"
    );
    let estimate: serde_json::Value = serde_json::from_str(
        &herald(
            &addr,
            &[
                "segment",
                "estimate",
                "--project",
                project,
                "--id",
                &id,
                "--json",
            ],
        )
        .await,
    )
    .unwrap();
    assert_eq!(estimate["version"], 2);
    assert_eq!(estimate["endpoints"], 1);
    let old = herald(
        &addr,
        &[
            "segment",
            "estimate",
            "--project",
            project,
            "--id",
            &id,
            "--version",
            "1",
        ],
    )
    .await;
    assert_eq!(old.trim(), "2");

    let versions: serde_json::Value = serde_json::from_str(
        &herald(
            &addr,
            &[
                "segment",
                "versions",
                "--project",
                project,
                "--id",
                &id,
                "--json",
            ],
        )
        .await,
    )
    .unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let listed = herald(&addr, &["segment", "list", "--project", project]).await;
    assert!(
        listed.contains(&id) && listed.contains("active in Brazil"),
        "{listed}"
    );
    let got = herald(
        &addr,
        &[
            "segment",
            "get",
            "--project",
            project,
            "--id",
            &id,
            "--version",
            "1",
        ],
    )
    .await;
    assert!(got.contains("\"BR\""), "{got}");
    herald(
        &addr,
        &["segment", "delete", "--project", project, "--id", &id],
    )
    .await;
    let listed: serde_json::Value = serde_json::from_str(
        &herald(&addr, &["segment", "list", "--project", project, "--json"]).await,
    )
    .unwrap();
    assert_eq!(listed, serde_json::json!([]));

    setup.node.shutdown().await.unwrap();
}

/// Runs the `herald` binary and returns its output, whether it succeeded or not.
async fn herald_output(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(args)
            .output()
            .expect("run herald")
    })
    .await
    .unwrap()
}

/// The JSON examples of a help text: each starts at a line `  {` and ends at a line `  }`.
fn help_examples(help: &str) -> Vec<String> {
    let mut examples = Vec::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        if line.trim_end() == "  {" {
            current = Some(String::new());
        }
        if let Some(example) = current.as_mut() {
            example.push_str(line);
            example.push('\n');
            if line.trim_end() == "  }" {
                examples.push(current.take().unwrap());
            }
        }
    }
    examples
}

/// Both examples of `herald segment create --help` work as written (with real segment ids
/// in place of S1, S2, S3) and select what the help says; a file that is not a segment is
/// refused before anything is sent, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_help_examples_work() {
    let setup = start().await;
    load_fixture(&setup).await;
    let addr = setup.node.client_addr.to_string();
    let project = setup.project.as_str();
    let mut segments = SegmentsClient::new(setup.channel.clone());
    let android = demographic(pb::SegmentDemographics {
        platform: set("INCLUSIVE", &["android"]),
        ..Default::default()
    });
    let s1 = create(&mut segments, project, definition("android", android)).await;
    let gold = pb::SegmentDimensions {
        user_attributes: HashMap::from([("tier".to_string(), attribute("", &["gold"]))]),
        ..Default::default()
    };
    let s2 = create(&mut segments, project, definition("gold", gold)).await;
    let s3 = create(
        &mut segments,
        project,
        definition("brazil", country("", &["BR"])),
    )
    .await;
    let pro = attributes("plan", attribute("INCLUSIVE", &["pro"]));
    segments
        .update_segment(pb::UpdateSegmentRequest {
            project_id: project.to_string(),
            segment_id: s3.segment_id.clone(),
            segment: Some(definition("pro", pro)),
        })
        .await
        .unwrap();

    let help = herald(&addr, &["segment", "create", "--help"]).await;
    let examples = help_examples(&help);
    assert_eq!(examples.len(), 2, "{help}");
    let dir = tempfile::tempdir().unwrap();
    let mut counts = Vec::new();
    for (i, example) in examples.iter().enumerate() {
        let text = example
            .replace("\"S1\"", &format!("{:?}", s1.segment_id))
            .replace("\"S2\"", &format!("{:?}", s2.segment_id))
            .replace("\"S3\"", &format!("{:?}", s3.segment_id));
        let file = dir.path().join(format!("example{i}.json"));
        std::fs::write(&file, text).unwrap();
        let created: serde_json::Value = serde_json::from_str(
            &herald(
                &addr,
                &[
                    "segment",
                    "create",
                    "--project",
                    project,
                    "--file",
                    file.to_str().unwrap(),
                    "--json",
                ],
            )
            .await,
        )
        .unwrap();
        let id = created["segment_id"].as_str().unwrap().to_string();
        counts.push(estimate(&mut segments, project, &id, 0).await);
    }
    // Example 1: seen in 7 days, android or ios, BR, pro, signed up in 2026, more than 3
    // visits, near Recife = e1. Example 2: (android or gold) = e1 e2 e3 e5 e7 e8, minus pro
    // (S3 version 2) = e2 e5 e7 e8.
    assert_eq!(counts, vec![1, 4]);

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"name": "x", "rule": {"Dimensions": {}}}"#).unwrap();
    let args = [
        "segment",
        "create",
        "--project",
        project,
        "--file",
        bad.to_str().unwrap(),
        "--server",
        &addr,
    ];
    let output = herald_output(args.iter().map(|arg| arg.to_string()).collect()).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing field"), "{stderr}");
    assert!(stderr.contains("bad.json"), "{stderr}");

    setup.node.shutdown().await.unwrap();
}

mod conversions {
    //! proto ⇄ domain conversions of the API, which the CLI uses too.

    use std::collections::HashMap;

    use herald_node::api::segments::{
        definition_from_proto, definition_from_response, definition_to_proto,
    };
    use herald_node::domain::segment::{
        Combination, Recency, RecencyDuration, RecencyKind, SegmentRule, SetKind, SourceCombination,
    };
    use herald_proto::v1 as pb;
    use pb::segment_definition::Rule;

    use super::{attribute, metric, set};

    fn dimensions_request() -> pb::SegmentDefinition {
        pb::SegmentDefinition {
            name: "everything".to_string(),
            rule: Some(Rule::Dimensions(pb::SegmentDimensions {
                recency: Some(pb::Recency {
                    duration: "day_7".to_string(),
                    kind: "ACTIVE".to_string(),
                }),
                demographic: Some(pb::SegmentDemographics {
                    app_version: set("", &["1.0"]),
                    channel: set("INCLUSIVE", &["GCM", "APNS"]),
                    device_type: set("EXCLUSIVE", &["tablet"]),
                    make: set("", &["apple"]),
                    model: set("", &["iPhone"]),
                    platform: set("", &["ios"]),
                }),
                location: Some(pb::SegmentLocation {
                    country: set("", &["BR"]),
                    gps_point: Some(pb::GpsPoint {
                        latitude: -8.05,
                        longitude: -34.9,
                        range_km: 10.0,
                    }),
                }),
                attributes: HashMap::from([(
                    "signup".to_string(),
                    attribute("BETWEEN", &["2026-01-01", "2026-02-01"]),
                )]),
                metrics: HashMap::from([("visits".to_string(), metric("BETWEEN", 1.0, Some(5.0)))]),
                user_attributes: HashMap::from([(
                    "tier".to_string(),
                    attribute("CONTAINS", &["gold"]),
                )]),
            })),
        }
    }

    /// Every dimension survives proto → domain → proto, operators answered in their wire
    /// names whatever case they were sent in, empty operators taking their defaults.
    #[test]
    fn dimensions_round_trip() {
        let definition =
            definition_from_proto("segment", Some(dimensions_request())).expect("valid");
        let SegmentRule::Dimensions(dimensions) = &definition.rule else {
            panic!("not dimensions");
        };
        assert_eq!(
            dimensions.recency,
            Some(Recency {
                duration: RecencyDuration::Day7,
                kind: RecencyKind::Active
            })
        );
        assert_eq!(
            dimensions.demographic.make.as_ref().map(|set| set.kind),
            Some(SetKind::Inclusive)
        );
        assert_eq!(dimensions.metrics["visits"].upper, Some(5.0));
        let back = definition_to_proto(&definition);
        let Some(Rule::Dimensions(proto)) = &back.rule else {
            panic!("not dimensions");
        };
        assert_eq!(proto.recency.as_ref().unwrap().duration, "DAY_7");
        let make = proto.demographic.as_ref().unwrap().make.as_ref().unwrap();
        assert_eq!(make.kind, "INCLUSIVE");
        assert_eq!(
            definition_from_proto("segment", Some(back)).expect("still valid"),
            definition
        );
    }

    /// Groups and references convert both ways; version 0 is the latest.
    #[test]
    fn groups_round_trip() {
        let request = pb::SegmentDefinition {
            name: "groups".to_string(),
            rule: Some(Rule::SegmentGroups(pb::SegmentGroupList {
                include: "any".to_string(),
                groups: vec![pb::SegmentGroup {
                    dimensions: vec![pb::SegmentDimensions::default()],
                    dimension_type: "NONE".to_string(),
                    source_segments: vec![
                        pb::SegmentReference {
                            id: "a".to_string(),
                            version: 0,
                        },
                        pb::SegmentReference {
                            id: "b".to_string(),
                            version: 3,
                        },
                    ],
                    source_type: String::new(),
                    segment_type: "EXCLUSIVE".to_string(),
                }],
            })),
        };
        let definition = definition_from_proto("segment", Some(request)).expect("valid");
        let SegmentRule::Groups(list) = &definition.rule else {
            panic!("not groups");
        };
        assert_eq!(list.include, Combination::Any);
        let group = &list.groups[0];
        assert_eq!(group.dimension_type, Combination::None);
        assert_eq!(group.source_type, SourceCombination::All);
        assert_eq!(group.segment_type, SetKind::Exclusive);
        assert_eq!(group.source_segments[0].version, None);
        assert_eq!(group.source_segments[1].version, Some(3));
        let back = definition_to_proto(&definition);
        assert_eq!(
            definition_from_proto("segment", Some(back)).expect("still valid"),
            definition
        );
    }

    /// An imported segment's rule converts both ways, from requests and from answers, and
    /// a blank job id is refused on its field.
    #[test]
    fn imported_rule_round_trips() {
        let request = pb::SegmentDefinition {
            name: "march list".to_string(),
            rule: Some(Rule::Imported(pb::ImportedRule {
                import_job_id: "job-1".to_string(),
            })),
        };
        let definition = definition_from_proto("segment", Some(request.clone())).expect("valid");
        assert_eq!(
            definition.rule,
            SegmentRule::Imported {
                import_job_id: "job-1".to_string()
            }
        );
        assert_eq!(definition_to_proto(&definition), request);
        let answer = pb::SegmentResponse {
            name: "march list".to_string(),
            rule: Some(pb::segment_response::Rule::Imported(pb::ImportedRule {
                import_job_id: "job-1".to_string(),
            })),
            ..Default::default()
        };
        assert_eq!(
            definition_from_response(&answer).expect("known"),
            definition
        );
        let blank = pb::SegmentDefinition {
            name: "blank".to_string(),
            rule: Some(Rule::Imported(pb::ImportedRule::default())),
        };
        let violations = definition_from_proto("segment", Some(blank)).unwrap_err();
        assert_eq!(violations[0].field, "segment.imported.import_job_id");
    }

    /// Unknown operator names, missing required ones and what validation finds are reported
    /// together, each on its field.
    #[test]
    fn every_problem_is_named() {
        let mut request = dimensions_request();
        let Some(Rule::Dimensions(dimensions)) = &mut request.rule else {
            unreachable!();
        };
        let recency = dimensions.recency.as_mut().unwrap();
        recency.duration = "DAY_3".to_string();
        recency.kind = String::new();
        let demographic = dimensions.demographic.as_mut().unwrap();
        demographic.platform.as_mut().unwrap().kind = "SOME".to_string();
        demographic.make.as_mut().unwrap().values.clear();
        dimensions
            .metrics
            .get_mut("visits")
            .unwrap()
            .comparison
            .clear();
        dimensions
            .attributes
            .get_mut("signup")
            .unwrap()
            .values
            .pop();
        let violations = definition_from_proto("segment", Some(request)).unwrap_err();
        let mut fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            vec![
                "segment.dimensions.attributes[\"signup\"].values",
                "segment.dimensions.demographic.make.values",
                "segment.dimensions.demographic.platform.kind",
                "segment.dimensions.metrics[\"visits\"].comparison",
                "segment.dimensions.recency.duration",
                "segment.dimensions.recency.kind",
            ]
        );
        let missing_rule = pb::SegmentDefinition {
            name: "x".to_string(),
            rule: None,
        };
        let violations = definition_from_proto("segment", Some(missing_rule)).unwrap_err();
        assert_eq!(violations[0].field, "segment.rule");
        let violations = definition_from_proto("segment", None).unwrap_err();
        assert_eq!(violations[0].field, "segment");
    }
}
