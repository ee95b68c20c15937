//! The public gRPC API through a real server on 127.0.0.1:0 and the generated tonic clients:
//! every RPC of Projects, Endpoints and Events, and every kind of bad input.

use std::collections::HashMap;

use herald_node::config::Config;
use herald_node::server::RunningNode;
use herald_proto::v1 as pb;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::events_client::EventsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

struct TestNode {
    node: Option<RunningNode>,
    _dir: tempfile::TempDir,
    projects: ProjectsClient<Channel>,
    endpoints: EndpointsClient<Channel>,
    events: EventsClient<Channel>,
}

impl TestNode {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::ephemeral(dir.path());
        config.cluster.shards = 4;
        adjust(&mut config);
        let node = RunningNode::start(config).await.unwrap();
        let channel = Channel::from_shared(format!("http://{}", node.client_addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            node: Some(node),
            _dir: dir,
            projects: ProjectsClient::new(channel.clone()),
            endpoints: EndpointsClient::new(channel.clone()).max_encoding_message_size(64 << 20),
            events: EventsClient::new(channel).max_encoding_message_size(64 << 20),
        }
    }

    async fn project(&mut self) -> String {
        self.projects
            .create_project(pb::CreateProjectRequest {
                name: "shop".into(),
                tags: HashMap::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .project_id
    }

    async fn stop(mut self) {
        self.node.take().unwrap().shutdown().await.unwrap();
    }
}

fn email_endpoint(address: &str, user: &str) -> pb::EndpointRequest {
    pb::EndpointRequest {
        address: address.into(),
        channel_type: pb::ChannelType::Email as i32,
        attributes: HashMap::from([(
            "plan".to_string(),
            pb::AttributeValues {
                values: vec!["pro".into(), "annual".into()],
            },
        )]),
        metrics: HashMap::from([("score".to_string(), 4.5)]),
        demographic: Some(pb::EndpointDemographic {
            platform: "ios".into(),
            timezone: "Asia/Kathmandu".into(),
            ..Default::default()
        }),
        location: Some(pb::EndpointLocation {
            country: "BR".into(),
            latitude: Some(-23.5),
            longitude: Some(-46.6),
            ..Default::default()
        }),
        user: Some(pb::EndpointUser {
            user_id: user.into(),
            user_attributes: HashMap::from([(
                "FirstName".to_string(),
                pb::AttributeValues {
                    values: vec!["Ana".into()],
                },
            )]),
        }),
        ..Default::default()
    }
}

fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

fn event(event_type: &str) -> pb::Event {
    pb::Event {
        event_type: event_type.into(),
        timestamp: "2026-11-25T10:00:00Z".into(),
        attributes: HashMap::from([("screen".to_string(), "home".to_string())]),
        metrics: HashMap::from([("price".to_string(), 9.9)]),
        ..Default::default()
    }
}

/// A project can be created, read, listed, configured and deleted; deleting it removes its
/// endpoints too.
#[tokio::test]
async fn project_lifecycle() {
    let mut node = TestNode::start().await;
    let id = node.project().await;
    let got = node
        .projects
        .get_project(pb::GetProjectRequest {
            project_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, "shop");
    assert!(!got.creation_date.is_empty());

    let other = node.project().await;
    let listed = node
        .projects
        .list_projects(pb::ListProjectsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listed
        .projects
        .iter()
        .map(|p| p.project_id.clone())
        .collect();
    assert!(ids.contains(&id) && ids.contains(&other), "{ids:?}");
    let first_page = node
        .projects
        .list_projects(pb::ListProjectsRequest {
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_page.projects.len(), 1);
    let second_page = node
        .projects
        .list_projects(pb::ListProjectsRequest {
            page_size: 1,
            page_token: first_page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second_page.projects.len(), 1);
    assert_ne!(
        first_page.projects[0].project_id,
        second_page.projects[0].project_id
    );

    let settings = pb::ProjectSettings {
        limits: Some(pb::CampaignLimits {
            daily: 3,
            ..Default::default()
        }),
        quiet_time: Some(pb::QuietTime {
            start: "22:00".into(),
            end: "07:00".into(),
        }),
        ..Default::default()
    };
    let updated = node
        .projects
        .update_project_settings(pb::UpdateProjectSettingsRequest {
            project_id: id.clone(),
            settings: Some(settings),
        })
        .await
        .unwrap()
        .into_inner();
    let updated_settings = updated.settings.unwrap();
    assert_eq!(updated_settings.limits.unwrap().daily, 3);
    assert_eq!(updated_settings.quiet_time.unwrap().start, "22:00");

    node.endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: id.clone(),
            endpoint_id: "e1".into(),
            endpoint: Some(email_endpoint("ana@example.com", "u1")),
        })
        .await
        .unwrap();
    node.projects
        .delete_project(pb::DeleteProjectRequest {
            project_id: id.clone(),
        })
        .await
        .unwrap();
    let gone = node
        .projects
        .get_project(pb::GetProjectRequest {
            project_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let endpoint_gone = node
        .endpoints
        .get_endpoint(pb::GetEndpointRequest {
            project_id: id,
            endpoint_id: "e1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(endpoint_gone.code(), Code::NotFound);
    node.stop().await;
}

/// An endpoint written is read back with every field, a stable cohort, and is found through
/// its user; moving it to another user and deleting it keep the user index in agreement.
#[tokio::test]
async fn endpoint_lifecycle_and_user_index() {
    let mut node = TestNode::start().await;
    let project = node.project().await;
    let written = node
        .endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e1".into(),
            endpoint: Some(email_endpoint("ana@example.com", "u1")),
        })
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    assert!(written.cohort_id < 100);

    let read = node
        .endpoints
        .get_endpoint(pb::GetEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.address, "ana@example.com");
    assert_eq!(read.channel_type, pb::ChannelType::Email as i32);
    assert_eq!(read.attributes["plan"].values, vec!["pro", "annual"]);
    assert_eq!(read.metrics["score"], 4.5);
    assert_eq!(
        read.demographic.as_ref().unwrap().timezone,
        "Asia/Kathmandu"
    );
    assert_eq!(read.location.as_ref().unwrap().latitude, Some(-23.5));
    assert_eq!(
        read.user.as_ref().unwrap().user_attributes["FirstName"].values,
        vec!["Ana"]
    );
    assert_eq!(read.cohort_id, written.cohort_id);
    assert_eq!(read.endpoint_status, pb::EndpointStatus::Active as i32);
    assert_eq!(read.opt_out, pb::OptOut::None as i32);

    node.endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e2".into(),
            endpoint: Some(email_endpoint("ana@work.example.com", "u1")),
        })
        .await
        .unwrap();
    let user_endpoints = |node: &mut TestNode, user: &str| {
        let mut client = node.endpoints.clone();
        let request = pb::GetUserEndpointsRequest {
            project_id: project.clone(),
            user_id: user.into(),
        };
        async move {
            let mut ids: Vec<String> = client
                .get_user_endpoints(request)
                .await
                .unwrap()
                .into_inner()
                .items
                .into_iter()
                .map(|e| e.endpoint_id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(user_endpoints(&mut node, "u1").await, vec!["e1", "e2"]);

    // Moving e2 to u2 removes it from u1.
    node.endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e2".into(),
            endpoint: Some(email_endpoint("ana@work.example.com", "u2")),
        })
        .await
        .unwrap();
    assert_eq!(user_endpoints(&mut node, "u1").await, vec!["e1"]);
    assert_eq!(user_endpoints(&mut node, "u2").await, vec!["e2"]);

    let deleted = node
        .endpoints
        .delete_endpoint(pb::DeleteEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.endpoint_id, "e1");
    assert!(user_endpoints(&mut node, "u1").await.is_empty());
    let missing = node
        .endpoints
        .delete_endpoint(pb::DeleteEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let removed = node
        .endpoints
        .delete_user_endpoints(pb::DeleteUserEndpointsRequest {
            project_id: project.clone(),
            user_id: "u2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.items.len(), 1);
    assert!(user_endpoints(&mut node, "u2").await.is_empty());
    let gone = node
        .endpoints
        .get_endpoint(pb::GetEndpointRequest {
            project_id: project,
            endpoint_id: "e2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    node.stop().await;
}

/// A batch keeps its good items and reports each bad one with its field and reason; the bad
/// ones change nothing.
#[tokio::test]
async fn batch_keeps_good_items_and_reports_bad_ones() {
    let mut node = TestNode::start().await;
    let project = node.project().await;
    let mut bad_phone = email_endpoint("", "u9");
    bad_phone.channel_type = pb::ChannelType::Sms as i32;
    bad_phone.address = "12345".into();
    let items = vec![
        pb::EndpointBatchItem {
            endpoint_id: "ok-1".into(),
            endpoint: Some(email_endpoint("a@example.com", "")),
        },
        pb::EndpointBatchItem {
            endpoint_id: "bad-email".into(),
            endpoint: Some(email_endpoint("not-an-email", "")),
        },
        pb::EndpointBatchItem {
            endpoint_id: "bad-phone".into(),
            endpoint: Some(bad_phone),
        },
        pb::EndpointBatchItem {
            endpoint_id: "ok-2".into(),
            endpoint: Some(email_endpoint("b@example.com", "")),
        },
    ];
    let results = node
        .endpoints
        .update_endpoints_batch(pb::UpdateEndpointsBatchRequest {
            project_id: project.clone(),
            items,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let codes: Vec<i32> = results
        .iter()
        .map(|r| r.result.as_ref().unwrap().status_code)
        .collect();
    assert_eq!(codes, vec![202, 400, 400, 202]);
    assert_eq!(
        results[1].result.as_ref().unwrap().field,
        "items[1].endpoint.address"
    );
    assert!(
        results[1]
            .result
            .as_ref()
            .unwrap()
            .message
            .contains("not an email address")
    );
    assert_eq!(
        results[2].result.as_ref().unwrap().field,
        "items[2].endpoint.address"
    );
    assert!(
        results[2]
            .result
            .as_ref()
            .unwrap()
            .message
            .contains("E.164")
    );
    for (id, exists) in [
        ("ok-1", true),
        ("bad-email", false),
        ("bad-phone", false),
        ("ok-2", true),
    ] {
        let outcome = node
            .endpoints
            .get_endpoint(pb::GetEndpointRequest {
                project_id: project.clone(),
                endpoint_id: id.into(),
            })
            .await;
        assert_eq!(outcome.is_ok(), exists, "{id}");
    }
    node.stop().await;
}

/// Every field that can be wrong in an endpoint is named with its reason, all at once, and
/// a rejected update leaves the stored endpoint as it was.
#[tokio::test]
async fn every_bad_endpoint_field_is_named() {
    let mut node = TestNode::start().await;
    let project = node.project().await;
    node.endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e1".into(),
            endpoint: Some(email_endpoint("ana@example.com", "u1")),
        })
        .await
        .unwrap();
    let mut bad = email_endpoint("nope", "");
    bad.attributes = (0..41)
        .map(|i| {
            (
                format!("a{i}"),
                pb::AttributeValues {
                    values: vec!["x".into()],
                },
            )
        })
        .collect();
    bad.attributes.insert(
        "many".into(),
        pb::AttributeValues {
            values: vec!["v".into(); 51],
        },
    );
    bad.metrics.insert("nan".into(), f64::NAN);
    bad.demographic.as_mut().unwrap().timezone = "Mars/Olympus".into();
    let location = bad.location.as_mut().unwrap();
    location.country = "Brazil".into();
    location.latitude = Some(91.0);
    bad.effective_date = "yesterday".into();
    bad.opt_out = 9;
    let status = node
        .endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e1".into(),
            endpoint: Some(bad),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = violations(&status)
        .into_iter()
        .map(|(field, _)| field)
        .collect();
    for expected in [
        "endpoint.address",
        "endpoint.attributes",
        "endpoint.attributes[\"many\"]",
        "endpoint.metrics[\"nan\"]",
        "endpoint.demographic.timezone",
        "endpoint.location.country",
        "endpoint.location.latitude",
        "endpoint.effective_date",
        "endpoint.opt_out",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "missing {expected} in {fields:?}"
        );
    }
    let stored = node
        .endpoints
        .get_endpoint(pb::GetEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.address, "ana@example.com");

    // A new endpoint needs a channel type.
    let mut no_channel = email_endpoint("x@example.com", "");
    no_channel.channel_type = 0;
    let status = node
        .endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "new".into(),
            endpoint: Some(no_channel),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status)[0].0, "endpoint.channel_type");

    // An update that omits the channel type is checked against the stored channel.
    let mut keep_channel = email_endpoint("garbage", "");
    keep_channel.channel_type = 0;
    let status = node
        .endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e1".into(),
            endpoint: Some(keep_channel),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status)[0].0, "endpoint.address");

    // Empty ids are named.
    let status = node
        .endpoints
        .get_endpoint(pb::GetEndpointRequest {
            project_id: project.clone(),
            endpoint_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&status)[0].0, "endpoint_id");
    node.stop().await;
}

/// END-3: a user may have at most `endpoints_per_user` endpoints.
#[tokio::test]
async fn user_endpoint_limit_is_enforced() {
    let mut node = TestNode::start_with(|config| config.limits.endpoints_per_user = 2).await;
    let project = node.project().await;
    for id in ["e1", "e2"] {
        node.endpoints
            .update_endpoint(pb::UpdateEndpointRequest {
                project_id: project.clone(),
                endpoint_id: id.into(),
                endpoint: Some(email_endpoint(&format!("{id}@example.com"), "u1")),
            })
            .await
            .unwrap();
    }
    let status = node
        .endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e3".into(),
            endpoint: Some(email_endpoint("e3@example.com", "u1")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    // Updating an endpoint the user already has is not a new one.
    node.endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "e2".into(),
            endpoint: Some(email_endpoint("new@example.com", "u1")),
        })
        .await
        .unwrap();
    node.stop().await;
}

/// Unknown projects are NOT_FOUND for every RPC that names one; oversized batches and
/// requests are refused whole.
#[tokio::test]
async fn unknown_project_and_oversize() {
    let mut node = TestNode::start_with(|config| config.limits.request_bytes = 64 * 1024).await;
    let status = node
        .endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: "nope".into(),
            endpoint_id: "e1".into(),
            endpoint: Some(email_endpoint("a@example.com", "")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = node
        .events
        .put_events(pb::PutEventsRequest {
            project_id: "nope".into(),
            batch_item: HashMap::from([(
                "e1".to_string(),
                pb::EventsBatch {
                    endpoint: None,
                    events: HashMap::from([("ev1".to_string(), event("a"))]),
                },
            )]),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = node
        .endpoints
        .get_user_endpoints(pb::GetUserEndpointsRequest {
            project_id: "nope".into(),
            user_id: "u".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let project = node.project().await;
    let items: Vec<_> = (0..101)
        .map(|i| pb::EndpointBatchItem {
            endpoint_id: format!("e{i}"),
            endpoint: Some(email_endpoint("a@example.com", "")),
        })
        .collect();
    let status = node
        .endpoints
        .update_endpoints_batch(pb::UpdateEndpointsBatchRequest {
            project_id: project.clone(),
            items,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status)[0].0, "items");

    let mut huge = email_endpoint("a@example.com", "");
    huge.address = "x".repeat(100 * 1024);
    let status = node
        .endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: project.clone(),
            endpoint_id: "big".into(),
            endpoint: Some(huge),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    let missing = node
        .endpoints
        .get_endpoint(pb::GetEndpointRequest {
            project_id: project,
            endpoint_id: "big".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    node.stop().await;
}

/// Events are stored with a result per endpoint and per event id; bad events are reported
/// with their field and the rest are kept; an endpoint upsert can ride along.
#[tokio::test]
async fn put_events_results_per_event() {
    let mut node = TestNode::start().await;
    let project = node.project().await;
    let mut bad_time = event("app.open");
    bad_time.timestamp = "noon".into();
    let mut too_many = event("app.open");
    too_many.attributes = (0..41)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let request = pb::PutEventsRequest {
        project_id: project.clone(),
        batch_item: HashMap::from([(
            "e1".to_string(),
            pb::EventsBatch {
                endpoint: Some(email_endpoint("ana@example.com", "u1")),
                events: HashMap::from([
                    ("good".to_string(), event("_session.start")),
                    ("bad-time".to_string(), bad_time),
                    ("too-many".to_string(), too_many),
                    ("no-type".to_string(), event("")),
                ]),
            },
        )]),
    };
    let response = node.events.put_events(request).await.unwrap().into_inner();
    let results = &response.results["e1"];
    assert_eq!(
        results.endpoint_item_response.as_ref().unwrap().status_code,
        202
    );
    let code = |id: &str| results.events_item_response[id].status_code;
    assert_eq!(code("good"), 202);
    assert_eq!(code("bad-time"), 400);
    assert!(
        results.events_item_response["bad-time"]
            .field
            .ends_with(".timestamp")
    );
    assert_eq!(code("too-many"), 400);
    assert_eq!(code("no-type"), 400);
    assert!(
        results.events_item_response["no-type"]
            .field
            .ends_with(".event_type")
    );
    // The endpoint upsert was applied.
    node.endpoints
        .get_endpoint(pb::GetEndpointRequest {
            project_id: project,
            endpoint_id: "e1".into(),
        })
        .await
        .unwrap();
    node.stop().await;
}

/// EVT-1: more distinct event types than the project's limit are refused per event, with the
/// limit named; known types keep working.
#[tokio::test]
async fn event_type_limit_is_enforced() {
    let mut node = TestNode::start_with(|config| config.limits.event_types_per_project = 2).await;
    let project = node.project().await;
    let put = |types: Vec<&str>| pb::PutEventsRequest {
        project_id: project.clone(),
        batch_item: HashMap::from([(
            "e1".to_string(),
            pb::EventsBatch {
                endpoint: None,
                events: types
                    .iter()
                    .map(|t| (format!("id-{t}"), event(t)))
                    .collect(),
            },
        )]),
    };
    let first = node
        .events
        .put_events(put(vec!["a", "b"]))
        .await
        .unwrap()
        .into_inner();
    assert!(
        first.results["e1"]
            .events_item_response
            .values()
            .all(|r| r.status_code == 202)
    );
    let second = node
        .events
        .put_events(put(vec!["a", "c"]))
        .await
        .unwrap()
        .into_inner();
    let items = &second.results["e1"].events_item_response;
    assert_eq!(items["id-a"].status_code, 202);
    assert_eq!(items["id-c"].status_code, 400);
    assert!(
        items["id-c"].message.contains("limit of 2 event types"),
        "{}",
        items["id-c"].message
    );
    node.stop().await;
}

/// The standard health service answers SERVING for the Herald services.
#[tokio::test]
async fn health_reports_serving() {
    let node = TestNode::start().await;
    let channel = Channel::from_shared(format!(
        "http://{}",
        node.node.as_ref().unwrap().client_addr
    ))
    .unwrap()
    .connect()
    .await
    .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "herald.v1.Endpoints".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    node.stop().await;
}
