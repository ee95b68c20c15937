//! `herald.internal.v1.Peer`: Raft messages of every group, forwarded operations and joins,
//! for other nodes only. Every call must carry the cluster secret.

use std::io::Write;

use herald_proto::internal::v1 as peer;
use herald_proto::internal::v1::peer_server::Peer;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::ClusterHandle;
use crate::cluster::forward::ForwardOp;
use crate::raft::network::SECRET_HEADER;
use crate::storage::codec;

/// The peer service of a node.
pub struct PeerApi {
    cluster: ClusterHandle,
}

impl PeerApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

/// Checks the cluster secret of a peer call; a node without a secret refuses every call.
pub fn check_secret<T>(request: &Request<T>, secret: &str) -> Result<(), Status> {
    if secret.is_empty() {
        return Err(Status::permission_denied(
            "this node has no cluster secret, so it accepts no peers",
        ));
    }
    let presented = request
        .metadata()
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Compare in time independent of where the strings differ.
    let matches = presented.len() == secret.len()
        && presented
            .bytes()
            .zip(secret.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if matches {
        Ok(())
    } else {
        Err(Status::unauthenticated("wrong cluster secret"))
    }
}

fn reply<T: serde::Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
) -> Response<peer::RaftReply> {
    Response::new(match result {
        Ok(value) => peer::RaftReply {
            payload: codec::encode(&value),
            error: String::new(),
        },
        Err(error) => peer::RaftReply {
            payload: Vec::new(),
            error: error.to_string(),
        },
    })
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    codec::decode(bytes).map_err(|e| Status::invalid_argument(format!("undecodable payload: {e}")))
}

impl PeerApi {
    async fn group(
        &self,
        request: &Request<peer::RaftRequest>,
    ) -> Result<std::sync::Arc<crate::cluster::Group>, Status> {
        let cluster = self.cluster.get()?;
        check_secret(request, cluster.secret())?;
        let group = request.get_ref().group;
        if !cluster.is_known_group(group) {
            return Err(Status::invalid_argument(format!(
                "unknown raft group {group}"
            )));
        }
        cluster
            .ensure_group(group)
            .await
            .map_err(super::status::to_status)
    }
}

#[tonic::async_trait]
impl Peer for PeerApi {
    async fn append_entries(
        &self,
        request: Request<peer::RaftRequest>,
    ) -> Result<Response<peer::RaftReply>, Status> {
        let group = self.group(&request).await?;
        let rpc = decode(&request.get_ref().payload)?;
        Ok(reply(group.raft.append_entries(rpc).await))
    }

    async fn vote(
        &self,
        request: Request<peer::RaftRequest>,
    ) -> Result<Response<peer::RaftReply>, Status> {
        let group = self.group(&request).await?;
        let rpc = decode(&request.get_ref().payload)?;
        Ok(reply(group.raft.vote(rpc).await))
    }

    async fn pre_vote(
        &self,
        request: Request<peer::RaftRequest>,
    ) -> Result<Response<peer::RaftReply>, Status> {
        let group = self.group(&request).await?;
        let rpc = decode(&request.get_ref().payload)?;
        Ok(reply(group.raft.pre_vote(rpc).await))
    }

    async fn transfer_leader(
        &self,
        request: Request<peer::RaftRequest>,
    ) -> Result<Response<peer::RaftReply>, Status> {
        let group = self.group(&request).await?;
        let rpc = decode(&request.get_ref().payload)?;
        Ok(reply(group.raft.handle_transfer_leader(rpc).await))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<peer::SnapshotChunk>>,
    ) -> Result<Response<peer::RaftReply>, Status> {
        let cluster = self.cluster.get()?;
        check_secret(&request, cluster.secret())?;
        let mut chunks = request.into_inner();
        let first = chunks
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        if !cluster.is_known_group(first.group) {
            return Err(Status::invalid_argument(format!(
                "unknown raft group {}",
                first.group
            )));
        }
        let vote = decode(&first.vote)?;
        let meta = decode(&first.meta)?;
        // Chunks go straight to a file: a large shard is never held in memory.
        let mut file = tempfile::NamedTempFile::new_in(cluster.snapshot_dir())
            .map_err(|e| Status::internal(format!("snapshot file: {e}")))?;
        file.write_all(&first.data)
            .map_err(|e| Status::internal(e.to_string()))?;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            file.write_all(&chunk.data)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        file.flush().map_err(|e| Status::internal(e.to_string()))?;
        let received = file.reopen().map_err(|e| Status::internal(e.to_string()))?;
        let group = cluster
            .ensure_group(first.group)
            .await
            .map_err(super::status::to_status)?;
        let snapshot = openraft::alias::SnapshotOf::<crate::raft::TypeConfig, std::fs::File> {
            meta,
            snapshot: received,
        };
        Ok(reply(
            group.raft.install_full_snapshot(vote, snapshot).await,
        ))
    }

    async fn forward(
        &self,
        request: Request<peer::ForwardRequest>,
    ) -> Result<Response<peer::ForwardReply>, Status> {
        let cluster = self.cluster.get()?;
        check_secret(&request, cluster.secret())?;
        let op: ForwardOp = decode(&request.get_ref().payload)?;
        let outcome = cluster.execute_local(op).await;
        Ok(Response::new(peer::ForwardReply {
            payload: codec::encode(&outcome),
        }))
    }

    async fn join(
        &self,
        request: Request<peer::JoinRequest>,
    ) -> Result<Response<peer::JoinReply>, Status> {
        let cluster = self.cluster.get()?;
        check_secret(&request, cluster.secret())?;
        let request = request.into_inner();
        let node_id = cluster
            .handle_join(request.client_addr, request.peer_addr)
            .await
            .map_err(super::status::to_status)?;
        Ok(Response::new(peer::JoinReply { node_id }))
    }
}
