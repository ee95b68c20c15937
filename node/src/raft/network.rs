//! The peer transport of every Raft group: openraft-multi's `GroupRouter` over the internal
//! gRPC peer service. One cached channel per peer address serves every group; each call
//! carries the group id and the cluster secret.

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use herald_proto::internal::v1 as peer;
use herald_proto::internal::v1::peer_client::PeerClient;
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};
use openraft_multi::{GroupNetworkAdapter, GroupNetworkFactory, GroupRouter};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::{GroupId, NodeId, TypeConfig};
use crate::storage::codec;

/// Metadata key of the cluster secret on every peer call.
pub const SECRET_HEADER: &str = "x-herald-cluster-secret";

/// Size of one snapshot chunk on the wire.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Addresses and cached channels of the peers, shared by every group of the node.
#[derive(Clone)]
pub struct PeerRouter {
    inner: Arc<PeerPool>,
}

struct PeerPool {
    local: NodeId,
    secret: String,
    addrs: RwLock<HashMap<NodeId, String>>,
    channels: Mutex<HashMap<String, Channel>>,
}

/// Why a peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The peer could not be reached or did not answer in time.
    #[error("peer {node} unreachable: {reason}")]
    Unreachable {
        /// The peer.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The peer answered with an error.
    #[error("peer {node}: {reason}")]
    Remote {
        /// The peer.
        node: NodeId,
        /// Its error.
        reason: String,
    },
}

impl PeerRouter {
    /// The router of node `local`, signing calls with `secret`.
    pub fn new(local: NodeId, secret: String) -> Self {
        Self {
            inner: Arc::new(PeerPool {
                local,
                secret,
                addrs: RwLock::new(HashMap::new()),
                channels: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Records where `node`'s peer service is.
    pub fn remember(&self, node: NodeId, addr: &str) {
        let mut addrs = self.inner.addrs.write().expect("lock");
        if addrs.get(&node).map(String::as_str) != Some(addr) {
            addrs.insert(node, addr.to_string());
        }
    }

    /// Where `node`'s peer service is, when known.
    pub fn addr_of(&self, node: NodeId) -> Option<String> {
        self.inner.addrs.read().expect("lock").get(&node).cloned()
    }

    /// A client for the peer at `addr`, over the cached channel.
    pub fn client_for_addr(&self, addr: &str) -> Result<PeerClient<Channel>, String> {
        let mut channels = self.inner.channels.lock().expect("lock");
        let channel = match channels.get(addr) {
            Some(channel) => channel.clone(),
            None => {
                let channel = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| e.to_string())?
                    .connect_timeout(Duration::from_secs(2))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .connect_lazy();
                channels.insert(addr.to_string(), channel.clone());
                channel
            }
        };
        Ok(PeerClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    fn client(&self, node: NodeId) -> Result<PeerClient<Channel>, PeerError> {
        // The network factory must never dial the local node.
        if node == self.inner.local {
            return Err(PeerError::Unreachable {
                node,
                reason: "refusing to dial the local node".into(),
            });
        }
        let addr = self.addr_of(node).ok_or_else(|| PeerError::Unreachable {
            node,
            reason: "address unknown".into(),
        })?;
        self.client_for_addr(&addr)
            .map_err(|reason| PeerError::Unreachable { node, reason })
    }

    /// Wraps a message with the secret and a deadline.
    pub fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        if let Ok(value) = MetadataValue::try_from(self.inner.secret.as_str()) {
            request.metadata_mut().insert(SECRET_HEADER, value);
        }
        request
    }

    /// Sends a forwarded operation to `node`, answering its encoded reply.
    pub async fn forward(
        &self,
        node: NodeId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, PeerError> {
        let mut client = self.client(node)?;
        let reply = client
            .forward(self.request(peer::ForwardRequest { payload }, timeout))
            .await
            .map_err(|status| PeerError::Unreachable {
                node,
                reason: status.message().to_string(),
            })?;
        Ok(reply.into_inner().payload)
    }

    async fn raft_call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        group: GroupId,
        kind: RaftCall,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let unreachable = |reason: String| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(reason)))
        };
        let mut client = self
            .client(target)
            .map_err(|e| unreachable(e.to_string()))?;
        let message = peer::RaftRequest {
            group,
            payload: codec::encode(request),
        };
        let request = self.request(message, option.hard_ttl());
        let reply = match kind {
            RaftCall::Append => client.append_entries(request).await,
            RaftCall::Vote => client.vote(request).await,
            RaftCall::PreVote => client.pre_vote(request).await,
            RaftCall::TransferLeader => client.transfer_leader(request).await,
        };
        let reply = reply.map_err(|status| {
            metrics::counter!(crate::metrics::PEER_ERRORS, "kind" => kind.name()).increment(1);
            unreachable(format!("{}: {}", status.code(), status.message()))
        })?;
        decode_reply(reply.into_inner())
    }
}

/// Decodes a Raft reply, turning a remote error into a network error.
fn decode_reply<Resp: DeserializeOwned>(
    reply: peer::RaftReply,
) -> Result<Resp, RPCError<TypeConfig>> {
    if !reply.error.is_empty() {
        return Err(RPCError::Network(NetworkError::new(
            &std::io::Error::other(reply.error),
        )));
    }
    codec::decode(&reply.payload)
        .map_err(|e| RPCError::Network(NetworkError::new(&std::io::Error::other(e.to_string()))))
}

#[derive(Clone, Copy)]
enum RaftCall {
    Append,
    Vote,
    PreVote,
    TransferLeader,
}

impl RaftCall {
    fn name(self) -> &'static str {
        match self {
            Self::Append => "append_entries",
            Self::Vote => "vote",
            Self::PreVote => "pre_vote",
            Self::TransferLeader => "transfer_leader",
        }
    }
}

