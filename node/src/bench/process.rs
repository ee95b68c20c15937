//! Servers measured by a benchmark run as child processes of the same `herald` binary, so the
//! load generator and the server under test never share a runtime, as in production: the
//! Herald node (`herald serve`) and the no-op baseline (`herald bench serve-baseline`) alike.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// A server process and the client address it reported.
pub struct ServerProcess {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Where its Prometheus metrics are, when it reported them.
    pub metrics_addr: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// The line a server prints (stdout or stderr) with its address, after this marker.
pub const ADDRESS_MARKER: &str = "client_addr=";

/// The marker before the metrics address in a node's log.
pub const METRICS_MARKER: &str = "metrics=";

impl ServerProcess {
    /// `herald serve` on a fresh data directory, loopback, OS-chosen ports.
    pub fn herald(data_dir: &Path, shards: Option<u32>) -> anyhow::Result<Self> {
        Self::herald_with(data_dir, shards, &[])
    }

    /// `herald serve` as [`Self::herald`] does, with `extra` flags (e.g. `--null-sink`).
    pub fn herald_with(
        data_dir: &Path,
        shards: Option<u32>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("serve")
            .args(extra)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .env("HERALD_LOG", "info");
        if let Some(shards) = shards {
            command.env("HERALD_SHARDS", shards.to_string());
        }
        Self::spawn(command)
    }

    /// The no-op baseline server.
    pub fn baseline() -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["bench", "serve-baseline"]);
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the server process")?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        let metrics_addr = std::sync::Arc::new(std::sync::Mutex::new(None));
        let metrics_slot = metrics_addr.clone();
        // Keep draining stderr for the whole run so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = |marker: &str| {
                    line.split(marker).nth(1).map(|rest| {
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string()
                    })
                };
                if let Some(addr) = value(ADDRESS_MARKER) {
                    let _ = sender.send(addr);
                }
                if let Some(addr) = value(METRICS_MARKER) {
                    *metrics_slot.lock().expect("lock") = Some(addr);
                }
            }
        });
        let reported = receiver.recv_timeout(Duration::from_secs(60));
        let addr = match reported {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                anyhow::bail!("the server process did not report its address ({status})");
            }
        };
        let addr = addr
            .parse()
            .with_context(|| format!("the server reported an invalid address {addr:?}"))?;
        Ok(Self {
            child,
            addr,
            metrics_addr,
        })
    }

    /// CPU time (user and system, every thread) the server has used so far, from
    /// `/proc/PID/stat`; `None` where there is no such file.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / clock_ticks_per_second())
    }

    /// The text of the server's `/metrics` page, when it serves one.
    pub fn scrape_metrics(&self) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let addr = self
            .metrics_addr
            .lock()
            .expect("lock")
            .clone()
            .context("the server did not report a metrics address")?;
        let mut stream = std::net::TcpStream::connect(&addr)?;
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default())
    }

    /// Stops the server with SIGTERM and waits for it; a non-zero exit is an error.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "the server process exited with {status}");
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A process still running here (an error path) must not outlive the bench.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 when that cannot be asked).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
