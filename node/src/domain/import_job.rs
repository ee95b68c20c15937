//! Import jobs (SPEC SEG-3, DAT-1): the persisted record of one import, its states, the
//! rule that keeps its row errors bounded, and the rule that tells a job nobody runs any
//! more.
//!
//! A job runs in the process of the node that received it and nowhere else, so a job that
//! is not final when that process is gone would wait forever. Such a job is *abandoned*,
//! and reading it ends it as FAILED ([`ABANDONED_FAILURE`]), when either
//! - it is read on its own node, which has no such job running (the node restarted), or
//! - it is read on another node and saved no progress for [`ABANDONED_AFTER_MS`] (its node
//!   is down or cut off), while a running job saves its progress at least every
//!   [`HEARTBEAT_MS`].

use serde::{Deserialize, Serialize};

use super::placement::NodeId;

/// Most row errors one job keeps; the counts go on beyond it.
pub const MAXIMUM_ROW_ERRORS: usize = 1_000;

/// Longest time a running job goes without saving its progress, even with no rows.
pub const HEARTBEAT_MS: i64 = 5_000;

/// A job that saved no progress for this long is abandoned: twelve missed heartbeats, so a
/// slow meta group does not fail a live job.
pub const ABANDONED_AFTER_MS: i64 = 60_000;

// A live job must miss many heartbeats before anyone takes it for abandoned.
const _: () = assert!(ABANDONED_AFTER_MS >= 10 * HEARTBEAT_MS);

/// Why an abandoned job failed.
pub const ABANDONED_FAILURE: &str = "the node running the import stopped; run it again";

/// Where an import job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportState {
    /// Recorded, no row read yet.
    Created,
    /// Rows are being read and written.
    Processing,
    /// Every row was read; each was imported or rejected.
    Completed,
    /// Stopped before the end of the file (unreadable file, broken upload, lost project).
    Failed,
}

impl ImportState {
    /// The name the API answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// A row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRowError {
    /// 1-based line where the row starts.
    pub line: u64,
    /// The endpoint id, when the row could be read.
    pub endpoint_id: String,
    /// The bad field relative to the row (`endpoint.address`), empty when none is named.
    pub field: String,
    /// What was wrong.
    pub message: String,
}

/// One import job, as stored in the meta group under `I | project | job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportJob {
    /// The project the endpoints go to.
    pub project_id: String,
    /// The job's id.
    pub job_id: String,
    /// `CSV` or `JSONL`.
    pub format: String,
    /// The path on the node's disk, empty for an upload.
    pub file_name: String,
    /// Where the job is.
    pub state: ImportState,
    /// Rows read so far, imported or rejected.
    pub rows_read: u64,
    /// Rows written.
    pub imported: u64,
    /// Rows refused.
    pub rejected: u64,
    /// The first [`MAXIMUM_ROW_ERRORS`] refused rows, in file order.
    pub errors: Vec<ImportRowError>,
    /// RFC 3339 time the job was created.
    pub creation_date: String,
    /// RFC 3339 time it completed or failed; empty before.
    pub completion_date: String,
    /// Why a failed job stopped.
    pub failure: String,
    /// The imported segment the job defines (its members are the endpoints the job
    /// imports); empty when it defines none.
    pub segment_id: String,
    /// The node whose process runs the job.
    pub node_id: NodeId,
    /// Milliseconds since the Unix epoch of the job's latest saved progress.
    pub heartbeat_ms: i64,
}

impl ImportJob {
    /// A new job in state CREATED, run by node `node_id`, created at `now` (`now_ms`).
    pub fn new(
        project_id: String,
        job_id: String,
        format: String,
        file_name: String,
        node_id: NodeId,
        now: String,
        now_ms: i64,
    ) -> Self {
        Self {
            project_id,
            job_id,
            format,
            file_name,
            state: ImportState::Created,
            rows_read: 0,
            imported: 0,
            rejected: 0,
            errors: Vec::new(),
            creation_date: now,
            completion_date: String::new(),
            failure: String::new(),
            segment_id: String::new(),
            node_id,
            heartbeat_ms: now_ms,
        }
    }

