//! `herald`: the server, the CLI client and the benchmarks in one binary.
//! Only flag parsing, config loading and process wiring live here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald_node::config::Config;

/// glibc's allocator spent a third of the ingest path in malloc/free under many threads;
/// mimalloc's per-thread heaps remove that contention.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Herald: a self-hosted customer-engagement cluster.
#[derive(Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (a single-node cluster on loopback by default).
    Serve(ServeArgs),
    #[command(flatten)]
    Client(herald_node::cli::ClientCommand),
    /// Measure Herald against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(herald_node::bench::BenchCommand),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see cluster-config/single-node.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory for the node's data [default: ./herald-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC address for clients [default: 127.0.0.1:50051].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Prometheus metrics address [default: 127.0.0.1:9464].
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Join the cluster of this member (its client address) on first start.
    #[arg(long)]
    join: Option<String>,
    /// A separate address for the peer service [default: the client port].
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// The peer address other nodes dial [default: the peer or client listen address].
    #[arg(long)]
    advertise_peer: Option<String>,
    /// Secret shared by every node of the cluster (or HERALD_CLUSTER_SECRET).
    #[arg(long)]
    cluster_secret: Option<String>,
    /// Discard messages of channels a project has not configured instead of writing them to
    /// the outbox (or HERALD_NULL_SINK=true): for benchmarks and load tests.
    #[arg(long)]
    null_sink: bool,
}

impl ServeArgs {
    /// Defaults < file < `HERALD_*` environment < flags.
    fn load_config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let env: HashMap<String, String> = std::env::vars().collect();
        config.apply_env(&env)?;
        if let Some(dir) = &self.data_dir {
            config.server.data_dir = dir.clone();
        }
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(listen) = self.metrics_listen {
            config.server.metrics_listen = listen;
        }
        if let Some(join) = &self.join {
            config.cluster.join = Some(join.clone());
        }
        if let Some(listen) = self.peer_listen {
            config.server.peer_listen = Some(listen);
        }
        if let Some(addr) = &self.advertise_peer {
            config.server.advertise_peer = Some(addr.clone());
        }
        if let Some(secret) = &self.cluster_secret {
            config.cluster.secret = secret.clone();
        }
        if self.null_sink {
            config.channels.null_sink = true;
        }
        config.validate()?;
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                init_tracing();
                let config = args.load_config()?;
                herald_node::server::serve_until_signal(config).await
            }
            Command::Client(command) => herald_node::cli::run(command).await,
            Command::Bench(command) => herald_node::bench::run(command).await,
        }
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    // Logs go to stderr so that stdout stays free for command output.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
