//! Import job records (SPEC SEG-3, DAT-1): kept in the meta group so any node answers about
//! any job; the job itself runs on the node that received it (`api::imports`).

use super::{Cluster, ClusterError, Result, now_rfc3339};
use crate::domain::import_job::ImportJob;
use crate::raft::META_GROUP;
use crate::raft::command::{ImportCommand, MetaCommand, MetaResponse};
use crate::raft::state_machine::import_job_key;
use crate::storage::{codec, keys, keys::tag};

impl Cluster {
    /// Records a new job in state CREATED for `project_id` and answers it.
    pub async fn create_import_job(
        &self,
        project_id: &str,
        format: &str,
        file_name: &str,
    ) -> Result<ImportJob> {
        self.get_project(project_id).await?;
        let job = ImportJob::new(
            project_id.to_string(),
            uuid::Uuid::new_v4().simple().to_string(),
            format.to_string(),
            file_name.to_string(),
            now_rfc3339(),
        );
        match self
            .write_meta(MetaCommand::Import(ImportCommand::Put(job)))
            .await?
        {
            MetaResponse::ImportJob(job) => Ok(job),
            MetaResponse::ProjectNotFound => Err(ClusterError::project_not_found(project_id)),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Replaces a running job's progress; NOT_FOUND once the job is gone or has ended.
    pub async fn update_import_job(&self, job: ImportJob) -> Result<ImportJob> {
        let job_id = job.job_id.clone();
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
