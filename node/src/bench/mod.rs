//! `herald bench …`: workloads that measure Herald against a baseline measured in the same
//! run on the same machine, and print the result as a human summary and one JSON line.
//!
//! # Layout
//! - [`ingest`]: `herald bench ingest`, concurrent `PutEvents`.
//! - [`segment`]: `herald bench segment`, estimates over 1,000,000 endpoints.
//! - [`campaign`]: `herald bench campaign`, a campaign to 500,000 endpoints and
//!   event-triggered sends, with the null sink.
//! - [`baseline`]: a no-op server with Herald's API, the transport's ceiling.
//! - [`load`]: the closed-loop driver: workers, warmup, measured window, latency percentiles.
//! - [`wire`]: `PutEvents` requests encoded once and responses decoded only to count results.
//! - [`report`]: [`BenchReport`], the JSON line every workload prints last.
//! - [`process`]: the measured servers, run as child processes of this binary.

pub mod baseline;
pub mod campaign;
pub mod ingest;
pub mod load;
pub mod process;
pub mod report;
pub mod segment;
pub mod wire;

pub use report::BenchReport;

/// The benchmark workloads.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Event ingestion: concurrent PutEvents batches against Herald and against a no-op
    /// baseline server, reporting events/s, latency percentiles and their ratio.
    Ingest(ingest::IngestArgs),
    /// Segment estimates: a 4-dimension segment over 1,000,000 endpoints in a fresh node,
    /// against a naive evaluation of the same segment in this process.
    Segment(segment::SegmentArgs),
    /// Campaign sends: a campaign to half of 1,000,000 endpoints in a fresh node with the
    /// null sink (messages/s against the same node's endpoint load rate), then the p99
    /// time-to-send of event-triggered sends at 1,000 matching events/s.
    Campaign(campaign::CampaignArgs),
    /// Serve the no-op baseline until SIGTERM (what the workloads start as their baseline).
    #[command(hide = true)]
    ServeBaseline,
}

/// Runs one benchmark; its JSON report is the last line of stdout.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest::run(args).await,
        BenchCommand::Segment(args) => segment::run(args).await,
        BenchCommand::Campaign(args) => campaign::run(args).await,
        BenchCommand::ServeBaseline => baseline::serve_until_signal().await,
    }
}
