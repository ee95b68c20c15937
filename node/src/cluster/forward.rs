//! Operations sent to the leader of a group, locally or over the peer service: what they are,
//! what they answer, and how the receiving node executes them (only if it leads the group;
//! it never forwards further).

// Forwarded operations are short-lived and serialized at once; boxing would buy nothing.
#![allow(clippy::large_enum_variant)]

use openraft::ReadPolicy;

use crate::domain::segment_index::CompiledSegment;
use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterError};
use crate::raft::command::{
    Command, CommandResponse, MetaCommand, MetaResponse, ShardOp, ShardOpResult,
};
use crate::raft::proposer::{ProposeError, to_propose_error};
use crate::raft::{GroupId, META_GROUP, NodeId};

/// An operation for the leader of a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardOp {
    /// A shard operation, proposed through the leader's proposer.
    Shard {
        /// The shard group.
        group: GroupId,
        /// The operation.
        op: ShardOp,
    },
    /// A meta command.
    Meta(MetaCommand),
    /// A linearizable read.
    Read {
        /// The group.
        group: GroupId,
        /// What to read.
        query: ReadQuery,
    },
    /// The cluster status, answered by the meta leader.
    Status,
    /// How many of a project's endpoints in a shard a segment selects.
    SegmentCount {
        /// The shard group.
        group: GroupId,
        /// The project.
        project_id: String,
        /// The segment, compiled with its references resolved.
        segment: CompiledSegment,
        /// The time recency is judged against (milliseconds since the epoch).
        now_ms: i64,
    },
}

/// A read of a group's records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadQuery {
    /// One record.
    Get(Vec<u8>),
    /// Every record under a prefix.
    Scan(Vec<u8>),
}

/// The answer to a [`ForwardOp`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardAnswer {
    /// A shard operation's result.
    Shard(ShardOpResult),
    /// A meta command's answer.
    Meta(MetaResponse),
    /// A `Get`.
    Value(Option<Vec<u8>>),
    /// A `Scan`.
    Records(Vec<(Vec<u8>, Vec<u8>)>),
    /// The cluster status, prost-encoded `herald.v1.ClusterStatus`.
    Status(Vec<u8>),
    /// A count.
    Count(u64),
}

/// Why a forwarded operation did not run.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The node does not lead the group; the leader when it knows it.
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    /// The node could not be reached or could not run it now; worth retrying elsewhere.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The operation ran and failed: final.
    #[error("{0}")]
    Failed(ClusterError),
}

impl Cluster {
    /// Runs `op` on this node if it leads the group.
    pub(crate) async fn execute_local(&self, op: ForwardOp) -> Result<ForwardAnswer, ForwardError> {
        match op {
            ForwardOp::Shard { group, op } => {
                let handle = self
                    .local_group(group)
                    .ok_or(ForwardError::NotLeader(None))?;
                let proposer = handle
                    .proposer
                    .as_ref()
                    .ok_or(ForwardError::NotLeader(None))?;
                // Event campaigns are triggered by the shard leader once the events commit.
                let triggering = match &op {
                    ShardOp::PutEvents {
                        project_id,
                        endpoint_id,
                        events,
                    } if self.has_event_campaigns(project_id) => {
                        Some((project_id.clone(), endpoint_id.clone(), events.clone()))
                    }
                    _ => None,
                };
                match proposer.propose(op).await {
                    Ok(result) => {
                        if let Some((project_id, endpoint_id, events)) = triggering {
                            self.check_triggers(&project_id, &endpoint_id, &events);
                        }
                        Ok(ForwardAnswer::Shard(result))
                    }
                    Err(ProposeError::NotLeader { leader, .. }) => {
                        Err(ForwardError::NotLeader(leader))
                    }
                    Err(ProposeError::Unavailable { reason, .. }) => {
                        Err(ForwardError::Unavailable(reason))
                    }
                }
            }
            ForwardOp::Meta(command) => {
                let meta = self
                    .local_group(META_GROUP)
                    .ok_or(ForwardError::NotLeader(None))?;
                match meta.raft.client_write(Command::Meta(command)).await {
                    Ok(response) => match response.data {
                        CommandResponse::Meta(answer) => Ok(ForwardAnswer::Meta(answer)),
                        other => Err(ForwardError::Failed(ClusterError::Internal(format!(
                            "unexpected meta answer {other}"
                        )))),
                    },
                    Err(error) => Err(match to_propose_error(META_GROUP, error) {
                        ProposeError::NotLeader { leader, .. } => ForwardError::NotLeader(leader),
                        ProposeError::Unavailable { reason, .. } => {
                            ForwardError::Unavailable(reason)
                        }
                    }),
                }
            }
            ForwardOp::Read { group, query } => {
                let handle = self
                    .local_group(group)
                    .ok_or(ForwardError::NotLeader(None))?;
                if let Err(error) = handle.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                    let leader = error.forward_to_leader().and_then(|f| f.leader_id);
                    return Err(match leader {
                        Some(leader) => ForwardError::NotLeader(Some(leader)),
                        None => ForwardError::NotLeader(self.local_leader(group)),
                    });
                }
                self.read_local(&query).map_err(ForwardError::Failed)
            }
            ForwardOp::SegmentCount {
                group,
                project_id,
                segment,
                now_ms,
            } => {
                let handle = self
                    .local_group(group)
                    .ok_or(ForwardError::NotLeader(None))?;
                if let Err(error) = handle.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                    let leader = error.forward_to_leader().and_then(|f| f.leader_id);
                    return Err(ForwardError::NotLeader(leader.or(self.local_leader(group))));
                }
                let now = chrono::DateTime::from_timestamp_millis(now_ms)
                    .unwrap_or_else(chrono::Utc::now);
                let indexes = handle.segments.read().expect("segment index lock");
                let count = indexes
                    .get(&project_id)
                    .map_or(0, |index| index.count(&segment, now));
                Ok(ForwardAnswer::Count(count))
            }
            ForwardOp::Status => {
                if !self.leads(META_GROUP) {
                    return Err(ForwardError::NotLeader(self.local_leader(META_GROUP)));
                }
                let status = self.local_status().map_err(ForwardError::Failed)?;
                Ok(ForwardAnswer::Status(prost::Message::encode_to_vec(
                    &status,
                )))
            }
        }
    }

    /// Reads this node's copy of records.
    pub(crate) fn read_local(&self, query: &ReadQuery) -> Result<ForwardAnswer, ClusterError> {
        match query {
            ReadQuery::Get(key) => Ok(ForwardAnswer::Value(
                self.store
                    .data
                    .get(key)
                    .map_err(ClusterError::internal)?
                    .map(|v| v.to_vec()),
            )),
            ReadQuery::Scan(prefix) => {
                let mut records = Vec::new();
                for guard in self.store.data.prefix(prefix) {
                    let (key, value) = guard.into_inner().map_err(ClusterError::internal)?;
                    records.push((key.to_vec(), value.to_vec()));
                }
                Ok(ForwardAnswer::Records(records))
            }
        }
    }
}
