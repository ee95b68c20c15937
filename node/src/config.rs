//! Node configuration: one struct per TOML section, unknown fields refused, defaults that run
//! a single node on loopback. Precedence: built-in defaults < `--config FILE` < `HERALD_*`
//! environment < command-line flags.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::limits::Limits;

/// Everything a node needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Format version of this file; only 1 exists.
    pub version: u32,
    /// Where the node listens and keeps its data.
    pub server: ServerConfig,
    /// Shape of the cluster's data.
    pub cluster: ClusterConfig,
    /// Limits enforced on requests.
    pub limits: Limits,
    /// What happens to messages of channels a project has not configured.
    pub channels: ChannelsConfig,
}

/// `[server]`: addresses and the data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// gRPC address for clients.
    pub listen: SocketAddr,
    /// Prometheus `/metrics` address.
    pub metrics_listen: SocketAddr,
    /// Directory of the node's fjall database and snapshots.
    pub data_dir: PathBuf,
    /// A separate address for the peer service; by default it shares the client port.
    pub peer_listen: Option<SocketAddr>,
    /// The peer address other nodes dial (default: the peer or client listen address).
    pub advertise_peer: Option<String>,
}

/// `[cluster]`: how data is split and replicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Number of shard Raft groups; fixed when the cluster is created.
    pub shards: u32,
    /// Raft heartbeat interval, milliseconds.
    pub heartbeat_ms: u64,
    /// Raft election timeout lower bound, milliseconds (the upper bound is twice this).
    pub election_timeout_ms: u64,
    /// Log entries since the last snapshot that trigger a new one.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind the latest snapshot, so slow followers can catch up without one.
    pub logs_kept_after_snapshot: u64,
    /// Most operations proposals gathered into one Raft entry.
    pub max_batch_ops: usize,
    /// Client address of any member to join on first start; none starts a new cluster.
    pub join: Option<String>,
    /// Shared secret every peer call must carry; required to form a multi-node cluster.
    pub secret: String,
    /// Seconds a node may fail to answer heartbeats before its replicas are re-created
    /// elsewhere.
    pub down_after_secs: u64,
    /// Milliseconds between rounds of the placement and reconcile loops.
    pub placement_interval_ms: u64,
}

/// `[channels]`: node-wide delivery settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    /// Discard messages of channels a project has not configured (answered SUCCESSFUL,
    /// nothing written) instead of appending them to the outbox files: for benchmarks and
    /// load tests that would otherwise measure the outbox's disk writes and fill the disk.
    pub null_sink: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: 1,
            server: ServerConfig::default(),
            cluster: ClusterConfig::default(),
            limits: Limits::default(),
            channels: ChannelsConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".parse().expect("literal address"),
            metrics_listen: "127.0.0.1:9464".parse().expect("literal address"),
            data_dir: PathBuf::from("./herald-data"),
            peer_listen: None,
            advertise_peer: None,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            shards: 16,
            heartbeat_ms: 100,
            election_timeout_ms: 300,
            snapshot_every_entries: 20_000,
            logs_kept_after_snapshot: 1_000,
            max_batch_ops: 4_096,
            join: None,
            secret: String::new(),
            down_after_secs: 30,
            placement_interval_ms: 1_000,
        }
    }
}

