//! [`LocalCluster`]: N real `herald serve` processes on 127.0.0.1, each with its own data
//! directory, fixed client and peer ports, and a fault-injecting [`PeerProxy`] in front of its
//! peer port (the address it advertises). Faults: kill -9, graceful stop, restart on the same
//! data directory and ports, SIGSTOP/SIGCONT, partitions through the proxies; membership:
//! adding a node (`--join`) and removing one (`herald cluster remove`). Every process is killed
//! when the cluster is dropped; every wait has a deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::process::{NodeCommand, NodeProcess, log_tail};
use crate::proxy::{Network, PeerProxy};
use crate::status::{ClusterView, NodeState, parse_status};

/// Longest wait for a node to log that it serves.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for a node to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for one `herald cluster ...` command.
const CLI_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest wait for `herald cluster remove` (it drains the node first).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Between two polls of the cluster status.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Nodes started at first.
    pub nodes: usize,
    /// `HERALD_SHARDS`: few shards keep start-up and snapshots fast.
    pub shards: u32,
    /// `HERALD_DOWN_AFTER_SECS`: how long a node may be down before its replicas are
    /// re-created elsewhere. `None` keeps the node's default, as users run it; replacement
    /// scenarios shorten it so that it happens within the test.
    pub down_after_secs: Option<u64>,
    /// Longest wait for the cluster to settle (every shard replicated and led).
    pub settle_timeout: Duration,
}

impl ClusterOptions {
    /// `nodes` nodes, 4 shards.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            shards: 4,
            down_after_secs: None,
            settle_timeout: Duration::from_secs(90),
        }
    }
}

/// One node's place in the cluster: how to start it, its proxy, and its process when running.
struct Slot {
    /// The command that starts it, identical for every restart.
    command: NodeCommand,
    /// The proxy in front of its peer port; lives as long as the slot.
    proxy: PeerProxy,
    /// The process, when started (paused or not).
    process: Option<NodeProcess>,
    /// Whether the process is stopped by SIGSTOP.
    paused: bool,
    /// Its node id, once the cluster status showed it.
    node_id: Option<u64>,
    /// Removed from the cluster: never started again.
    removed: bool,
}

/// A cluster of local `herald` processes. Node indices (0, 1, ...) are the harness's names,
/// stable across restarts; node ids are the cluster's.
pub struct LocalCluster {
    /// The `herald` binary.
    binary: PathBuf,
    /// Holds every node's data directory; deleted on drop.
    data_root: tempfile::TempDir,
    /// Where node logs go (`node-<index>.log`); kept by the caller on failure.
    log_dir: PathBuf,
    /// `--cluster-secret` of every node.
    secret: String,
    /// How the cluster was built.
    options: ClusterOptions,
    /// Which links are cut.
    network: Network,
    /// Every node ever started, by index.
    slots: Vec<Slot>,
    /// Whether the binary has `herald cluster status` (a single node runs without it).
    has_cluster_status: bool,
}

