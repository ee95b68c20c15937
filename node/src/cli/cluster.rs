//! `herald cluster ...`: the nodes, shard replicas and leaders of a cluster; removing a node.

use std::time::{Duration, Instant};

use herald_proto::v1 as proto;
use herald_proto::v1::cluster_client::ClusterClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::ClusterCommand;
use super::output::{Table, print_json, status_error};

/// Longest `cluster remove` waits for the drain before it gives up watching.
const REMOVE_WAIT: Duration = Duration::from_secs(600);

/// Runs a cluster command.
pub async fn run(channel: Channel, command: ClusterCommand, json: bool) -> anyhow::Result<()> {
    let mut client = ClusterClient::new(channel);
    match command {
        ClusterCommand::Status => {
            let status = client
                .get_cluster_status(proto::GetClusterStatusRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            print_status(&status, json);
        }
        ClusterCommand::Remove { node_id } => {
            client
                .remove_node(proto::RemoveNodeRequest { node_id })
                .await
                .map_err(status_error)?;
            let progress = indicatif::ProgressBar::new_spinner();
            if json {
                progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            progress.enable_steady_tick(Duration::from_millis(200));
            let deadline = Instant::now() + REMOVE_WAIT;
            loop {
                let status = client
                    .get_cluster_status(proto::GetClusterStatusRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let held = status
                    .nodes
                    .iter()
                    .find(|n| n.node_id == node_id)
                    .map_or(0, |n| n.replicas.len());
                let removed = status
                    .nodes
                    .iter()
                    .any(|n| n.node_id == node_id && n.state == "REMOVED");
                progress.set_message(format!(
                    "draining node {node_id}: {held} shard replicas left"
                ));
                if removed {
                    progress.finish_and_clear();
                    if !json {
                        println!("node {node_id} removed");
                    }
                    print_status(&status, json);
                    return Ok(());
                }
                if Instant::now() > deadline {
                    progress.finish_and_clear();
                    anyhow::bail!(
                        "node {node_id} still holds {held} shard replicas after {} s; the drain continues in the cluster",
                        REMOVE_WAIT.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Ok(())
}

fn ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn shards(shards: &[u32]) -> String {
    shards
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The status as JSON.
pub fn status_json(status: &proto::ClusterStatus) -> Value {
    json!({
        "meta": {"leader": status.meta_leader, "term": status.meta_term, "voters": status.meta_voters},
        "nodes": status.nodes.iter().map(|n| json!({
            "node_id": n.node_id,
            "client_addr": n.client_addr,
            "peer_addr": n.peer_addr,
            "state": n.state,
            "meta_role": n.meta_role,
            "replicas": n.replicas,
            "leads": n.leads,
            "meta_lag": n.meta_lag,
        })).collect::<Vec<_>>(),
        "shards": status.shards.iter().map(|s| json!({
            "shard": s.shard,
            "voters": s.voters,
            "target": s.target,
            "leader": s.leader,
            "term": s.term,
            "moving": s.moving,
            "max_lag": s.max_lag,
        })).collect::<Vec<_>>(),
    })
}

fn print_status(status: &proto::ClusterStatus, json: bool) {
    if json {
        print_json(&status_json(status));
        return;
    }
    println!(
        "meta group: leader {}, term {}, voters {}",
        status.meta_leader,
        status.meta_term,
        ids(&status.meta_voters)
    );
    let mut nodes = Table::new(&[
        "NODE", "STATE", "META", "CLIENT", "PEER", "REPLICAS", "LEADS", "META_LAG",
    ]);
    for node in &status.nodes {
        nodes.push(vec![
            node.node_id.to_string(),
            node.state.clone(),
            node.meta_role.clone(),
            node.client_addr.clone(),
            node.peer_addr.clone(),
            format!("{} [{}]", node.replicas.len(), shards(&node.replicas)),
            format!("{} [{}]", node.leads.len(), shards(&node.leads)),
            node.meta_lag.to_string(),
        ]);
    }
    print!("{}", nodes.render());
    let mut table = Table::new(&[
        "SHARD", "LEADER", "TERM", "VOTERS", "TARGET", "MOVING", "MAX_LAG",
    ]);
    for shard in &status.shards {
        table.push(vec![
            shard.shard.to_string(),
            shard.leader.to_string(),
            shard.term.to_string(),
            ids(&shard.voters),
            ids(&shard.target),
            if shard.moving {
                "yes".into()
            } else {
                String::new()
            },
            shard.max_lag.to_string(),
        ]);
    }
    print!("{}", table.render());
}
