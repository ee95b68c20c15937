//! Segments (SPEC SEG): versions in the meta group; estimates evaluated by every shard leader
//! over its in-memory index and summed.

use std::collections::BTreeMap;

use futures::future::join_all;

use super::forward::{ForwardAnswer, ForwardOp};
use super::{Cluster, ClusterError, Result, now_rfc3339};
use crate::domain::FieldViolation;
use crate::domain::segment::{
    SegmentDefinition, SegmentError, SegmentRecord, SegmentReference, SegmentRule,
};
use crate::domain::segment_index::CompiledSegment;
use crate::raft::command::{MetaCommand, MetaResponse, SegmentCommand};
use crate::raft::state_machine::{segment_head_key, segment_key};
use crate::raft::{META_GROUP, shard_group};
use crate::storage::{codec, keys, keys::tag};

fn not_found(segment_id: &str) -> ClusterError {
    ClusterError::NotFound(format!("segment {segment_id:?} not found"))
}

fn reference_error(error: SegmentError) -> ClusterError {
    ClusterError::InvalidArgument(vec![FieldViolation::new(
        "source_segments",
        error.to_string(),
    )])
}

impl Cluster {
    /// Loads the segments a definition refers to, transitively.
    pub(crate) async fn load_segment_references(
        &self,
        project_id: &str,
        definition: &SegmentDefinition,
    ) -> Result<BTreeMap<SegmentReference, SegmentDefinition>> {
        let mut loaded: BTreeMap<SegmentReference, SegmentDefinition> = BTreeMap::new();
        let mut pending: Vec<SegmentReference> = definition.rule.references().cloned().collect();
        while let Some(reference) = pending.pop() {
            if loaded.contains_key(&reference) || loaded.len() > 64 {
                continue;
            }
            let record = match self
                .get_segment(project_id, &reference.id, reference.version)
                .await
            {
                Ok(record) => record,
                Err(ClusterError::NotFound(_)) => {
                    return Err(reference_error(SegmentError::UnknownSegment {
                        id: reference.id.clone(),
                        version: reference.version,
                    }));
                }
                Err(error) => return Err(error),
            };
            pending.extend(record.definition.rule.references().cloned());
            loaded.insert(reference, record.definition);
        }
        Ok(loaded)
    }

    /// Loads the segments a definition refers to (transitively) and compiles it.
    pub(crate) async fn compile_segment(
        &self,
        project_id: &str,
        definition: &SegmentDefinition,
    ) -> Result<CompiledSegment> {
        let loaded = self.load_segment_references(project_id, definition).await?;
        let resolver = |id: &str, version: Option<u32>| {
            loaded
                .iter()
                .find(|(r, _)| r.id == id && r.version == version)
                .map(|(_, d)| d)
        };
        CompiledSegment::compile(definition, &resolver).map_err(reference_error)
    }

