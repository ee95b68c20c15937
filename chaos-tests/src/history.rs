//! The history of a run: every operation the clients invoked, with the node it went to, when it
//! was invoked and completed, and what came back; and the faults, with when they were
//! injected. The checker reads nothing else. On failure it is saved as JSON lines with the
//! seed, so that a run can be replayed (`CHAOS_SEED`) and its history checked again
//! ([`load_json_lines`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Where failed runs are saved: `CHAOS_ARTIFACTS`, else `<system temp>/herald-chaos`.
pub const ARTIFACTS_ENV: &str = "CHAOS_ARTIFACTS";

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// `UpdateEndpoint` of the register `key` with the address `value` (unique per key).
    Write,
    /// `GetEndpoint` of the register `key`; `value` is the address read, `None` when the
    /// endpoint did not exist.
    Read,
    /// One event `value` put for endpoint `key` by `PutEvents` (events of one request are
    /// recorded one by one, each with its own item result).
    PutEvent,
}

/// How an operation ended, from the client's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged: the write is durable, the read's value is an answer.
    Ok,
    /// Refused for a reason that means it was not applied (bad input, not found).
    Err {
        /// The gRPC code or item status.
        code: String,
        /// The server's message.
        message: String,
    },
    /// No answer, a timeout or UNAVAILABLE: a write may or may not take effect, at any time
    /// after its invocation.
    Unknown {
        /// What the client saw.
        reason: String,
    },
}

impl Outcome {
    /// Whether the operation was acknowledged.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }
}

/// When in the run an operation happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// While faults were being injected.
    Workload,
    /// After the faults healed: the reads that must find every acknowledged write.
    Final,
}

/// One operation of one client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// The client that issued it (final reads use the client id `usize::MAX`).
    pub client: usize,
    /// Index of the node the request was sent to.
    pub node: usize,
    /// What it did.
    pub kind: OpKind,
    /// The register (endpoint id) it touched.
    pub key: String,
    /// The value written, read, or the event id; see [`OpKind`].
    pub value: Option<String>,
    /// Microseconds since the history started, when the request was sent.
    pub invoked_us: u64,
    /// Microseconds since the history started, when the answer (or the timeout) came.
    pub completed_us: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// During the faults or in the final reads.
    pub phase: Phase,
}

/// A fault injected by the test (or any event of the scenario worth seeing in the history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Microseconds since the history started.
    pub at_us: u64,
    /// What happened, e.g. "kill -9 node 2 (meta leader)".
    pub description: String,
}

/// One line of a saved history.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    /// First line: how to replay.
    Run {
        scenario: String,
        seed: u64,
        replay: String,
        /// Wall clock of time zero (ms since the Unix epoch), to line faults up with node logs.
        #[serde(default)]
        started_unix_ms: u64,
    },
    Op(Op),
    Fault(Fault),
    Violation {
        message: String,
    },
}

/// The history of one run, appended to by every client concurrently.
pub struct History {
    /// Time zero of every timestamp in the history; one clock for every client.
    start: Instant,
    /// The wall clock at time zero, to find a fault in the node logs (which use UTC).
    start_wall: SystemTime,
    /// Operations in the order they completed.
    ops: Mutex<Vec<Op>>,
    /// Faults in the order they were injected.
    faults: Mutex<Vec<Fault>>,
}

impl History {
    /// An empty history starting now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            start_wall: SystemTime::now(),
            ops: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
        })
    }

    /// Microseconds since the history started.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Appends a completed operation.
    pub fn record(&self, op: Op) {
        self.ops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(op);
    }

    /// Records a fault now and returns its time; also printed, so a failing test's output reads
    /// as a timeline.
    pub fn fault(&self, description: impl Into<String>) -> u64 {
        let at_us = self.now_us();
        let description = description.into();
        eprintln!(
            "chaos: t={:.3}s ({}) {description}",
            at_us as f64 / 1e6,
            utc_time_of_day(self.start_wall + Duration::from_micros(at_us))
        );
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Fault { at_us, description });
        at_us
    }

    /// A copy of the operations recorded so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A copy of the faults recorded so far.
    pub fn faults(&self) -> Vec<Fault> {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Writes `history.jsonl` into `dir`: a first line with the scenario, the seed and the
    /// command that replays it, then every fault and operation in time order, then the
    /// violations found. Returns the file's path.
    pub fn save(
        &self,
        dir: &Path,
        scenario: &str,
        seed: u64,
        violations: &[String],
    ) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("history.jsonl");
        let started_unix_ms = self
            .start_wall
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_millis() as u64)
            .unwrap_or_default();
        let text = to_json_lines(
            scenario,
            seed,
            started_unix_ms,
            &self.ops(),
            &self.faults(),
            violations,
        )?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::write(dir.join("seed"), format!("{seed}\n"))
            .with_context(|| format!("cannot write the seed into {}", dir.display()))?;
        Ok(path)
    }
}

