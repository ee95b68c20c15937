//! The node's view of the cluster: its Raft groups, where a record lives, and the operations
//! the API calls. Requests are routed to the group that owns them; writes go through Raft and
//! reads are linearizable (a read barrier on the owning group's leader first).
//!
//! # Layout
//! - [`error`]: what an operation can fail with, in terms a client can act on.
//! - this file: [`Cluster`], its start-up and its operations.

pub mod error;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::join_all;
use openraft::{BasicNode, ReadPolicy};

pub use error::{ClusterError, Result};

use crate::config::Config;
use crate::domain::endpoint::{Endpoint, EndpointInput};
use crate::domain::event::Event;
use crate::domain::hashing::shard_of;
use crate::domain::project::{Project, ProjectSettings};
use crate::raft::command::{
    Command, CommandResponse, MetaCommand, MetaResponse, PendingIndex, ShardOp, ShardOpResult,
};
use crate::raft::log_store::{FlushQueue, LogStore};
use crate::raft::network::{GroupNetwork, PeerRouter};
use crate::raft::proposer::{ProposeError, Proposer, to_propose_error};
use crate::raft::state_machine::StateMachine;
use crate::raft::{GroupId, HeraldRaft, META_GROUP, NodeId, shard_group};
use crate::storage::keys::{self, state, tag};
use crate::storage::{Store, codec};

/// How long an operation retries while a group has no leader (an election).
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// One shard group on this node.
struct Shard {
    raft: HeraldRaft,
    proposer: Proposer,
    endpoints: Arc<AtomicI64>,
}

/// The events of one endpoint in a PutEvents call, validated.
pub struct EndpointEvents {
    /// The endpoint.
    pub endpoint_id: String,
    /// An upsert of the endpoint to apply before the events.
    pub endpoint: Option<EndpointInput>,
    /// Event id and event.
    pub events: Vec<(String, Event)>,
}

/// What happened to one endpoint's part of a PutEvents call.
pub struct EndpointEventsOutcome {
    /// The endpoint.
    pub endpoint_id: String,
    /// The endpoint upsert, when there was one.
    pub endpoint: Option<Result<()>>,
    /// Per event id.
    pub events: Vec<(String, Result<()>)>,
}

/// This node's Raft groups and the operations on them.
pub struct Cluster {
    node_id: NodeId,
    config: Config,
    store: Store,
    meta: HeraldRaft,
    shards: Vec<Shard>,
    /// Event types known to be registered, per project: a cache of the meta group's records,
    /// so the hot path asks the meta group only for types it has not seen.
    event_types: RwLock<HashMap<String, HashSet<String>>>,
}

