//! What `herald cluster status --json` says, read defensively: the one place that knows its
//! shape. It accepts the documented shape (`meta: {leader, voters, term}`, node states
//! `voter|learner|down|removed`) and the shape of the `herald.v1.ClusterStatus` message
//! (`meta_leader`, `meta_voters`, states `ACTIVE|DRAINING|DOWN|REMOVED`), numbers written as
//! JSON numbers or as strings, and a leader of 0 or null meaning "none".

use anyhow::Context;
use serde_json::Value;

/// A node's state as far as the tests care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// A member that answers (voter, learner, active).
    Up,
    /// A member whose replicas are being moved away before removal.
    Draining,
    /// A member that has not answered heartbeats recently.
    Down,
    /// No longer a member.
    Removed,
}

impl NodeState {
    fn parse(text: &str) -> Self {
        let text = text.to_ascii_lowercase();
        if text.contains("removed") {
            NodeState::Removed
        } else if text.contains("down") {
            NodeState::Down
        } else if text.contains("drain") {
            NodeState::Draining
        } else {
            NodeState::Up
        }
    }
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// Its node id.
    pub id: u64,
    /// The address clients use.
    pub client_addr: String,
    /// The address peers dial (the proxy's, in these tests).
    pub peer_addr: String,
    /// Its state.
    pub state: NodeState,
    /// Shards it holds a replica of, as the node entry lists them.
    pub replicas: Vec<u32>,
    /// Shards it leads.
    pub leads: Vec<u32>,
}

/// One shard group.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardView {
    /// The shard number.
    pub shard: u32,
    /// Voting replicas (node ids).
    pub voters: Vec<u64>,
    /// Non-voting replicas catching up.
    pub learners: Vec<u64>,
    /// The leader's node id, when there is one.
    pub leader: Option<u64>,
    /// The Raft term.
    pub term: u64,
    /// Whether replicas are moving toward a new placement.
    pub moving: bool,
}

/// The whole status.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    /// Every node the cluster knows, removed ones included when listed.
    pub nodes: Vec<NodeView>,
    /// Every shard group.
    pub shards: Vec<ShardView>,
    /// The meta group's leader.
    pub meta_leader: Option<u64>,
    /// The meta group's voters.
    pub meta_voters: Vec<u64>,
    /// The meta group's term.
    pub meta_term: u64,
}

/// Parses the output of `herald cluster status --json`.
pub fn parse_status(text: &str) -> anyhow::Result<ClusterView> {
    let value: Value = serde_json::from_str(text.trim())
        .with_context(|| format!("cluster status is not JSON: {}", excerpt(text)))?;
    let nodes = value
        .get("nodes")
        .and_then(Value::as_array)
        .with_context(|| format!("cluster status has no nodes array: {}", excerpt(text)))?
        .iter()
        .map(parse_node)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let shards = value
        .get("shards")
        .and_then(Value::as_array)
        .map(|shards| shards.iter().map(parse_shard).collect())
        .transpose()?
        .unwrap_or_default();
    let meta = value.get("meta");
    let meta_field = |nested: &str, flat: &str| {
        meta.and_then(|meta| meta.get(nested))
            .or_else(|| value.get(flat))
    };
    Ok(ClusterView {
        nodes,
        shards,
        meta_leader: meta_field("leader", "meta_leader")
            .and_then(number)
            .filter(|&id| id != 0),
        meta_voters: meta_field("voters", "meta_voters")
            .map(numbers)
            .unwrap_or_default(),
        meta_term: meta_field("term", "meta_term")
            .and_then(number)
            .unwrap_or_default(),
    })
}

fn parse_node(node: &Value) -> anyhow::Result<NodeView> {
    let id = field(node, &["node_id", "id"])
        .and_then(number)
        .with_context(|| format!("a node without an id: {node}"))?;
    Ok(NodeView {
        id,
        client_addr: text_field(node, &["client_addr", "client_address", "addr"]),
        peer_addr: text_field(node, &["peer_addr", "peer_address"]),
        state: NodeState::parse(&text_field(node, &["state", "status"])),
        replicas: field(node, &["replicas"])
            .map(numbers)
            .unwrap_or_default()
            .into_iter()
            .map(|shard| shard as u32)
            .collect(),
        leads: field(node, &["leads", "leader_of"])
            .map(numbers)
            .unwrap_or_default()
            .into_iter()
            .map(|shard| shard as u32)
            .collect(),
    })
}

