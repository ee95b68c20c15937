//! [`Scenario`]: what every chaos test does around its faults. It starts a cluster and the
//! clients, lets the test inject faults while recording them, then heals everything, reads
//! every written key back, stops the nodes, reads their stores, and runs the checks the test
//! asked for. On any violation, or any panic, it saves the history, the seed and the node logs
//! and prints where.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::checker::{self, Check, StoredEvents, Violation};
use crate::cluster::{ClusterOptions, LocalCluster};
use crate::history::{History, OpKind, Outcome, artifacts_root, replay_command};
use crate::seed::{SplitMix64, scenario_seed, seed_from_env};
use crate::workload::{self, Targets, Workload, WorkloadOptions};

/// The environment variable that makes scenarios run longer and inject more faults.
pub const LONG_ENV: &str = "CHAOS_LONG";

/// (c): how soon writes must be accepted again after a 3-node cluster loses one node.
pub const AVAILABILITY_BUDGET: Duration = Duration::from_secs(5);

/// Longest wait for the cluster to settle after the faults heal.
const HEAL_TIMEOUT: Duration = Duration::from_secs(90);

/// Longest time for the final reads.
const FINAL_READS_TIMEOUT: Duration = Duration::from_secs(60);

/// One cluster at a time per test process: the nodes of two clusters would compete for the
/// CPU and make elections, not the code under test, decide the outcome.
static ONE_AT_A_TIME: LazyLock<Arc<Mutex<()>>> = LazyLock::new(|| Arc::new(Mutex::new(())));

/// The value of a scenario step that must succeed (start a node, find a leader); panics
/// otherwise, and the scenario's drop saves the artifacts.
pub fn must<T>(what: &str, result: anyhow::Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("chaos: {what} failed: {error:#}"),
    }
}

/// Whether `CHAOS_LONG` asks for the long run.
pub fn long_run() -> bool {
    std::env::var(LONG_ENV).is_ok_and(|value| !value.is_empty() && value != "0")
}

/// A running chaos scenario.
pub struct Scenario {
    /// The test's name, in messages and artifact paths.
    pub name: String,
    /// The run's seed (`CHAOS_SEED` replays it).
    pub seed: u64,
    /// This scenario's choices, derived from the seed.
    pub rng: SplitMix64,
    /// Everything the clients did and every fault.
    pub history: Arc<History>,
    /// The nodes.
    pub cluster: LocalCluster,
    /// The nodes the clients use.
    pub targets: Targets,
    /// The project every operation is in.
    pub project_id: String,
    /// The clients, until [`Self::finish`].
    workload: Option<Workload>,
    /// Node logs now; the history and seed too if the scenario fails. Deleted on success.
    run_dir: PathBuf,
    /// Faults after which (c) applies: writes accepted again within the budget.
    availability_faults: Vec<u64>,
    /// When the membership changed and which node ids left, for (d).
    membership_changes: Vec<(u64, Vec<u64>)>,
    /// Whether [`Self::finish`] ran (otherwise a drop while panicking saves the artifacts).
    finished: bool,
    /// Held for the scenario's life; see [`ONE_AT_A_TIME`].
    _one_at_a_time: OwnedMutexGuard<()>,
}

impl Scenario {
    /// Starts a cluster and the clients. Panics (after printing where the logs are) if the
    /// cluster cannot start.
    pub async fn start(name: &str, cluster: ClusterOptions, clients: WorkloadOptions) -> Self {
        let guard = ONE_AT_A_TIME.clone().lock_owned().await;
        let seed = seed_from_env().expect("a valid CHAOS_SEED");
        let mut rng = SplitMix64::new(scenario_seed(seed, name));
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or_default();
        let run_dir = artifacts_root().join(format!("{name}-{seed}-{started}"));
        eprintln!(
            "chaos: {name}: seed {seed} (replay: {}); logs in {}",
            replay_command(name, seed),
            run_dir.display()
        );
        let history = History::new();
        let setup = async {
            let binary = crate::binary::herald_binary()?;
            let cluster = LocalCluster::start(binary, cluster, &run_dir.join("logs")).await?;
            let targets = Targets::new(cluster.member_client_addrs());
            let project_id = workload::create_project(&targets, Duration::from_secs(60)).await?;
            anyhow::Ok((cluster, targets, project_id))
        };
        let (cluster, targets, project_id) = match setup.await {
            Ok(parts) => parts,
            Err(error) => panic!(
                "chaos: {name}: cannot set up the cluster (seed {seed}, logs in {}): {error:#}",
                run_dir.display()
            ),
        };
        let workload = Workload::start(
            history.clone(),
            project_id.clone(),
            targets.clone(),
            clients,
            &mut rng,
        );
        history.fault("workload started");
        Self {
            name: name.to_string(),
            seed,
            rng,
            history,
            cluster,
            targets,
            project_id,
            workload: Some(workload),
            run_dir,
            availability_faults: Vec::new(),
            membership_changes: Vec::new(),
            finished: false,
            _one_at_a_time: guard,
        }
    }

