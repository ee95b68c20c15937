//! State-machine snapshots: after enough writes a group snapshots its state and purges the
//! log behind it, and a restart starts from the persisted state with every write intact.

use std::collections::HashMap;

use herald_node::config::Config;
use herald_node::raft::shard_group;
use herald_node::server::RunningNode;
use herald_node::storage::Store;
use herald_node::storage::keys;
use herald_proto::v1 as pb;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use tonic::transport::Channel;

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::ephemeral(dir);
    config.cluster.shards = 1;
    config.cluster.snapshot_every_entries = 20;
    config.cluster.logs_kept_after_snapshot = 5;
    config
}

async fn connect(node: &RunningNode) -> Channel {
    Channel::from_shared(format!("http://{}", node.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Writing far more entries than the snapshot interval leaves a snapshot file and a short
/// log; after a restart every endpoint reads back unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_purges_log_and_restart_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let node = RunningNode::start(config(dir.path())).await.unwrap();
    let channel = connect(&node).await;
    let project = ProjectsClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            name: "snap".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    let mut endpoints = EndpointsClient::new(channel);
    // One at a time, so each write is its own Raft entry.
    for i in 0..120 {
        endpoints
            .update_endpoint(pb::UpdateEndpointRequest {
                project_id: project.clone(),
                endpoint_id: format!("e{i}"),
                endpoint: Some(pb::EndpointRequest {
                    address: format!("u{i}@example.com"),
                    channel_type: pb::ChannelType::Email as i32,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    node.shutdown().await.unwrap();

    let snapshots: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.starts_with(&format!("group-{}-", shard_group(0))) && name.ends_with(".snap")
        })
        .collect();
    assert_eq!(
        snapshots.len(),
        1,
        "one current snapshot of the shard: {snapshots:?}"
    );
    {
        let store = Store::open(dir.path()).unwrap();
        let entries = store
            .raft_log
            .prefix(keys::group_prefix(shard_group(0)))
            .count();
        assert!(
            entries < 60,
            "log was purged behind the snapshot, {entries} entries left"
        );
    }

    let node = RunningNode::start(config(dir.path())).await.unwrap();
    let mut endpoints = EndpointsClient::new(connect(&node).await);
    for i in 0..120 {
        let endpoint = endpoints
            .get_endpoint(pb::GetEndpointRequest {
                project_id: project.clone(),
                endpoint_id: format!("e{i}"),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(endpoint.address, format!("u{i}@example.com"));
    }
    node.shutdown().await.unwrap();
}

/// A snapshot file built on one node installs on another and reproduces the group's records
/// exactly: how a new replica catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_installs_on_another_store() {
    use openraft::RaftSnapshotBuilder;
    use openraft::storage::RaftStateMachine;

    let source_dir = tempfile::tempdir().unwrap();
    let node = RunningNode::start(config(source_dir.path())).await.unwrap();
    let channel = connect(&node).await;
    let project = ProjectsClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            name: "copy".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    let items = (0..50)
        .map(|i| pb::EndpointBatchItem {
            endpoint_id: format!("e{i}"),
            endpoint: Some(pb::EndpointRequest {
                address: format!("u{i}@example.com"),
                channel_type: pb::ChannelType::Email as i32,
                ..Default::default()
            }),
        })
        .collect();
    EndpointsClient::new(channel)
        .update_endpoints_batch(pb::UpdateEndpointsBatchRequest {
            project_id: project,
            items,
        })
        .await
        .unwrap();
    node.shutdown().await.unwrap();

    let group = shard_group(0);
    let source = Store::open(source_dir.path()).unwrap();
    let mut source_machine =
        herald_node::raft::state_machine::StateMachine::new(group, source.clone()).unwrap();
    let snapshot = source_machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    let target_dir = tempfile::tempdir().unwrap();
    let target = Store::open(target_dir.path()).unwrap();
    let mut target_machine =
        herald_node::raft::state_machine::StateMachine::new(group, target.clone()).unwrap();
    target_machine
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();

    let records = |store: &Store| -> Vec<(Vec<u8>, Vec<u8>)> {
        store
            .data
            .prefix(keys::group_prefix(group))
            .map(|guard| {
                let (key, value) = guard.into_inner().unwrap();
                (key.to_vec(), value.to_vec())
            })
            .collect()
    };
    let copied = records(&target);
    assert!(copied.len() >= 50, "{} records", copied.len());
    assert_eq!(copied, records(&source));
    assert_eq!(
        target_machine.applied_state().await.unwrap().0,
        source_machine.applied_state().await.unwrap().0
    );
    assert_eq!(
        target_machine
            .endpoint_counter()
            .load(std::sync::atomic::Ordering::Relaxed),
        50
    );
}