fn parse_shard(shard: &Value) -> anyhow::Result<ShardView> {
    Ok(ShardView {
        shard: field(shard, &["shard", "id", "shard_id"])
            .and_then(number)
            .with_context(|| format!("a shard without a number: {shard}"))? as u32,
        voters: field(shard, &["voters", "replicas"])
            .map(numbers)
            .unwrap_or_default(),
        learners: field(shard, &["learners"]).map(numbers).unwrap_or_default(),
        leader: field(shard, &["leader", "leader_id"])
            .and_then(number)
            .filter(|&id| id != 0),
        term: field(shard, &["term"]).and_then(number).unwrap_or_default(),
        moving: field(shard, &["moving"])
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

fn field<'a>(object: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|name| object.get(*name))
}

fn text_field(object: &Value, names: &[&str]) -> String {
    field(object, names)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A number written as a JSON number or a string (proto3 JSON writes u64 as strings).
fn number(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|text| text.trim().parse().ok()))
}

fn numbers(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(number).collect())
        .unwrap_or_default()
}

fn excerpt(text: &str) -> String {
    text.chars().take(400).collect()
}

impl ClusterView {
    /// The node with id `id`.
    pub fn node(&self, id: u64) -> Option<&NodeView> {
        self.nodes.iter().find(|node| node.id == id)
    }

    /// The node serving clients at `client_addr`.
    pub fn node_with_client_addr(&self, client_addr: &str) -> Option<&NodeView> {
        self.nodes
            .iter()
            .find(|node| node.client_addr == client_addr)
    }