/// `HH:MM:SS.mmmZ` of `time`, as the node logs print it.
fn utc_time_of_day(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60,
        since_epoch.subsec_millis()
    )
}

/// The command that replays `scenario` with `seed`.
pub fn replay_command(scenario: &str, seed: u64) -> String {
    format!("CHAOS_SEED={seed} cargo test -p herald-chaos-tests --test chaos -- {scenario} --exact")
}

/// The directory failed runs are saved under.
pub fn artifacts_root() -> PathBuf {
    std::env::var_os(ARTIFACTS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("herald-chaos"))
}

/// A history as JSON lines (see [`History::save`]).
pub fn to_json_lines(
    scenario: &str,
    seed: u64,
    started_unix_ms: u64,
    ops: &[Op],
    faults: &[Fault],
    violations: &[String],
) -> anyhow::Result<String> {
    let mut lines = vec![Line::Run {
        scenario: scenario.to_string(),
        seed,
        replay: replay_command(scenario, seed),
        started_unix_ms,
    }];
    // Faults and operations interleaved by time, so the file reads as a timeline.
    let mut timeline: Vec<(u64, Line)> = faults
        .iter()
        .map(|fault| (fault.at_us, Line::Fault(fault.clone())))
        .chain(ops.iter().map(|op| (op.invoked_us, Line::Op(op.clone()))))
        .collect();
    timeline.sort_by_key(|(at, _)| *at);
    lines.extend(timeline.into_iter().map(|(_, line)| line));
    lines.extend(violations.iter().map(|message| Line::Violation {
        message: message.clone(),
    }));
    let mut text = String::new();
    for line in &lines {
        text.push_str(&serde_json::to_string(line)?);
        text.push('\n');
    }
    Ok(text)
}

/// A saved history: its seed, operations and faults, to check it again.
pub fn load_json_lines(text: &str) -> anyhow::Result<(u64, Vec<Op>, Vec<Fault>)> {
    let mut seed = None;
    let mut ops = Vec::new();
    let mut faults = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line)
            .with_context(|| format!("line {} of the history is not a history line", number + 1))?;
        match parsed {
            Line::Run { seed: run_seed, .. } => seed = Some(run_seed),
            Line::Op(op) => ops.push(op),
            Line::Fault(fault) => faults.push(fault),
            Line::Violation { .. } => {}
        }
    }
    let seed = seed.context("the history has no run line with the seed")?;
    Ok((seed, ops, faults))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A saved history loads back with the same seed, operations and faults, so a failed run
    /// can be checked again without running it.
    #[test]
    fn saved_history_loads_back() {
        let history = History::new();
        history.record(Op {
            client: 1,
            node: 2,
            kind: OpKind::Write,
            key: "r1".into(),
            value: Some("v1@example.com".into()),
            invoked_us: 10,
            completed_us: 20,
            outcome: Outcome::Ok,
            phase: Phase::Workload,
        });
        history.record(Op {
            client: 1,
            node: 0,
            kind: OpKind::Read,
            key: "r1".into(),
            value: None,
            invoked_us: 30,
            completed_us: 40,
            outcome: Outcome::Unknown {
                reason: "deadline".into(),
            },
            phase: Phase::Final,
        });
        history.fault("kill -9 node 0");
        let dir = tempfile::tempdir().unwrap();
        let path = history
            .save(dir.path(), "scenario", 99, &["a violation".into()])
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains("CHAOS_SEED=99"));
        let (seed, ops, faults) = load_json_lines(&text).unwrap();
        assert_eq!(seed, 99);
        assert_eq!(ops, history.ops());
        assert_eq!(faults, history.faults());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("seed")).unwrap(),
            "99\n"
        );
    }
}
