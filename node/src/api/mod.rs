//! tonic adapters of the public `herald.v1` services: take the request, convert and validate
//! it, call the cluster, convert the answer; errors become statuses in [`status`] only.
//!
//! # Layout
//! - [`convert`]: proto ⇄ domain, validating inputs with field paths.
//! - [`status`]: errors → `tonic::Status` and batch item results.
//! - [`projects`], [`endpoints`], [`events`], [`templates`], [`segments`], [`cluster`]: one
//!   adapter per public service.
//! - [`channels`]: per-project channel settings; secrets are write-only.
//! - [`messages`]: direct sends and one-time passwords.
//! - [`campaigns`]: campaigns with their versions and runs, and campaign KPIs (Analytics).
//! - [`imports`]: import jobs: the adapter and the job that parses and writes the rows.
//! - [`peer`]: the internal peer service (Raft messages, forwarding, joins).

pub mod campaigns;
pub mod channels;
pub mod cluster;
pub mod convert;
pub mod endpoints;
pub mod events;
pub mod imports;
pub mod messages;
pub mod peer;
pub mod projects;
pub mod segments;
pub mod status;
pub mod templates;

use std::future::Future;
use std::time::Instant;

use tonic::{Response, Status};

use crate::domain::FieldViolation;
use crate::domain::endpoint::validate_id;
use crate::domain::limits::Limits;

/// The node's cluster, set once it has started: services are served before that (a joining
/// node must receive Raft messages to finish starting) and answer UNAVAILABLE meanwhile.
#[derive(Clone, Default)]
pub struct ClusterHandle(
    std::sync::Arc<std::sync::OnceLock<std::sync::Arc<crate::cluster::Cluster>>>,
);

impl ClusterHandle {
    /// Sets the cluster once it has started.
    pub fn set(&self, cluster: std::sync::Arc<crate::cluster::Cluster>) {
        let _ = self.0.set(cluster);
    }

    /// The cluster, or UNAVAILABLE while the node starts.
    pub fn get(&self) -> Result<&std::sync::Arc<crate::cluster::Cluster>, Status> {
        self.0
            .get()
            .ok_or_else(|| Status::unavailable("the node is starting"))
    }
}

/// Runs an RPC body and records its count and latency by rpc and status code.
pub async fn observed<T>(
    rpc: &'static str,
    body: impl Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let result = body.await;
    let code = match &result {
        Ok(_) => "OK".to_string(),
        Err(status) => format!("{:?}", status.code()),
    };
    metrics::counter!(crate::metrics::REQUESTS, "rpc" => rpc, "code" => code.clone()).increment(1);
    metrics::histogram!(crate::metrics::REQUEST_SECONDS, "rpc" => rpc, "code" => code)
        .record(started.elapsed().as_secs_f64());
    result.map(Response::new)
}

/// Checks the ids a request names (project id, endpoint id, user id…), all at once.
pub fn check_ids(ids: &[(&str, &str)], limits: &Limits) -> Result<(), Status> {
    let mut violations: Vec<FieldViolation> = Vec::new();
    for (field, value) in ids {
        validate_id(field, value, limits, &mut violations);
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(status::invalid_argument(&violations))
    }
}

/// Refuses a batch larger than the limit, whole.
pub fn check_batch_len(field: &str, len: usize, limits: &Limits) -> Result<(), Status> {
    if len > limits.items_per_batch {
        return Err(status::invalid_argument(&[FieldViolation::new(
            field,
            format!(
                "has {len} items, more than the limit of {}",
                limits.items_per_batch
            ),
        )]));
    }
    Ok(())
}
