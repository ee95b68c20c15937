//! Membership and placement.
//!
//! - A node joins by asking any member (`Peer.Join`); the meta leader gives it the next id,
//!   never reused. The **membership loop** on the meta leader then adds it to the meta group
//!   as a learner and promotes learners while the group has fewer than 3 voters (5 once the
//!   cluster has 5 nodes); drained nodes leave the group. One change at a time.
//! - The **placement loop** on the meta leader computes each shard's target replicas and
//!   preferred leader ([`crate::domain::placement::plan`]): missing replicas go to the least
//!   loaded node, a node down longer than `down_after_secs` or draining is replaced, and one
//!   replica at a time moves from the most to the least loaded node.
//! - The **reconcile loop** on every shard leader moves its shard to the target: add the new
//!   replicas as learners (they catch up by snapshot), promote them while removing the old
//!   ones in one membership change, hand leadership to the preferred leader, and report the
//!   result to the meta group. It also carries user-index changes left pending by a crash.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use herald_proto::internal::v1 as peer;
use herald_proto::v1 as pb;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::{BasicNode, ChangeMembers};

use super::forward::{ForwardAnswer, ForwardOp};
use super::{Cluster, ClusterError, Result};
use crate::domain::placement::{NodeId, NodeState, ShardPlacement, plan};
use crate::raft::command::{ClusterCommand, MetaCommand, MetaResponse, PendingIndex};
use crate::raft::network::PeerRouter;
use crate::raft::{META_GROUP, shard_group};
use crate::storage::keys::{self, tag};

/// Asks the member at `seed` (its client address) for a node id.
pub async fn request_join(
    seed: &str,
    secret: &str,
    client_addr: &str,
    peer_addr: &str,
) -> Result<NodeId> {
    let router = PeerRouter::new(0, secret.to_string());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let mut client = router
                .client_for_addr(seed)
                .map_err(ClusterError::Unavailable)?;
            let request = router.request(
                peer::JoinRequest {
                    client_addr: client_addr.to_string(),
                    peer_addr: peer_addr.to_string(),
                },
                Duration::from_secs(10),
            );
            client
                .join(request)
                .await
                .map(|reply| reply.into_inner().node_id)
                .map_err(|status| match status.code() {
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                        ClusterError::FailedPrecondition(format!(
                            "{seed} refused to let this node join: {}",
                            status.message()
                        ))
                    }
                    _ => ClusterError::Unavailable(format!(
                        "joining through {seed}: {}",
                        status.message()
                    )),
                })
        };
        match attempt.await {
            Ok(id) => {
                tracing::info!(node_id = id, %seed, "joined the cluster");
                return Ok(id);
            }
            Err(error @ ClusterError::FailedPrecondition(_)) => return Err(error),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, "join failed, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Starts the background loops of a node. They hold the cluster weakly and stop when it
/// shuts down.
pub fn spawn_loops(cluster: Arc<Cluster>) {
    let interval = Duration::from_millis(cluster.config.cluster.placement_interval_ms);
    let weak = Arc::downgrade(&cluster);
    let meta_loop = every(weak.clone(), interval, |cluster| async move {
        cluster.learn_peer_addresses();
        if !cluster.leads(META_GROUP) {
            return;
        }
        if let Err(error) = cluster.membership_round().await {
            tracing::warn!(%error, "membership round failed");
        }
        if let Err(error) = cluster.placement_round().await {
            tracing::warn!(%error, "placement round failed");
        }
    });
    let busy = Arc::new(std::sync::Mutex::new(BTreeSet::<u32>::new()));
    let shard_loop = every(weak.clone(), interval, move |cluster| {
        let busy = busy.clone();
        async move {
            for shard in 0..cluster.config.cluster.shards {
                if !cluster.leads(shard_group(shard)) || !busy.lock().expect("lock").insert(shard) {
                    continue;
                }
                let cluster = cluster.clone();
                let busy = busy.clone();
                // One task per shard, so a slow catch-up never holds up the others.
                tokio::spawn(async move {
                    if let Err(error) = cluster.reconcile_shard(shard).await {
                        tracing::warn!(shard, %error, "reconciling shard failed");
                    }
                    busy.lock().expect("lock").remove(&shard);
                });
            }
        }
    });
    let metrics_loop = every(weak, Duration::from_secs(1), |cluster| async move {
        cluster.record_metrics()
    });
    cluster
        .loops
        .lock()
        .expect("lock")
        .extend([meta_loop, shard_loop, metrics_loop]);
}

/// Runs `round` every `interval` until the cluster stops.
pub(super) fn every<F, Fut>(
    cluster: std::sync::Weak<Cluster>,
    interval: Duration,
    round: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(Arc<Cluster>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let Some(strong) = cluster.upgrade() else {
                return;
            };
            if strong.is_stopping() {
                return;
            }
            let stopped = strong.stop_signal.notified();
            tokio::select! {
                _ = stopped => return,
                _ = tick.tick() => {}
            }
            if strong.is_stopping() {
                return;
            }
            round(strong).await;
        }
    })
}

