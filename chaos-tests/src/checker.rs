//! The checks a history must pass. Each returns every violation it finds, labelled with its
//! [`Check`], so that a failing scenario says which property broke and for which key.
//!
//! # The register model
//! Every endpoint is a register: its `address` is the value, and every value is written at most
//! once (`v{n}@example.com` with `n` unique in the run), so a read names the write it saw. A
//! write is *known done* at the earlier of its acknowledgement and the completion of the first
//! read that returned its value (if a read saw it, it took effect before that read ended). A
//! write whose outcome is unknown may take effect at any time after its invocation.
//!
//! A read that began at `t` is **stale** when it returns the value of write `W` although some
//! write `W'` was known done before `t` and was invoked after `W` was known done: `W` then
//! precedes `W'` in every linearization, and `W'` precedes the read, so the read must not see
//! `W`. A read that finds nothing is stale when any write of its key was known done before it
//! began. This is sound (no false alarm for a linearizable system) for any number of writers
//! per key, though not complete: it checks each register alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use crate::history::{Op, OpKind, Outcome, Phase};
use crate::status::{ClusterView, NodeState};

/// Events found in the nodes' stores: (endpoint id, event id).
pub type StoredEvents = BTreeSet<(String, String)>;

/// The properties the chaos tests enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// (a) Every acknowledged endpoint write and event is readable after the faults heal.
    AcknowledgedWritesReadable,
    /// (b) No read returns a value older than a write acknowledged before the read began.
    LinearizableReads,
    /// (c) With 3 nodes, writes are accepted again within 5 s after losing one node.
    WriteAvailability,
    /// (d) After a node is removed or replaced, none of the data it held is lost.
    NoLossAfterMembershipChange,
}

/// One broken property.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Which property.
    pub check: Check,
    /// What was wrong, with the key, values and times.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}: {}", self.check, self.message)
    }
}

fn violation(check: Check, message: String) -> Violation {
    Violation { check, message }
}

/// Seconds with millisecond precision, for messages.
fn secs(us: u64) -> String {
    format!("{:.3}s", us as f64 / 1e6)
}

/// What the history says about one write.
#[derive(Debug)]
struct Write<'a> {
    /// The operation.
    op: &'a Op,
    /// When it was known to have taken effect, if ever.
    done_us: Option<u64>,
}

/// One register's writes, indexed for the stale-read rule.
#[derive(Debug, Default)]
struct Register<'a> {
    /// Writes by value.
    writes: HashMap<&'a str, Write<'a>>,
    /// Known-done writes as (done, invoked, value), sorted by done.
    done: Vec<(u64, u64, &'a str)>,
    /// `latest_invoked[i]`: index into `done` of the largest invocation among `done[..=i]`.
    latest_invoked: Vec<usize>,
}

impl<'a> Register<'a> {
    /// The known-done write with the latest invocation among those done strictly before `t`:
    /// the strongest witness that a read beginning at `t` must see something at least as new.
    fn witness_before(&self, t: u64) -> Option<(u64, u64, &'a str)> {
        let count = self.done.partition_point(|&(done, _, _)| done < t);
        (count > 0).then(|| self.done[self.latest_invoked[count - 1]])
    }

    /// Why `read` (an acknowledged read of this register) is not linearizable, considering only
    /// witnesses known done before `cutoff_us`.
    fn judge(&self, read: &Op, cutoff_us: u64) -> Option<String> {
        let witness = self.witness_before(read.invoked_us.min(cutoff_us));
        let Some(value) = read.value.as_deref() else {
            return witness.map(|(done, _, written)| {
                format!(
                    "read of {} at {} by node {} found nothing, but {written} was written by {}",
                    read.key,
                    secs(read.invoked_us),
                    read.node,
                    secs(done)
                )
            });
        };
        let Some(write) = self.writes.get(value) else {
            return Some(format!(
                "read of {} by node {} returned {value}, which no client wrote",
                read.key, read.node
            ));
        };
        if matches!(write.op.outcome, Outcome::Err { .. }) {
            return Some(format!(
                "read of {} by node {} returned {value}, whose write was refused ({:?})",
                read.key, read.node, write.op.outcome
            ));
        }
        if write.op.invoked_us > read.completed_us {
            return Some(format!(
                "read of {} by node {} returned {value} before it was written",
                read.key, read.node
            ));
        }
        let (witness_done, witness_invoked, witness_value) = witness?;
        let done = write.done_us?;
        (done < witness_invoked).then(|| {
            format!(
                "stale read of {} at {} by node {}: returned {value} (done by {}), but \
                 {witness_value} was written from {} and done by {}",
                read.key,
                secs(read.invoked_us),
                read.node,
                secs(done),
                secs(witness_invoked),
                secs(witness_done)
            )
        })
    }
}

