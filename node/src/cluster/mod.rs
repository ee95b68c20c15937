//! The node's view of the cluster: its Raft groups, where a record lives, routing of every
//! operation to the leader of its group (here or on another node, over the peer service), and
//! the background loops that keep membership and placement right.
//!
//! # Layout
//! - [`campaigns`]: campaign versions, runs and KPIs; the scheduler on the meta leader.
//! - [`campaign_exec`]: each shard leader's part of a run, event triggers, re-dispatch of
//!   intents without an outcome after a failover.
//! - [`channels`]: channel settings of projects.
//! - [`error`]: what an operation can fail with, in terms a client can act on.
//! - [`forward`]: operations for a group's leader and how a leader executes them.
//! - [`ops`]: projects, endpoints, users and events, built on the routing primitives here.
//! - [`segments`]: segments, their versions, and estimates over the shards' indexes.
//! - [`templates`]: message templates and their versions.
//! - [`imports`]: import job records.
//! - [`messages`]: direct sends, in-app inboxes and one-time passwords.
//! - [`membership`]: joining, the membership and placement loops on the meta leader, the
//!   reconcile loop on shard leaders, status and removal.

pub mod campaign_exec;
pub mod campaigns;
pub mod channels;
pub mod error;
pub mod forward;
pub mod imports;
pub mod membership;
pub mod messages;
pub mod ops;
pub mod segments;
pub mod templates;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::BasicNode;
use openraft::async_runtime::watch::WatchReceiver;

pub use error::{ClusterError, Result};
pub use ops::{EndpointEvents, EndpointEventsOutcome};

use self::forward::{ForwardAnswer, ForwardError, ForwardOp, ReadQuery};
use crate::config::Config;
use crate::domain::hashing::shard_of;
use crate::domain::placement::{NodeRecord, NodeState, ShardPlacement};
use crate::raft::command::{ClusterCommand, MetaCommand, MetaResponse, ShardOp, ShardOpResult};
use crate::raft::log_store::{FlushQueue, LogStore};
use crate::raft::network::{GroupNetwork, PeerRouter};
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::{StateMachine, node_key, placement_key};
use crate::raft::{GroupId, HeraldRaft, META_GROUP, NodeId, shard_group};
use crate::storage::keys::{self, state, tag};
use crate::storage::{Store, codec};

/// How long an operation retries while its group has no reachable leader (an election).
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// How long one forwarded call may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// One Raft group on this node.
pub struct Group {
    /// The Raft instance.
    pub raft: HeraldRaft,
    /// Gathers proposals into entries (shard groups only).
    pub proposer: Option<Proposer>,
    /// Endpoints stored in the group.
    pub endpoints: Arc<AtomicI64>,
    /// The group's segment indexes, per project (shards only).
    pub segments: crate::raft::state_machine::SegmentIndexes,
}

/// This node's Raft groups and the operations on them.
pub struct Cluster {
    node_id: NodeId,
    config: Config,
    store: Store,
    flush: FlushQueue,
    router: PeerRouter,
    raft_config: Arc<openraft::Config>,
    /// Where peers reach this node.
    peer_addr: String,
    /// Where clients reach this node.
    client_addr: String,
    groups: RwLock<HashMap<GroupId, Arc<Group>>>,
    /// Serializes creation of groups so two RPCs never create one twice.
    creating: tokio::sync::Mutex<()>,
    /// Last known leader of groups this node has no replica of.
    leader_hints: RwLock<HashMap<GroupId, NodeId>>,
    /// Event types known to be registered, per project: a cache of the meta group's records,
    /// so the hot path asks the meta group only for types it has not seen.
    event_types: RwLock<HashMap<String, HashSet<String>>>,
    /// Set when the node shuts down, so background loops stop.
    stopping: AtomicBool,
    /// Wakes the background loops when the node shuts down.
    stop_signal: tokio::sync::Notify,
    /// The background loops, awaited on shutdown.
    loops: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Where messages go on channels a project has not configured.
    outbox: Arc<crate::channels::outbox::OutboxProvider>,
    /// Rate limits, concurrency bounds and retries of provider sends made on this node.
    delivery: crate::channels::pipeline::Delivery,
    /// Campaign passes, triggers and pacing on this node.
    campaign_runtime: campaign_exec::Runtime,
    /// Active nodes as last counted and when (rate limits are shared among them; counting
    /// scans the meta copy, too slow for every message).
    active_nodes: std::sync::Mutex<Option<(std::time::Instant, usize)>>,
    /// Per shard, the term in which its pending user-index changes were last scanned and all
    /// carried, with [`Self::index_carry_failures`] as it was before that scan. The scan walks
    /// every tombstone the carried changes left behind: too slow for every reconcile tick.
    index_carried: std::sync::Mutex<HashMap<u32, (u64, u64)>>,
    /// Carries of user-index changes that failed (their changes stay pending for a scan).
    index_carry_failures: std::sync::atomic::AtomicU64,
}