/// A configuration problem, naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An environment variable could not be parsed.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Env {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Values that parse but make no sense together; every problem at once.
    #[error("invalid configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Defaults for a node that keeps its data in `data_dir` and listens on loopback ports
    /// chosen by the OS: what tests and benchmarks start.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::default();
        config.server.data_dir = data_dir.into();
        config.server.listen = "127.0.0.1:0".parse().expect("literal address");
        config.server.metrics_listen = "127.0.0.1:0".parse().expect("literal address");
        config
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
    }

    /// Applies `HERALD_*` variables from `env` (passed in, so tests need no process state).
    pub fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|error: T::Err| ConfigError::Env {
                name: name.to_string(),
                value: value.to_string(),
                reason: error.to_string(),
            })
        }
        for (name, value) in env {
            match name.as_str() {
                "HERALD_LISTEN" => self.server.listen = parse(name, value)?,
                "HERALD_METRICS_LISTEN" => self.server.metrics_listen = parse(name, value)?,
                "HERALD_DATA_DIR" => self.server.data_dir = PathBuf::from(value),
                "HERALD_SHARDS" => self.cluster.shards = parse(name, value)?,
                "HERALD_PEER_LISTEN" => self.server.peer_listen = Some(parse(name, value)?),
                "HERALD_ADVERTISE_PEER" => self.server.advertise_peer = Some(value.clone()),
                "HERALD_JOIN" => self.cluster.join = Some(value.clone()),
                "HERALD_CLUSTER_SECRET" => self.cluster.secret = value.clone(),
                "HERALD_DOWN_AFTER_SECS" => self.cluster.down_after_secs = parse(name, value)?,
                "HERALD_NULL_SINK" => self.channels.null_sink = parse(name, value)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks values that parse but cannot work, returning every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.version != 1 {
            problems.push(format!("version is {}, only 1 is known", self.version));
        }
        if !(1..=1024).contains(&self.cluster.shards) {
            problems.push(format!(
                "cluster.shards is {}, must be 1..=1024",
                self.cluster.shards
            ));
        }
        if self.cluster.heartbeat_ms == 0 {
            problems.push("cluster.heartbeat_ms must be positive".to_string());
        }
        if self.cluster.election_timeout_ms <= self.cluster.heartbeat_ms {
            problems.push(format!(
                "cluster.election_timeout_ms ({}) must exceed cluster.heartbeat_ms ({})",
                self.cluster.election_timeout_ms, self.cluster.heartbeat_ms
            ));
        }
        if self.cluster.max_batch_ops == 0 {
            problems.push("cluster.max_batch_ops must be positive".to_string());
        }
        if self.cluster.join.is_some() && self.cluster.secret.is_empty() {
            problems.push(
                "cluster.join needs cluster.secret (HERALD_CLUSTER_SECRET, --cluster-secret)"
                    .to_string(),
            );
        }
        if self.cluster.placement_interval_ms == 0 {
            problems.push("cluster.placement_interval_ms must be positive".to_string());
        }
        if self.limits.items_per_batch == 0 {
            problems.push("limits.items_per_batch must be positive".to_string());
        }
        if self.limits.request_bytes < 1024 {
            problems.push(format!(
                "limits.request_bytes is {}, must be at least 1024",
                self.limits.request_bytes
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The versioned single-node file in cluster-config/ says exactly what the built-in
    /// defaults say, so operators can start from it.
    #[test]
    fn single_node_file_equals_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster-config/single-node.toml");
        assert_eq!(Config::from_file(&path).unwrap(), Config::default());
    }

    /// A misspelt setting is an error, not silently ignored.
    #[test]
    fn unknown_fields_are_refused() {
        let error =
            toml::from_str::<Config>("[server]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(error.to_string().contains("listen_addr"), "{error}");
    }

    /// Environment overrides the file, and a bad value names the variable.
    #[test]
    fn environment_overrides() {
        let mut config = Config::default();
        let env = HashMap::from([("HERALD_DATA_DIR".to_string(), "/tmp/x".to_string())]);
        config.apply_env(&env).unwrap();
        assert_eq!(config.server.data_dir, PathBuf::from("/tmp/x"));
        let env = HashMap::from([("HERALD_NULL_SINK".to_string(), "true".to_string())]);
        config.apply_env(&env).unwrap();
        assert!(config.channels.null_sink);
        let env = HashMap::from([("HERALD_LISTEN".to_string(), "nope".to_string())]);
        let error = config.apply_env(&env).unwrap_err().to_string();
        assert!(error.contains("HERALD_LISTEN"), "{error}");
    }

    /// Every problem is reported at once.
    #[test]
    fn validate_reports_all_problems() {
        let mut config = Config::default();
        config.cluster.shards = 0;
        config.cluster.max_batch_ops = 0;
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else {
            panic!("expected Invalid");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
