//! Import jobs (SPEC SEG-3, DAT-1): the persisted record of one import, its states and the
//! rule that keeps its row errors bounded.

use serde::{Deserialize, Serialize};

/// Most row errors one job keeps; the counts go on beyond it.
pub const MAXIMUM_ROW_ERRORS: usize = 1_000;

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
}

impl ImportJob {
    /// A new job in state CREATED.
    pub fn new(
        project_id: String,
        job_id: String,
        format: String,
        file_name: String,
        now: String,
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
        }
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

    /// Rejections past the kept maximum still count, but their errors are not kept.
    #[test]
    fn row_errors_are_bounded_and_counts_are_exact() {
        let mut job = ImportJob::new(
            "p".into(),
            "j".into(),
            "CSV".into(),
            String::new(),
            "t".into(),
        );
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
}