impl Cluster {
    /// Opens storage and starts every group of a single-node cluster (initializing them on
    /// first start), then waits until each has a leader.
    pub async fn start(config: Config, advertise: String) -> Result<Arc<Self>> {
        let store = Store::open(&config.server.data_dir).map_err(ClusterError::internal)?;
        let node_id = node_identity(&store)?;
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
                ..Default::default()
            }
            .validate()
            .map_err(ClusterError::internal)?,
        );
        let node = BasicNode::new(advertise);
        let start_group = |group: GroupId| {
            let store = store.clone();
            let flush = flush.clone();
            let raft_config = raft_config.clone();
            let node = node.clone();
            async move {
                let log = LogStore::new(group, store.clone(), flush);
                let state_machine =
                    StateMachine::new(group, store).map_err(ClusterError::internal)?;
                let endpoints = state_machine.endpoint_counter();
                let network = GroupNetwork::new(PeerRouter, group);
                let raft = HeraldRaft::new(node_id, raft_config, network, log, state_machine)
                    .await
                    .map_err(ClusterError::internal)?;
                if !raft
                    .is_initialized()
                    .await
                    .map_err(ClusterError::internal)?
                {
                    raft.initialize(BTreeMap::from([(node_id, node)]))
                        .await
                        .map_err(ClusterError::internal)?;
                }
                Ok::<_, ClusterError>((raft, endpoints))
            }
        };
        let (meta, _) = start_group(META_GROUP).await?;
        let mut shards = Vec::new();
        for index in 0..config.cluster.shards {
            let group = shard_group(index);
            let (raft, endpoints) = start_group(group).await?;
            let proposer = Proposer::start(group, raft.clone(), config.cluster.max_batch_ops);
            shards.push(Shard {
                raft,
                proposer,
                endpoints,
            });
        }
        let cluster = Arc::new(Self {
            node_id,
            config,
            store,
            meta,
            shards,
            event_types: RwLock::new(HashMap::new()),
        });
        cluster.wait_for_leaders().await?;
        cluster.carry_pending_index().await?;
        Ok(cluster)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The limits requests must respect.
    pub fn limits(&self) -> &crate::domain::limits::Limits {
        &self.config.limits
    }

    /// Stops every group; what was acknowledged is already durable.
    pub async fn shutdown(&self) {
        let groups = std::iter::once(&self.meta).chain(self.shards.iter().map(|s| &s.raft));
        for raft in groups {
            if let Err(error) = raft.shutdown().await {
                tracing::warn!(%error, "raft group did not stop cleanly");
            }
        }
        if let Err(error) = self.store.sync() {
            tracing::warn!(%error, "final sync failed");
        }
    }

    async fn wait_for_leaders(&self) -> Result<()> {
        let groups = std::iter::once(&self.meta).chain(self.shards.iter().map(|s| &s.raft));
        for raft in groups {
            raft.wait(Some(Duration::from_secs(30)))
                .metrics(|m| m.current_leader.is_some(), "a leader is elected")
                .await
                .map_err(|e| ClusterError::Unavailable(format!("no leader elected: {e}")))?;
        }
        Ok(())
    }

    /// Publishes Raft state of every group as metrics.
    pub fn record_metrics(&self) {
        let groups = std::iter::once((META_GROUP, &self.meta)).chain(
            self.shards
                .iter()
                .enumerate()
                .map(|(i, s)| (shard_group(i as u32), &s.raft)),
        );
        let mut endpoints = 0i64;
        for (group, raft) in groups {
            let metrics =
                openraft::async_runtime::watch::WatchReceiver::borrow_watched(&raft.metrics())
                    .clone();
            let label = group.to_string();
            let is_leader = metrics.current_leader == Some(self.node_id);
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
            if is_leader && group != META_GROUP {
                endpoints += self.shards[(group - 1) as usize]
                    .endpoints
                    .load(Ordering::Relaxed);
            }
        }
        metrics::gauge!(crate::metrics::ENDPOINTS_STORED).set(endpoints as f64);
    }

    fn shard_index(&self, project_id: &str, key: &str) -> usize {
        shard_of(project_id, key, self.config.cluster.shards) as usize
    }

    /// Proposes `op` to shard `index`, retrying while the group elects a leader.
    async fn propose(&self, index: usize, op: ShardOp) -> Result<ShardOpResult> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            match self.shards[index].proposer.propose(op.clone()).await {
                Ok(result) => return Ok(result),
                Err(ProposeError::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => return Err(ClusterError::Unavailable(error.to_string())),
            }
        }
    }

    async fn write_meta(&self, command: MetaCommand) -> Result<MetaResponse> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            match self.meta.client_write(Command::Meta(command.clone())).await {
                Ok(response) => {
                    return match response.data {
                        CommandResponse::Meta(answer) => Ok(answer),
                        other => Err(ClusterError::Internal(format!(
                            "unexpected meta answer {other:?}"
                        ))),
                    };
                }
                Err(error) => match to_propose_error(META_GROUP, error) {
                    ProposeError::NotLeader { .. } if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => return Err(ClusterError::Unavailable(other.to_string())),
                },
            }
        }
    }

    /// Waits until this node's copy of `raft` reflects every write acknowledged before now.
    async fn read_barrier(raft: &HeraldRaft) -> Result<()> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            match raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                Ok(_) => return Ok(()),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => {
                    return Err(ClusterError::Unavailable(format!("read barrier: {error}")));
                }
            }
        }
    }

    fn read<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.store
            .get(&self.store.data, key)
            .map_err(ClusterError::internal)
    }

    // ---- projects ----

    /// Creates a project with a new id.
    pub async fn create_project(
        &self,
        name: String,
        tags: BTreeMap<String, String>,
    ) -> Result<Project> {
        let project = Project {
            project_id: uuid::Uuid::new_v4().simple().to_string(),
            name,
            creation_date: now_rfc3339(),
            settings: ProjectSettings::default(),
            tags,
        };
        match self.write_meta(MetaCommand::CreateProject(project)).await? {
            MetaResponse::Project(project) => Ok(project),
            MetaResponse::ProjectExists => Err(ClusterError::AlreadyExists(
                "project id collision, retry".into(),
            )),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Reads a project (linearizable).
    pub async fn get_project(&self, project_id: &str) -> Result<Project> {
        Self::read_barrier(&self.meta).await?;
        self.project(project_id)
    }

    /// This node's applied copy of a project, without a read barrier: for checking that a
    /// project exists on the write path, where the write itself is ordered by Raft.
    fn project(&self, project_id: &str) -> Result<Project> {
        self.read::<Project>(&keys::data_key(META_GROUP, tag::PROJECT, &[project_id]))?
            .ok_or_else(|| ClusterError::project_not_found(project_id))
    }

    /// Lists projects in id order after `after`, at most `limit`.
    pub async fn list_projects(&self, after: &str, limit: usize) -> Result<Vec<Project>> {
        Self::read_barrier(&self.meta).await?;
        let prefix = keys::data_key(META_GROUP, tag::PROJECT, &[]);
        let projects = self
            .store
            .scan::<Project>(&self.store.data, &prefix)
            .map_err(ClusterError::internal)?;
        Ok(projects
            .into_iter()
            .map(|(_, project)| project)
            .filter(|project| project.project_id.as_str() > after)
            .take(limit)
            .collect())
    }

    /// Replaces a project's settings.
    pub async fn update_project_settings(
        &self,
        project_id: &str,
        mut settings: ProjectSettings,
    ) -> Result<Project> {
        settings.last_modified_date = now_rfc3339();
        match self
            .write_meta(MetaCommand::UpdateProjectSettings {
                project_id: project_id.to_string(),
                settings,
            })
            .await?
        {
            MetaResponse::Project(project) => Ok(project),
            MetaResponse::ProjectNotFound => Err(ClusterError::project_not_found(project_id)),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Deletes a project and every record of it in every shard (PRJ-4).
    pub async fn delete_project(&self, project_id: &str) -> Result<Project> {
        let project = match self
            .write_meta(MetaCommand::DeleteProject {
                project_id: project_id.to_string(),
            })
            .await?
        {
            MetaResponse::Project(project) => project,
            MetaResponse::ProjectNotFound => {
                return Err(ClusterError::project_not_found(project_id));
            }
            other => {
                return Err(ClusterError::Internal(format!(
                    "unexpected answer {other:?}"
                )));
            }
        };
        self.event_types.write().expect("lock").remove(project_id);
        let deletions = (0..self.shards.len()).map(|index| {
            self.propose(
                index,
                ShardOp::DeleteProjectData {
                    project_id: project_id.to_string(),
                },
            )
        });
        for outcome in join_all(deletions).await {
            outcome?;
        }
        Ok(project)
    }

    // ---- endpoints ----

    /// Checks END-3 before `endpoint_id` joins `user_id`: the user may have at most
    /// `endpoints_per_user` endpoints.
    async fn check_user_capacity(
        &self,
        project_id: &str,
        user_id: &str,
        endpoint_id: &str,
    ) -> Result<()> {
        if user_id.is_empty() {
            return Ok(());
        }
        let index = self.shard_index(project_id, user_id);
        Self::read_barrier(&self.shards[index].raft).await?;
        let prefix = keys::data_key(
            shard_group(index as u32),
            tag::USER_INDEX,
            &[project_id, user_id],
        );
        let mut others = 0;
        for guard in self.store.data.prefix(&prefix) {
            let key = guard.key().map_err(ClusterError::internal)?;
            if keys::data_fields(&key).last().map(String::as_str) != Some(endpoint_id) {
                others += 1;
            }
        }
        let limit = self.config.limits.endpoints_per_user;
        if others >= limit {
            return Err(ClusterError::FailedPrecondition(format!(
                "user {user_id:?} already has {others} endpoints, the limit is {limit}"
            )));
        }
        Ok(())
    }

    /// Creates or replaces endpoints (validated by the caller), each with its own outcome.
    pub async fn upsert_endpoints(
        &self,
        project_id: &str,
        items: Vec<(String, EndpointInput)>,
    ) -> Result<Vec<Result<Endpoint>>> {
        self.project(project_id)?;
        let now = now_rfc3339();
        let writes = items.into_iter().map(|(endpoint_id, input)| {
            let now = now.clone();
            async move {
                self.check_user_capacity(project_id, &input.user.user_id, &endpoint_id)
                    .await?;
                let index = self.shard_index(project_id, &endpoint_id);
                let op = ShardOp::UpsertEndpoint {
                    project_id: project_id.to_string(),
                    endpoint_id: endpoint_id.clone(),
                    input,
                    now,
                };
                self.finish_endpoint_op(index, self.propose(index, op).await?)
                    .await
            }
        });
        Ok(join_all(writes).await)
    }

    /// Completes an endpoint write: carries its user-index changes, then returns the endpoint.
    async fn finish_endpoint_op(&self, index: usize, result: ShardOpResult) -> Result<Endpoint> {
        match result {
            ShardOpResult::Endpoint {
                endpoint: Some(endpoint),
                pending,
            } => {
                self.carry_index_changes(index, pending).await?;
                Ok(*endpoint)
            }
            ShardOpResult::Endpoint { endpoint: None, .. } => {
                Err(ClusterError::NotFound("endpoint not found".into()))
            }
            ShardOpResult::Refused(violation) => {
                Err(ClusterError::InvalidArgument(vec![violation]))
            }
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Applies user-index changes recorded by shard `from` in the users' shards, then clears
    /// them in `from`. Idempotent: a crash in between leaves them pending, and start-up
    /// carries them again.
    async fn carry_index_changes(&self, from: usize, pending: Vec<PendingIndex>) -> Result<()> {
        for change in pending {
            let user_shard = self.shard_index(&change.project_id, &change.user_id);
            self.propose(
                user_shard,
                ShardOp::IndexUser {
                    project_id: change.project_id.clone(),
                    user_id: change.user_id.clone(),
                    endpoint_id: change.endpoint_id.clone(),
                    present: change.present,
                },
            )
            .await?;
            self.propose(
                from,
                ShardOp::ClearPendingIndex {
                    project_id: change.project_id,
                    user_id: change.user_id,
                    endpoint_id: change.endpoint_id,
                    present: change.present,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Carries every user-index change left pending by a crash.
    async fn carry_pending_index(&self) -> Result<()> {
        for index in 0..self.shards.len() {
            let prefix = keys::data_key(shard_group(index as u32), tag::PENDING_INDEX, &[]);
            let pending: Vec<PendingIndex> = self
                .store
                .scan::<PendingIndex>(&self.store.data, &prefix)
                .map_err(ClusterError::internal)?
                .into_iter()
                .map(|(_, change)| change)
                .collect();
            if !pending.is_empty() {
                tracing::info!(
                    shard = index,
                    changes = pending.len(),
                    "carrying pending user index changes"
                );
                self.carry_index_changes(index, pending).await?;
            }
        }
        Ok(())
    }

    /// Reads an endpoint (linearizable).
    pub async fn get_endpoint(&self, project_id: &str, endpoint_id: &str) -> Result<Endpoint> {
        self.project(project_id)?;
        let index = self.shard_index(project_id, endpoint_id);
        Self::read_barrier(&self.shards[index].raft).await?;
        self.read::<Endpoint>(&keys::data_key(
            shard_group(index as u32),
            tag::ENDPOINT,
            &[project_id, endpoint_id],
        ))?
        .ok_or_else(|| {
            ClusterError::NotFound(format!(
                "endpoint {endpoint_id:?} not found in project {project_id:?}"
            ))
        })
    }

    /// Deletes an endpoint with its events; answers the endpoint as it was.
    pub async fn delete_endpoint(&self, project_id: &str, endpoint_id: &str) -> Result<Endpoint> {
        self.project(project_id)?;
        let index = self.shard_index(project_id, endpoint_id);
        let op = ShardOp::DeleteEndpoint {
            project_id: project_id.to_string(),
            endpoint_id: endpoint_id.to_string(),
        };
        self.finish_endpoint_op(index, self.propose(index, op).await?)
            .await
            .map_err(|error| match error {
                ClusterError::NotFound(_) => ClusterError::NotFound(format!(
                    "endpoint {endpoint_id:?} not found in project {project_id:?}"
                )),
                other => other,
            })
    }

    /// The endpoints of a user (linearizable). Index entries whose endpoint moved to another
    /// user meanwhile are skipped, so the answer always agrees with the endpoints themselves.
    pub async fn user_endpoints(&self, project_id: &str, user_id: &str) -> Result<Vec<Endpoint>> {
        self.project(project_id)?;
        let user_shard = self.shard_index(project_id, user_id);
        Self::read_barrier(&self.shards[user_shard].raft).await?;
        let prefix = keys::data_key(
            shard_group(user_shard as u32),
            tag::USER_INDEX,
            &[project_id, user_id],
        );
        let mut endpoint_ids = BTreeSet::new();
        for guard in self.store.data.prefix(&prefix) {
            let key = guard.key().map_err(ClusterError::internal)?;
            if let Some(endpoint_id) = keys::data_fields(&key).into_iter().nth(2) {
                endpoint_ids.insert(endpoint_id);
            }
        }
        let mut endpoints = Vec::new();
        for endpoint_id in endpoint_ids {
            match self.get_endpoint(project_id, &endpoint_id).await {
                Ok(endpoint) if endpoint.user.user_id == user_id => endpoints.push(endpoint),
                Ok(_) | Err(ClusterError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(endpoints)
    }

    /// Deletes every endpoint of a user (data deletion); answers what was deleted.
    pub async fn delete_user_endpoints(
        &self,
        project_id: &str,
        user_id: &str,
    ) -> Result<Vec<Endpoint>> {
        let endpoints = self.user_endpoints(project_id, user_id).await?;
        let mut deleted = Vec::new();
        for endpoint in endpoints {
            match self
                .delete_endpoint(project_id, &endpoint.endpoint_id)
                .await
            {
                Ok(endpoint) => deleted.push(endpoint),
                Err(ClusterError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(deleted)
    }

    // ---- events ----

    /// Registers the event types of a request the node has not seen yet; returns the ones
    /// refused because the project reached its limit of distinct types.
    pub async fn refused_event_types(
        &self,
        project_id: &str,
        types: &BTreeSet<String>,
    ) -> Result<BTreeSet<String>> {
        let unknown: Vec<String> = {
            let cache = self.event_types.read().expect("lock");
            let known = cache.get(project_id);
            types
                .iter()
                .filter(|t| !known.is_some_and(|k| k.contains(*t)))
                .cloned()
                .collect()
        };
        if unknown.is_empty() {
            return Ok(BTreeSet::new());
        }
        let answer = self
            .write_meta(MetaCommand::RegisterEventTypes {
                project_id: project_id.to_string(),
                event_types: unknown.clone(),
                limit: self.config.limits.event_types_per_project,
            })
            .await?;
        let accepted = match answer {
            MetaResponse::EventTypes { accepted } => accepted,
            MetaResponse::ProjectNotFound => {
                return Err(ClusterError::project_not_found(project_id));
            }
            other => {
                return Err(ClusterError::Internal(format!(
                    "unexpected answer {other:?}"
                )));
            }
        };
        let accepted: HashSet<String> = accepted.into_iter().collect();
        let refused = unknown
            .into_iter()
            .filter(|t| !accepted.contains(t))
            .collect();
        self.event_types
            .write()
            .expect("lock")
            .entry(project_id.to_string())
            .or_default()
            .extend(accepted);
        Ok(refused)
    }

    /// Stores events (validated by the caller) with optional endpoint upserts.
    pub async fn put_events(
        &self,
        project_id: &str,
        batches: Vec<EndpointEvents>,
    ) -> Result<Vec<EndpointEventsOutcome>> {
        self.project(project_id)?;
        let now = now_rfc3339();
        let writes = batches.into_iter().map(|batch| {
            let now = now.clone();
            async move {
                let index = self.shard_index(project_id, &batch.endpoint_id);
                let endpoint = match batch.endpoint {
                    Some(input) => Some(
                        async {
                            self.check_user_capacity(
                                project_id,
                                &input.user.user_id,
                                &batch.endpoint_id,
                            )
                            .await?;
                            let op = ShardOp::UpsertEndpoint {
                                project_id: project_id.to_string(),
                                endpoint_id: batch.endpoint_id.clone(),
                                input,
                                now,
                            };
                            self.finish_endpoint_op(index, self.propose(index, op).await?)
                                .await
                                .map(|_| ())
                        }
                        .await,
                    ),
                    None => None,
                };
                let event_ids: Vec<String> =
                    batch.events.iter().map(|(id, _)| id.clone()).collect();
                let count = batch.events.len();
                let stored = if batch.events.is_empty() {
                    Ok(())
                } else {
                    self.propose(
                        index,
                        ShardOp::PutEvents {
                            project_id: project_id.to_string(),
                            endpoint_id: batch.endpoint_id.clone(),
                            events: batch.events,
                        },
                    )
                    .await
                    .map(|_| ())
                };
                if stored.is_ok() {
                    metrics::counter!(crate::metrics::EVENTS_INGESTED).increment(count as u64);
                }
                EndpointEventsOutcome {
                    endpoint_id: batch.endpoint_id,
                    endpoint,
                    events: event_ids
                        .into_iter()
                        .map(|id| (id, stored.clone()))
                        .collect(),
                }
            }
        });
        Ok(join_all(writes).await)
    }
}

/// The node's id, chosen on first start and kept in storage.
fn node_identity(store: &Store) -> Result<NodeId> {
    let key = keys::state_key(META_GROUP, state::NODE);
    if let Some(id) = store
        .get::<NodeId>(&store.raft_state, &key)
        .map_err(ClusterError::internal)?
    {
        return Ok(id);
    }
    // The first node of a cluster is node 1; joining nodes get ids from the meta group.
    let id: NodeId = 1;
    store
        .raft_state
        .insert(key, codec::encode(&id))
        .map_err(ClusterError::internal)?;
    store.sync().map_err(ClusterError::internal)?;
    Ok(id)
}

/// The current time, RFC 3339 in UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
