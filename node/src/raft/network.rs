//! The peer transport of every Raft group, shared through openraft-multi's `GroupRouter`.
//!
//! A single-node cluster never sends a Raft RPC: its groups have one member. Nodes joining
//! each other (the cluster issue) replace [`PeerRouter`]'s answers with calls over the
//! internal peer service; until then a call to another node is reported unreachable, which
//! openraft treats as a node that is down.

use std::future::Future;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};
use openraft_multi::{GroupNetworkAdapter, GroupNetworkFactory, GroupRouter};

use super::{GroupId, NodeId, TypeConfig};

/// Routes Raft RPCs of every group to peers.
#[derive(Clone, Default)]
pub struct PeerRouter;

fn no_peer_transport(target: NodeId) -> Unreachable<TypeConfig> {
    Unreachable::new(&std::io::Error::other(format!(
        "node {target} is not reachable: this node has no peer transport (single-node cluster)"
    )))
}

impl GroupRouter<TypeConfig, GroupId> for PeerRouter {
    type SnapshotData = std::fs::File;

    async fn append_entries(
        &self,
        target: NodeId,
        _group: GroupId,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(no_peer_transport(target)))
    }

    async fn vote(
        &self,
        target: NodeId,
        _group: GroupId,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(no_peer_transport(target)))
    }

    async fn pre_vote(
        &self,
        target: NodeId,
        _group: GroupId,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(no_peer_transport(target)))
    }

    async fn full_snapshot(
        &self,
        target: NodeId,
        _group: GroupId,
        _vote: VoteOf<TypeConfig>,
        _snapshot: SnapshotOf<TypeConfig, std::fs::File>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(no_peer_transport(target)))
    }
}

/// Network factory of one group.
pub type GroupNetwork = GroupNetworkFactory<PeerRouter, GroupId>;

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = GroupNetworkAdapter<TypeConfig, GroupId, PeerRouter>;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Self::Network {
        GroupNetworkAdapter::new(self.factory.clone(), target, self.group_id)
    }
}