/// Registers by key, from every write and acknowledged read of the history.
fn registers(ops: &[Op]) -> BTreeMap<&str, Register<'_>> {
    let mut registers: BTreeMap<&str, Register<'_>> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.kind == OpKind::Write) {
        let Some(value) = op.value.as_deref() else {
            continue;
        };
        registers.entry(&op.key).or_default().writes.insert(
            value,
            Write {
                op,
                done_us: op.outcome.is_ok().then_some(op.completed_us),
            },
        );
    }
    for read in acknowledged_reads(ops) {
        let Some(value) = read.value.as_deref() else {
            continue;
        };
        // A refused write that a read returns is reported by `judge`; it never counts as done.
        if let Some(write) = registers
            .get_mut(read.key.as_str())
            .and_then(|register| register.writes.get_mut(value))
            .filter(|write| !matches!(write.op.outcome, Outcome::Err { .. }))
        {
            write.done_us = Some(
                write
                    .done_us
                    .map_or(read.completed_us, |done| done.min(read.completed_us)),
            );
        }
    }
    for register in registers.values_mut() {
        register.done = register
            .writes
            .iter()
            .filter_map(|(&value, write)| Some((write.done_us?, write.op.invoked_us, value)))
            .collect();
        register.done.sort_unstable();
        let mut best = 0;
        register.latest_invoked = (0..register.done.len())
            .map(|index| {
                if register.done[index].1 > register.done[best].1 {
                    best = index;
                }
                best
            })
            .collect();
    }
    registers
}

fn acknowledged_reads(ops: &[Op]) -> impl Iterator<Item = &Op> {
    ops.iter()
        .filter(|op| op.kind == OpKind::Read && op.outcome.is_ok())
}

/// (b) No acknowledged read, during the faults or after, returns a value older than a write
/// known done before the read began, a value nobody wrote, or nothing after a write was done.
pub fn linearizable_reads(ops: &[Op]) -> Vec<Violation> {
    let registers = registers(ops);
    let empty = Register::default();
    acknowledged_reads(ops)
        .filter_map(|read| {
            registers
                .get(read.key.as_str())
                .unwrap_or(&empty)
                .judge(read, u64::MAX)
        })
        .map(|message| violation(Check::LinearizableReads, message))
        .collect()
}

/// (a) Every register with an acknowledged write answers its final reads with that write or a
/// newer one, and every acknowledged event is in `stored_events`; no stored event was never put.
pub fn acknowledged_writes_readable(ops: &[Op], stored_events: &StoredEvents) -> Vec<Violation> {
    final_state_violations(
        ops,
        stored_events,
        u64::MAX,
        Check::AcknowledgedWritesReadable,
    )
}

/// (d) Every write and event acknowledged before the membership change at `change_at_us` is
/// readable in the final reads, which the remaining nodes served, and in their stores.
pub fn no_loss_after_membership_change(
    ops: &[Op],
    stored_events: &StoredEvents,
    change_at_us: u64,
) -> Vec<Violation> {
    final_state_violations(
        ops,
        stored_events,
        change_at_us,
        Check::NoLossAfterMembershipChange,
    )
}

