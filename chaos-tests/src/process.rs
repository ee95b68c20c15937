//! One `herald serve` process: started with fixed ports and data directory, its log appended
//! to a file, and the signals the faults need (SIGKILL, SIGTERM, SIGSTOP, SIGCONT).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The marker before the client address in the line a node logs once it serves.
pub const CLIENT_ADDR_MARKER: &str = "client_addr=";

/// How to start one node; kept so that a restart uses the same data directory and ports.
#[derive(Debug, Clone)]
pub struct NodeCommand {
    /// The `herald` binary.
    pub binary: PathBuf,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--listen`: where clients connect.
    pub listen: SocketAddr,
    /// `--peer-listen`: the node's own peer port, behind the proxy.
    pub peer_listen: SocketAddr,
    /// `--advertise-peer`: the proxy's address, which the other nodes dial.
    pub advertise_peer: SocketAddr,
    /// `--join`: the client address of a member, for a node joining an existing cluster.
    pub join: Option<String>,
    /// `--cluster-secret`.
    pub secret: String,
    /// Extra environment (`HERALD_SHARDS`, `HERALD_LOG`, ...).
    pub env: Vec<(String, String)>,
    /// The file the node's stderr is appended to.
    pub log_path: PathBuf,
}

/// A running (or paused) `herald serve` process.
pub struct NodeProcess {
    /// The process; killed when dropped.
    child: Child,
    /// Its pid, for signals and for attributing its connections.
    pid: u32,
    /// The client address it reported.
    pub client_addr: SocketAddr,
    /// Copies stderr to the log file until the process exits.
    log_task: JoinHandle<()>,
}

impl NodeProcess {
    /// Starts the node and waits (at most `timeout`) until it logs that it serves. `spawned`
    /// gets the pid at once: a node dials its peers before it serves clients.
    pub async fn start(
        command: &NodeCommand,
        timeout: Duration,
        spawned: impl FnOnce(u32),
    ) -> anyhow::Result<Self> {
        let mut process = Command::new(&command.binary);
        process
            .arg("serve")
            .arg("--data-dir")
            .arg(&command.data_dir)
            .arg("--listen")
            .arg(command.listen.to_string())
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .arg("--peer-listen")
            .arg(command.peer_listen.to_string())
            .arg("--advertise-peer")
            .arg(command.advertise_peer.to_string())
            .arg("--cluster-secret")
            .arg(&command.secret);
        if let Some(join) = &command.join {
            process.arg("--join").arg(join);
        }
        // Only what the harness sets: a HERALD_JOIN or HERALD_DATA_DIR of the caller's shell
        // must not leak into the nodes.
        for (name, _) in std::env::vars() {
            if name.starts_with("HERALD_") {
                process.env_remove(name);
            }
        }
        process.env("HERALD_LOG", "info");
        for (name, value) in &command.env {
            process.env(name, value);
        }
        process
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = process
            .spawn()
            .with_context(|| format!("cannot start {}", command.binary.display()))?;
        let pid = child.id().context("the node exited at once")?;
        spawned(pid);
        let stderr = child.stderr.take().context("stderr is piped")?;
        let (reported, report) = oneshot::channel();
        let log_task = tokio::spawn(copy_log(stderr, command.log_path.clone(), reported));

        let client_addr = tokio::select! {
            addr = report => addr.ok(),
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                anyhow::bail!(
                    "node exited during start-up ({status}); log {}:\n{}",
                    command.log_path.display(),
                    log_tail(&command.log_path)
                );
            }
            _ = tokio::time::sleep(timeout) => None,
        };
        let Some(client_addr) = client_addr else {
            let _ = child.start_kill();
            anyhow::bail!(
                "node did not report {CLIENT_ADDR_MARKER} within {timeout:?}; log {}:\n{}",
                command.log_path.display(),
                log_tail(&command.log_path)
            );
        };
        Ok(Self {
            child,
            pid,
            client_addr,
            log_task,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `kill -9`, then reaps the process.
    pub async fn kill9(mut self) -> anyhow::Result<()> {
        self.child.start_kill().context("SIGKILL")?;
        self.child.wait().await.context("reaping the node")?;
        self.log_task.abort();
        Ok(())
    }

    /// SIGTERM and waits up to `timeout` for a graceful exit; SIGKILL after that.
    pub async fn terminate(mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        // A paused node cannot handle SIGTERM until it continues.
        let _ = signal(self.pid, "CONT");
        signal(self.pid, "TERM")?;
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                let status = status.context("waiting for the node")?;
                // Let the log copier drain the last lines.
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.log_task).await;
                Ok(status)
            }
            Err(_) => {
                self.child.start_kill().context("SIGKILL")?;
                self.child.wait().await.context("reaping the node")?;
                anyhow::bail!(
                    "node {} did not stop within {timeout:?} of SIGTERM",
                    self.pid
                )
            }
        }
    }

    /// SIGSTOP: the process freezes, its sockets stay open.
    pub fn pause(&self) -> anyhow::Result<()> {
        signal(self.pid, "STOP")
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) -> anyhow::Result<()> {
        signal(self.pid, "CONT")
    }

    /// The exit status if the process has exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.log_task.abort();
    }
}

/// Sends `SIG<name>` with kill(1), as the node's own tests do: no unsafe code for signals.
fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .context("cannot run kill(1)")?;
    anyhow::ensure!(status.success(), "kill -s {name} {pid} failed ({status})");
    Ok(())
}

/// Appends the node's stderr to `log_path` and reports its client address once.
async fn copy_log(
    stderr: tokio::process::ChildStderr,
    log_path: PathBuf,
    reported: oneshot::Sender<SocketAddr>,
) {
    use std::io::Write;
    let mut reported = Some(reported);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .ok();
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(file) = file.as_mut() {
            let _ = writeln!(file, "{line}");
        }
        if reported.is_some()
            && let Some(addr) = parse_client_addr(&line)
            && let Some(sender) = reported.take()
        {
            let _ = sender.send(addr);
        }
    }
}

/// The address after `client_addr=` in a log line.
pub fn parse_client_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split(CLIENT_ADDR_MARKER).nth(1)?;
    rest.split(|c: char| c.is_whitespace() || c == ',' || c == '"')
        .find(|token| !token.is_empty())?
        .parse()
        .ok()
}

/// The last lines of a log, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tracing line of `herald serve` yields its address, plain or quoted.
    #[test]
    fn parses_the_serving_line() {
        let line = "2026-11-25T12:00:00Z  INFO herald_node::server: herald node serving \
                    client_addr=127.0.0.1:50051 node_id=1";
        assert_eq!(
            parse_client_addr(line),
            Some("127.0.0.1:50051".parse().unwrap())
        );
        assert_eq!(
            parse_client_addr(r#"{"client_addr="127.0.0.1:7","x":1}"#),
            Some("127.0.0.1:7".parse().unwrap())
        );
        assert_eq!(parse_client_addr("no address here"), None);
    }
}