    /// Whether nothing runs the job any more although it has not ended (see the module
    /// docs), judged by node `reader` at `now_ms`; `running_on_reader` says whether the
    /// reader's process runs a job of this id.
    pub fn is_abandoned(&self, reader: NodeId, running_on_reader: bool, now_ms: i64) -> bool {
        if self.state.is_final() {
            return false;
        }
        if self.node_id == reader {
            // The reader knows for sure, whatever the heartbeat says.
            return !running_on_reader;
        }
        now_ms.saturating_sub(self.heartbeat_ms) > ABANDONED_AFTER_MS
    }

    /// Counts a refused row, keeping its error while fewer than [`MAXIMUM_ROW_ERRORS`] are kept.
    pub fn reject(&mut self, error: ImportRowError) {
        self.rejected += 1;
        if self.errors.len() < MAXIMUM_ROW_ERRORS {
            self.errors.push(error);
        }
    }

    /// Ends the job: COMPLETED, or FAILED with `failure`.
    pub fn finish(&mut self, failure: Option<String>, now: String) {
        self.state = match &failure {
            Some(_) => ImportState::Failed,
            None => ImportState::Completed,
        };
        self.failure = failure.unwrap_or_default();
        self.completion_date = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> ImportJob {
        ImportJob::new(
            "p".into(),
            "j".into(),
            "CSV".into(),
            String::new(),
            3,
            "t".into(),
            1_000_000,
        )
    }

    /// Rejections past the kept maximum still count, but their errors are not kept.
    #[test]
    fn row_errors_are_bounded_and_counts_are_exact() {
        let mut job = job();
        for line in 0..(MAXIMUM_ROW_ERRORS as u64 + 5) {
            job.reject(ImportRowError {
                line,
                endpoint_id: String::new(),
                field: String::new(),
                message: "bad".into(),
            });
        }
        assert_eq!(job.rejected, MAXIMUM_ROW_ERRORS as u64 + 5);
        assert_eq!(job.errors.len(), MAXIMUM_ROW_ERRORS);
        assert_eq!(
            job.errors.last().map(|e| e.line),
            Some(MAXIMUM_ROW_ERRORS as u64 - 1)
        );
        job.finish(None, "t2".into());
        assert_eq!(job.state, ImportState::Completed);
        assert!(job.state.is_final());
    }

    fn processing() -> ImportJob {
        let mut job = job();
        job.state = ImportState::Processing;
        job
    }

    /// A job whose node restarted is abandoned as soon as that node reads it; other nodes
    /// cannot know, so they wait for its heartbeat to go stale.
    #[test]
    fn a_restarted_node_abandons_its_jobs_at_once() {
        let job = processing();
        let now = job.heartbeat_ms + 1;
        assert!(job.is_abandoned(3, false, now));
        assert!(!job.is_abandoned(3, true, now));
        assert!(!job.is_abandoned(4, false, now));
    }

    /// A job that saved no progress for longer than the limit is abandoned on any other
    /// node; up to the limit it is not, its own node goes by what it runs, and an ended job
    /// is never abandoned.
    #[test]
    fn a_stale_heartbeat_abandons_a_job_anywhere() {
        let mut job = processing();
        let limit = job.heartbeat_ms + ABANDONED_AFTER_MS;
        assert!(!job.is_abandoned(4, false, limit));
        assert!(job.is_abandoned(4, false, limit + 1));
        assert!(!job.is_abandoned(3, true, limit + 1));
        job.finish(Some(ABANDONED_FAILURE.to_string()), "t2".into());
        assert_eq!(job.state, ImportState::Failed);
        assert!(!job.is_abandoned(3, false, limit + 1));
    }
}