impl Cluster {
    /// Handles a join request: the node's id, assigned by the meta group.
    pub async fn handle_join(&self, client_addr: String, peer_addr: String) -> Result<NodeId> {
        match self
            .write_meta(MetaCommand::Cluster(ClusterCommand::AddNode {
                client_addr,
                peer_addr,
            }))
            .await?
        {
            MetaResponse::NodeId(id) => Ok(id),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Nodes that answered the meta leader's heartbeats within `down_after_secs` (all nodes
    /// when this node does not lead the meta group).
    fn answering_nodes(&self) -> BTreeSet<NodeId> {
        let nodes: BTreeSet<NodeId> = self
            .local_nodes()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.state != NodeState::Removed)
            .map(|n| n.node_id)
            .collect();
        let Some(meta) = self.local_group(META_GROUP) else {
            return nodes;
        };
        let metrics = meta.raft.metrics().borrow_watched().clone();
        let Some(heartbeat) = metrics.heartbeat else {
            return nodes;
        };
        let down_after = Duration::from_secs(self.config.cluster.down_after_secs);
        nodes
            .into_iter()
            .filter(|node| {
                if *node == self.node_id {
                    return true;
                }
                match heartbeat.get(node) {
                    // Not replicated to yet (just added): give it the benefit of the doubt.
                    None | Some(None) => true,
                    Some(Some(acked)) => openraft::Instant::elapsed(&**acked) < down_after,
                }
            })
            .collect()
    }

    /// Brings the meta group's membership in line with the node records.
    async fn membership_round(&self) -> Result<()> {
        let meta = self
            .local_group(META_GROUP)
            .ok_or_else(|| ClusterError::Internal("no meta group".into()))?;
        let metrics = meta.raft.metrics().borrow_watched().clone();
        if metrics.membership_config.log_id() != metrics.committed_membership_config.log_id() {
            return Ok(()); // a change is in flight: one at a time
        }
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        let nodes = self.local_nodes()?;
        let placements = self.local_placements()?;
        let management = |error: openraft::error::RaftError<
            crate::raft::TypeConfig,
            openraft::error::ClientWriteError<crate::raft::TypeConfig>,
        >| { ClusterError::Unavailable(error.to_string()) };

        // Learners for new nodes.
        if let Some(node) = nodes
            .iter()
            .find(|n| n.state == NodeState::Active && !members.contains(&n.node_id))
        {
            tracing::info!(
                node_id = node.node_id,
                "adding node to the meta group as a learner"
            );
            meta.raft
                .add_learner(node.node_id, BasicNode::new(&node.peer_addr), false)
                .await
                .map_err(management)?;
            return Ok(());
        }

        // Drained nodes leave: once no shard keeps a replica on them.
        for node in nodes.iter().filter(|n| n.state == NodeState::Draining) {
            let holds = placements
                .iter()
                .any(|p| p.voters.contains(&node.node_id) || p.target.contains(&node.node_id));
            if holds {
                continue;
            }
            if node.node_id == self.node_id {
                // The meta leader itself is leaving: hand leadership over first.
                if let Some(next) = voters.iter().find(|v| **v != self.node_id) {
                    let _ = meta.raft.trigger().transfer_leader(*next).await;
                }
                return Ok(());
            }
            if voters.contains(&node.node_id) {
                meta.raft
                    .change_membership(ChangeMembers::RemoveVoters([node.node_id].into()), false)
                    .await
                    .map_err(management)?;
            } else if members.contains(&node.node_id) {
                meta.raft
                    .change_membership(ChangeMembers::RemoveNodes([node.node_id].into()), false)
                    .await
                    .map_err(management)?;
            }
            self.write_meta(MetaCommand::Cluster(ClusterCommand::SetNodeState {
                node_id: node.node_id,
                state: NodeState::Removed,
            }))
            .await?;
            tracing::info!(node_id = node.node_id, "node removed from the cluster");
            return Ok(());
        }

        // Promote caught-up learners while there are fewer voters than wanted.
        let active: Vec<NodeId> = nodes
            .iter()
            .filter(|n| n.state == NodeState::Active)
            .map(|n| n.node_id)
            .collect();
        let wanted = if active.len() >= 5 {
            5
        } else {
            active.len().min(3)
        };
        let current_voters = voters.iter().filter(|v| active.contains(v)).count();
        if current_voters < wanted {
            let last = metrics.last_log_index.unwrap_or(0);
            let replication = metrics.replication.clone().unwrap_or_default();
            let caught_up = active.iter().find(|node| {
                !voters.contains(node)
                    && members.contains(node)
                    && replication
                        .get(node)
                        .and_then(|m| m.as_ref())
                        .is_some_and(|matched| matched.index + 100 >= last)
            });
            if let Some(node) = caught_up {
                tracing::info!(node_id = node, "promoting node to meta voter");
                meta.raft
                    .change_membership(ChangeMembers::AddVoterIds([*node].into()), false)
                    .await
                    .map_err(management)?;
            }
        }
        Ok(())
    }

    /// Recomputes shard targets and preferred leaders.
    async fn placement_round(&self) -> Result<()> {
        let nodes = self.local_nodes()?;
        let answering = self.answering_nodes();
        let live: BTreeSet<NodeId> = nodes
            .iter()
            .filter(|n| n.state == NodeState::Active && answering.contains(&n.node_id))
            .map(|n| n.node_id)
            .collect();
        let serving: BTreeSet<NodeId> = nodes
            .iter()
            .filter(|n| n.state != NodeState::Removed && answering.contains(&n.node_id))
            .map(|n| n.node_id)
            .collect();
        let placements = self.local_placements()?;
        metrics::gauge!(crate::metrics::PLACEMENT_MOVES)
            .set(placements.iter().filter(|p| p.moving()).count() as f64);
        let changed = plan(&placements, &live, &serving);
        if changed.is_empty() {
            return Ok(());
        }
        tracing::info!(shards = changed.len(), "placement targets changed");
        self.write_meta(MetaCommand::Cluster(ClusterCommand::SetTargets(changed)))
            .await?;
        Ok(())
    }

    /// Moves a shard this node leads toward its target, reports it, and carries pending
    /// user-index changes.
    async fn reconcile_shard(&self, shard: u32) -> Result<()> {
        let group = shard_group(shard);
        let handle = self
            .local_group(group)
            .ok_or_else(|| ClusterError::Internal("no such group".into()))?;
        let metrics = handle.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        let last = metrics.last_log_index.unwrap_or(0);
        let replication = metrics.replication.clone().unwrap_or_default();
        let max_lag = replication
            .values()
            .map(|m| last.saturating_sub(m.as_ref().map_or(0, |id| id.index)))
            .max()
            .unwrap_or(0);

        let Some(placement) = self.local_placement(shard)? else {
            return Ok(());
        };
        let committed =
            metrics.membership_config.log_id() == metrics.committed_membership_config.log_id();
        if committed
            && (placement.voters != voters
                || placement.leader != Some(self.node_id)
                || placement.term != metrics.current_term
                || placement.max_lag.abs_diff(max_lag) > 1_000)
        {
            self.write_meta(MetaCommand::Cluster(ClusterCommand::ReportShard {
                shard,
                voters: voters.clone(),
                leader: self.node_id,
                term: metrics.current_term,
                max_lag,
            }))
            .await?;
        }
        self.carry_pending(shard, metrics.current_term).await?;
        if !committed || placement.target.is_empty() {
            return Ok(());
        }
        let management = |error: openraft::error::RaftError<
            crate::raft::TypeConfig,
            openraft::error::ClientWriteError<crate::raft::TypeConfig>,
        >| { ClusterError::Unavailable(error.to_string()) };
        if placement.target != voters {
            // New replicas first join as learners and catch up (by snapshot if the log was
            // purged), then one membership change promotes them and drops the old ones.
            for node in placement.target.difference(&members) {
                let Some(record) = self.local_node(*node)? else {
                    continue;
                };
                tracing::info!(shard, node_id = node, "adding shard replica");
                handle
                    .raft
                    .add_learner(*node, BasicNode::new(&record.peer_addr), false)
                    .await
                    .map_err(management)?;
            }
            let caught_up = placement.target.iter().all(|node| {
                voters.contains(node)
                    || replication
                        .get(node)
                        .and_then(|m| m.as_ref())
                        .is_some_and(|matched| matched.index + 100 >= last)
            });
            if caught_up {
                tracing::info!(shard, target = ?placement.target, "changing shard voters");
                handle
                    .raft
                    .change_membership(
                        ChangeMembers::ReplaceAllVoters(placement.target.clone()),
                        false,
                    )
                    .await
                    .map_err(management)?;
            }
            return Ok(());
        }
        let extra: BTreeSet<NodeId> = members
            .difference(&voters)
            .filter(|n| !placement.target.contains(n))
            .copied()
            .collect();
        if !extra.is_empty() {
            handle
                .raft
                .change_membership(ChangeMembers::RemoveNodes(extra), false)
                .await
                .map_err(management)?;
            return Ok(());
        }
        // Hand leadership over only to a preferred leader that answered within a few
        // heartbeats and has the whole log: a frozen or partitioned node would take the
        // leadership and leave the shard without a leader until it is declared down.
        let fresh = Duration::from_millis(self.config.cluster.heartbeat_ms * 3);
        let answering = |node: &NodeId| {
            metrics
                .heartbeat
                .as_ref()
                .and_then(|h| h.get(node).cloned().flatten())
                .is_some_and(|acked| openraft::Instant::elapsed(&*acked) < fresh)
        };
        let caught_up = |node: &NodeId| {
            replication
                .get(node)
                .and_then(|m| m.as_ref())
                .is_some_and(|matched| matched.index + 10 >= last)
        };
        if let Some(preferred) = placement.preferred_leader
            && preferred != self.node_id
            && voters.contains(&preferred)
            && answering(&preferred)
            && caught_up(&preferred)
        {
            tracing::info!(shard, to = preferred, "transferring shard leadership");
            let _ = handle.raft.trigger().transfer_leader(preferred).await;
        }
        Ok(())
    }

    /// Carries user-index changes of `shard` left pending by a crash, a failover or a failed
    /// carry: once per term, and again after a carry failed.
    async fn carry_pending(&self, shard: u32, term: u64) -> Result<()> {
        let failures = self
            .index_carry_failures
            .load(std::sync::atomic::Ordering::SeqCst);
        if self.index_carried.lock().expect("lock").get(&shard) == Some(&(term, failures)) {
            return Ok(());
        }
        let prefix = keys::data_key(shard_group(shard), tag::PENDING_INDEX, &[]);
        let pending: Vec<PendingIndex> = self
            .store
            .scan::<PendingIndex>(&self.store.data, &prefix)
            .map_err(ClusterError::internal)?
            .into_iter()
            .map(|(_, change)| change)
            .collect();
        if !pending.is_empty() {
            tracing::info!(
                shard,
                changes = pending.len(),
                "carrying pending user index changes"
            );
            self.carry_index_changes(shard as usize, pending).await?;
        }
        self.index_carried
            .lock()
            .expect("lock")
            .insert(shard, (term, failures));
        Ok(())
    }

    /// The cluster's status, from the meta leader.
    pub async fn status(&self) -> Result<pb::ClusterStatus> {
        match self.on_leader(META_GROUP, ForwardOp::Status).await? {
            ForwardAnswer::Status(bytes) => {
                prost::Message::decode(bytes.as_slice()).map_err(ClusterError::internal)
            }
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// The status as this node (the meta leader) sees it.
    pub(crate) fn local_status(&self) -> Result<pb::ClusterStatus> {
        let meta = self
            .local_group(META_GROUP)
            .ok_or_else(|| ClusterError::Internal("no meta group".into()))?;
        let metrics = meta.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
        let answering = self.answering_nodes();
        let placements = self.local_placements()?;
        let last = metrics.last_log_index.unwrap_or(0);
        let replication = metrics.replication.clone().unwrap_or_default();
        let nodes = self
            .local_nodes()?
            .into_iter()
            .map(|node| {
                let id = node.node_id;
                let state = if node.state != NodeState::Removed && !answering.contains(&id) {
                    "DOWN".to_string()
                } else {
                    node.state.as_str().to_string()
                };
                let meta_lag = if id == self.node_id {
                    0
                } else {
                    last.saturating_sub(
                        replication
                            .get(&id)
                            .and_then(|m| m.as_ref())
                            .map_or(0, |m| m.index),
                    )
                };
                pb::NodeStatus {
                    node_id: id,
                    client_addr: node.client_addr,
                    peer_addr: node.peer_addr,
                    state,
                    meta_role: if voters.contains(&id) {
                        "voter".into()
                    } else if learners.contains(&id) {
                        "learner".into()
                    } else {
                        String::new()
                    },
                    replicas: placements
                        .iter()
                        .filter(|p| p.voters.contains(&id))
                        .map(|p| p.shard)
                        .collect(),
                    leads: placements
                        .iter()
                        .filter(|p| p.leader == Some(id))
                        .map(|p| p.shard)
                        .collect(),
                    meta_lag,
                }
            })
            .collect();
        Ok(pb::ClusterStatus {
            nodes,
            shards: placements.iter().map(shard_status).collect(),
            meta_leader: metrics.current_leader.unwrap_or(0),
            meta_term: metrics.current_term,
            meta_voters: voters.into_iter().collect(),
        })
    }

    /// Starts draining `node_id`; the loops move its replicas and leaderships away and then
    /// remove it.
    pub async fn remove_node(&self, node_id: NodeId) -> Result<()> {
        let nodes = self.local_nodes()?;
        let Some(node) = nodes.iter().find(|n| n.node_id == node_id) else {
            return Err(ClusterError::NotFound(format!(
                "node {node_id} is not a member"
            )));
        };
        if node.state == NodeState::Removed {
            return Err(ClusterError::FailedPrecondition(format!(
                "node {node_id} was already removed"
            )));
        }
        let remaining = nodes
            .iter()
            .filter(|n| n.state == NodeState::Active && n.node_id != node_id)
            .count();
        if remaining == 0 {
            return Err(ClusterError::FailedPrecondition(format!(
                "node {node_id} is the last active node"
            )));
        }
        self.write_meta(MetaCommand::Cluster(ClusterCommand::SetNodeState {
            node_id,
            state: NodeState::Draining,
        }))
        .await?;
        Ok(())
    }
}

fn shard_status(placement: &ShardPlacement) -> pb::ShardStatus {
    pb::ShardStatus {
        shard: placement.shard,
        voters: placement.voters.iter().copied().collect(),
        target: placement.target.iter().copied().collect(),
        leader: placement.leader.unwrap_or(0),
        term: placement.term,
        moving: placement.moving(),
        max_lag: placement.max_lag,
    }
}
