//! Chaos scenarios against real `herald` processes on 127.0.0.1. Each test's doc comment names
//! the checks it enforces:
//! - (a) every acknowledged endpoint write and event is readable after the faults heal;
//! - (b) no read returns a value older than a write acknowledged before the read began;
//! - (c) with 3 nodes, writes are accepted again within 5 s after losing one node;
//! - (d) after a node is removed or replaced, none of the data it held is lost.
//!
//! On failure the history (JSON lines), the seed and the node logs are saved under
//! `CHAOS_ARTIFACTS` (default `<temp>/herald-chaos`), and the message says how to replay:
//! `CHAOS_SEED=<seed> cargo test -p herald-chaos-tests --test chaos -- <name> --exact`.
//! `CHAOS_LONG=1` runs more rounds, longer. The tests run one at a time (a process-wide lock),
//! so that two clusters never compete for the CPU.

use std::time::Duration;

use herald_chaos_tests::checker::Check;
use herald_chaos_tests::cluster::ClusterOptions;
use herald_chaos_tests::scenario::{Scenario, must};
use herald_chaos_tests::workload::WorkloadOptions;

const READABLE: Check = Check::AcknowledgedWritesReadable;
const LINEARIZABLE: Check = Check::LinearizableReads;
const AVAILABLE: Check = Check::WriteAvailability;
const NO_LOSS: Check = Check::NoLossAfterMembershipChange;

/// How long the clients run after a node is lost: past the 5 s budget of (c), with margin.
const AFTER_LOSS: Duration = Duration::from_secs(8);

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn clients(count: usize) -> WorkloadOptions {
    WorkloadOptions {
        clients: count,
        ..WorkloadOptions::default()
    }
}

/// kill -9 of the meta group's leader in a 3-node cluster, then a restart on its data
/// directory; several rounds under `CHAOS_LONG`. Enforces (a), (b) and (c).
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_meta_leader() {
    let mut s = Scenario::start(
        "kill_9_of_the_meta_leader",
        ClusterOptions::new(3),
        clients(4),
    )
    .await;
    for _ in 0..s.pick(1, 4) {
        s.run_for(secs(3)).await;
        let leader = must("finding the meta leader", s.cluster.meta_leader().await);
        must("kill -9", s.cluster.kill9(leader).await);
        s.node_lost(format!("kill -9 node {leader} (meta leader)"));
        s.run_for(AFTER_LOSS).await;
        must("restart", s.cluster.restart(leader).await);
        s.fault(format!("restarted node {leader}"));
        s.run_for(secs(3)).await;
        must("settling", s.cluster.wait_settled(secs(60)).await);
    }
    s.finish(&[READABLE, LINEARIZABLE, AVAILABLE]).await;
}

/// kill -9 of the node leading the most shards in a 3-node cluster, then a restart; again
/// with the node leading the most shards among the others. Enforces (a), (b) and (c).
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_shard_leaders() {
    let mut s = Scenario::start(
        "kill_9_of_shard_leaders",
        ClusterOptions::new(3),
        clients(4),
    )
    .await;
    let mut killed = Vec::new();
    for _ in 0..s.pick(2, 6) {
        s.run_for(secs(2)).await;
        let (leader, shards) = must(
            "finding the shard leaders",
            s.cluster.busiest_shard_leader(&killed).await,
        );
        killed.push(leader);
        must("kill -9", s.cluster.kill9(leader).await);
        s.node_lost(format!(
            "kill -9 node {leader} (leader of shards {shards:?})"
        ));
        s.run_for(AFTER_LOSS).await;
        must("restart", s.cluster.restart(leader).await);
        s.fault(format!("restarted node {leader}"));
        must("settling", s.cluster.wait_settled(secs(60)).await);
    }
    s.finish(&[READABLE, LINEARIZABLE, AVAILABLE]).await;
}