/// The final reads and stores hold everything known done before `cutoff_us`.
fn final_state_violations(
    ops: &[Op],
    stored_events: &StoredEvents,
    cutoff_us: u64,
    check: Check,
) -> Vec<Violation> {
    let registers = registers(ops);
    let mut violations = Vec::new();
    for (key, register) in &registers {
        let acknowledged = register
            .writes
            .values()
            .filter(|write| write.op.outcome.is_ok() && write.op.completed_us < cutoff_us)
            .count();
        if acknowledged == 0 {
            continue;
        }
        let final_reads: Vec<&Op> = acknowledged_reads(ops)
            .filter(|read| read.phase == Phase::Final && read.key == *key)
            .collect();
        if final_reads.is_empty() {
            violations.push(violation(
                check,
                format!("{key} has {acknowledged} acknowledged writes but no final read answered"),
            ));
        }
        for read in final_reads {
            if let Some(message) = register.judge(read, cutoff_us) {
                violations.push(violation(check, format!("final {message}")));
            }
        }
    }
    let mut attempted = BTreeSet::new();
    for op in ops.iter().filter(|op| op.kind == OpKind::PutEvent) {
        let Some(event_id) = op.value.clone() else {
            continue;
        };
        let entry = (op.key.clone(), event_id);
        if op.outcome.is_ok() && op.completed_us < cutoff_us && !stored_events.contains(&entry) {
            violations.push(violation(
                check,
                format!(
                    "event {} of endpoint {} acknowledged at {} through node {} is in no store",
                    entry.1,
                    entry.0,
                    secs(op.completed_us),
                    op.node
                ),
            ));
        }
        attempted.insert(entry);
    }
    if cutoff_us == u64::MAX {
        for (endpoint, event_id) in stored_events.difference(&attempted) {
            violations.push(violation(
                check,
                format!("event {event_id} of endpoint {endpoint} is stored but no client put it"),
            ));
        }
    }
    violations
}

/// (c) After the fault at `fault_at_us`, every register that clients were writing before the
/// fault and kept writing after it had a write acknowledged within `budget` of the fault
/// (counting only writes invoked after the fault). Keys first written after the fault, or
/// never again, say nothing about recovery and are left out. The history must extend past the
/// budget.
pub fn write_availability(ops: &[Op], fault_at_us: u64, budget: Duration) -> Vec<Violation> {
    let budget_us = budget.as_micros() as u64;
    let deadline_us = fault_at_us + budget_us;
    let end_us = ops
        .iter()
        .filter(|op| op.phase == Phase::Workload)
        .map(|op| op.completed_us)
        .max()
        .unwrap_or_default();
    if end_us < deadline_us {
        return vec![violation(
            Check::WriteAvailability,
            format!(
                "the workload stopped at {}, before the availability budget of the fault at {} ran out",
                secs(end_us),
                secs(fault_at_us)
            ),
        )];
    }
    let first_ack = recovery(ops, fault_at_us);
    if first_ack.is_empty() {
        return vec![violation(
            Check::WriteAvailability,
            format!(
                "no key written before the fault at {} was written after it",
                secs(fault_at_us)
            ),
        )];
    }
    first_ack
        .into_iter()
        .filter_map(|(key, first)| match first {
            Some(at) if at <= deadline_us => None,
            Some(at) => Some(format!(
                "the first write of {key} after the fault at {} was acknowledged after {}, more than {}",
                secs(fault_at_us),
                secs(at - fault_at_us),
                secs(budget_us)
            )),
            None => Some(format!(
                "no write of {key} was acknowledged after the fault at {}",
                secs(fault_at_us)
            )),
        })
        .map(|message| violation(Check::WriteAvailability, message))
        .collect()
}

