//! Durability through the real binary: every write acknowledged before a `kill -9` is there
//! after a restart on the same data directory, and the user index agrees with the endpoints.

use herald_node::storage::Store;
use herald_node::storage::keys::{self, tag};
use herald_proto::v1 as pb;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::events_client::EventsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use std::collections::HashMap;

mod common;
use common::Server;

const SHARDS: u32 = 4;

fn endpoint(i: usize) -> pb::EndpointRequest {
    pb::EndpointRequest {
        address: format!("user{i}@example.com"),
        channel_type: pb::ChannelType::Email as i32,
        user: Some(pb::EndpointUser {
            user_id: format!("u{}", i % 50),
            user_attributes: HashMap::new(),
        }),
        ..Default::default()
    }
}

/// Writes acknowledged before a kill -9 survive it; the user index agrees with the endpoints;
/// SIGTERM then stops the node cleanly with exit status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), SHARDS);
    let channel = server.channel().await;
    let mut projects = ProjectsClient::new(channel.clone());
    let project = projects
        .create_project(pb::CreateProjectRequest {
            name: "durable".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;

    // Concurrent writers; only what was acknowledged is expected back.
    let mut writers = Vec::new();
    for writer in 0..4usize {
        let channel = channel.clone();
        let project = project.clone();
        writers.push(tokio::spawn(async move {
            let mut endpoints = EndpointsClient::new(channel.clone());
            let mut events = EventsClient::new(channel);
            let mut acked_endpoints = Vec::new();
            let mut acked_events = Vec::new();
            for round in 0..10usize {
                let base = writer * 1000 + round * 10;
                let items = (base..base + 10)
                    .map(|i| pb::EndpointBatchItem {
                        endpoint_id: format!("e{i}"),
                        endpoint: Some(endpoint(i)),
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
                        result.result.as_ref().unwrap().status_code,
                        202,
                        "{result:?}"
                    );
                    acked_endpoints.push(result.endpoint_id);
                }
                let batch = pb::EventsBatch {
                    endpoint: None,
                    events: (0..10)
                        .map(|k| {
                            (
                                format!("ev-{base}-{k}"),
                                pb::Event {
                                    event_type: "app.open".into(),
                                    timestamp: "2026-11-25T10:00:00Z".into(),
                                    ..Default::default()
                                },
                            )
                        })
                        .collect(),
                };
                let endpoint_id = format!("e{base}");
                let response = events
                    .put_events(pb::PutEventsRequest {
                        project_id: project.clone(),
                        batch_item: HashMap::from([(endpoint_id.clone(), batch)]),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                for (event_id, result) in &response.results[&endpoint_id].events_item_response {
                    assert_eq!(result.status_code, 202);
                    acked_events.push((endpoint_id.clone(), event_id.clone()));
                }
            }
            (acked_endpoints, acked_events)
        }));
    }
    let mut acked_endpoints = Vec::new();
    let mut acked_events = Vec::new();
    for writer in writers {
        let (endpoints, events) = writer.await.unwrap();
        acked_endpoints.extend(endpoints);
        acked_events.extend(events);
    }
    drop(channel);
    server.kill_9();

    let server = Server::start(dir.path(), SHARDS);
    let channel = server.channel().await;
    let mut endpoints = EndpointsClient::new(channel.clone());
    for endpoint_id in &acked_endpoints {
        let endpoint = endpoints
            .get_endpoint(pb::GetEndpointRequest {
                project_id: project.clone(),
                endpoint_id: endpoint_id.clone(),
            })
            .await
            .unwrap_or_else(|status| panic!("acknowledged endpoint {endpoint_id} lost: {status}"))
            .into_inner();
        let i: usize = endpoint_id[1..].parse().unwrap();
        assert_eq!(endpoint.address, format!("user{i}@example.com"));
    }
    // The user index agrees with the endpoints: every user lists exactly its endpoints.
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for endpoint_id in &acked_endpoints {
        let i: usize = endpoint_id[1..].parse().unwrap();
        expected
            .entry(format!("u{}", i % 50))
            .or_default()
            .push(endpoint_id.clone());
    }
    for (user, mut ids) in expected {
        let mut listed: Vec<String> = endpoints
            .get_user_endpoints(pb::GetUserEndpointsRequest {
                project_id: project.clone(),
                user_id: user.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .items
            .into_iter()
            .map(|e| e.endpoint_id)
            .collect();
        listed.sort();
        ids.sort();
        assert_eq!(listed, ids, "user index of {user}");
    }
    drop(channel);
    let status = server.terminate();
    assert!(status.success(), "graceful stop exits 0, got {status}");

    // Every acknowledged event is in its endpoint's shard.
    let store = Store::open(dir.path()).unwrap();
    for (endpoint_id, event_id) in &acked_events {
        let shard = herald_node::domain::hashing::shard_of(&project, endpoint_id, SHARDS);
        let key = keys::data_key(
            herald_node::raft::shard_group(shard),
            tag::EVENT,
            &[&project, endpoint_id, event_id],
        );
        assert!(
            store.data.get(&key).unwrap().is_some(),
            "acknowledged event {event_id} lost"
        );
    }
    assert_eq!(acked_events.len(), 400);
}