/// SIGSTOP of a node (the meta leader or the busiest shard leader, by seed) for longer than
/// the availability budget, then SIGCONT: the frozen node must not serve stale reads when it
/// wakes up. Enforces (a), (b) and (c).
#[tokio::test(flavor = "multi_thread")]
async fn sigstop_and_sigcont_of_a_node() {
    let mut s = Scenario::start(
        "sigstop_and_sigcont_of_a_node",
        ClusterOptions::new(3),
        clients(4),
    )
    .await;
    for _ in 0..s.pick(1, 4) {
        s.run_for(secs(3)).await;
        let (victim, role) = if s.rng.percent(50) {
            let leader = must("finding the meta leader", s.cluster.meta_leader().await);
            (leader, "meta leader".to_string())
        } else {
            let (leader, shards) = must(
                "finding the shard leaders",
                s.cluster.busiest_shard_leader(&[]).await,
            );
            (leader, format!("leader of shards {shards:?}"))
        };
        must("SIGSTOP", s.cluster.pause(victim));
        s.node_lost(format!("SIGSTOP node {victim} ({role})"));
        s.run_for(AFTER_LOSS).await;
        must("SIGCONT", s.cluster.resume(victim));
        s.fault(format!("SIGCONT node {victim}"));
        s.run_for(secs(4)).await;
        must("settling", s.cluster.wait_settled(secs(60)).await);
    }
    s.finish(&[READABLE, LINEARIZABLE, AVAILABLE]).await;
}

/// A partition that cuts one node (the meta leader, which also leads shards) off from the
/// other two, while its clients still reach it; then healing. The cut-off node must neither
/// acknowledge writes nor serve stale reads. Enforces (a), (b) and (c).
#[tokio::test(flavor = "multi_thread")]
async fn partition_isolating_one_node() {
    let mut s = Scenario::start(
        "partition_isolating_one_node",
        ClusterOptions::new(3),
        clients(4),
    )
    .await;
    for _ in 0..s.pick(1, 4) {
        s.run_for(secs(3)).await;
        let victim = must("finding the meta leader", s.cluster.meta_leader().await);
        s.cluster.isolate(victim);
        s.node_lost(format!("isolate node {victim} (meta leader)"));
        s.run_for(AFTER_LOSS).await;
        s.cluster.heal();
        s.fault("heal");
        s.run_for(secs(4)).await;
        must("settling", s.cluster.wait_settled(secs(60)).await);
    }
    s.finish(&[READABLE, LINEARIZABLE, AVAILABLE]).await;
}

/// Five nodes split 2|3 with the meta leader on the side of two; then healing. The minority
/// must not acknowledge writes or serve stale reads; the majority goes on. Enforces (a) and (b).
#[tokio::test(flavor = "multi_thread")]
async fn two_three_split_of_five_nodes() {
    let mut s = Scenario::start(
        "two_three_split_of_five_nodes",
        ClusterOptions::new(5),
        clients(5),
    )
    .await;
    for _ in 0..s.pick(1, 3) {
        s.run_for(secs(3)).await;
        let leader = must("finding the meta leader", s.cluster.meta_leader().await);
        let others: Vec<usize> = s
            .cluster
            .members()
            .into_iter()
            .filter(|&n| n != leader)
            .collect();
        let companion = others[s.rng.below(others.len())];
        let minority = vec![leader, companion];
        let majority: Vec<usize> = others.into_iter().filter(|&n| n != companion).collect();
        s.cluster.partition(&minority, &majority);
        s.fault(format!("partition {minority:?} | {majority:?}"));
        s.run_for(secs(10)).await;
        s.cluster.heal();
        s.fault("heal");
        s.run_for(secs(4)).await;
        must("settling", s.cluster.wait_settled(secs(60)).await);
    }
    s.finish(&[READABLE, LINEARIZABLE]).await;
}

