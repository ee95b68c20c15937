//! Import job records (SPEC SEG-3, DAT-1): kept in the meta group so any node answers about
//! any job; the job itself runs on the node that received it (`api::imports`). A job that
//! defines a segment records each endpoint it imports in the endpoint's shard
//! ([`Cluster::add_imported`]), so the imported segment lives where its members do.

use std::collections::BTreeMap;

use futures::future::join_all;

use super::{Cluster, ClusterError, Result, now_rfc3339};
use crate::domain::import_job::{ABANDONED_FAILURE, ImportJob};
use crate::domain::segment::{SegmentDefinition, SegmentRule};
use crate::raft::META_GROUP;
use crate::raft::command::{ImportCommand, MetaCommand, MetaResponse, ShardOp, ShardOpResult};
use crate::raft::state_machine::import_job_key;
use crate::storage::{codec, keys, keys::tag};

/// Milliseconds since the Unix epoch, the clock of job heartbeats.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Cluster {
    /// Records a new job `job_id` in state CREATED for `project_id`, run by this node, and
    /// answers it. With `segment_name`, first creates the imported segment of the job (its
    /// id is the job's `segment_id`).
    pub async fn create_import_job(
        &self,
        project_id: &str,
        job_id: &str,
        format: &str,
        file_name: &str,
        segment_name: Option<&str>,
    ) -> Result<ImportJob> {
        self.get_project(project_id).await?;
        let mut job = ImportJob::new(
            project_id.to_string(),
            job_id.to_string(),
            format.to_string(),
            file_name.to_string(),
            self.node_id(),
            now_rfc3339(),
            now_ms(),
        );
        if let Some(name) = segment_name {
            let definition = SegmentDefinition {
                name: name.to_string(),
                rule: SegmentRule::Imported {
                    import_job_id: job_id.to_string(),
                },
            };
            job.segment_id = self
                .insert_segment(project_id, definition)
                .await?
                .segment_id;
        }
        let written = self
            .write_meta(MetaCommand::Import(ImportCommand::Put(job.clone())))
            .await;
        let answer = match written {
            Ok(MetaResponse::ImportJob(job)) => Ok(job),
            Ok(MetaResponse::ProjectNotFound) => Err(ClusterError::project_not_found(project_id)),
            Ok(other) => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
            Err(error) => Err(error),
        };
        if answer.is_err() && !job.segment_id.is_empty() {
            // A segment of a job that does not exist would stay empty forever.
            if let Err(error) = self.delete_segment(project_id, &job.segment_id).await {
                tracing::warn!(segment_id = %job.segment_id, %error, "cannot delete the segment of an import job not created");
            }
        }
        answer
    }

    /// Replaces a running job's progress, stamping its heartbeat; NOT_FOUND once the job is
    /// gone or has ended.
    pub async fn update_import_job(&self, mut job: ImportJob) -> Result<ImportJob> {
        let job_id = job.job_id.clone();
        job.heartbeat_ms = now_ms();
        match self
            .write_meta(MetaCommand::Import(ImportCommand::Update(job)))
            .await?
        {
            MetaResponse::ImportJob(job) => Ok(job),
            MetaResponse::ImportJobNotFound => Err(ClusterError::NotFound(format!(
                "import job {job_id:?} not found or already ended"
            ))),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Puts `endpoint_ids` (imported by job `import_job_id`) in the job's imported segment:
    /// one proposal per shard holding some of them. Endpoints deleted meanwhile are skipped.
    pub async fn add_imported(
        &self,
        project_id: &str,
        import_job_id: &str,
        endpoint_ids: Vec<String>,
    ) -> Result<()> {
        let mut by_shard: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for endpoint_id in endpoint_ids {
            by_shard
                .entry(self.shard_index(project_id, &endpoint_id))
                .or_default()
                .push(endpoint_id);
        }
        let proposals = by_shard.into_iter().map(|(index, endpoint_ids)| {
            self.propose(
                index,
                ShardOp::AddImported {
                    project_id: project_id.to_string(),
                    import_job_id: import_job_id.to_string(),
                    endpoint_ids,
                },
            )
        });
        for answer in join_all(proposals).await {
            match answer? {
                ShardOpResult::Done => {}
                other => {
                    return Err(ClusterError::Internal(format!(
                        "unexpected answer {other:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Ends an abandoned job as FAILED (see [`ImportJob::is_abandoned`]) and answers it as
    /// stored: already ended by someone else, it is answered as it ended.
    pub async fn abandon_import_job(&self, mut job: ImportJob) -> Result<ImportJob> {
        let (project_id, job_id) = (job.project_id.clone(), job.job_id.clone());
        job.finish(Some(ABANDONED_FAILURE.to_string()), now_rfc3339());
        match self.update_import_job(job).await {
            Ok(job) => {
                tracing::info!(%job_id, "import job abandoned by its node, marked failed");
                Ok(job)
            }
            Err(ClusterError::NotFound(_)) => self.get_import_job(&project_id, &job_id).await,
            Err(error) => Err(error),
        }
    }

    /// One job of a project.
    pub async fn get_import_job(&self, project_id: &str, job_id: &str) -> Result<ImportJob> {
        self.project(project_id).await?;
        self.read_value(META_GROUP, import_job_key(project_id, job_id))
            .await?
            .ok_or_else(|| ClusterError::NotFound(format!("import job {job_id:?} not found")))
    }

    /// Every job of a project, newest first.
    pub async fn list_import_jobs(&self, project_id: &str) -> Result<Vec<ImportJob>> {
        self.project(project_id).await?;
        let records = self
            .read_records(
                META_GROUP,
                keys::data_key(META_GROUP, tag::IMPORT_JOB, &[project_id]),
            )
            .await?;
        let mut jobs = records
            .into_iter()
            .map(|(_, value)| codec::decode::<ImportJob>(&value).map_err(ClusterError::internal))
            .collect::<Result<Vec<_>>>()?;
        jobs.sort_by(|a, b| b.creation_date.cmp(&a.creation_date));
        Ok(jobs)
    }
}
