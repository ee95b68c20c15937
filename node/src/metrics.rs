//! Every Prometheus metric of the node, named and described in one place.

use std::net::SocketAddr;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::PrometheusBuilder;

/// gRPC requests by `rpc` and `code`.
pub const REQUESTS: &str = "herald_requests_total";
/// gRPC request latency by `rpc` and `code`.
pub const REQUEST_SECONDS: &str = "herald_request_duration_seconds";
/// Events stored.
pub const EVENTS_INGESTED: &str = "herald_events_ingested_total";
/// Endpoints stored in the shards this node leads.
pub const ENDPOINTS_STORED: &str = "herald_endpoints_stored";
/// Raft term by `group`.
pub const RAFT_TERM: &str = "herald_raft_term";
/// Raft leader node id by `group` (0 when unknown).
pub const RAFT_LEADER: &str = "herald_raft_leader";
/// Whether this node leads `group`.
pub const RAFT_IS_LEADER: &str = "herald_raft_is_leader";
/// Raft commit index by `group`.
pub const RAFT_COMMIT_INDEX: &str = "herald_raft_commit_index";
/// Raft last applied index by `group`.
pub const RAFT_APPLIED_INDEX: &str = "herald_raft_applied_index";
/// Log appends made durable by one fsync.
pub const FSYNC_BATCH_SIZE: &str = "herald_fsync_batch_size";
/// Failed peer RPCs by `kind`.
pub const PEER_ERRORS: &str = "herald_peer_rpc_errors_total";
/// Operations forwarded to the leader of their group on another node, by `kind`.
pub const FORWARDED: &str = "herald_forwarded_requests_total";
/// Shard replicas this node holds.
pub const REPLICAS: &str = "herald_replicas";
/// Shards this node leads.
pub const LEADERS: &str = "herald_leaders";
/// Shards whose replicas are moving toward their placement target (meta leader only).
pub const PLACEMENT_MOVES: &str = "herald_placement_moves_in_progress";
/// Raft server state by `group`: 0 learner, 1 follower, 2 candidate, 3 leader.
pub const RAFT_STATE: &str = "herald_raft_state";
/// Bytes of the segment indexes of the shard replicas on this node (excluding strings).
pub const SEGMENT_INDEX_BYTES: &str = "herald_segment_index_bytes";
/// Endpoints in the segment indexes of the shard replicas on this node.
pub const SEGMENT_INDEX_ENDPOINTS: &str = "herald_segment_index_endpoints";
/// Snapshots installed from a leader.
pub const SNAPSHOTS_INSTALLED: &str = "herald_snapshots_installed_total";
/// Operations gathered into one Raft entry.
pub const PROPOSAL_BATCH_SIZE: &str = "herald_proposal_batch_size";
/// Time a shard leader spends on one page of a campaign pass, by `phase`: `read` (endpoints
/// and the send decision), `intents` (committing the intents), `sends` (from the first send to
/// the last outcome committed) and `outcomes` (the outcome proposals alone).
pub const CAMPAIGN_PAGE_SECONDS: &str = "herald_campaign_page_seconds";

/// Describes every metric and serves `/metrics` on `listen`. The recorder is global to the
/// process, so only the first call installs it (tests start several nodes in one process).
pub fn install(listen: SocketAddr) -> anyhow::Result<Option<SocketAddr>> {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *installed {
        return Ok(None);
    }
    // Bind first so that port 0 resolves to a real port we can report.
    let listener = std::net::TcpListener::bind(listen)?;
    let bound = listener.local_addr()?;
    drop(listener);
    let buckets = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(bound)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(REQUEST_SECONDS.into()),
            &buckets,
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(CAMPAIGN_PAGE_SECONDS.into()),
            &buckets,
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("batch_size".into()),
            &[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
            ],
        )?
        .install()?;
    *installed = true;
    describe();
    Ok(Some(bound))
}

fn describe() {
    describe_counter!(REQUESTS, "gRPC requests by rpc and status code");
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "gRPC request latency by rpc and status code"
    );
    describe_counter!(EVENTS_INGESTED, "events stored");
    describe_gauge!(
        ENDPOINTS_STORED,
        "endpoints stored in the shards this node leads"
    );
    describe_gauge!(RAFT_TERM, "raft term by group");
    describe_gauge!(RAFT_LEADER, "raft leader node id by group, 0 when unknown");
    describe_gauge!(RAFT_IS_LEADER, "1 when this node leads the group");
    describe_gauge!(RAFT_COMMIT_INDEX, "raft commit index by group");
    describe_gauge!(RAFT_APPLIED_INDEX, "raft last applied index by group");
    describe_histogram!(FSYNC_BATCH_SIZE, "log appends made durable by one fsync");
    describe_histogram!(
        PROPOSAL_BATCH_SIZE,
        "operations gathered into one raft entry"
    );
    describe_histogram!(
        CAMPAIGN_PAGE_SECONDS,
        Unit::Seconds,
        "time of one page of a campaign pass on a shard leader, by phase"
    );
}
