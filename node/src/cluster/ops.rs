//! Projects, endpoints, users and events: the operations the API calls, built on the
//! routing primitives of [`Cluster`] (every write goes to its group's leader through Raft,
//! every read is linearizable at the leader).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures::future::join_all;

use super::{Cluster, ClusterError, Result, now_rfc3339};
use crate::domain::endpoint::{Endpoint, EndpointInput};
use crate::domain::event::Event;
use crate::domain::project::{Project, ProjectSettings};
use crate::raft::command::{MetaCommand, MetaResponse, PendingIndex, ShardOp, ShardOpResult};
use crate::raft::{META_GROUP, shard_group};
use crate::storage::{codec, keys, keys::tag};

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

/// Decodes raw records.
fn decode_all<T: serde::de::DeserializeOwned>(records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<T>> {
    records
        .into_iter()
        .map(|(_, value)| codec::decode(&value).map_err(ClusterError::internal))
        .collect()
}

impl Cluster {
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
        self.read_value::<Project>(
            META_GROUP,
            keys::data_key(META_GROUP, tag::PROJECT, &[project_id]),
        )
        .await?
        .ok_or_else(|| ClusterError::project_not_found(project_id))
    }

    /// Checks that a project exists: this node's meta copy first (every node has one), and a
    /// linearizable read when the copy does not have it yet (a project just created elsewhere).
    pub(crate) async fn project(&self, project_id: &str) -> Result<Project> {
        let key = keys::data_key(META_GROUP, tag::PROJECT, &[project_id]);
        if let Some(project) = self
            .store
            .get::<Project>(&self.store.data, &key)
            .map_err(ClusterError::internal)?
        {
            return Ok(project);
        }
        self.get_project(project_id).await
    }

    /// Lists projects in id order after `after`, at most `limit`.
    pub async fn list_projects(&self, after: &str, limit: usize) -> Result<Vec<Project>> {
        let prefix = keys::data_key(META_GROUP, tag::PROJECT, &[]);
        let records = self.read_records(META_GROUP, prefix).await?;
        let projects = decode_all::<Project>(records)?;
        Ok(projects
            .into_iter()
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
        let deletions = (0..self.config.cluster.shards as usize).map(|index| {
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
        let group = shard_group(self.shard_index(project_id, user_id) as u32);
        let prefix = keys::data_key(group, tag::USER_INDEX, &[project_id, user_id]);
        let mut others = 0;
        for (key, _) in self.read_records(group, prefix).await? {
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
        self.project(project_id).await?;
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
    pub(crate) async fn carry_index_changes(
        &self,
        from: usize,
        pending: Vec<PendingIndex>,
    ) -> Result<()> {
        let carried = self.carry_each_index_change(from, pending).await;
        if carried.is_err() {
            // Left pending: the reconcile loops scan for it again.
            self.index_carry_failures
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        carried
    }

    async fn carry_each_index_change(&self, from: usize, pending: Vec<PendingIndex>) -> Result<()> {
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

    /// Reads an endpoint (linearizable).
    pub async fn get_endpoint(&self, project_id: &str, endpoint_id: &str) -> Result<Endpoint> {
        self.project(project_id).await?;
        let group = shard_group(self.shard_index(project_id, endpoint_id) as u32);
        self.read_value::<Endpoint>(
            group,
            keys::data_key(group, tag::ENDPOINT, &[project_id, endpoint_id]),
        )
        .await?
        .ok_or_else(|| {
            ClusterError::NotFound(format!(
                "endpoint {endpoint_id:?} not found in project {project_id:?}"
            ))
        })
    }

    /// Deletes an endpoint with its events; answers the endpoint as it was.
    pub async fn delete_endpoint(&self, project_id: &str, endpoint_id: &str) -> Result<Endpoint> {
        self.project(project_id).await?;
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
        self.project(project_id).await?;
        let group = shard_group(self.shard_index(project_id, user_id) as u32);
        let prefix = keys::data_key(group, tag::USER_INDEX, &[project_id, user_id]);
        let mut endpoint_ids = BTreeSet::new();
        for (key, _) in self.read_records(group, prefix).await? {
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
        self.project(project_id).await?;
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