/// A node restarted on its data directory, once after a graceful stop (SIGTERM) and once
/// after kill -9, chosen by seed; it must come back with everything it acknowledged.
/// Enforces (a), (b) and (c).
#[tokio::test(flavor = "multi_thread")]
async fn restart_of_a_node_on_its_data_dir() {
    let mut s = Scenario::start(
        "restart_of_a_node_on_its_data_dir",
        ClusterOptions::new(3),
        clients(4),
    )
    .await;
    for round in 0..s.pick(2, 6) {
        s.run_for(secs(3)).await;
        let members = s.cluster.members();
        let victim = members[s.rng.below(members.len())];
        if round % 2 == 0 {
            must("SIGTERM", s.cluster.terminate(victim).await);
            s.node_lost(format!("SIGTERM node {victim}"));
        } else {
            must("kill -9", s.cluster.kill9(victim).await);
            s.node_lost(format!("kill -9 node {victim}"));
        }
        s.run_for(AFTER_LOSS).await;
        must("restart", s.cluster.restart(victim).await);
        s.fault(format!("restarted node {victim} on its data dir"));
        must("settling", s.cluster.wait_settled(secs(60)).await);
    }
    s.finish(&[READABLE, LINEARIZABLE, AVAILABLE]).await;
}

/// Under load, a fourth node joins (replicas move to it), then one of the original nodes is
/// removed with `herald cluster remove` (drained first). Enforces (a), (b) and (d).
#[tokio::test(flavor = "multi_thread")]
async fn adding_and_removing_a_node_under_load() {
    let mut s = Scenario::start(
        "adding_and_removing_a_node_under_load",
        ClusterOptions::new(3),
        clients(4),
    )
    .await;
    for _ in 0..s.pick(1, 3) {
        s.run_for(secs(3)).await;
        let added = must("adding a node", s.cluster.add_node().await);
        s.refresh_targets();
        s.fault(format!("node {added} joined"));
        must("settling", s.cluster.wait_settled(secs(90)).await);
        s.fault("settled with the new node");
        s.run_for(secs(3)).await;
        let members = s.cluster.members();
        let leaving = members[s.rng.below(members.len() - 1)];
        let leaving_id = must("node id", s.cluster.node_id(leaving).await);
        s.membership_changed(
            format!("removing node {leaving} (id {leaving_id})"),
            vec![leaving_id],
        );
        must("removing a node", s.cluster.remove_node(leaving).await);
        s.refresh_targets();
        s.fault(format!("node {leaving} removed"));
        s.run_for(secs(4)).await;
    }
    s.finish(&[READABLE, LINEARIZABLE, NO_LOSS]).await;
}

/// A node killed for good is replaced: a new node joins, the dead one's replicas are
/// re-created on the others once it has been down long enough, and the dead node is removed.
/// Enforces (a), (b), (c) and (d).
#[tokio::test(flavor = "multi_thread")]
async fn replacing_a_dead_node() {
    let options = ClusterOptions {
        down_after_secs: Some(4),
        ..ClusterOptions::new(3)
    };
    let mut s = Scenario::start("replacing_a_dead_node", options, clients(4)).await;
    s.run_for(secs(3)).await;
    let leader = must("finding the meta leader", s.cluster.meta_leader().await);
    let members = s.cluster.members();
    let candidates: Vec<usize> = members.into_iter().filter(|&n| n != leader).collect();
    let dead = candidates[s.rng.below(candidates.len())];
    let dead_id = must("node id", s.cluster.node_id(dead).await);
    must("kill -9", s.cluster.kill9(dead).await);
    s.node_lost(format!("kill -9 node {dead} for good"));
    s.membership_changed(format!("node {dead} (id {dead_id}) lost"), vec![dead_id]);
    s.run_for(AFTER_LOSS).await;
    let added = must("adding a node", s.cluster.add_node().await);
    s.refresh_targets();
    s.fault(format!("node {added} joined to replace node {dead}"));
    must("removing the dead node", s.cluster.remove_node(dead).await);
    s.refresh_targets();
    s.fault(format!("dead node {dead} removed"));
    must("settling", s.cluster.wait_settled(secs(90)).await);
    s.run_for(secs(4)).await;
    s.finish(&[READABLE, LINEARIZABLE, AVAILABLE, NO_LOSS])
        .await;
}