impl Cluster {
    /// Opens storage and starts the node's groups: a new single-node cluster on first start
    /// without `cluster.join`, a joining node with it, or whatever the data directory holds.
    pub async fn start(
        config: Config,
        client_addr: String,
        peer_addr: String,
    ) -> Result<Arc<Self>> {
        let store = Store::open(&config.server.data_dir).map_err(ClusterError::internal)?;
        let (node_id, bootstrap) = match stored_identity(&store)? {
            Some(id) => (id, false),
            None => match &config.cluster.join {
                Some(seed) => {
                    let id = membership::request_join(
                        seed,
                        &config.cluster.secret,
                        &client_addr,
                        &peer_addr,
                    )
                    .await?;
                    save_identity(&store, id)?;
                    (id, false)
                }
                None => {
                    save_identity(&store, 1)?;
                    (1, true)
                }
            },
        };
        let flush = FlushQueue::start(store.clone());
        let raft_config = Arc::new(
            openraft::Config {
                cluster_name: "herald".to_string(),
                heartbeat_interval: config.cluster.heartbeat_ms,
                election_timeout_min: config.cluster.election_timeout_ms,
                election_timeout_max: config.cluster.election_timeout_ms * 2,
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                    config.cluster.snapshot_every_entries,
                ),
                max_in_snapshot_log_to_keep: config.cluster.logs_kept_after_snapshot,
                install_snapshot_timeout: 60_000,
                ..Default::default()
            }
            .validate()
            .map_err(ClusterError::internal)?,
        );
        let router = PeerRouter::new(node_id, config.cluster.secret.clone());
        let outbox = Arc::new(crate::channels::outbox::OutboxProvider::with_null_sink(
            &config.server.data_dir,
            config.channels.null_sink,
        ));
        let cluster = Arc::new(Self {
            node_id,
            config,
            store,
            flush,
            router,
            raft_config,
            peer_addr,
            client_addr,
            groups: RwLock::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            leader_hints: RwLock::new(HashMap::new()),
            event_types: RwLock::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            stop_signal: tokio::sync::Notify::new(),
            loops: std::sync::Mutex::new(Vec::new()),
            outbox,
            delivery: Default::default(),
            campaign_runtime: Default::default(),
            index_carried: std::sync::Mutex::default(),
            index_carry_failures: std::sync::atomic::AtomicU64::new(0),
            active_nodes: std::sync::Mutex::new(None),
        });
        cluster.learn_peer_addresses();
        let meta = cluster.ensure_group(META_GROUP).await?;
        let shards = cluster.config.cluster.shards;
        if bootstrap {
            let members = BTreeMap::from([(node_id, BasicNode::new(&cluster.peer_addr))]);
            if !meta
                .raft
                .is_initialized()
                .await
                .map_err(ClusterError::internal)?
            {
                meta.raft
                    .initialize(members.clone())
                    .await
                    .map_err(ClusterError::internal)?;
            }
            for index in 0..shards {
                let group = cluster.ensure_group(shard_group(index)).await?;
                if !group
                    .raft
                    .is_initialized()
                    .await
                    .map_err(ClusterError::internal)?
                {
                    group
                        .raft
                        .initialize(members.clone())
                        .await
                        .map_err(ClusterError::internal)?;
                }
            }
            cluster
                .write_meta(MetaCommand::Cluster(ClusterCommand::Bootstrap {
                    node: NodeRecord {
                        node_id,
                        client_addr: cluster.client_addr.clone(),
                        peer_addr: cluster.peer_addr.clone(),
                        state: NodeState::Active,
                    },
                    shards,
                }))
                .await?;
        } else {
            for index in 0..shards {
                let group = shard_group(index);
                if has_local_state(&cluster.store, group)? {
                    cluster.ensure_group(group).await?;
                }
            }
        }
        membership::spawn_loops(cluster.clone());
        campaign_exec::spawn_loops(cluster.clone());
        Ok(cluster)
    }

    /// Waits (bounded) until the meta group has a leader. A node restarting while most of the
    /// cluster is down still comes up, and answers UNAVAILABLE until a quorum returns.
    pub async fn wait_ready(&self) {
        if let Some(meta) = self.local_group(META_GROUP) {
            let _ = meta
                .raft
                .wait(Some(Duration::from_secs(20)))
                .metrics(
                    |m| m.current_leader.is_some(),
                    "the meta group has a leader",
                )
                .await;
        }
    }

    /// Where snapshot files live.
    pub fn snapshot_dir(&self) -> &std::path::Path {
        &self.store.snapshot_dir
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The limits requests must respect.
    pub fn limits(&self) -> &crate::domain::limits::Limits {
        &self.config.limits
    }

    /// The router of the peer service (the server side hands it Raft messages).
    pub fn router(&self) -> &PeerRouter {
        &self.router
    }

    /// The secret peers must present.
    pub fn secret(&self) -> &str {
        &self.config.cluster.secret
    }

    /// Whether `group` is a group this cluster has.
    pub fn is_known_group(&self, group: GroupId) -> bool {
        group == META_GROUP || (1..=self.config.cluster.shards).contains(&group)
    }

    /// Stops every group; what was acknowledged is already durable.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop_signal.notify_waiters();
        let loops: Vec<_> = self.loops.lock().expect("lock").drain(..).collect();
        for task in loops {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        // Channel actors finish the sends they have (bounded) and stop.
        self.delivery.stop().await;
        // Dropping the groups ends their proposers, which hold the last Raft handles.
        let groups: Vec<Arc<Group>> = self
            .groups
            .write()
            .expect("lock")
            .drain()
            .map(|(_, g)| g)
            .collect();
        for group in groups {
            if let Err(error) = group.raft.shutdown().await {
                tracing::warn!(%error, "raft group did not stop cleanly");
            }
        }
        self.flush.stop();
        if let Err(error) = self.store.sync() {
            tracing::warn!(%error, "final sync failed");
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The local replica of `group`, if this node has one.
    pub fn local_group(&self, group: GroupId) -> Option<Arc<Group>> {
        self.groups.read().expect("lock").get(&group).cloned()
    }

    /// The local replica of `group`, created (empty, uninitialized) if missing: a leader
    /// adding this node as a replica starts sending it Raft messages before anything else.
    pub async fn ensure_group(&self, group: GroupId) -> Result<Arc<Group>> {
        if let Some(existing) = self.local_group(group) {
            return Ok(existing);
        }
        let _creating = self.creating.lock().await;
        if let Some(existing) = self.local_group(group) {
            return Ok(existing);
        }
        let log = LogStore::new(group, self.store.clone(), self.flush.clone());
        let state_machine =
            StateMachine::new(group, self.store.clone()).map_err(ClusterError::internal)?;
        let endpoints = state_machine.endpoint_counter();
        let segments = state_machine.segment_indexes();
        let network = GroupNetwork::new(self.router.clone(), group);
        let raft = HeraldRaft::new(
            self.node_id,
            self.raft_config.clone(),
            network,
            log,
            state_machine,
        )
        .await
        .map_err(ClusterError::internal)?;
        let proposer = (group != META_GROUP)
            .then(|| Proposer::start(group, raft.clone(), self.config.cluster.max_batch_ops));
        let handle = Arc::new(Group {
            raft,
            proposer,
            endpoints,
            segments,
        });
        self.groups
            .write()
            .expect("lock")
            .insert(group, handle.clone());
        tracing::info!(group, "raft group started");
        Ok(handle)
    }

    /// The leader of `group` as this node's replica knows it.
    pub(crate) fn local_leader(&self, group: GroupId) -> Option<NodeId> {
        let handle = self.local_group(group)?;
        handle.raft.metrics().borrow_watched().current_leader
    }

    /// Whether this node leads `group`.
    pub(crate) fn leads(&self, group: GroupId) -> bool {
        self.local_leader(group) == Some(self.node_id)
    }

    /// Teaches the router every node address the local meta copy knows.
    fn learn_peer_addresses(&self) {
        if let Ok(nodes) = self.local_nodes() {
            for node in nodes {
                self.router.remember(node.node_id, &node.peer_addr);
            }
        }
    }

    /// Nodes as this node's meta copy knows them.
    pub(crate) fn local_nodes(&self) -> Result<Vec<NodeRecord>> {
        Ok(self
            .store
            .scan::<NodeRecord>(
                &self.store.data,
                &keys::data_key(META_GROUP, tag::NODE, &[]),
            )
            .map_err(ClusterError::internal)?
            .into_iter()
            .map(|(_, node)| node)
            .collect())
    }

    /// One node as this node's meta copy knows it.
    pub(crate) fn local_node(&self, node_id: NodeId) -> Result<Option<NodeRecord>> {
        self.store
            .get(&self.store.data, &node_key(node_id))
            .map_err(ClusterError::internal)
    }

    /// Shard placements as this node's meta copy knows them.
    pub(crate) fn local_placements(&self) -> Result<Vec<ShardPlacement>> {
        Ok(self
            .store
            .scan::<ShardPlacement>(
                &self.store.data,
                &keys::data_key(META_GROUP, tag::PLACEMENT, &[]),
            )
            .map_err(ClusterError::internal)?
            .into_iter()
            .map(|(_, placement)| placement)
            .collect())
    }

    fn local_placement(&self, shard: u32) -> Result<Option<ShardPlacement>> {
        self.store
            .get(&self.store.data, &placement_key(shard))
            .map_err(ClusterError::internal)
    }

    /// Nodes to try for `group`'s leader, best first.
    fn candidates(&self, group: GroupId) -> Vec<NodeId> {
        let mut candidates = Vec::new();
        let mut push = |node: NodeId| {
            if !candidates.contains(&node) {
                candidates.push(node);
            }
        };
        if let Some(leader) = self.local_leader(group) {
            push(leader);
        }
        if let Some(hint) = self.leader_hints.read().expect("lock").get(&group).copied() {
            push(hint);
        }
        if group != META_GROUP
            && let Ok(Some(placement)) = self.local_placement(group - 1)
        {
            if let Some(leader) = placement.leader {
                push(leader);
            }
            for node in placement.voters.iter().chain(placement.target.iter()) {
                push(*node);
            }
        }
        if let Some(handle) = self.local_group(group) {
            let metrics = handle.raft.metrics().borrow_watched().clone();
            for node in metrics.membership_config.membership().voter_ids() {
                push(node);
            }
        }
        if let Ok(nodes) = self.local_nodes() {
            for node in nodes.into_iter().filter(|n| n.state != NodeState::Removed) {
                push(node.node_id);
            }
        }
        push(self.node_id);
        candidates
    }

    /// Runs `op` on the leader of `group`, wherever it is, retrying through elections until
    /// [`LEADER_WAIT`] passes.
    pub(crate) async fn on_leader(&self, group: GroupId, op: ForwardOp) -> Result<ForwardAnswer> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut attempt = 0usize;
        let mut last_error;
        loop {
            let candidates = self.candidates(group);
            let target = candidates[attempt % candidates.len()];
            let outcome = if target == self.node_id {
                self.execute_local(op.clone()).await
            } else {
                self.forward_to(target, &op).await
            };
            match outcome {
                Ok(answer) => {
                    if target != self.node_id {
                        self.leader_hints
                            .write()
                            .expect("lock")
                            .insert(group, target);
                    }
                    return Ok(answer);
                }
                Err(ForwardError::Failed(error)) => return Err(error),
                Err(ForwardError::NotLeader(Some(leader))) if leader != target => {
                    self.leader_hints
                        .write()
                        .expect("lock")
                        .insert(group, leader);
                    last_error = format!("node {target} is not the leader");
                    attempt = 0;
                }
                Err(error) => {
                    self.leader_hints.write().expect("lock").remove(&group);
                    last_error = error.to_string();
                    attempt += 1;
                    if attempt.is_multiple_of(candidates.len()) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Unavailable(format!(
                    "no leader of group {group} could be reached in {}s: {last_error}",
                    LEADER_WAIT.as_secs()
                )));
            }
        }
    }

    async fn forward_to(
        &self,
        node: NodeId,
        op: &ForwardOp,
    ) -> std::result::Result<ForwardAnswer, ForwardError> {
        let kind = match op {
            ForwardOp::Shard { .. } => "shard",
            ForwardOp::Meta(_) => "meta",
            ForwardOp::Read { .. } => "read",
            ForwardOp::Status => "status",
            ForwardOp::SegmentCount { .. } => "segment_count",
        };
        metrics::counter!(crate::metrics::FORWARDED, "kind" => kind).increment(1);
        let reply = self
            .router
            .forward(node, codec::encode(op), FORWARD_TIMEOUT)
            .await
            .map_err(|error| ForwardError::Unavailable(error.to_string()))?;
        codec::decode::<std::result::Result<ForwardAnswer, ForwardError>>(&reply)
            .map_err(|error| ForwardError::Unavailable(format!("bad forward reply: {error}")))?
    }

    /// Proposes `op` to shard `index` and waits until it is applied.
    pub(crate) async fn propose(&self, index: usize, op: ShardOp) -> Result<ShardOpResult> {
        let group = shard_group(index as u32);
        match self
            .on_leader(group, ForwardOp::Shard { group, op })
            .await?
        {
            ForwardAnswer::Shard(result) => Ok(result),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Writes a meta command through the meta leader.
    pub(crate) async fn write_meta(&self, command: MetaCommand) -> Result<MetaResponse> {
        match self.on_leader(META_GROUP, ForwardOp::Meta(command)).await? {
            ForwardAnswer::Meta(answer) => Ok(answer),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Reads one record of `group` linearizably.
    pub(crate) async fn read_value<T: serde::de::DeserializeOwned>(
        &self,
        group: GroupId,
        key: Vec<u8>,
    ) -> Result<Option<T>> {
        match self
            .on_leader(
                group,
                ForwardOp::Read {
                    group,
                    query: ReadQuery::Get(key),
                },
            )
            .await?
        {
            ForwardAnswer::Value(Some(bytes)) => {
                Ok(Some(codec::decode(&bytes).map_err(ClusterError::internal)?))
            }
            ForwardAnswer::Value(None) => Ok(None),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Reads every record of `group` under `prefix` linearizably, as raw key and value.
    pub(crate) async fn read_records(
        &self,
        group: GroupId,
        prefix: Vec<u8>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self
            .on_leader(
                group,
                ForwardOp::Read {
                    group,
                    query: ReadQuery::Scan(prefix),
                },
            )
            .await?
        {
            ForwardAnswer::Records(records) => Ok(records),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    fn shard_index(&self, project_id: &str, key: &str) -> usize {
        shard_of(project_id, key, self.config.cluster.shards) as usize
    }

    /// Publishes the Raft state of every local group as metrics.
    pub fn record_metrics(&self) {
        let groups: Vec<(GroupId, Arc<Group>)> = self
            .groups
            .read()
            .expect("lock")
            .iter()
            .map(|(g, h)| (*g, h.clone()))
            .collect();
        let mut endpoints = 0i64;
        let mut index_bytes = 0usize;
        let mut indexed = 0usize;
        let mut replicas = 0u64;
        let mut leaders = 0u64;
        for (group, handle) in groups {
            let metrics = handle.raft.metrics().borrow_watched().clone();
            let label = group.to_string();
            let is_leader = metrics.current_leader == Some(self.node_id);
            let state = match metrics.state {
                openraft::ServerState::Learner => 0.0,
                openraft::ServerState::Follower => 1.0,
                openraft::ServerState::Candidate => 2.0,
                openraft::ServerState::Leader => 3.0,
                openraft::ServerState::Shutdown => -1.0,
            };
            metrics::gauge!(crate::metrics::RAFT_STATE, "group" => label.clone()).set(state);
            metrics::gauge!(crate::metrics::RAFT_TERM, "group" => label.clone())
                .set(metrics.current_term as f64);
            metrics::gauge!(crate::metrics::RAFT_LEADER, "group" => label.clone())
                .set(metrics.current_leader.unwrap_or(0) as f64);
            metrics::gauge!(crate::metrics::RAFT_IS_LEADER, "group" => label.clone())
                .set(f64::from(u8::from(is_leader)));
            metrics::gauge!(crate::metrics::RAFT_COMMIT_INDEX, "group" => label.clone())
                .set(metrics.cluster_committed.map_or(0, |id| id.index) as f64);
            metrics::gauge!(crate::metrics::RAFT_APPLIED_INDEX, "group" => label)
                .set(metrics.last_applied.map_or(0, |id| id.index) as f64);
            if group != META_GROUP {
                let member = metrics
                    .membership_config
                    .membership()
                    .get_node(&self.node_id)
                    .is_some();
                if member {
                    replicas += 1;
                }
                if is_leader {
                    leaders += 1;
                    endpoints += handle.endpoints.load(Ordering::Relaxed);
                }
                if member {
                    let indexes = handle.segments.read().expect("segment index lock");
                    for index in indexes.values() {
                        index_bytes += index.memory_bytes();
                        indexed += index.len();
                    }
                }
            }
        }
        metrics::gauge!(crate::metrics::ENDPOINTS_STORED).set(endpoints as f64);
        metrics::gauge!(crate::metrics::REPLICAS).set(replicas as f64);
        metrics::gauge!(crate::metrics::SEGMENT_INDEX_BYTES).set(index_bytes as f64);
        metrics::gauge!(crate::metrics::SEGMENT_INDEX_ENDPOINTS).set(indexed as f64);
        metrics::gauge!(crate::metrics::LEADERS).set(leaders as f64);
    }
}

/// Whether this node holds any Raft state of `group` (so it must start its replica).
fn has_local_state(store: &Store, group: GroupId) -> Result<bool> {
    let vote = store
        .raft_state
        .get(keys::state_key(group, state::VOTE))
        .map_err(ClusterError::internal)?;
    Ok(vote.is_some()
        || store
            .raft_log
            .prefix(keys::group_prefix(group))
            .next()
            .is_some())
}

/// The node's id, if it has one.
fn stored_identity(store: &Store) -> Result<Option<NodeId>> {
    store
        .get::<NodeId>(&store.raft_state, &keys::state_key(META_GROUP, state::NODE))
        .map_err(ClusterError::internal)
}

fn save_identity(store: &Store, id: NodeId) -> Result<()> {
    store
        .raft_state
        .insert(keys::state_key(META_GROUP, state::NODE), codec::encode(&id))
        .map_err(ClusterError::internal)?;
    store.sync().map_err(ClusterError::internal)
}

/// The current time, RFC 3339 in UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