impl LocalCluster {
    /// Starts `options.nodes` nodes (the first alone, the others joining it) and waits until
    /// the cluster settles.
    pub async fn start(
        binary: PathBuf,
        options: ClusterOptions,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(options.nodes > 0, "a cluster needs at least one node");
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("cannot create {}", log_dir.display()))?;
        let mut cluster = Self {
            binary,
            data_root: tempfile::Builder::new().prefix("herald-chaos-").tempdir()?,
            log_dir: log_dir.to_path_buf(),
            secret: format!("chaos-secret-{}", std::process::id()),
            options: options.clone(),
            network: Network::new(),
            slots: Vec::new(),
            has_cluster_status: false,
        };
        cluster.has_cluster_status = cluster
            .cli(&["cluster", "--help"], CLI_TIMEOUT)
            .await
            .is_ok();
        anyhow::ensure!(
            options.nodes == 1 || cluster.has_cluster_status,
            "{} has no `herald cluster` command: the binary predates clustering",
            cluster.binary.display()
        );
        for _ in 0..options.nodes {
            cluster.add_slot_and_start().await?;
        }
        if cluster.has_cluster_status {
            cluster.wait_settled(options.settle_timeout).await?;
        }
        if options.nodes > 1 {
            // Partitions act on the proxies: make sure the nodes really dial them.
            let seen = cluster.network.connections_seen();
            anyhow::ensure!(
                seen.iter().any(|((from, _), _)| from.is_some()),
                "no peer connection between the nodes went through the proxies ({seen:?}); \
                 do the nodes dial the --advertise-peer addresses?"
            );
        }
        Ok(cluster)
    }

    /// Creates the next slot and starts its node, joining the first running member.
    async fn add_slot_and_start(&mut self) -> anyhow::Result<usize> {
        let index = self.slots.len();
        let join = self
            .running()
            .first()
            .map(|&member| self.client_addr(member).to_string());
        let peer_listen = crate::ports::free_loopback_addr()?;
        let proxy = PeerProxy::start(self.network.clone(), index, peer_listen).await?;
        let data_dir = self.data_root.path().join(format!("node-{index}"));
        std::fs::create_dir_all(&data_dir)?;
        let command = NodeCommand {
            binary: self.binary.clone(),
            data_dir,
            listen: crate::ports::free_loopback_addr()?,
            peer_listen,
            advertise_peer: proxy.listen_addr,
            join,
            secret: self.secret.clone(),
            env: [
                ("HERALD_SHARDS", Some(self.options.shards.into())),
                ("HERALD_DOWN_AFTER_SECS", self.options.down_after_secs),
            ]
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_string(), value?.to_string())))
            .collect(),
            log_path: self.log_dir.join(format!("node-{index}.log")),
        };
        self.slots.push(Slot {
            command,
            proxy,
            process: None,
            paused: false,
            node_id: None,
            removed: false,
        });
        self.start_process(index).await?;
        Ok(index)
    }

    async fn start_process(&mut self, index: usize) -> anyhow::Result<()> {
        let slot = &mut self.slots[index];
        anyhow::ensure!(slot.process.is_none(), "node {index} is already running");
        anyhow::ensure!(!slot.removed, "node {index} was removed from the cluster");
        append_log_marker(&slot.command.log_path, "start");
        let network = self.network.clone();
        let process = NodeProcess::start(&slot.command, START_TIMEOUT, |pid| {
            network.set_owner(pid, index)
        })
        .await
        .with_context(|| format!("starting node {index}"))?;
        anyhow::ensure!(
            process.client_addr == slot.command.listen,
            "node {index} serves on {} instead of {}",
            process.client_addr,
            slot.command.listen
        );
        slot.process = Some(process);
        slot.paused = false;
        Ok(())
    }

    /// Number of nodes ever started (removed ones included): valid indices are `0..len()`.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no node was ever started.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Nodes not removed from the cluster, running or not.
    pub fn members(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&index| !self.slots[index].removed)
            .collect()
    }

    /// Nodes whose process runs and is not paused.
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&index| {
                let slot = &self.slots[index];
                slot.process.is_some() && !slot.paused
            })
            .collect()
    }

    /// The client address of node `index` (fixed across restarts).
    pub fn client_addr(&self, index: usize) -> SocketAddr {
        self.slots[index].command.listen
    }

    /// Client addresses of every member, by index order (for the workload's clients).
    pub fn member_client_addrs(&self) -> Vec<(usize, SocketAddr)> {
        self.members()
            .into_iter()
            .map(|index| (index, self.client_addr(index)))
            .collect()
    }

    /// Data directories of the members, to read their stores once they are stopped.
    pub fn member_data_dirs(&self) -> Vec<PathBuf> {
        self.members()
            .into_iter()
            .map(|index| self.slots[index].command.data_dir.clone())
            .collect()
    }

    /// The directory holding the nodes' logs.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The simulated network, for faults finer than [`Self::isolate`] and [`Self::partition`].
    pub fn network(&self) -> &Network {
        &self.network
    }

    // ----- faults -----

    /// `kill -9` node `index`; its data directory stays for [`Self::restart`].
    pub async fn kill9(&mut self, index: usize) -> anyhow::Result<()> {
        let process = self.slots[index]
            .process
            .take()
            .with_context(|| format!("node {index} is not running"))?;
        self.network.forget_owner(process.pid());
        self.slots[index].paused = false;
        process.kill9().await
    }

    /// Stops node `index` with SIGTERM and checks that it exits with status 0.
    pub async fn terminate(&mut self, index: usize) -> anyhow::Result<()> {
        let process = self.slots[index]
            .process
            .take()
            .with_context(|| format!("node {index} is not running"))?;
        self.network.forget_owner(process.pid());
        self.slots[index].paused = false;
        let status = process.terminate(STOP_TIMEOUT).await?;
        anyhow::ensure!(
            status.success(),
            "node {index} exited with {status} after SIGTERM; log:\n{}",
            log_tail(&self.slots[index].command.log_path)
        );
        Ok(())
    }

    /// Starts node `index` again on its data directory and ports.
    pub async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        self.start_process(index).await
    }

    /// SIGSTOP node `index`.
    pub fn pause(&mut self, index: usize) -> anyhow::Result<()> {
        let slot = &mut self.slots[index];
        slot.process
            .as_ref()
            .with_context(|| format!("node {index} is not running"))?
            .pause()?;
        slot.paused = true;
        Ok(())
    }

    /// SIGCONT node `index`.
    pub fn resume(&mut self, index: usize) -> anyhow::Result<()> {
        let slot = &mut self.slots[index];
        slot.process
            .as_ref()
            .with_context(|| format!("node {index} is not running"))?
            .resume()?;
        slot.paused = false;
        Ok(())
    }

    /// Cuts node `index` off from every other node (both ways); clients still reach it.
    pub fn isolate(&self, index: usize) {
        self.network.isolate(index, &self.members());
    }

    /// Splits the nodes into two sides that cannot reach each other.
    pub fn partition(&self, side_a: &[usize], side_b: &[usize]) {
        self.network.partition(&[side_a.to_vec(), side_b.to_vec()]);
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.network.heal();
    }

    /// Nodes whose process exited without being told to, with their logs: a crash is a finding.
    pub fn crashed(&mut self) -> Vec<String> {
        let mut crashes = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Some(process) = slot.process.as_mut()
                && let Some(status) = process.exited()
            {
                crashes.push(format!(
                    "node {index} exited on its own with {status}; log tail:\n{}",
                    log_tail(&slot.command.log_path)
                ));
            }
        }
        crashes
    }

    // ----- membership -----

    /// Starts a new node that joins the cluster through a running member, waits until the
    /// status lists it, and returns its index.
    pub async fn add_node(&mut self) -> anyhow::Result<usize> {
        let index = self.add_slot_and_start().await?;
        let deadline = Instant::now() + self.options.settle_timeout;
        loop {
            if let Ok(view) = self.status().await
                && self.learn_node_ids(&view)
                && self.slots[index].node_id.is_some()
            {
                return Ok(index);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "node {index} did not appear in the cluster status"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Removes node `index` with `herald cluster remove` through another running member, waits
    /// until the status shows it holding nothing, then stops its process (if any).
    pub async fn remove_node(&mut self, index: usize) -> anyhow::Result<()> {
        let node_id = self.node_id(index).await?;
        let through = self
            .running()
            .into_iter()
            .find(|&other| other != index)
            .context("no other running node to remove it through")?;
        let server = self.client_addr(through).to_string();
        let output = self
            .cli(
                &[
                    "cluster",
                    "remove",
                    &node_id.to_string(),
                    "--server",
                    &server,
                ],
                REMOVE_TIMEOUT,
            )
            .await
            .with_context(|| format!("herald cluster remove {node_id}"))?;
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        loop {
            let view = self.status().await;
            if let Ok(view) = &view {
                let gone = view
                    .node(node_id)
                    .is_none_or(|node| node.state == NodeState::Removed);
                if gone && view.replicas_of(node_id).is_empty() {
                    break;
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "node {node_id} still holds data {REMOVE_TIMEOUT:?} after `cluster remove` ({output}); last status: {view:?}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        self.slots[index].removed = true;
        if let Some(process) = self.slots[index].process.take() {
            self.network.forget_owner(process.pid());
            // A removed node may exit by itself or keep running idle; either way it goes.
            let _ = process.terminate(STOP_TIMEOUT).await;
        }
        Ok(())
    }

    // ----- status -----

    /// The node id of node `index`, from the cluster status.
    pub async fn node_id(&mut self, index: usize) -> anyhow::Result<u64> {
        if let Some(id) = self.slots[index].node_id {
            return Ok(id);
        }
        let view = self.status().await?;
        self.learn_node_ids(&view);
        self.slots[index].node_id.with_context(|| {
            format!(
                "node {index} ({}) is not in the cluster status",
                self.client_addr(index)
            )
        })
    }

    /// The index of the node with id `node_id`.
    pub fn index_of(&self, node_id: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|slot| slot.node_id == Some(node_id))
    }

    /// Records node ids by matching client addresses; whether every member has one now.
    fn learn_node_ids(&mut self, view: &ClusterView) -> bool {
        for slot in &mut self.slots {
            if slot.node_id.is_none()
                && let Some(node) = view.node_with_client_addr(&slot.command.listen.to_string())
            {
                slot.node_id = Some(node.id);
            }
        }
        self.slots
            .iter()
            .all(|slot| slot.removed || slot.node_id.is_some())
    }

    /// The cluster status, asked of running nodes that no partition cuts off (a minority
    /// node's view may be stale), falling back to any running node.
    pub async fn status(&self) -> anyhow::Result<ClusterView> {
        let members = self.members();
        let mut candidates: Vec<usize> = self.running();
        candidates.sort_by_key(|&index| {
            members
                .iter()
                .any(|&other| self.network.is_blocked(index, other))
        });
        let mut last_error = anyhow::anyhow!("no running node to ask for the cluster status");
        for index in candidates {
            match self.status_from(index).await {
                Ok(view) => return Ok(view),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// The cluster status as node `index` answers it.
    pub async fn status_from(&self, index: usize) -> anyhow::Result<ClusterView> {
        let server = self.client_addr(index).to_string();
        let output = self
            .cli(
                &["cluster", "status", "--server", &server, "--json"],
                CLI_TIMEOUT,
            )
            .await?;
        parse_status(&output)
    }

    /// Index of the meta group's leader.
    pub async fn meta_leader(&mut self) -> anyhow::Result<usize> {
        let view = self.status().await?;
        self.learn_node_ids(&view);
        let leader = view.meta_leader.context("the meta group has no leader")?;
        self.index_of(leader)
            .with_context(|| format!("meta leader {leader} is not one of this cluster's nodes"))
    }

    /// Index of the node leading the most shards, with the shards it leads; nodes in `avoid`
    /// only if no other node leads a shard.
    pub async fn busiest_shard_leader(
        &mut self,
        avoid: &[usize],
    ) -> anyhow::Result<(usize, Vec<u32>)> {
        let view = self.status().await?;
        self.learn_node_ids(&view);
        let avoided: Vec<u64> = avoid
            .iter()
            .filter_map(|&index| self.slots.get(index)?.node_id)
            .collect();
        let (node_id, shards) = view
            .nodes
            .iter()
            .map(|node| (node.id, view.leads_of(node.id)))
            .filter(|(_, shards)| !shards.is_empty())
            .max_by_key(|(id, shards)| (!avoided.contains(id), shards.len()))
            .context("no node leads a shard")?;
        let index = self.index_of(node_id).with_context(|| {
            format!("shard leader {node_id} is not one of this cluster's nodes")
        })?;
        Ok((index, shards))
    }

    /// Index of the leader of `shard`.
    pub async fn shard_leader(&mut self, shard: u32) -> anyhow::Result<usize> {
        let view = self.status().await?;
        self.learn_node_ids(&view);
        let leader = view
            .shards
            .iter()
            .find(|s| s.shard == shard)
            .and_then(|s| s.leader)
            .with_context(|| format!("shard {shard} has no leader"))?;
        self.index_of(leader)
            .with_context(|| format!("shard leader {leader} is not one of this cluster's nodes"))
    }

    /// Waits until every member is up and every shard and the meta group are led and fully
    /// replicated among the members.
    pub async fn wait_settled(&mut self, timeout: Duration) -> anyhow::Result<ClusterView> {
        let deadline = Instant::now() + timeout;
        loop {
            let reason = match self.status().await {
                Ok(view) => {
                    if self.learn_node_ids(&view) {
                        let ids: Vec<u64> = self
                            .members()
                            .into_iter()
                            .filter_map(|index| self.slots[index].node_id)
                            .collect();
                        match view.settled(&ids) {
                            Ok(()) => return Ok(view),
                            Err(reason) => reason,
                        }
                    } else {
                        "not every node is in the status yet".to_string()
                    }
                }
                Err(error) => format!("{error:#}"),
            };
            anyhow::ensure!(
                Instant::now() < deadline,
                "the cluster did not settle within {timeout:?}: {reason}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Whether the binary has `herald cluster status` (a single node can run without it).
    pub fn has_cluster_status(&self) -> bool {
        self.has_cluster_status
    }

    /// The address node `index` advertises to its peers: its proxy's.
    pub fn advertised_peer_addr(&self, index: usize) -> SocketAddr {
        self.slots[index].proxy.listen_addr
    }

    /// Stops every running member gracefully (resuming paused ones first), for reading their
    /// stores; every one must exit with status 0.
    pub async fn stop_all(&mut self) -> anyhow::Result<()> {
        self.heal();
        let mut problems = Vec::new();
        for index in 0..self.slots.len() {
            if self.slots[index].process.is_some()
                && let Err(error) = self.terminate(index).await
            {
                problems.push(format!("{error:#}"));
            }
        }
        anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(())
    }

    /// Runs `herald ARGS` and returns its stdout; an error with stderr when it fails.
    async fn cli(&self, args: &[&str], timeout: Duration) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .env_remove("HERALD_SERVER")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(timeout, command.output())
            .await
            .with_context(|| format!("herald {} took longer than {timeout:?}", args.join(" ")))?
            .with_context(|| format!("cannot run herald {}", args.join(" ")))?;
        anyhow::ensure!(
            output.status.success(),
            "herald {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.network.shutdown();
        // Dropping the processes kills them (SIGKILL works on paused processes too).
        for slot in &mut self.slots {
            slot.process.take();
        }
    }
}

/// A line in the node's log saying what the harness did, so restarts are visible in it.
fn append_log_marker(path: &Path, what: &str) {
    use std::io::Write;
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "----- chaos harness: {what} -----");
    }
}
