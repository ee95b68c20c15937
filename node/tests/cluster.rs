//! A real cluster in one process: three nodes on loopback join each other, shards replicate
//! to every node, any node serves any request (forwarding to leaders), and removing a node
//! moves its replicas away without losing data.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use herald_node::config::Config;
use herald_node::server::RunningNode;
use herald_proto::v1 as pb;
use herald_proto::v1::cluster_client::ClusterClient;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use tonic::transport::Channel;

const SHARDS: u32 = 4;

fn config(dir: &std::path::Path, join: Option<String>) -> Config {
    let mut config = Config::ephemeral(dir);
    config.cluster.shards = SHARDS;
    config.cluster.secret = "test-secret".into();
    config.cluster.join = join;
    config.cluster.heartbeat_ms = 50;
    config.cluster.election_timeout_ms = 300;
    config.cluster.placement_interval_ms = 100;
    config
}

async fn channel(node: &RunningNode) -> Channel {
    Channel::from_shared(format!("http://{}", node.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Polls the cluster status through `node` until `done` holds, or fails after `limit`.
async fn wait_status(
    node: &RunningNode,
    limit: Duration,
    what: &str,
    done: impl Fn(&pb::ClusterStatus) -> bool,
) -> pb::ClusterStatus {
    let mut client = ClusterClient::new(channel(node).await);
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(status) = client
            .get_cluster_status(pb::GetClusterStatusRequest {})
            .await
        {
            let status = status.into_inner();
            if done(&status) {
                return status;
            }
            last = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}; last status: {last:#?}");
}

fn fully_replicated(status: &pb::ClusterStatus, nodes: &BTreeSet<u64>) -> bool {
    status.shards.len() == SHARDS as usize
        && status.shards.iter().all(|shard| {
            let voters: BTreeSet<u64> = shard.voters.iter().copied().collect();
            &voters == nodes && !shard.moving
        })
}

fn endpoint(address: &str, user: &str) -> pb::EndpointRequest {
    pb::EndpointRequest {
        address: address.into(),
        channel_type: pb::ChannelType::Email as i32,
        user: Some(pb::EndpointUser {
            user_id: user.into(),
            user_attributes: HashMap::new(),
        }),
        ..Default::default()
    }
}

/// Three nodes form a cluster by joining; a write through any node is readable through every
/// other; `cluster remove` drains a node and none of the data it held is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_join_serve_from_any_node_and_remove_one() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = RunningNode::start(config(dirs[0].path(), None))
        .await
        .unwrap();
    let seed = first.client_addr.to_string();
    let second = RunningNode::start(config(dirs[1].path(), Some(seed.clone())))
        .await
        .unwrap();
    let third = RunningNode::start(config(dirs[2].path(), Some(seed)))
        .await
        .unwrap();
    let ids: BTreeSet<u64> = [first.node_id, second.node_id, third.node_id].into();
    assert_eq!(ids.len(), 3, "node ids are distinct");

    let status = wait_status(
        &first,
        Duration::from_secs(60),
        "every shard has 3 replicas",
        |s| fully_replicated(s, &ids) && s.meta_voters.len() == 3,
    )
    .await;
    assert_eq!(status.nodes.len(), 3);
    for node in &status.nodes {
        assert_eq!(node.replicas.len(), SHARDS as usize, "{node:?}");
    }

    // Write through one node, read through the others.
    let project = ProjectsClient::new(channel(&second).await)
        .create_project(pb::CreateProjectRequest {
            name: "clustered".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    let mut through_third = EndpointsClient::new(channel(&third).await);
    for i in 0..20 {
        through_third
            .update_endpoint(pb::UpdateEndpointRequest {
                project_id: project.clone(),
                endpoint_id: format!("e{i}"),
                endpoint: Some(endpoint(
                    &format!("u{i}@example.com"),
                    &format!("user{}", i % 4),
                )),
            })
            .await
            .unwrap();
    }
    for node in [&first, &second, &third] {
        let mut client = EndpointsClient::new(channel(node).await);
        for i in 0..20 {
            let read = client
                .get_endpoint(pb::GetEndpointRequest {
                    project_id: project.clone(),
                    endpoint_id: format!("e{i}"),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(read.address, format!("u{i}@example.com"));
        }
        let user = client
            .get_user_endpoints(pb::GetUserEndpointsRequest {
                project_id: project.clone(),
                user_id: "user1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(user.items.len(), 5);
    }

    // Remove the third node: its replicas move away, then it is removed.
    let removed = third.node_id;
    ClusterClient::new(channel(&first).await)
        .remove_node(pb::RemoveNodeRequest { node_id: removed })
        .await
        .unwrap();
    let remaining: BTreeSet<u64> = ids.iter().copied().filter(|id| *id != removed).collect();
    wait_status(
        &first,
        Duration::from_secs(60),
        "the node is drained and removed",
        |s| {
            fully_replicated(s, &remaining)
                && s.nodes
                    .iter()
                    .any(|n| n.node_id == removed && n.state == "REMOVED")
                && !s.meta_voters.contains(&removed)
        },
    )
    .await;
    third.shutdown().await.unwrap();
    for node in [&first, &second] {
        let mut client = EndpointsClient::new(channel(node).await);
        for i in 0..20 {
            client
                .get_endpoint(pb::GetEndpointRequest {
                    project_id: project.clone(),
                    endpoint_id: format!("e{i}"),
                })
                .await
                .unwrap_or_else(|status| panic!("e{i} lost after removing a node: {status}"));
        }
    }
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
}

fn counts_balanced(status: &pb::ClusterStatus, live: &BTreeSet<u64>) -> bool {
    let counts: Vec<usize> = status
        .nodes
        .iter()
        .filter(|n| live.contains(&n.node_id))
        .map(|n| n.replicas.len())
        .collect();
    counts.len() == live.len() && counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1
}

/// A node joining after the shards' logs were purged catches up by snapshot (streamed in
/// chunks); a fourth node gets a balanced share of replicas; a node that stays down longer
/// than `down_after_secs` has its replicas re-created on the others, with no data lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_catch_up_balance_and_down_node_replacement() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let small_log = |mut config: Config| {
        config.cluster.snapshot_every_entries = 20;
        config.cluster.logs_kept_after_snapshot = 2;
        config.cluster.down_after_secs = 2;
        config
    };
    let first = RunningNode::start(small_log(config(dirs[0].path(), None)))
        .await
        .unwrap();
    let project = ProjectsClient::new(channel(&first).await)
        .create_project(pb::CreateProjectRequest {
            name: "snap".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    let mut endpoints = EndpointsClient::new(channel(&first).await);
    for i in 0..200 {
        endpoints
            .update_endpoint(pb::UpdateEndpointRequest {
                project_id: project.clone(),
                endpoint_id: format!("e{i}"),
                endpoint: Some(endpoint(&format!("u{i}@example.com"), "")),
            })
            .await
            .unwrap();
    }
    let seed = first.client_addr.to_string();
    let mut nodes = vec![first];
    for dir in &dirs[1..] {
        nodes.push(
            RunningNode::start(small_log(config(dir.path(), Some(seed.clone()))))
                .await
                .unwrap(),
        );
    }
    let all: BTreeSet<u64> = nodes.iter().map(|n| n.node_id).collect();
    wait_status(
        &nodes[0],
        Duration::from_secs(90),
        "4 nodes share 3 replicas per shard evenly",
        |s| {
            s.shards.len() == SHARDS as usize
                && s.shards
                    .iter()
                    .all(|shard| shard.voters.len() == 3 && !shard.moving)
                && counts_balanced(s, &all)
        },
    )
    .await;
    assert!(
        herald_node::raft::state_machine::snapshots_installed() > 0,
        "new replicas caught up by snapshot"
    );

    // Every node can read every endpoint, whether it holds a replica or not.
    for node in &nodes {
        let mut client = EndpointsClient::new(channel(node).await);
        for i in (0..200).step_by(7) {
            client
                .get_endpoint(pb::GetEndpointRequest {
                    project_id: project.clone(),
                    endpoint_id: format!("e{i}"),
                })
                .await
                .unwrap();
        }
    }

    // Take down a node that is not the meta leader; its replicas move to the other three.
    let status = wait_status(&nodes[0], Duration::from_secs(10), "status", |_| true).await;
    let victim_index = nodes
        .iter()
        .position(|n| n.node_id != status.meta_leader)
        .unwrap();
    let victim = nodes.remove(victim_index);
    let victim_id = victim.node_id;
    victim.shutdown().await.unwrap();
    let live: BTreeSet<u64> = all.iter().copied().filter(|id| *id != victim_id).collect();
    let status = wait_status(
        &nodes[0],
        Duration::from_secs(90),
        "the down node's replicas are re-created",
        |s| {
            s.shards.iter().all(|shard| {
                let voters: BTreeSet<u64> = shard.voters.iter().copied().collect();
                voters == live && !shard.moving
            })
        },
    )
    .await;
    assert!(
        status
            .nodes
            .iter()
            .any(|n| n.node_id == victim_id && n.state == "DOWN"),
        "{status:#?}"
    );
    for node in &nodes {
        let mut client = EndpointsClient::new(channel(node).await);
        for i in 0..200 {
            client
                .get_endpoint(pb::GetEndpointRequest {
                    project_id: project.clone(),
                    endpoint_id: format!("e{i}"),
                })
                .await
                .unwrap_or_else(|status| panic!("e{i} lost: {status}"));
        }
    }
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

/// A stranger without the cluster secret can neither join nor inject Raft messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_need_the_cluster_secret() {
    use herald_proto::internal::v1 as peer;
    use herald_proto::internal::v1::peer_client::PeerClient;

    let dir = tempfile::tempdir().unwrap();
    let node = RunningNode::start(config(dir.path(), None)).await.unwrap();
    let mut client = PeerClient::new(channel(&node).await);
    let join = client
        .join(peer::JoinRequest {
            client_addr: "127.0.0.1:1".into(),
            peer_addr: "127.0.0.1:1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(join.code(), tonic::Code::Unauthenticated);
    let mut wrong = tonic::Request::new(peer::RaftRequest {
        group: 0,
        payload: vec![1, 2, 3],
    });
    wrong
        .metadata_mut()
        .insert("x-herald-cluster-secret", "guess".parse().unwrap());
    let append = client.append_entries(wrong).await.unwrap_err();
    assert_eq!(append.code(), tonic::Code::Unauthenticated);

    let other_dir = tempfile::tempdir().unwrap();
    let mut stranger = config(other_dir.path(), Some(node.client_addr.to_string()));
    stranger.cluster.secret = "not-the-secret".into();
    let refused = RunningNode::start(stranger).await;
    assert!(
        refused.is_err(),
        "a node with the wrong secret must not join"
    );
    node.shutdown().await.unwrap();
}