impl GroupRouter<TypeConfig, GroupId> for PeerRouter {
    type SnapshotData = std::fs::File;

    async fn append_entries(
        &self,
        target: NodeId,
        group: GroupId,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(target, group, RaftCall::Append, &rpc, &option)
            .await
    }

    async fn vote(
        &self,
        target: NodeId,
        group: GroupId,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(target, group, RaftCall::Vote, &rpc, &option)
            .await
    }

    async fn pre_vote(
        &self,
        target: NodeId,
        group: GroupId,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(target, group, RaftCall::PreVote, &rpc, &option)
            .await
    }

    async fn transfer_leader(
        &self,
        target: NodeId,
        group: GroupId,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(target, group, RaftCall::TransferLeader, &req, &option)
            .await
    }

    async fn full_snapshot(
        &self,
        target: NodeId,
        group: GroupId,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, std::fs::File>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let unreachable = |reason: String| {
            StreamingError::Unreachable(Unreachable::new(&std::io::Error::other(reason)))
        };
        let mut client = self
            .client(target)
            .map_err(|e| unreachable(e.to_string()))?;
        // Chunks are read from the file as the stream is consumed: the snapshot is never held
        // in memory whole.
        let (sender, receiver) = tokio::sync::mpsc::channel::<peer::SnapshotChunk>(4);
        let mut file = snapshot.snapshot;
        let first = peer::SnapshotChunk {
            group,
            vote: codec::encode(&vote),
            meta: codec::encode(&snapshot.meta),
            data: Vec::new(),
        };
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if sender.blocking_send(first).is_err() {
                return Ok(());
            }
            loop {
                let mut data = vec![0u8; SNAPSHOT_CHUNK_BYTES];
                let read = file.read(&mut data)?;
                if read == 0 {
                    return Ok(());
                }
                data.truncate(read);
                let chunk = peer::SnapshotChunk {
                    group,
                    vote: Vec::new(),
                    meta: Vec::new(),
                    data,
                };
                if sender.blocking_send(chunk).is_err() {
                    return Ok(());
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
        let call = client
            .install_snapshot(self.request(stream, option.hard_ttl().max(Duration::from_secs(60))));
        let reply = tokio::select! {
            reply = call => reply,
            closed = cancel => {
                reader.abort();
                return Err(StreamingError::Closed(closed));
            }
        };
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(unreachable(format!("reading snapshot file: {error}"))),
            Err(error) => return Err(unreachable(error.to_string())),
        }
        let reply = reply.map_err(|status| {
            metrics::counter!(crate::metrics::PEER_ERRORS, "kind" => "install_snapshot")
                .increment(1);
            unreachable(format!("{}: {}", status.code(), status.message()))
        })?;
        let reply = reply.into_inner();
        if !reply.error.is_empty() {
            return Err(StreamingError::Network(NetworkError::new(
                &std::io::Error::other(reply.error),
            )));
        }
        codec::decode(&reply.payload).map_err(|e| {
            StreamingError::Network(NetworkError::new(&std::io::Error::other(e.to_string())))
        })
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(200))))
    }
}

/// Network factory of one group.
pub type GroupNetwork = GroupNetworkFactory<PeerRouter, GroupId>;

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = GroupNetworkAdapter<TypeConfig, GroupId, PeerRouter>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        self.factory.remember(target, &node.addr);
        GroupNetworkAdapter::new(self.factory.clone(), target, self.group_id)
    }
}
