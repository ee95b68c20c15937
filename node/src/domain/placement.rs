//! Where shard replicas should live: pure decisions over the cluster's nodes and the current
//! placement, made by the meta leader's placement loop.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A node's id.
pub type NodeId = u64;

/// Lifecycle of a node in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Serving and eligible for replicas.
    Active,
    /// Being drained by `cluster remove`: replicas and leaderships move away.
    Draining,
    /// Gone; its id is never reused.
    Removed,
}

impl NodeState {
    /// The name operators see.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draining => "DRAINING",
            Self::Removed => "REMOVED",
        }
    }
}

/// A node as the meta group knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Never reused.
    pub node_id: NodeId,
    /// Where clients reach it.
    pub client_addr: String,
    /// Where peers reach it.
    pub peer_addr: String,
    /// Its lifecycle state.
    pub state: NodeState,
}

/// Where one shard's replicas are and should be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    /// The shard (0-based).
    pub shard: u32,
    /// The replicas it should have (the shard's voters once reconciled).
    pub target: BTreeSet<NodeId>,
    /// The node that should lead it.
    pub preferred_leader: Option<NodeId>,
    /// Its voters as last reported by its leader.
    pub voters: BTreeSet<NodeId>,
    /// Its leader as last reported.
    pub leader: Option<NodeId>,
    /// Its Raft term as last reported.
    pub term: u64,
    /// Largest follower lag, in entries, as last reported.
    pub max_lag: u64,
}

impl ShardPlacement {
    /// Whether replicas are still moving toward the target.
    pub fn moving(&self) -> bool {
        self.voters != self.target
    }
}

/// Replicas per shard in a cluster of `live` eligible nodes.
pub fn replication_factor(live: usize) -> usize {
    live.min(3)
}

/// Computes new targets for shards, given the nodes eligible for replicas (`live`, active and
/// answering) and every node that may still serve its replicas (`serving`: live plus nodes
/// draining). Returns the shards whose target or preferred leader changes.
///
/// Rules, in order: a shard never loses a replica before its target is otherwise complete;
/// targets drop nodes that are not serving; missing replicas go to the least-loaded live node;
/// then, at most one move per call, a replica moves from the most- to the least-loaded node
/// when their counts differ by more than one; only shards not already moving change.
/// Leaders are preferred on the target member leading the fewest shards.
pub fn plan(
    placements: &[ShardPlacement],
    live: &BTreeSet<NodeId>,
    serving: &BTreeSet<NodeId>,
) -> Vec<ShardPlacement> {
    if live.is_empty() {
        return Vec::new();
    }
    let factor = replication_factor(live.len());
    let mut load: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();
    for placement in placements {
        for node in &placement.target {
            if let Some(count) = load.get_mut(node) {
                *count += 1;
            }
        }
    }
    let mut changed = Vec::new();
    let mut moved = false;
    for placement in placements {
        let mut next = placement.clone();
        if !placement.moving() || placement.target.iter().any(|n| !serving.contains(n)) {
            // Replace members that are gone or no longer eligible.
            let keep: BTreeSet<NodeId> = next
                .target
                .iter()
                .filter(|n| live.contains(n))
                .copied()
                .collect();
            let dropped: Vec<NodeId> = next.target.difference(&keep).copied().collect();
            let mut target = keep;
            while target.len() < factor {
                let Some(node) = least_loaded(&load, &target) else {
                    break;
                };
                target.insert(node);
                *load.get_mut(&node).expect("live node") += 1;
            }
            // Keep a draining but serving member until replacements exist.
            for node in dropped {
                if target.len() < factor && serving.contains(&node) {
                    target.insert(node);
                }
            }
            next.target = target;
        }
        if !moved
            && !placement.moving()
            && next.target == placement.target
            && next.target.len() == factor
        {
            // Balance: move one replica from the most loaded member to the least loaded node.
            let most = next
                .target
                .iter()
                .filter_map(|n| load.get(n).map(|c| (*c, *n)))
                .max();
            let least = least_loaded(&load, &next.target);
            if let (Some((most_count, most_node)), Some(least_node)) = (most, least)
                && most_count > load[&least_node] + 1
            {
                next.target.remove(&most_node);
                next.target.insert(least_node);
                *load.get_mut(&most_node).expect("live node") -= 1;
                *load.get_mut(&least_node).expect("live node") += 1;
                moved = true;
            }
        }
        if next.target != placement.target {
            changed.push(next);
        }
    }
    // Preferred leaders: spread over target members, fewest leaderships first.
    let mut leads: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();
    let mut all: Vec<ShardPlacement> = placements
        .iter()
        .map(|p| {
            changed
                .iter()
                .find(|c| c.shard == p.shard)
                .cloned()
                .unwrap_or_else(|| p.clone())
        })
        .collect();
    for placement in &mut all {
        let keep = placement
            .preferred_leader
            .filter(|l| placement.target.contains(l) && live.contains(l))
            .filter(|l| {
                leads.get(l).copied().unwrap_or(usize::MAX)
                    < placements.len().div_ceil(live.len()).max(1)
            });
        let leader = keep.or_else(|| {
            placement
                .target
                .iter()
                .filter(|n| live.contains(n))
                .min_by_key(|n| (leads.get(n).copied().unwrap_or(usize::MAX), **n))
                .copied()
        });
        if let Some(leader) = leader {
            *leads.entry(leader).or_default() += 1;
        }
        if placement.preferred_leader != leader {
            placement.preferred_leader = leader;
            if let Some(existing) = changed.iter_mut().find(|c| c.shard == placement.shard) {
                existing.preferred_leader = leader;
            } else {
                changed.push(placement.clone());
            }
        }
    }
    changed.sort_by_key(|p| p.shard);
    changed
}

