//! Raft: the type configuration shared by every group, the commands they replicate, and the
//! storage and network they run on.
//!
//! # Layout
//! - [`campaign_state`]: applying campaign commands: versions and runs (meta), send intents,
//!   caps, run parts and KPIs (shards).
//! - [`command`]: every replicated command, with what applying it changes.
//! - [`log_store`]: the Raft log in fjall, with group commit across groups.
//! - [`state_machine`]: applies commands of the meta group and of shard groups; snapshots.
//! - [`network`]: the peer transport between nodes, per group.
//! - [`proposer`]: gathers concurrent proposals of a group into one Raft entry.

pub mod campaign_state;
pub mod command;
pub mod log_store;
pub mod network;
pub mod proposer;
pub mod state_machine;

pub use crate::storage::keys::GroupId;
pub use command::{Command, CommandResponse};

openraft::declare_raft_types!(
    /// Types of every Herald Raft group (meta and shards share them).
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// A node's id in the cluster; never reused.
pub type NodeId = u64;

/// A Raft group of this node.
pub type HeraldRaft = openraft::Raft<TypeConfig, state_machine::StateMachine>;

/// The meta group: projects, settings, event types (and later membership and the shard map).
pub const META_GROUP: GroupId = 0;

/// Group id of shard `index` (0-based).
pub fn shard_group(index: u32) -> GroupId {
    index + 1
}