    /// `default` normally, `long` under `CHAOS_LONG`.
    pub fn pick<T>(&self, default: T, long: T) -> T {
        if long_run() { long } else { default }
    }

    /// Lets the clients run for `duration` while the current faults last.
    pub async fn run_for(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    /// Records a fault now and returns its time.
    pub fn fault(&self, description: impl Into<String>) -> u64 {
        self.history.fault(description)
    }

    /// Records a fault that loses one node of three: (c) then requires writes to be accepted
    /// again within [`AVAILABILITY_BUDGET`]. The scenario must keep the clients running at least
    /// that long afterwards.
    pub fn node_lost(&mut self, description: impl Into<String>) -> u64 {
        let at = self.history.fault(description);
        self.availability_faults.push(at);
        at
    }

    /// Records that the nodes with ids `departed` left the cluster now, for (d).
    pub fn membership_changed(&mut self, description: impl Into<String>, departed: Vec<u64>) {
        let at = self.history.fault(description);
        self.membership_changes.push((at, departed));
    }

    /// Points the clients at the current members (after adding or removing a node).
    pub fn refresh_targets(&self) {
        self.targets.set(self.cluster.member_client_addrs());
    }

    /// Stops the clients, heals every fault, waits for the cluster to settle, reads everything
    /// back, stops the nodes, reads their stores and runs `checks`: (c) once per
    /// [`Self::node_lost`], (d) once per [`Self::membership_changed`]. A crashed node, a
    /// cluster that does not settle, or a run without a single acknowledged write fails too.
    /// Panics with every violation, after saving the artifacts.
    pub async fn finish(mut self, checks: &[Check]) {
        if let Some(workload) = self.workload.take() {
            workload.stop().await;
        }
        self.history.fault("workload stopped; healing");
        let mut violations: Vec<Violation> = Vec::new();
        let mut problems: Vec<String> = self.cluster.crashed();

        self.cluster.heal();
        for index in self.cluster.members() {
            let _ = self.cluster.resume(index);
        }
        let final_view = if self.cluster.has_cluster_status() {
            match self.cluster.wait_settled(HEAL_TIMEOUT).await {
                Ok(view) => Some(view),
                Err(error) => {
                    problems.push(format!("after healing: {error:#}"));
                    None
                }
            }
        } else {
            None
        };
        self.history.fault("final reads");
        let targets: Vec<_> = self
            .cluster
            .member_client_addrs()
            .into_iter()
            .filter(|(index, _)| self.cluster.running().contains(index))
            .collect();
        match workload::final_reads(
            &self.history,
            &self.project_id,
            &targets,
            FINAL_READS_TIMEOUT,
        )
        .await
        {
            Ok(unanswered) => violations.extend(unanswered.into_iter().map(|read| Violation {
                check: Check::AcknowledgedWritesReadable,
                message: format!("final read never answered after healing: {read}"),
            })),
            Err(error) => problems.push(format!("final reads: {error:#}")),
        }
        problems.extend(self.cluster.crashed());

        self.history
            .fault("stopping the nodes to read their stores");
        if let Err(error) = self.cluster.stop_all().await {
            problems.push(format!("graceful stop: {error:#}"));
        }
        let mut stored = StoredEvents::new();
        for dir in self.cluster.member_data_dirs() {
            match crate::stores::stored_events(&dir, &self.project_id) {
                Ok(events) => stored.extend(events),
                Err(error) => problems.push(format!("reading {}: {error:#}", dir.display())),
            }
        }

        let ops = self.history.ops();
        let summary = summarize(&ops);
        eprintln!(
            "chaos: {}: {summary}; peer connections (opener, destination) → count: {:?}",
            self.name,
            self.cluster.network().connections_seen()
        );
        for &fault_at in &self.availability_faults {
            let slowest = checker::recovery(&ops, fault_at)
                .into_iter()
                .map(|(key, at)| (at.map(|at| at.saturating_sub(fault_at)), key))
                .max_by_key(|(after, _)| after.unwrap_or(u64::MAX));
            if let Some((after, key)) = slowest {
                eprintln!(
                    "chaos: {}: after the fault at {:.3}s, the slowest key ({key}) took writes again after {}",
                    self.name,
                    fault_at as f64 / 1e6,
                    after.map_or("never".to_string(), |us| format!("{:.3}s", us as f64 / 1e6))
                );
            }
        }
        if summary.acknowledged_writes == 0 {
            problems.push("no write was acknowledged: the run proves nothing".to_string());
        }
        for check in checks {
            match check {
                Check::AcknowledgedWritesReadable => {
                    violations.extend(checker::acknowledged_writes_readable(&ops, &stored));
                }
                Check::LinearizableReads => violations.extend(checker::linearizable_reads(&ops)),
                Check::WriteAvailability => {
                    for &fault_at in &self.availability_faults {
                        violations.extend(checker::write_availability(
                            &ops,
                            fault_at,
                            AVAILABILITY_BUDGET,
                        ));
                    }
                }
                Check::NoLossAfterMembershipChange => {
                    for (at, departed) in &self.membership_changes {
                        violations
                            .extend(checker::no_loss_after_membership_change(&ops, &stored, *at));
                        match &final_view {
                            Some(view) => violations
                                .extend(checker::departed_nodes_hold_nothing(view, departed)),
                            None => problems.push(
                                "no settled status to check the departed nodes against".to_string(),
                            ),
                        }
                    }
                }
            }
        }
        self.finished = true;
        let mut report: Vec<String> = problems;
        report.extend(violations.iter().map(ToString::to_string));
        if report.is_empty() {
            let _ = std::fs::remove_dir_all(&self.run_dir);
            return;
        }
        let saved = self.save_artifacts(&report);
        let shown: Vec<&String> = report.iter().take(20).collect();
        panic!(
            "chaos: {} failed with {} problems (seed {}; replay: {}; history: {saved}):\n{}",
            self.name,
            report.len(),
            self.seed,
            replay_command(&self.name, self.seed),
            shown
                .iter()
                .map(|line| format!("  - {line}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    fn save_artifacts(&self, report: &[String]) -> String {
        match self
            .history
            .save(&self.run_dir, &self.name, self.seed, report)
        {
            Ok(path) => {
                eprintln!(
                    "chaos: {}: history, seed and node logs saved in {}",
                    self.name,
                    self.run_dir.display()
                );
                path.display().to_string()
            }
            Err(error) => format!("not saved: {error:#}"),
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if !self.finished && std::thread::panicking() {
            let saved = self.save_artifacts(&["the scenario panicked".to_string()]);
            eprintln!(
                "chaos: {}: panicked; seed {}, history {saved}",
                self.name, self.seed
            );
        }
    }
}

/// Counts that say whether a run exercised anything.
#[derive(Debug, Default)]
pub struct Summary {
    /// Writes acknowledged during the workload.
    pub acknowledged_writes: usize,
    /// Writes whose outcome is unknown.
    pub unknown_writes: usize,
    /// Reads answered (workload and final).
    pub answered_reads: usize,
    /// Events acknowledged.
    pub acknowledged_events: usize,
    /// Operations in total.
    pub operations: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} operations: {} writes acknowledged, {} unknown, {} reads answered, {} events acknowledged",
            self.operations,
            self.acknowledged_writes,
            self.unknown_writes,
            self.answered_reads,
            self.acknowledged_events
        )
    }
}

fn summarize(ops: &[crate::history::Op]) -> Summary {
    let mut summary = Summary {
        operations: ops.len(),
        ..Summary::default()
    };
    for op in ops {
        match (op.kind, &op.outcome) {
            (OpKind::Write, Outcome::Ok) => summary.acknowledged_writes += 1,
            (OpKind::Write, Outcome::Unknown { .. }) => summary.unknown_writes += 1,
            (OpKind::Read, Outcome::Ok) => summary.answered_reads += 1,
            (OpKind::PutEvent, Outcome::Ok) => summary.acknowledged_events += 1,
            _ => {}
        }
    }
    summary
}