    async fn write_segment(&self, record: SegmentRecord, create: bool) -> Result<SegmentRecord> {
        let project_id = record.project_id.clone();
        let segment_id = record.segment_id.clone();
        match self
            .write_meta(MetaCommand::Segment(SegmentCommand::Put { record, create }))
            .await?
        {
            MetaResponse::Segment(record) => Ok(record),
            MetaResponse::SegmentNotFound if create => Err(ClusterError::AlreadyExists(format!(
                "segment {segment_id:?} exists"
            ))),
            MetaResponse::SegmentNotFound => Err(not_found(&segment_id)),
            MetaResponse::ProjectNotFound => Err(ClusterError::project_not_found(&project_id)),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Refuses an imported segment whose import job does not exist.
    async fn check_import_job(
        &self,
        project_id: &str,
        definition: &SegmentDefinition,
    ) -> Result<()> {
        let SegmentRule::Imported { import_job_id } = &definition.rule else {
            return Ok(());
        };
        match self.get_import_job(project_id, import_job_id).await {
            Ok(_) => Ok(()),
            Err(ClusterError::NotFound(_)) => {
                Err(ClusterError::InvalidArgument(vec![FieldViolation::new(
                    "imported.import_job_id",
                    format!("import job {import_job_id:?} does not exist"),
                )]))
            }
            Err(error) => Err(error),
        }
    }

    /// Creates a segment (validated by the caller) with a new id.
    pub async fn create_segment(
        &self,
        project_id: &str,
        definition: SegmentDefinition,
    ) -> Result<SegmentRecord> {
        self.get_project(project_id).await?;
        self.check_import_job(project_id, &definition).await?;
        self.insert_segment(project_id, definition).await
    }

    /// Creates a segment with a new id, without checking that an imported segment's job
    /// exists: for the job itself, which creates its segment before its record.
    pub(crate) async fn insert_segment(
        &self,
        project_id: &str,
        definition: SegmentDefinition,
    ) -> Result<SegmentRecord> {
        self.compile_segment(project_id, &definition).await?;
        let now = now_rfc3339();
        let record = SegmentRecord {
            project_id: project_id.to_string(),
            segment_id: uuid::Uuid::new_v4().simple().to_string(),
            version: 0,
            definition,
            creation_date: now.clone(),
            last_modified_date: now,
        };
        self.write_segment(record, true).await
    }

    /// Writes the next version of a segment.
    pub async fn update_segment(
        &self,
        project_id: &str,
        segment_id: &str,
        definition: SegmentDefinition,
    ) -> Result<SegmentRecord> {
        self.get_segment(project_id, segment_id, None).await?;
        self.check_import_job(project_id, &definition).await?;
        self.compile_segment(project_id, &definition).await?;
        let now = now_rfc3339();
        let record = SegmentRecord {
            project_id: project_id.to_string(),
            segment_id: segment_id.to_string(),
            version: 0,
            definition,
            creation_date: now.clone(),
            last_modified_date: now,
        };
        self.write_segment(record, false).await
    }

    /// A version of a segment; the latest when `version` is None.
    pub async fn get_segment(
        &self,
        project_id: &str,
        segment_id: &str,
        version: Option<u32>,
    ) -> Result<SegmentRecord> {
        self.project(project_id).await?;
        let version = match version {
            Some(version) => version,
            None => self
                .read_value::<u32>(META_GROUP, segment_head_key(project_id, segment_id))
                .await?
                .ok_or_else(|| not_found(segment_id))?,
        };
        self.read_value(META_GROUP, segment_key(project_id, segment_id, version))
            .await?
            .ok_or_else(|| {
                ClusterError::NotFound(format!(
                    "version {version} of segment {segment_id:?} not found"
                ))
            })
    }

    /// The latest version of every segment of a project.
    pub async fn list_segments(&self, project_id: &str) -> Result<Vec<SegmentRecord>> {
        self.project(project_id).await?;
        let heads = self
            .read_records(
                META_GROUP,
                keys::data_key(META_GROUP, tag::SEGMENT_HEAD, &[project_id]),
            )
            .await?;
        let mut records = Vec::new();
        for (key, value) in heads {
            let Some(segment_id) = keys::data_fields(&key).into_iter().nth(1) else {
                continue;
            };
            let version: u32 = codec::decode(&value).map_err(ClusterError::internal)?;
            if let Some(record) = self
                .read_value::<SegmentRecord>(
                    META_GROUP,
                    segment_key(project_id, &segment_id, version),
                )
                .await?
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Every version of a segment, oldest first.
    pub async fn segment_versions(
        &self,
        project_id: &str,
        segment_id: &str,
    ) -> Result<Vec<SegmentRecord>> {
        self.get_segment(project_id, segment_id, None).await?;
        self.read_records(
            META_GROUP,
            keys::data_key(META_GROUP, tag::SEGMENT, &[project_id, segment_id]),
        )
        .await?
        .into_iter()
        .map(|(_, value)| codec::decode(&value).map_err(ClusterError::internal))
        .collect()
    }

    /// Deletes every version of a segment; answers the latest as it was.
    pub async fn delete_segment(
        &self,
        project_id: &str,
        segment_id: &str,
    ) -> Result<SegmentRecord> {
        self.project(project_id).await?;
        match self
            .write_meta(MetaCommand::Segment(SegmentCommand::Delete {
                project_id: project_id.to_string(),
                segment_id: segment_id.to_string(),
            }))
            .await?
        {
            MetaResponse::Segment(record) => Ok(record),
            MetaResponse::SegmentNotFound => Err(not_found(segment_id)),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// How many endpoints a segment selects now (SEG-4), summed over every shard's leader.
    pub async fn estimate_segment(
        &self,
        project_id: &str,
        segment_id: &str,
        version: Option<u32>,
    ) -> Result<u64> {
        let record = self.get_segment(project_id, segment_id, version).await?;
        self.estimate_definition(project_id, &record.definition)
            .await
    }

    /// How many endpoints a definition selects now.
    pub async fn estimate_definition(
        &self,
        project_id: &str,
        definition: &SegmentDefinition,
    ) -> Result<u64> {
        let segment = self.compile_segment(project_id, definition).await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let counts = (0..self.config.cluster.shards).map(|shard| {
            let group = shard_group(shard);
            let op = ForwardOp::SegmentCount {
                group,
                project_id: project_id.to_string(),
                segment: segment.clone(),
                now_ms,
            };
            self.on_leader(group, op)
        });
        let mut total = 0;
        for answer in join_all(counts).await {
            match answer? {
                ForwardAnswer::Count(count) => total += count,
                other => {
                    return Err(ClusterError::Internal(format!(
                        "unexpected answer {other:?}"
                    )));
                }
            }
        }
        Ok(total)
    }
}