fn least_loaded(load: &BTreeMap<NodeId, usize>, exclude: &BTreeSet<NodeId>) -> Option<NodeId> {
    load.iter()
        .filter(|(node, _)| !exclude.contains(node))
        .min_by_key(|(node, count)| (**count, **node))
        .map(|(node, _)| *node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn placements(targets: &[&[NodeId]]) -> Vec<ShardPlacement> {
        targets
            .iter()
            .enumerate()
            .map(|(shard, nodes)| {
                let set: BTreeSet<NodeId> = nodes.iter().copied().collect();
                ShardPlacement {
                    shard: shard as u32,
                    target: set.clone(),
                    voters: set,
                    ..Default::default()
                }
            })
            .collect()
    }

    /// Applies plans as if every move completed, until nothing changes (bounded).
    fn settle(mut current: Vec<ShardPlacement>, live: &BTreeSet<NodeId>) -> Vec<ShardPlacement> {
        for _ in 0..200 {
            let changed = plan(&current, live, live);
            if changed.is_empty() {
                return current;
            }
            for change in changed {
                let slot = &mut current[change.shard as usize];
                *slot = change.clone();
                slot.voters = change.target;
            }
        }
        panic!("placement did not settle");
    }

    /// A node joining a one-node cluster gets replicas until every shard has two.
    #[test]
    fn second_node_gets_replicas() {
        let live: BTreeSet<NodeId> = [1, 2].into();
        let settled = settle(placements(&[&[1], &[1], &[1], &[1]]), &live);
        assert!(settled.iter().all(|p| p.target == live));
    }

    /// With a fourth node, replicas spread so no node holds more than one above another.
    #[test]
    fn fourth_node_balances() {
        let live: BTreeSet<NodeId> = [1, 2, 3, 4].into();
        let all: &[NodeId] = &[1, 2, 3];
        let settled = settle(placements(&[all; 8]), &live);
        let mut counts: BTreeMap<NodeId, usize> = BTreeMap::new();
        for p in &settled {
            assert_eq!(p.target.len(), 3);
            for n in &p.target {
                *counts.entry(*n).or_default() += 1;
            }
        }
        let max = counts.values().max().unwrap();
        let min = counts.values().min().unwrap();
        assert!(max - min <= 1, "{counts:?}");
        assert_eq!(counts.len(), 4);
    }

    /// A draining node keeps serving its replicas until replacements exist, then none
    /// remain on it.
    #[test]
    fn draining_node_is_emptied() {
        let all: &[NodeId] = &[1, 2, 3];
        let live: BTreeSet<NodeId> = [1, 2, 4].into();
        let settled = settle(placements(&[all; 4]), &live);
        assert!(
            settled
                .iter()
                .all(|p| !p.target.contains(&3) && p.target.len() == 3)
        );
    }

    proptest! {
        /// Whatever the starting placement, settling gives every shard min(3, live) replicas
        /// on live nodes, balanced within one, with a preferred leader among them.
        #[test]
        fn settles_balanced(shards in 1usize..12, nodes in 1u64..6, seed in any::<u64>()) {
            let live: BTreeSet<NodeId> = (1..=nodes).collect();
            let start: Vec<ShardPlacement> = (0..shards).map(|s| {
                let node = (seed.wrapping_add(s as u64) % nodes) + 1;
                let set: BTreeSet<NodeId> = [node].into();
                ShardPlacement { shard: s as u32, target: set.clone(), voters: set, ..Default::default() }
            }).collect();
            let settled = settle(start, &live);
            let mut counts: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();
            for p in &settled {
                prop_assert_eq!(p.target.len(), replication_factor(live.len()));
                prop_assert!(p.target.is_subset(&live));
                prop_assert!(p.preferred_leader.is_some_and(|l| p.target.contains(&l)));
                for n in &p.target { *counts.get_mut(n).unwrap() += 1; }
            }
            let max = counts.values().max().unwrap();
            let min = counts.values().min().unwrap();
            prop_assert!(max - min <= 1, "{:?}", counts);
        }
    }
}
