//! Group commit of proposals: concurrent requests to one shard become one Raft entry.
//!
//! Each shard group has a proposer task. Requests send their operation and wait; the task
//! takes everything queued (up to a limit) as one `Command::Shard` entry and proposes it,
//! keeping a few entries in flight so that a batch forms while the previous one commits.
//! A request is answered only after its entry is committed and applied.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::command::{Command, CommandResponse, ShardOp, ShardOpResult};
use super::{GroupId, HeraldRaft};

/// Why a proposal was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// This node does not lead the group; the leader is given when known.
    #[error("not the leader of group {group}")]
    NotLeader {
        /// The group.
        group: GroupId,
        /// The leader's node id, when known.
        leader: Option<u64>,
    },
    /// The group stopped or failed.
    #[error("group {group} is unavailable: {reason}")]
    Unavailable {
        /// The group.
        group: GroupId,
        /// Why.
        reason: String,
    },
}

struct Proposal {
    op: ShardOp,
    reply: oneshot::Sender<Result<ShardOpResult, ProposeError>>,
}

/// Handle to a shard's proposer task.
#[derive(Clone)]
pub struct Proposer {
    sender: mpsc::Sender<Proposal>,
}

/// Entries of one group in flight at once: enough to overlap the fsync of one batch with the
/// forming of the next.
const IN_FLIGHT_ENTRIES: usize = 4;

impl Proposer {
    /// Starts the proposer of `group`, gathering at most `max_ops` operations per entry.
    pub fn start(group: GroupId, raft: HeraldRaft, max_ops: usize) -> Self {
        let (sender, receiver) = mpsc::channel(max_ops * IN_FLIGHT_ENTRIES);
        tokio::spawn(run(group, raft, max_ops, receiver));
        Self { sender }
    }

    /// Proposes `op` and waits until it is applied.
    pub async fn propose(&self, op: ShardOp) -> Result<ShardOpResult, ProposeError> {
        let (reply, answer) = oneshot::channel();
        let unavailable = |reason: &str| ProposeError::Unavailable {
            group: 0,
            reason: reason.to_string(),
        };
        self.sender
            .send(Proposal { op, reply })
            .await
            .map_err(|_| unavailable("proposer stopped"))?;
        answer
            .await
            .map_err(|_| unavailable("proposer dropped the request"))?
    }
}

async fn run(
    group: GroupId,
    raft: HeraldRaft,
    max_ops: usize,
    mut receiver: mpsc::Receiver<Proposal>,
) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_ENTRIES));
    while let Some(first) = receiver.recv().await {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closes");
        // Everything that queued while we waited for a permit joins this entry.
        let mut batch = vec![first];
        while batch.len() < max_ops {
            match receiver.try_recv() {
                Ok(proposal) => batch.push(proposal),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (ops, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.op, p.reply)).unzip();
            metrics::histogram!(crate::metrics::PROPOSAL_BATCH_SIZE).record(ops.len() as f64);
            let outcome = raft.client_write(Command::Shard(ops)).await;
            match outcome {
                Ok(response) => {
                    let CommandResponse::Shard(results) = response.data else {
                        for reply in replies {
                            let _ = reply.send(Err(ProposeError::Unavailable {
                                group,
                                reason: "unexpected response kind".to_string(),
                            }));
                        }
                        return;
                    };
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err(error) => {
                    let error = to_propose_error(group, error);
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

/// Maps a Raft write error to what a caller can act on.
pub fn to_propose_error(
    group: GroupId,
    error: openraft::error::RaftError<
        super::TypeConfig,
        openraft::error::ClientWriteError<super::TypeConfig>,
    >,
) -> ProposeError {
    use openraft::error::{ClientWriteError, RaftError};
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            ProposeError::NotLeader {
                group,
                leader: forward.leader_id,
            }
        }
        other => ProposeError::Unavailable {
            group,
            reason: other.to_string(),
        },
    }
}