    /// Shards `node` holds a replica of: the shard entries' voters and learners, plus the node
    /// entry's own list.
    pub fn replicas_of(&self, node: u64) -> Vec<u32> {
        let mut shards: Vec<u32> = self
            .shards
            .iter()
            .filter(|shard| shard.voters.contains(&node) || shard.learners.contains(&node))
            .map(|shard| shard.shard)
            .chain(
                self.node(node)
                    .map(|view| view.replicas.clone())
                    .unwrap_or_default(),
            )
            .collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    /// Shards `node` leads.
    pub fn leads_of(&self, node: u64) -> Vec<u32> {
        self.shards
            .iter()
            .filter(|shard| shard.leader == Some(node))
            .map(|shard| shard.shard)
            .collect()
    }

    /// Why the cluster is not yet settled with exactly `members` as its nodes, or `Ok` when it
    /// is: every member listed and up, every shard led with min(3, members) voters all among
    /// the members and nothing moving, and a meta leader with enough voters among the members.
    pub fn settled(&self, members: &[u64]) -> Result<(), String> {
        for &id in members {
            match self.node(id) {
                None => return Err(format!("node {id} is not listed")),
                Some(node) if node.state != NodeState::Up => {
                    return Err(format!("node {id} is {:?}", node.state));
                }
                Some(_) => {}
            }
        }
        let replication = members.len().min(3);
        if self.shards.is_empty() {
            return Err("no shards listed".to_string());
        }
        for shard in &self.shards {
            if shard.leader.is_none() {
                return Err(format!("shard {} has no leader", shard.shard));
            }
            if shard.moving || !shard.learners.is_empty() {
                return Err(format!("shard {} is moving", shard.shard));
            }
            if shard.voters.len() != replication
                || shard.voters.iter().any(|id| !members.contains(id))
            {
                return Err(format!(
                    "shard {} has voters {:?}, expected {replication} among {members:?}",
                    shard.shard, shard.voters
                ));
            }
        }
        if self.meta_leader.is_none() {
            return Err("the meta group has no leader".to_string());
        }
        if self.meta_voters.len() < replication
            || self.meta_voters.iter().any(|id| !members.contains(id))
        {
            return Err(format!(
                "meta voters {:?}, expected at least {replication} among {members:?}",
                self.meta_voters
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = r#"{
        "nodes": [
            {"node_id": 1, "client_addr": "127.0.0.1:1001", "peer_addr": "127.0.0.1:2001",
             "state": "voter", "replicas": [0, 1], "leads": [0]},
            {"node_id": 2, "client_addr": "127.0.0.1:1002", "peer_addr": "127.0.0.1:2002",
             "state": "learner", "replicas": [0, 1], "leads": [1]},
            {"node_id": 3, "client_addr": "127.0.0.1:1003", "peer_addr": "127.0.0.1:2003",
             "state": "down", "replicas": [], "leads": []}
        ],
        "shards": [
            {"shard": 0, "voters": [1, 2], "learners": [], "leader": 1, "term": 3},
            {"shard": 1, "voters": [1, 2], "learners": [], "leader": 2, "term": 4}
        ],
        "meta": {"voters": [1, 2], "leader": 1, "term": 2}
    }"#;

    const PROTO_SHAPED: &str = r#"{
        "nodes": [
            {"node_id": "1", "client_addr": "127.0.0.1:1001", "peer_addr": "p1",
             "state": "ACTIVE", "meta_role": "voter", "replicas": [0], "leads": [0]},
            {"node_id": "4", "client_addr": "127.0.0.1:1004", "peer_addr": "p4",
             "state": "REMOVED", "meta_role": ""}
        ],
        "shards": [
            {"shard": 0, "voters": ["1"], "target": ["1"], "leader": "0", "term": "7",
             "moving": true, "max_lag": "0"}
        ],
        "meta_leader": "1",
        "meta_term": "5",
        "meta_voters": ["1"]
    }"#;

    /// The documented shape parses into nodes, shards and the meta group.
    #[test]
    fn parses_the_documented_shape() {
        let view = parse_status(DOCUMENTED).unwrap();
        assert_eq!(view.nodes.len(), 3);
        assert_eq!(view.node(3).unwrap().state, NodeState::Down);
        assert_eq!(view.node(2).unwrap().state, NodeState::Up);
        assert_eq!(view.meta_leader, Some(1));
        assert_eq!(view.meta_voters, vec![1, 2]);
        assert_eq!(view.shards[1].leader, Some(2));
        assert_eq!(view.leads_of(2), vec![1]);
        assert_eq!(view.replicas_of(1), vec![0, 1]);
        assert_eq!(view.node_with_client_addr("127.0.0.1:1002").unwrap().id, 2);
    }

    /// The shape of the ClusterStatus message parses too: string numbers, flat meta fields,
    /// upper-case states, a leader of 0 meaning none.
    #[test]
    fn parses_the_proto_shape() {
        let view = parse_status(PROTO_SHAPED).unwrap();
        assert_eq!(view.node(4).unwrap().state, NodeState::Removed);
        assert_eq!(view.node(1).unwrap().state, NodeState::Up);
        assert_eq!(view.meta_leader, Some(1));
        assert_eq!(view.meta_term, 5);
        assert_eq!(view.shards[0].leader, None);
        assert_eq!(view.shards[0].term, 7);
        assert!(view.shards[0].moving);
    }

    /// Settled means: members up, shards led and fully replicated among members, meta led.
    #[test]
    fn settled_names_what_is_missing() {
        let view = parse_status(DOCUMENTED).unwrap();
        assert_eq!(view.settled(&[1, 2]), Ok(()));
        assert!(view.settled(&[1, 2, 3]).unwrap_err().contains("node 3"));
        let moving = parse_status(PROTO_SHAPED).unwrap();
        assert!(moving.settled(&[1]).unwrap_err().contains("shard 0"));
    }

    /// Output that is not a status is an error quoting it, not an empty cluster.
    #[test]
    fn rejects_other_output() {
        assert!(parse_status("error: unknown command").is_err());
        assert!(
            parse_status("{}")
                .unwrap_err()
                .to_string()
                .contains("nodes")
        );
    }
}