/// For every key written before the fault at `fault_at_us` and again after it: when the first
/// write invoked after the fault was acknowledged (`None`: never).
pub fn recovery(ops: &[Op], fault_at_us: u64) -> BTreeMap<&str, Option<u64>> {
    let writes = || {
        ops.iter()
            .filter(|op| op.kind == OpKind::Write && op.phase == Phase::Workload)
    };
    let in_use: BTreeSet<&str> = writes()
        .filter(|op| op.invoked_us < fault_at_us)
        .map(|op| op.key.as_str())
        .collect();
    let mut first_ack: BTreeMap<&str, Option<u64>> = BTreeMap::new();
    for op in writes().filter(|op| op.invoked_us >= fault_at_us && in_use.contains(op.key.as_str()))
    {
        let entry = first_ack.entry(&op.key).or_insert(None);
        if op.outcome.is_ok() {
            *entry = Some(entry.map_or(op.completed_us, |first| first.min(op.completed_us)));
        }
    }
    first_ack
}

/// (d) The nodes that left hold no replica and no meta vote, and are removed or gone from
/// the status.
pub fn departed_nodes_hold_nothing(view: &ClusterView, departed: &[u64]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for &id in departed {
        let replicas = view.replicas_of(id);
        if !replicas.is_empty() {
            violations.push(violation(
                Check::NoLossAfterMembershipChange,
                format!("removed node {id} still holds replicas of shards {replicas:?}"),
            ));
        }
        if view.meta_voters.contains(&id) {
            violations.push(violation(
                Check::NoLossAfterMembershipChange,
                format!("removed node {id} is still a meta voter"),
            ));
        }
        if let Some(node) = view.node(id)
            && node.state != NodeState::Removed
        {
            violations.push(violation(
                Check::NoLossAfterMembershipChange,
                format!("removed node {id} is listed as {:?}", node.state),
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{NodeView, ShardView};

    fn op(kind: OpKind, key: &str, value: Option<&str>, span: (u64, u64), outcome: Outcome) -> Op {
        Op {
            client: 0,
            node: 0,
            kind,
            key: key.into(),
            value: value.map(String::from),
            invoked_us: span.0,
            completed_us: span.1,
            outcome,
            phase: Phase::Workload,
        }
    }

    fn write(key: &str, value: &str, span: (u64, u64)) -> Op {
        op(OpKind::Write, key, Some(value), span, Outcome::Ok)
    }

    fn unknown_write(key: &str, value: &str, span: (u64, u64)) -> Op {
        op(
            OpKind::Write,
            key,
            Some(value),
            span,
            Outcome::Unknown {
                reason: "timeout".into(),
            },
        )
    }

    fn read(key: &str, value: Option<&str>, span: (u64, u64)) -> Op {
        op(OpKind::Read, key, value, span, Outcome::Ok)
    }

    fn final_read(key: &str, value: Option<&str>, at: u64) -> Op {
        Op {
            phase: Phase::Final,
            ..read(key, value, (at, at + 1))
        }
    }

    fn event(endpoint: &str, id: &str, span: (u64, u64), outcome: Outcome) -> Op {
        op(OpKind::PutEvent, endpoint, Some(id), span, outcome)
    }

    fn stored(events: &[(&str, &str)]) -> StoredEvents {
        events
            .iter()
            .map(|(endpoint, id)| (endpoint.to_string(), id.to_string()))
            .collect()
    }

    /// Reads of the latest write, or of a write concurrent with it, are fine.
    #[test]
    fn fresh_and_concurrent_reads_pass() {
        let ops = vec![
            write("r", "v1", (0, 10)),
            write("r", "v2", (20, 30)),
            read("r", Some("v2"), (40, 50)),
            // v3 is in flight while this read runs: either answer is fine.
            write("r", "v3", (45, 70)),
            read("r", Some("v2"), (46, 60)),
            read("r", Some("v3"), (47, 65)),
            // Two writes overlapping each other: either order is possible.
            write("r", "v4", (100, 120)),
            write("r", "v5", (101, 119)),
            read("r", Some("v4"), (130, 140)),
        ];
        assert_eq!(linearizable_reads(&ops), vec![]);
    }

    /// A read that returns a value overwritten before it began is stale.
    #[test]
    fn stale_read_is_caught() {
        let ops = vec![
            write("r", "v1", (0, 10)),
            write("r", "v2", (20, 30)),
            read("r", Some("v1"), (40, 50)),
        ];
        let violations = linearizable_reads(&ops);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].check, Check::LinearizableReads);
        assert!(violations[0].message.contains("stale"));
    }

    /// A write whose outcome is unknown may take effect late, so reading it after a newer
    /// acknowledged write is allowed; but once a read has seen the newer value, going back is not.
    #[test]
    fn unknown_writes_may_land_late_but_reads_do_not_go_back() {
        let late = vec![
            unknown_write("r", "v1", (0, 10)),
            write("r", "v2", (20, 30)),
            read("r", Some("v1"), (40, 50)),
        ];
        assert_eq!(linearizable_reads(&late), vec![]);

        let back = vec![
            write("r", "v1", (0, 10)),
            unknown_write("r", "v2", (20, 30)),
            read("r", Some("v2"), (40, 50)),
            read("r", Some("v1"), (60, 70)),
        ];
        let violations = linearizable_reads(&back);
        assert_eq!(violations.len(), 1, "{violations:?}");
    }

    /// Nothing found after an acknowledged write, a value nobody wrote, a refused write's
    /// value, and a value read before its write began are all violations.
    #[test]
    fn impossible_reads_are_caught() {
        let ops = vec![
            write("r", "v1", (0, 10)),
            read("r", None, (20, 30)),
            read("r", Some("v9"), (20, 30)),
            op(
                OpKind::Write,
                "r",
                Some("v2"),
                (40, 50),
                Outcome::Err {
                    code: "InvalidArgument".into(),
                    message: "bad".into(),
                },
            ),
            read("r", Some("v2"), (60, 70)),
            read("r", Some("v3"), (80, 90)),
            write("r", "v3", (100, 110)),
            // Before any write of "q" nothing is the right answer.
            read("q", None, (0, 5)),
        ];
        let messages: Vec<String> = linearizable_reads(&ops)
            .into_iter()
            .map(|v| v.message)
            .collect();
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert!(messages[0].contains("found nothing"));
        assert!(messages[1].contains("no client wrote"));
        assert!(messages[2].contains("refused"));
        assert!(messages[3].contains("before it was written"));
    }

    /// After healing, every acknowledged register write and event must be found.
    #[test]
    fn acknowledged_data_must_be_found_after_heal() {
        let ops = vec![
            write("r", "v1", (0, 10)),
            unknown_write("t", "v1", (0, 10)),
            event("e", "x1", (0, 10), Outcome::Ok),
            event(
                "e",
                "x2",
                (0, 10),
                Outcome::Unknown {
                    reason: "deadline".into(),
                },
            ),
            final_read("r", Some("v1"), 100),
            write("s", "v1", (0, 10)),
            final_read("s", None, 100),
        ];
        // x2's outcome was unknown: stored or not, both are fine; t was never acknowledged.
        let good = acknowledged_writes_readable(&ops[..5], &stored(&[("e", "x1")]));
        assert_eq!(good, vec![]);
        let good = acknowledged_writes_readable(&ops[..5], &stored(&[("e", "x1"), ("e", "x2")]));
        assert_eq!(good, vec![]);

        let bad = acknowledged_writes_readable(&ops, &stored(&[("e", "x3")]));
        let messages: Vec<&str> = bad.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(bad.len(), 3, "{messages:#?}");
        assert!(messages.iter().any(|m| m.contains("final read of s")));
        assert!(
            messages
                .iter()
                .any(|m| m.contains("x1") && m.contains("no store"))
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("x3") && m.contains("no client"))
        );
        assert!(
            bad.iter()
                .all(|v| v.check == Check::AcknowledgedWritesReadable)
        );

        // A register with acknowledged writes and no final read at all is a violation.
        let unread = acknowledged_writes_readable(&ops[..1], &StoredEvents::new());
        assert_eq!(unread.len(), 1);
        assert!(unread[0].message.contains("no final read"));
    }

    /// Only data acknowledged before the membership change counts for (d).
    #[test]
    fn membership_change_loss_counts_data_from_before_the_change() {
        let ops = vec![
            write("r", "v1", (0, 10)),
            write("r", "v2", (200, 210)),
            event("e", "x1", (0, 10), Outcome::Ok),
            event("e", "x2", (200, 210), Outcome::Ok),
            final_read("r", Some("v1"), 300),
        ];
        // v2 and x2 came after the change at 100: (d) does not judge them ((a) does).
        assert_eq!(
            no_loss_after_membership_change(&ops, &stored(&[("e", "x1")]), 100),
            vec![]
        );
        let lost = no_loss_after_membership_change(&ops, &StoredEvents::new(), 100);
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(lost[0].check, Check::NoLossAfterMembershipChange);
        assert_eq!(
            acknowledged_writes_readable(&ops, &stored(&[("e", "x1"), ("e", "x2")])).len(),
            1
        );
    }

    /// Writes must be accepted again within the budget after the fault, for every key that
    /// clients kept writing.
    #[test]
    fn availability_is_measured_from_the_fault() {
        let fault = 1_000_000;
        let unknown = |key: &str, value: &str, span| unknown_write(key, value, span);
        let ops = vec![
            write("r", "v1", (0, 10)),
            write("s", "v0", (0, 10)),
            write("t", "v0", (0, 10)),
            // Written once before the fault and never again: not a probe.
            write("once", "v0", (0, 10)),
            unknown("r", "v2", (fault + 10, fault + 1_000_000)),
            write("r", "v3", (fault + 1_000_000, fault + 2_000_000)),
            write("s", "v1", (fault + 100, fault + 200)),
            write("t", "v9", (fault + 4_000_000, fault + 4_000_100)),
            // First written long after the fault: not a probe either.
            unknown("new", "v7", (fault + 5_500_000, fault + 6_000_000)),
            write("s", "v2", (fault + 6_000_000, fault + 6_000_100)),
        ];
        assert_eq!(
            write_availability(&ops, fault, Duration::from_secs(5)),
            vec![]
        );
        let violations = write_availability(&ops, fault, Duration::from_secs(1));
        let messages: Vec<&str> = violations.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(violations.len(), 2, "{messages:#?}");
        assert!(messages[0].contains("of r"));
        assert!(messages[1].contains("of t"));

        // A key that never got a write through after the fault.
        let stuck = vec![
            write("r", "v0", (0, 10)),
            write("s", "v0", (0, 10)),
            unknown("r", "v1", (fault + 10, fault + 7_000_000)),
            write("s", "v1", (fault + 10, fault + 20)),
        ];
        let violations = write_availability(&stuck, fault, Duration::from_secs(5));
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("no write of r"));

        // A history that stops before the budget ran out proves nothing.
        let short = vec![write("r", "v1", (fault + 10, fault + 20))];
        let violations = write_availability(&short, fault, Duration::from_secs(5));
        assert!(violations[0].message.contains("stopped"));
    }

    /// A removed node must hold no replica or vote and be listed as removed (or not at all).
    #[test]
    fn departed_nodes_must_hold_nothing() {
        let node = |id, state| NodeView {
            id,
            client_addr: String::new(),
            peer_addr: String::new(),
            state,
            replicas: vec![],
            leads: vec![],
        };
        let shard = |voters: Vec<u64>| ShardView {
            shard: 0,
            voters,
            learners: vec![],
            leader: Some(1),
            term: 1,
            moving: false,
        };
        let clean = ClusterView {
            nodes: vec![node(1, NodeState::Up), node(4, NodeState::Removed)],
            shards: vec![shard(vec![1, 2, 3])],
            meta_leader: Some(1),
            meta_voters: vec![1, 2, 3],
            meta_term: 1,
        };
        assert_eq!(departed_nodes_hold_nothing(&clean, &[4, 5]), vec![]);
        let dirty = ClusterView {
            nodes: vec![node(4, NodeState::Draining)],
            shards: vec![shard(vec![1, 2, 4])],
            meta_voters: vec![1, 4],
            ..clean
        };
        assert_eq!(departed_nodes_hold_nothing(&dirty, &[4]).len(), 3);
    }
}
