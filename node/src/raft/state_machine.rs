//! The state machines of the meta group and the shard groups, persisted in fjall.
//!
//! Each entry's writes, its log id and the membership go into one atomic fjall batch, so after
//! a crash the state machine is exactly at some applied log id and openraft re-applies the
//! committed entries after it. Snapshots are files written from a point-in-time fjall
//! snapshot: building one never holds the shard in memory, and a restart starts from the
//! persisted state, not from a replay of the whole log.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use fjall::Readable;
use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::command::{
    ChannelCommand, ClusterCommand, Command, CommandResponse, ImportCommand, MetaCommand,
    MetaResponse, PendingIndex, SegmentCommand, ShardOp, ShardOpResult, TemplateCommand,
    TemplateHead, TemplateWrite,
};
use super::{GroupId, META_GROUP, TypeConfig};
use crate::domain::FieldViolation;
use crate::domain::channel::{ChannelConfig, ChannelKind};
use crate::domain::endpoint::{Endpoint, validate_address};
use crate::domain::hashing::cohort_of;
use crate::domain::import_job::ImportJob;
use crate::domain::limits::Limits;
use crate::domain::otp::{OtpRecord, OtpVerdict};
use crate::domain::placement::{NodeId, NodeRecord, NodeState, ShardPlacement};
use crate::domain::project::Project;
use crate::domain::segment::{EndpointFacts, SegmentRecord, parse_instant};
use crate::domain::segment_index::SegmentIndex;
use crate::domain::template::{Template, TemplateType};
use crate::storage::keys::{self, state, tag};
use crate::storage::{Store, codec};

/// Snapshots installed by this process (a replica catching up from a leader's snapshot).
static SNAPSHOTS_INSTALLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many snapshots this process has installed.
pub fn snapshots_installed() -> u64 {
    SNAPSHOTS_INSTALLED.load(Ordering::Relaxed)
}

/// Applied position of a group's state machine, written atomically with its data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppliedState {
    /// Last applied log id.
    pub last_applied: Option<LogIdOf<TypeConfig>>,
    /// Last applied membership.
    pub membership: StoredMembershipOf<TypeConfig>,
    /// Endpoints stored in this group (shards only).
    pub endpoints: i64,
}

/// Where the current snapshot of a group is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotPointer {
    meta: SnapshotMetaOf<TypeConfig>,
    file: String,
}

/// Activity of an endpoint, updated by its events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Activity {
    /// Latest event timestamp seen (RFC 3339).
    pub last_seen: String,
    /// `_session.start` events seen.
    pub sessions: u64,
    /// Events seen.
    pub events: u64,
}

/// The state machine of one group.
pub struct StateMachine {
    group: GroupId,
    store: Store,
    /// Endpoints stored, kept in memory for metrics and written with every applied batch.
    endpoints: Arc<AtomicI64>,
    /// The segment index of this shard's endpoints, per project (empty for the meta group).
    segments: SegmentIndexes,
}

/// Segment indexes of one shard replica, per project.
pub type SegmentIndexes = Arc<std::sync::RwLock<HashMap<String, SegmentIndex>>>;

/// A change of the segment index made by an applied entry, applied after its commit.
enum IndexChange {
    /// An endpoint written; the imported segments holding it stay (they are records of
    /// their own, see [`IndexChange::AddImported`]).
    Upsert {
        project_id: String,
        endpoint_id: String,
        facts: Box<EndpointFacts>,
    },
    Remove {
        project_id: String,
        endpoint_id: String,
    },
    DropProject(String),
    /// An endpoint put in the imported segment of an import job.
    AddImported {
        project_id: String,
        endpoint_id: String,
        import_job_id: String,
    },
}

/// Last-seen changes smaller than this leave the segment index alone: recency windows are a
/// day or more, and skipping them keeps event ingestion cheap.
const LAST_SEEN_SLACK_SECONDS: i64 = 60;

fn last_seen_of(activity: Option<&Activity>) -> Option<chrono::DateTime<chrono::Utc>> {
    activity.and_then(|a| parse_instant(&a.last_seen))
}

/// Builds the segment indexes of `group` from its stored endpoints, activity and places in
/// imported segments.
fn build_segment_indexes(
    store: &Store,
    group: GroupId,
) -> io::Result<HashMap<String, SegmentIndex>> {
    let mut indexes: HashMap<String, SegmentIndex> = HashMap::new();
    if group == META_GROUP {
        return Ok(indexes);
    }
    for guard in store.data.prefix(keys::data_key(group, tag::ENDPOINT, &[])) {
        let value = guard.value().map_err(io::Error::other)?;
        let endpoint: Endpoint = codec::decode(&value).map_err(io::Error::other)?;
        let activity: Option<Activity> = store.get(
            &store.data,
            &keys::data_key(
                group,
                tag::ACTIVITY,
                &[&endpoint.project_id, &endpoint.endpoint_id],
            ),
        )?;
        let facts = EndpointFacts::from_endpoint(&endpoint, last_seen_of(activity.as_ref()));
        indexes
            .entry(endpoint.project_id.clone())
            .or_default()
            .upsert(&endpoint.endpoint_id, &facts);
    }
    for guard in store.data.prefix(keys::data_key(group, tag::IMPORTED, &[])) {
        let key = guard.key().map_err(io::Error::other)?;
        if let [project_id, endpoint_id, import_job_id] = &keys::data_fields(&key)[..]
            && let Some(index) = indexes.get_mut(project_id)
        {
            index.add_imported(endpoint_id, import_job_id);
        }
    }
    Ok(indexes)
}

impl StateMachine {
    /// The state machine of `group` over `store`.
    pub fn new(group: GroupId, store: Store) -> io::Result<Self> {
        let applied: AppliedState = store
            .get(&store.raft_state, &keys::state_key(group, state::APPLIED))?
            .unwrap_or_default();
        let segments = build_segment_indexes(&store, group)?;
        Ok(Self {
            group,
            store,
            endpoints: Arc::new(AtomicI64::new(applied.endpoints)),
            segments: Arc::new(std::sync::RwLock::new(segments)),
        })
    }

    /// The segment indexes of this replica, for estimates and sends.
    pub fn segment_indexes(&self) -> SegmentIndexes {
        self.segments.clone()
    }

    fn apply_index_changes(&self, changes: Vec<IndexChange>) {
        if changes.is_empty() {
            return;
        }
        let mut indexes = self.segments.write().expect("segment index lock");
        for change in changes {
            match change {
                IndexChange::Upsert {
                    project_id,
                    endpoint_id,
                    facts,
                } => indexes
                    .entry(project_id)
                    .or_default()
                    .upsert_keeping_imports(&endpoint_id, &facts),
                IndexChange::Remove {
                    project_id,
                    endpoint_id,
                } => {
                    if let Some(index) = indexes.get_mut(&project_id) {
                        index.remove(&endpoint_id);
                    }
                }
                IndexChange::DropProject(project_id) => {
                    indexes.remove(&project_id);
                }
                IndexChange::AddImported {
                    project_id,
                    endpoint_id,
                    import_job_id,
                } => {
                    if let Some(index) = indexes.get_mut(&project_id) {
                        index.add_imported(&endpoint_id, &import_job_id);
                    }
                }
            }
        }
    }

    /// Endpoints stored in this group, for metrics.
    pub fn endpoint_counter(&self) -> Arc<AtomicI64> {
        self.endpoints.clone()
    }

    fn applied(&self) -> io::Result<AppliedState> {
        Ok(self
            .store
            .get(
                &self.store.raft_state,
                &keys::state_key(self.group, state::APPLIED),
            )?
            .unwrap_or_default())
    }

    fn apply_entry(
        &self,
        entry: &<TypeConfig as openraft::RaftTypeConfig>::Entry,
        applied: &mut AppliedState,
    ) -> io::Result<CommandResponse> {
        let mut writer = Writer::new(&self.store);
        let mut index_changes = Vec::new();
        applied.last_applied = Some(entry.log_id());
        let response = match &entry.payload {
            EntryPayload::Blank => CommandResponse::Empty,
            EntryPayload::Membership(membership) => {
                applied.membership =
                    StoredMembership::new(Some(entry.log_id()), membership.clone());
                CommandResponse::Empty
            }
            EntryPayload::Normal(Command::Meta(command)) => {
                CommandResponse::Meta(apply_meta(self.group, &mut writer, command)?)
            }
            EntryPayload::Normal(Command::Shard(ops)) => {
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    results.push(apply_shard_op(
                        self.group,
                        &mut writer,
                        op,
                        &mut applied.endpoints,
                        &mut index_changes,
                    )?);
                }
                CommandResponse::Shard(results)
            }
        };
        writer.put(
            keys::state_key(self.group, state::APPLIED).to_vec(),
            applied,
            Space::State,
        );
        writer.commit()?;
        self.endpoints.store(applied.endpoints, Ordering::Relaxed);
        self.apply_index_changes(index_changes);
        Ok(response)
    }

    fn snapshot_pointer(&self) -> io::Result<Option<SnapshotPointer>> {
        Ok(self.store.get(
            &self.store.raft_state,
            &keys::state_key(self.group, state::SNAPSHOT),
        )?)
    }
}

/// Which keyspace a write goes to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Space {
    Data,
    State,
}

/// Writes of one entry: an atomic batch plus an overlay so later operations of the entry
/// read what earlier ones wrote.
pub(super) struct Writer<'a> {
    pub(super) store: &'a Store,
    batch: fjall::OwnedWriteBatch,
    /// Keys and values are shared with the batch (reference-counted slices), not copied.
    overlay: HashMap<fjall::UserKey, Option<fjall::UserValue>>,
    /// Keys written with [`Self::put_blind`].
    blind: Vec<Vec<u8>>,
}

impl<'a> Writer<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self {
            store,
            batch: store.db.batch(),
            overlay: HashMap::new(),
            blind: Vec::new(),
        }
    }

    pub(super) fn get<T: DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        if let Some(value) = self.overlay.get(key) {
            return match value {
                Some(bytes) => Ok(Some(codec::decode(bytes).map_err(io::Error::other)?)),
                None => Ok(None),
            };
        }
        Ok(self.store.get(&self.store.data, key)?)
    }

    pub(super) fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T, space: Space) {
        let bytes = codec::encode(value);
        match space {
            Space::Data => {
                let key = fjall::UserKey::from(key);
                let value = fjall::UserValue::from(bytes);
                self.batch
                    .insert(&self.store.data, key.clone(), value.clone());
                self.overlay.insert(key, Some(value));
            }
            Space::State => self.batch.insert(&self.store.raft_state, key, bytes),
        }
    }

    pub(super) fn put_blind<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.batch
            .insert(&self.store.data, key.clone(), codec::encode(value));
        self.blind.push(key);
    }

    pub(super) fn delete(&mut self, key: Vec<u8>) {
        let key = fjall::UserKey::from(key);
        self.batch.remove(&self.store.data, key.clone());
        self.overlay.insert(key, None);
    }

    /// Deletes every data record under `prefix`, including ones written earlier in this entry.
    pub(super) fn delete_prefix(&mut self, prefix: &[u8]) -> io::Result<()> {
        let mut doomed: Vec<Vec<u8>> = Vec::new();
        for guard in self.store.data.prefix(prefix) {
            doomed.push(guard.key().map_err(io::Error::other)?.to_vec());
        }
        doomed.extend(
            self.overlay
                .keys()
                .filter(|k| k.starts_with(prefix))
                .map(|k| k.to_vec()),
        );
        for key in doomed {
            self.delete(key);
        }
        Ok(())
    }

    pub(super) fn commit(self) -> io::Result<()> {
        self.batch.commit().map_err(io::Error::other)
    }
}

fn apply_meta(
    group: GroupId,
    writer: &mut Writer<'_>,
    command: &MetaCommand,
) -> io::Result<MetaResponse> {
    Ok(match command {
        MetaCommand::CreateProject(project) => {
            let key = keys::data_key(group, tag::PROJECT, &[&project.project_id]);
            if writer.get::<Project>(&key)?.is_some() {
                return Ok(MetaResponse::ProjectExists);
            }
            writer.put(key, project, Space::Data);
            MetaResponse::Project(project.clone())
        }
        MetaCommand::UpdateProjectSettings {
            project_id,
            settings,
        } => {
            let key = keys::data_key(group, tag::PROJECT, &[project_id]);
            let Some(mut project) = writer.get::<Project>(&key)? else {
                return Ok(MetaResponse::ProjectNotFound);
            };
            project.settings = settings.clone();
            writer.put(key, &project, Space::Data);
            MetaResponse::Project(project)
        }
        MetaCommand::DeleteProject { project_id } => {
            let key = keys::data_key(group, tag::PROJECT, &[project_id]);
            let Some(project) = writer.get::<Project>(&key)? else {
                return Ok(MetaResponse::ProjectNotFound);
            };
            writer.delete(key);
            writer.delete_prefix(&keys::data_key(group, tag::EVENT_TYPE, &[project_id]))?;
            writer.delete_prefix(&keys::data_key(group, tag::TEMPLATE, &[project_id]))?;
            writer.delete_prefix(&keys::data_key(group, tag::TEMPLATE_HEAD, &[project_id]))?;
            writer.delete_prefix(&keys::data_key(group, tag::SEGMENT, &[project_id]))?;
            writer.delete_prefix(&keys::data_key(group, tag::SEGMENT_HEAD, &[project_id]))?;
            writer.delete_prefix(&keys::data_key(group, tag::IMPORT_JOB, &[project_id]))?;
            writer.delete_prefix(&keys::data_key(group, tag::CHANNEL, &[project_id]))?;
            writer.delete_prefix(&keys::data_key(group, tag::CAMPAIGN, &[project_id]))?;
            writer.delete_prefix(&keys::data_key(group, tag::CAMPAIGN_HEAD, &[project_id]))?;
            writer.delete_prefix(&keys::data_key(group, tag::CAMPAIGN_RUN, &[project_id]))?;
            MetaResponse::Project(project)
        }
        MetaCommand::Cluster(command) => apply_cluster(group, writer, command)?,
        MetaCommand::Template(command) => apply_template(writer, command)?,
        MetaCommand::Segment(command) => apply_segment(writer, command)?,
        MetaCommand::Import(command) => apply_import(writer, command)?,
        MetaCommand::Channel(command) => apply_channel(writer, command)?,
        MetaCommand::Campaign(command) => super::campaign_state::apply_campaign(writer, command)?,
        MetaCommand::RegisterEventTypes {
            project_id,
            event_types,
            limit,
        } => {
            if writer
                .get::<Project>(&keys::data_key(group, tag::PROJECT, &[project_id]))?
                .is_none()
            {
                return Ok(MetaResponse::ProjectNotFound);
            }
            let prefix = keys::data_key(group, tag::EVENT_TYPE, &[project_id]);
            let mut registered = writer.store.data.prefix(&prefix).count();
            let mut accepted = Vec::new();
            for event_type in event_types {
                let key = keys::data_key(group, tag::EVENT_TYPE, &[project_id, event_type]);
                if writer.get::<()>(&key)?.is_some() {
                    accepted.push(event_type.clone());
                } else if registered < *limit {
                    writer.put(key, &(), Space::Data);
                    registered += 1;
                    accepted.push(event_type.clone());
                }
            }
            MetaResponse::EventTypes { accepted }
        }
    })
}

/// Key of a template version.
pub fn template_key(
    project_id: &str,
    template_type: TemplateType,
    name: &str,
    version: u32,
) -> Vec<u8> {
    keys::data_key(
        META_GROUP,
        tag::TEMPLATE,
        &[
            project_id,
            template_type.as_str(),
            name,
            &format!("{version:010}"),
        ],
    )
}

/// Key of a template's head (latest and active versions).
pub fn template_head_key(project_id: &str, template_type: TemplateType, name: &str) -> Vec<u8> {
    keys::data_key(
        META_GROUP,
        tag::TEMPLATE_HEAD,
        &[project_id, template_type.as_str(), name],
    )
}

fn apply_template(writer: &mut Writer<'_>, command: &TemplateCommand) -> io::Result<MetaResponse> {
    Ok(match command {
        TemplateCommand::Put { template, write } => {
            let kind = template.content.template_type();
            let head_key = template_head_key(&template.project_id, kind, &template.name);
            let head: Option<TemplateHead> = writer.get(&head_key)?;
            let (version, mut head) = match (write, head) {
                (TemplateWrite::Create, Some(_)) => return Ok(MetaResponse::TemplateExists),
                (TemplateWrite::Create, None) => (
                    1,
                    TemplateHead {
                        latest: 1,
                        active: 1,
                    },
                ),
                (_, None) => {
                    return Ok(MetaResponse::TemplateNotFound(format!(
                        "{} template {:?} not found",
                        kind.as_str(),
                        template.name
                    )));
                }
                (TemplateWrite::NewVersion, Some(head)) => (
                    head.latest + 1,
                    TemplateHead {
                        latest: head.latest + 1,
                        active: head.latest + 1,
                    },
                ),
                (TemplateWrite::ReplaceLatest, Some(head)) => (head.latest, head),
            };
            let key = template_key(&template.project_id, kind, &template.name, version);
            let mut stored = template.clone();
            stored.version = version;
            if let Some(existing) = writer.get::<Template>(&key)? {
                stored.creation_date = existing.creation_date;
            }
            head.latest = head.latest.max(version);
            writer.put(key, &stored, Space::Data);
            writer.put(head_key, &head, Space::Data);
            MetaResponse::Template {
                template: stored,
                head,
            }
        }
        TemplateCommand::SetActive {
            project_id,
            template_type,
            name,
            version,
        } => {
            let head_key = template_head_key(project_id, *template_type, name);
            let Some(mut head) = writer.get::<TemplateHead>(&head_key)? else {
                return Ok(MetaResponse::TemplateNotFound(format!(
                    "{} template {name:?} not found",
                    template_type.as_str()
                )));
            };
            let Some(template) = writer.get::<Template>(&template_key(
                project_id,
                *template_type,
                name,
                *version,
            ))?
            else {
                return Ok(MetaResponse::TemplateNotFound(format!(
                    "version {version} of {} template {name:?} not found",
                    template_type.as_str()
                )));
            };
            head.active = *version;
            writer.put(head_key, &head, Space::Data);
            MetaResponse::Template { template, head }
        }
        TemplateCommand::Delete {
            project_id,
            template_type,
            name,
            version,
        } => {
            let head_key = template_head_key(project_id, *template_type, name);
            let Some(mut head) = writer.get::<TemplateHead>(&head_key)? else {
                return Ok(MetaResponse::TemplateNotFound(format!(
                    "{} template {name:?} not found",
                    template_type.as_str()
                )));
            };
            let prefix = keys::data_key(
                META_GROUP,
                tag::TEMPLATE,
                &[project_id, template_type.as_str(), name],
            );
            let versions: Vec<(Vec<u8>, Template)> =
                writer.store.scan(&writer.store.data, &prefix)?;
            let doomed: Vec<(Vec<u8>, Template)> = versions
                .iter()
                .filter(|(_, t)| version.is_none_or(|v| t.version == v))
                .cloned()
                .collect();
            if doomed.is_empty() {
                return Ok(MetaResponse::TemplateNotFound(format!(
                    "version {} of {} template {name:?} not found",
                    version.unwrap_or_default(),
                    template_type.as_str()
                )));
            }
            for (key, _) in &doomed {
                writer.delete(key.clone());
            }
            let remaining: Vec<u32> = versions
                .iter()
                .map(|(_, t)| t.version)
                .filter(|v| !doomed.iter().any(|(_, d)| d.version == *v))
                .collect();
            match remaining.iter().max() {
                None => writer.delete(head_key),
                Some(latest) => {
                    head.latest = *latest;
                    if !remaining.contains(&head.active) {
                        head.active = *latest;
                    }
                    writer.put(head_key, &head, Space::Data);
                }
            }
            MetaResponse::TemplatesDeleted(doomed.len() as u32)
        }
    })
}

/// Key of a segment version.
pub fn segment_key(project_id: &str, segment_id: &str, version: u32) -> Vec<u8> {
    keys::data_key(
        META_GROUP,
        tag::SEGMENT,
        &[project_id, segment_id, &format!("{version:010}")],
    )
}

/// Key of a segment's latest version number.
pub fn segment_head_key(project_id: &str, segment_id: &str) -> Vec<u8> {
    keys::data_key(META_GROUP, tag::SEGMENT_HEAD, &[project_id, segment_id])
}

fn apply_segment(writer: &mut Writer<'_>, command: &SegmentCommand) -> io::Result<MetaResponse> {
    Ok(match command {
        SegmentCommand::Put { record, create } => {
            let head_key = segment_head_key(&record.project_id, &record.segment_id);
            let latest: Option<u32> = writer.get(&head_key)?;
            let version = match (create, latest) {
                (true, None) => 1,
                (false, Some(latest)) => latest + 1,
                _ => return Ok(MetaResponse::SegmentNotFound),
            };
            let mut stored = record.clone();
            stored.version = version;
            if let Some(previous) = latest
                && let Some(first) = writer.get::<SegmentRecord>(&segment_key(
                    &record.project_id,
                    &record.segment_id,
                    previous,
                ))?
            {
                stored.creation_date = first.creation_date;
            }
            writer.put(
                segment_key(&record.project_id, &record.segment_id, version),
                &stored,
                Space::Data,
            );
            writer.put(head_key, &version, Space::Data);
            MetaResponse::Segment(stored)
        }
        SegmentCommand::Delete {
            project_id,
            segment_id,
        } => {
            let head_key = segment_head_key(project_id, segment_id);
            let Some(latest) = writer.get::<u32>(&head_key)? else {
                return Ok(MetaResponse::SegmentNotFound);
            };
            let record: Option<SegmentRecord> =
                writer.get(&segment_key(project_id, segment_id, latest))?;
            writer.delete(head_key);
            writer.delete_prefix(&keys::data_key(
                META_GROUP,
                tag::SEGMENT,
                &[project_id, segment_id],
            ))?;
            match record {
                Some(record) => MetaResponse::Segment(record),
                None => MetaResponse::SegmentNotFound,
            }
        }
    })
}

/// Key of an import job.
pub fn import_job_key(project_id: &str, job_id: &str) -> Vec<u8> {
    keys::data_key(META_GROUP, tag::IMPORT_JOB, &[project_id, job_id])
}

fn apply_import(writer: &mut Writer<'_>, command: &ImportCommand) -> io::Result<MetaResponse> {
    Ok(match command {
        ImportCommand::Put(job) => {
            let project_key = keys::data_key(META_GROUP, tag::PROJECT, &[&job.project_id]);
            if writer.get::<Project>(&project_key)?.is_none() {
                return Ok(MetaResponse::ProjectNotFound);
            }
            writer.put(
                import_job_key(&job.project_id, &job.job_id),
                job,
                Space::Data,
            );
            MetaResponse::ImportJob(job.clone())
        }
        ImportCommand::Update(job) => {
            let key = import_job_key(&job.project_id, &job.job_id);
            match writer.get::<ImportJob>(&key)? {
                Some(stored) if !stored.state.is_final() => {
                    writer.put(key, job, Space::Data);
                    MetaResponse::ImportJob(job.clone())
                }
                _ => MetaResponse::ImportJobNotFound,
            }
        }
    })
}

/// Key of one channel's settings of a project.
pub fn channel_key(project_id: &str, channel: ChannelKind) -> Vec<u8> {
    keys::data_key(META_GROUP, tag::CHANNEL, &[project_id, channel.as_str()])
}

fn apply_channel(writer: &mut Writer<'_>, command: &ChannelCommand) -> io::Result<MetaResponse> {
    Ok(match command {
        ChannelCommand::Put {
            project_id,
            settings,
        } => {
            let project_key = keys::data_key(META_GROUP, tag::PROJECT, &[project_id]);
            if writer.get::<Project>(&project_key)?.is_none() {
                return Ok(MetaResponse::ProjectNotFound);
            }
            let key = channel_key(project_id, settings.kind());
            let mut settings = settings.clone();
            if let Some(stored) = writer.get::<ChannelConfig>(&key)? {
                settings.keep_secrets_of(&stored);
            }
            writer.put(key, &settings, Space::Data);
            MetaResponse::Channel(settings)
        }
        ChannelCommand::Delete {
            project_id,
            channel,
        } => {
            let project_key = keys::data_key(META_GROUP, tag::PROJECT, &[project_id]);
            if writer.get::<Project>(&project_key)?.is_none() {
                return Ok(MetaResponse::ProjectNotFound);
            }
            let key = channel_key(project_id, *channel);
            let existed = writer.get::<ChannelConfig>(&key)?.is_some();
            if existed {
                writer.delete(key);
            }
            MetaResponse::ChannelDeleted(existed)
        }
    })
}

/// The cluster record: the next node id to give out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Ids are never reused, so this only grows.
    pub next_node_id: NodeId,
    /// Shards of the cluster.
    pub shards: u32,
}

/// Key of a node record.
pub fn node_key(node_id: NodeId) -> Vec<u8> {
    keys::data_key(META_GROUP, tag::NODE, &[&format!("{node_id:020}")])
}

/// Key of a shard's placement.
pub fn placement_key(shard: u32) -> Vec<u8> {
    keys::data_key(META_GROUP, tag::PLACEMENT, &[&format!("{shard:010}")])
}

/// Key of the cluster record.
pub fn cluster_key() -> Vec<u8> {
    keys::data_key(META_GROUP, tag::CLUSTER, &[])
}

fn apply_cluster(
    group: GroupId,
    writer: &mut Writer<'_>,
    command: &ClusterCommand,
) -> io::Result<MetaResponse> {
    debug_assert_eq!(group, META_GROUP);
    Ok(match command {
        ClusterCommand::Bootstrap { node, shards } => {
            if writer.get::<ClusterRecord>(&cluster_key())?.is_some() {
                return Ok(MetaResponse::Done);
            }
            writer.put(
                cluster_key(),
                &ClusterRecord {
                    next_node_id: node.node_id + 1,
                    shards: *shards,
                },
                Space::Data,
            );
            writer.put(node_key(node.node_id), node, Space::Data);
            for shard in 0..*shards {
                let members: std::collections::BTreeSet<NodeId> = [node.node_id].into();
                let placement = ShardPlacement {
                    shard,
                    target: members.clone(),
                    preferred_leader: Some(node.node_id),
                    voters: members,
                    leader: Some(node.node_id),
                    term: 0,
                    max_lag: 0,
                };
                writer.put(placement_key(shard), &placement, Space::Data);
            }
            MetaResponse::Done
        }
        ClusterCommand::AddNode {
            client_addr,
            peer_addr,
        } => {
            let mut cluster: ClusterRecord = writer.get(&cluster_key())?.unwrap_or_default();
            for guard in writer
                .store
                .data
                .prefix(keys::data_key(META_GROUP, tag::NODE, &[]))
            {
                let value = guard.value().map_err(io::Error::other)?;
                let existing: NodeRecord = codec::decode(&value).map_err(io::Error::other)?;
                if existing.peer_addr == *peer_addr && existing.state != NodeState::Removed {
                    return Ok(MetaResponse::NodeId(existing.node_id));
                }
            }
            let node_id = cluster.next_node_id.max(2);
            cluster.next_node_id = node_id + 1;
            writer.put(cluster_key(), &cluster, Space::Data);
            let record = NodeRecord {
                node_id,
                client_addr: client_addr.clone(),
                peer_addr: peer_addr.clone(),
                state: NodeState::Active,
            };
            writer.put(node_key(node_id), &record, Space::Data);
            MetaResponse::NodeId(node_id)
        }
        ClusterCommand::SetNodeState { node_id, state } => {
            let Some(mut record) = writer.get::<NodeRecord>(&node_key(*node_id))? else {
                return Ok(MetaResponse::ProjectNotFound);
            };
            if record.state != NodeState::Removed {
                record.state = *state;
                writer.put(node_key(*node_id), &record, Space::Data);
            }
            MetaResponse::Done
        }
        ClusterCommand::SetTargets(placements) => {
            for placement in placements {
                let key = placement_key(placement.shard);
                let mut stored: ShardPlacement =
                    writer.get(&key)?.unwrap_or_else(|| ShardPlacement {
                        shard: placement.shard,
                        ..Default::default()
                    });
                stored.target = placement.target.clone();
                stored.preferred_leader = placement.preferred_leader;
                writer.put(key, &stored, Space::Data);
            }
            MetaResponse::Done
        }
        ClusterCommand::ReportShard {
            shard,
            voters,
            leader,
            term,
            max_lag,
        } => {
            let key = placement_key(*shard);
            let mut stored: ShardPlacement = writer.get(&key)?.unwrap_or_else(|| ShardPlacement {
                shard: *shard,
                target: voters.clone(),
                ..Default::default()
            });
            stored.voters = voters.clone();
            stored.leader = Some(*leader);
            stored.term = *term;
            stored.max_lag = *max_lag;
            writer.put(key, &stored, Space::Data);
            MetaResponse::Done
        }
    })
}

fn apply_shard_op(
    group: GroupId,
    writer: &mut Writer<'_>,
    op: &ShardOp,
    endpoints: &mut i64,
    index_changes: &mut Vec<IndexChange>,
) -> io::Result<ShardOpResult> {
    Ok(match op {
        ShardOp::UpsertEndpoint {
            project_id,
            endpoint_id,
            input,
            now,
        } => {
            let key = keys::data_key(group, tag::ENDPOINT, &[project_id, endpoint_id]);
            let existing: Option<Endpoint> = writer.get(&key)?;
            if input.channel_type.is_none() {
                // The input was validated without a channel; check it against the stored one.
                let Some(stored) = &existing else {
                    return Ok(ShardOpResult::Refused(FieldViolation::new(
                        "channel_type",
                        "is required for a new endpoint",
                    )));
                };
                // Length limits were checked by the API with the configured limits.
                let unbounded = Limits {
                    address_bytes: usize::MAX,
                    ..Limits::default()
                };
                let mut violations = Vec::new();
                validate_address(
                    "address",
                    stored.channel_type,
                    &input.address,
                    &unbounded,
                    &mut violations,
                );
                if let Some(violation) = violations.into_iter().next() {
                    return Ok(ShardOpResult::Refused(violation));
                }
            }
            let endpoint = Endpoint::upserted(
                existing.as_ref(),
                project_id,
                endpoint_id,
                input.clone(),
                now,
                cohort_of(project_id, endpoint_id),
            );
            let old_user = existing
                .as_ref()
                .map(|e| e.user.user_id.clone())
                .unwrap_or_default();
            let new_user = endpoint.user.user_id.clone();
            let mut pending = Vec::new();
            if old_user != new_user {
                if !old_user.is_empty() {
                    pending.push(record_pending(
                        group,
                        writer,
                        project_id,
                        &old_user,
                        endpoint_id,
                        false,
                    ));
                }
                if !new_user.is_empty() {
                    pending.push(record_pending(
                        group,
                        writer,
                        project_id,
                        &new_user,
                        endpoint_id,
                        true,
                    ));
                }
            }
            if existing.is_none() {
                *endpoints += 1;
            }
            let activity: Option<Activity> = writer.get(&keys::data_key(
                group,
                tag::ACTIVITY,
                &[project_id, endpoint_id],
            ))?;
            index_changes.push(IndexChange::Upsert {
                project_id: project_id.clone(),
                endpoint_id: endpoint_id.clone(),
                facts: Box::new(EndpointFacts::from_endpoint(
                    &endpoint,
                    last_seen_of(activity.as_ref()),
                )),
            });
            writer.put(key, &endpoint, Space::Data);
            ShardOpResult::Endpoint {
                endpoint: Some(Box::new(endpoint)),
                pending,
            }
        }
        ShardOp::DeleteEndpoint {
            project_id,
            endpoint_id,
        } => {
            let key = keys::data_key(group, tag::ENDPOINT, &[project_id, endpoint_id]);
            let Some(existing) = writer.get::<Endpoint>(&key)? else {
                return Ok(ShardOpResult::Endpoint {
                    endpoint: None,
                    pending: Vec::new(),
                });
            };
            index_changes.push(IndexChange::Remove {
                project_id: project_id.clone(),
                endpoint_id: endpoint_id.clone(),
            });
            writer.delete(key);
            writer.delete(keys::data_key(
                group,
                tag::ACTIVITY,
                &[project_id, endpoint_id],
            ));
            writer.delete_prefix(&keys::data_key(
                group,
                tag::EVENT,
                &[project_id, endpoint_id],
            ))?;
            writer.delete_prefix(&keys::data_key(
                group,
                tag::INBOX,
                &[project_id, endpoint_id],
            ))?;
            writer.delete_prefix(&keys::data_key(
                group,
                tag::IMPORTED,
                &[project_id, endpoint_id],
            ))?;
            *endpoints -= 1;
            let mut pending = Vec::new();
            if !existing.user.user_id.is_empty() {
                pending.push(record_pending(
                    group,
                    writer,
                    project_id,
                    &existing.user.user_id,
                    endpoint_id,
                    false,
                ));
            }
            ShardOpResult::Endpoint {
                endpoint: Some(Box::new(existing)),
                pending,
            }
        }
        ShardOp::PutEvents {
            project_id,
            endpoint_id,
            events,
        } => {
            let activity_key = keys::data_key(group, tag::ACTIVITY, &[project_id, endpoint_id]);
            let mut activity: Activity = writer.get(&activity_key)?.unwrap_or_default();
            let seen_before = last_seen_of(Some(&activity));
            let mut seen = seen_before;
            for (event_id, event) in events {
                let key = keys::data_key(group, tag::EVENT, &[project_id, endpoint_id, event_id]);
                super::campaign_state::count_engagement(
                    group,
                    writer,
                    project_id,
                    endpoint_id,
                    event_id,
                    event,
                )?;
                writer.put_blind(key, event);
                activity.events += 1;
                if event.event_type == "_session.start" {
                    activity.sessions += 1;
                }
                let at = parse_instant(&event.timestamp);
                if at > seen {
                    seen = at;
                }
            }
            if seen > seen_before {
                activity.last_seen = seen
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default();
                let moved = match (seen_before, seen) {
                    (Some(before), Some(after)) => {
                        (after - before).num_seconds() >= LAST_SEEN_SLACK_SECONDS
                    }
                    _ => true,
                };
                if moved
                    && let Some(endpoint) = writer.get::<Endpoint>(&keys::data_key(
                        group,
                        tag::ENDPOINT,
                        &[project_id, endpoint_id],
                    ))?
                {
                    index_changes.push(IndexChange::Upsert {
                        project_id: project_id.clone(),
                        endpoint_id: endpoint_id.clone(),
                        facts: Box::new(EndpointFacts::from_endpoint(&endpoint, seen)),
                    });
                }
            }
            writer.put(activity_key, &activity, Space::Data);
            ShardOpResult::Events(events.len())
        }
        ShardOp::IndexUser {
            project_id,
            user_id,
            endpoint_id,
            present,
        } => {
            let key = keys::data_key(group, tag::USER_INDEX, &[project_id, user_id, endpoint_id]);
            if *present {
                writer.put(key, &(), Space::Data);
            } else {
                writer.delete(key);
            }
            ShardOpResult::Done
        }
        ShardOp::ClearPendingIndex {
            project_id,
            user_id,
            endpoint_id,
            present,
        } => {
            let key = keys::data_key(
                group,
                tag::PENDING_INDEX,
                &[project_id, user_id, endpoint_id],
            );
            if writer
                .get::<PendingIndex>(&key)?
                .is_some_and(|p| p.present == *present)
            {
                writer.delete(key);
            }
            ShardOpResult::Done
        }
        ShardOp::DeleteProjectData { project_id } => {
            index_changes.push(IndexChange::DropProject(project_id.clone()));
            let endpoint_prefix = keys::data_key(group, tag::ENDPOINT, &[project_id]);
            let removed = writer.store.data.prefix(&endpoint_prefix).count() as i64;
            for record in [
                tag::ENDPOINT,
                tag::USER_INDEX,
                tag::PENDING_INDEX,
                tag::EVENT,
                tag::ACTIVITY,
                tag::INBOX,
                tag::OTP,
                tag::SEND_INTENT,
                tag::PENDING_INTENT,
                tag::ENDPOINT_CAPS,
                tag::RUN_PART,
                tag::RUN_HIGH_WATER,
                tag::CAMPAIGN_KPI,
                tag::IMPORTED,
            ] {
                writer.delete_prefix(&keys::data_key(group, record, &[project_id]))?;
            }
            *endpoints -= removed;
            ShardOpResult::Done
        }
        ShardOp::SetEndpointStatus {
            project_id,
            endpoint_id,
            status,
        } => {
            let key = keys::data_key(group, tag::ENDPOINT, &[project_id, endpoint_id]);
            let Some(mut endpoint) = writer.get::<Endpoint>(&key)? else {
                return Ok(ShardOpResult::Endpoint {
                    endpoint: None,
                    pending: Vec::new(),
                });
            };
            endpoint.status = *status;
            let activity: Option<Activity> = writer.get(&keys::data_key(
                group,
                tag::ACTIVITY,
                &[project_id, endpoint_id],
            ))?;
            index_changes.push(IndexChange::Upsert {
                project_id: project_id.clone(),
                endpoint_id: endpoint_id.clone(),
                facts: Box::new(EndpointFacts::from_endpoint(
                    &endpoint,
                    last_seen_of(activity.as_ref()),
                )),
            });
            writer.put(key, &endpoint, Space::Data);
            ShardOpResult::Endpoint {
                endpoint: Some(Box::new(endpoint)),
                pending: Vec::new(),
            }
        }
        ShardOp::AddImported {
            project_id,
            import_job_id,
            endpoint_ids,
        } => {
            for endpoint_id in endpoint_ids {
                let endpoint_key = keys::data_key(group, tag::ENDPOINT, &[project_id, endpoint_id]);
                if writer.get::<Endpoint>(&endpoint_key)?.is_none() {
                    continue;
                }
                writer.put(
                    keys::data_key(
                        group,
                        tag::IMPORTED,
                        &[project_id, endpoint_id, import_job_id],
                    ),
                    &(),
                    Space::Data,
                );
                index_changes.push(IndexChange::AddImported {
                    project_id: project_id.clone(),
                    endpoint_id: endpoint_id.clone(),
                    import_job_id: import_job_id.clone(),
                });
            }
            ShardOpResult::Done
        }
        ShardOp::PutInboxMessage {
            project_id,
            endpoint_id,
            message,
        } => {
            let key = keys::data_key(
                group,
                tag::INBOX,
                &[project_id, endpoint_id, &message.message_id],
            );
            writer.put(key, message, Space::Data);
            ShardOpResult::Done
        }
        ShardOp::PutOtp {
            project_id,
            otp_key,
            record,
        } => {
            writer.put(
                keys::data_key(group, tag::OTP, &[project_id, otp_key]),
                record,
                Space::Data,
            );
            ShardOpResult::Done
        }
        ShardOp::VerifyOtp {
            project_id,
            otp_key,
            salt,
            candidate_hash,
            now_ms,
        } => {
            let key = keys::data_key(group, tag::OTP, &[project_id, otp_key]);
            let Some(record) = writer.get::<OtpRecord>(&key)? else {
                return Ok(ShardOpResult::Otp(OtpVerdict::Unknown));
            };
            let (verdict, kept) = record.attempt(salt, candidate_hash, *now_ms);
            match kept {
                Some(kept) if kept != record => writer.put(key, &kept, Space::Data),
                Some(_) => {}
                None => writer.delete(key),
            }
            ShardOpResult::Otp(verdict)
        }
        ShardOp::CommitIntents {
            project_id,
            campaign_id,
            run_id,
            campaign_version,
            limits,
            now_ms,
            intents,
        } => super::campaign_state::commit_intents(
            group,
            writer,
            super::campaign_state::RunRef {
                project_id,
                campaign_id,
                run_id,
            },
            *campaign_version,
            limits,
            *now_ms,
            intents,
        )?,
        ShardOp::CommitOutcomes {
            project_id,
            campaign_id,
            run_id,
            now_ms,
            outcomes,
        } => super::campaign_state::commit_outcomes(
            group,
            writer,
            super::campaign_state::RunRef {
                project_id,
                campaign_id,
                run_id,
            },
            *now_ms,
            outcomes,
        )?,
        ShardOp::FinishRunPart {
            project_id,
            campaign_id,
            run_id,
        } => super::campaign_state::finish_part(
            group,
            writer,
            super::campaign_state::RunRef {
                project_id,
                campaign_id,
                run_id,
            },
        )?,
    })
}

fn record_pending(
    group: GroupId,
    writer: &mut Writer<'_>,
    project_id: &str,
    user_id: &str,
    endpoint_id: &str,
    present: bool,
) -> PendingIndex {
    let pending = PendingIndex {
        project_id: project_id.to_string(),
        user_id: user_id.to_string(),
        endpoint_id: endpoint_id.to_string(),
        present,
    };
    let key = keys::data_key(
        group,
        tag::PENDING_INDEX,
        &[project_id, user_id, endpoint_id],
    );
    writer.put(key, &pending, Space::Data);
    pending
}

/// Builds a snapshot file from a point-in-time view of the group.
pub struct SnapshotBuilder {
    group: GroupId,
    store: Store,
}

/// Snapshot file layout: format version, meta length (u32) and meta, then records of
/// key length (u32), key, value length (u32), value.
fn write_snapshot_file(
    store: &Store,
    group: GroupId,
) -> io::Result<(SnapshotMetaOf<TypeConfig>, PathBuf)> {
    let view = store.db.snapshot();
    let applied: AppliedState = match view
        .get(&store.raft_state, keys::state_key(group, state::APPLIED))
        .map_err(io::Error::other)?
    {
        Some(bytes) => codec::decode(&bytes).map_err(io::Error::other)?,
        None => AppliedState::default(),
    };
    let meta = SnapshotMetaOf::<TypeConfig> {
        last_log_id: applied.last_applied,
        last_membership: applied.membership.clone(),
    };
    let index = applied.last_applied.map_or(0, |id| id.index());
    let name = format!("group-{group}-{index}.snap");
    let path = store.snapshot_dir.join(&name);
    let tmp = store.snapshot_dir.join(format!("{name}.tmp"));
    let mut out = BufWriter::new(File::create(&tmp)?);
    let meta_bytes = codec::encode(&meta);
    out.write_all(&[codec::FORMAT_VERSION])?;
    out.write_all(&(meta_bytes.len() as u32).to_be_bytes())?;
    out.write_all(&meta_bytes)?;
    for guard in view.prefix(&store.data, keys::group_prefix(group)) {
        let (key, value) = guard.into_inner().map_err(io::Error::other)?;
        out.write_all(&(key.len() as u32).to_be_bytes())?;
        out.write_all(&key)?;
        out.write_all(&(value.len() as u32).to_be_bytes())?;
        out.write_all(&value)?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok((meta, path))
}

fn read_u32(input: &mut impl Read) -> io::Result<Option<u32>> {
    let mut buf = [0u8; 4];
    match input.read_exact(&mut buf) {
        Ok(()) => Ok(Some(u32::from_be_bytes(buf))),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(error) => Err(error),
    }
}

fn read_bytes(input: &mut impl Read, len: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    input.read_exact(&mut buf)?;
    Ok(buf)
}

fn read_snapshot_meta(input: &mut impl Read) -> io::Result<SnapshotMetaOf<TypeConfig>> {
    let mut version = [0u8; 1];
    input.read_exact(&mut version)?;
    if version[0] != codec::FORMAT_VERSION {
        return Err(io::Error::other(format!(
            "unknown snapshot format version {}",
            version[0]
        )));
    }
    let len = read_u32(input)?.ok_or_else(|| io::Error::other("truncated snapshot header"))?;
    codec::decode(&read_bytes(input, len)?).map_err(io::Error::other)
}

impl SnapshotBuilder {
    fn set_current(
        store: &Store,
        group: GroupId,
        meta: &SnapshotMetaOf<TypeConfig>,
        path: &std::path::Path,
    ) -> io::Result<()> {
        let previous: Option<SnapshotPointer> =
            store.get(&store.raft_state, &keys::state_key(group, state::SNAPSHOT))?;
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let pointer = SnapshotPointer {
            meta: meta.clone(),
            file: file.clone(),
        };
        store
            .raft_state
            .insert(
                keys::state_key(group, state::SNAPSHOT),
                codec::encode(&pointer),
            )
            .map_err(io::Error::other)?;
        store.sync()?;
        if let Some(previous) = previous
            && previous.file != file
        {
            let _ = std::fs::remove_file(store.snapshot_dir.join(previous.file));
        }
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = File;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, File>, io::Error> {
        let store = self.store.clone();
        let group = self.group;
        let (meta, path) = tokio::task::spawn_blocking(move || {
            let (meta, path) = write_snapshot_file(&store, group)?;
            SnapshotBuilder::set_current(&store, group, &meta, &path)?;
            Ok::<_, io::Error>((meta, path))
        })
        .await
        .map_err(io::Error::other)??;
        Ok(SnapshotOf::<TypeConfig, File> {
            meta,
            snapshot: File::open(path)?,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = File;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let applied = self.applied()?;
        Ok((applied.last_applied, applied.membership))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut entries = entries;
        let mut applied = self.applied()?;
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = self.apply_entry(&entry, &mut applied)?;
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            group: self.group,
            store: self.store.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: File,
    ) -> Result<(), io::Error> {
        let store = self.store.clone();
        let group = self.group;
        let meta = meta.clone();
        let endpoints = tokio::task::spawn_blocking(move || {
            install_snapshot_file(&store, group, &meta, snapshot)
        })
        .await
        .map_err(io::Error::other)??;
        self.endpoints.store(endpoints, Ordering::Relaxed);
        let store = self.store.clone();
        let group = self.group;
        let rebuilt = tokio::task::spawn_blocking(move || build_segment_indexes(&store, group))
            .await
            .map_err(io::Error::other)??;
        *self.segments.write().expect("segment index lock") = rebuilt;
        SNAPSHOTS_INSTALLED.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::SNAPSHOTS_INSTALLED).increment(1);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, File>>, io::Error> {
        let Some(pointer) = self.snapshot_pointer()? else {
            return Ok(None);
        };
        let file = File::open(self.store.snapshot_dir.join(&pointer.file))?;
        Ok(Some(SnapshotOf::<TypeConfig, File> {
            meta: pointer.meta,
            snapshot: file,
        }))
    }
}

/// Replaces the group's state with the snapshot's, in bounded batches, and keeps the file as
/// the current snapshot. Returns the endpoints it holds.
fn install_snapshot_file(
    store: &Store,
    group: GroupId,
    meta: &SnapshotMetaOf<TypeConfig>,
    snapshot: File,
) -> io::Result<i64> {
    const BATCH_RECORDS: usize = 10_000;
    let index = meta.last_log_id.map_or(0, |id| id.index());
    let path = store
        .snapshot_dir
        .join(format!("group-{group}-{index}.snap"));
    let tmp = store
        .snapshot_dir
        .join(format!("group-{group}-{index}.snap.installing"));
    {
        let mut input = snapshot;
        let mut out = File::create(&tmp)?;
        io::copy(&mut input, &mut out)?;
        out.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    // Until the data is replaced, the applied state says "nothing": a crash here makes the
    // next start install this snapshot again instead of trusting half-replaced data.
    store
        .raft_state
        .insert(
            keys::state_key(group, state::APPLIED),
            codec::encode(&AppliedState::default()),
        )
        .map_err(io::Error::other)?;
    SnapshotBuilder::set_current(store, group, meta, &path)?;

    let mut batch = store.db.batch();
    let mut pending = 0usize;
    for guard in store.data.prefix(keys::group_prefix(group)) {
        batch.remove(&store.data, guard.key().map_err(io::Error::other)?);
        pending += 1;
        if pending == BATCH_RECORDS {
            std::mem::replace(&mut batch, store.db.batch())
                .commit()
                .map_err(io::Error::other)?;
            pending = 0;
        }
    }
    let mut input = BufReader::new(File::open(&path)?);
    let file_meta = read_snapshot_meta(&mut input)?;
    if file_meta.last_log_id != meta.last_log_id {
        return Err(io::Error::other(
            "snapshot file does not match its metadata",
        ));
    }
    let mut endpoints = 0i64;
    let endpoint_prefix = [&keys::group_prefix(group)[..], &[tag::ENDPOINT]].concat();
    while let Some(key_len) = read_u32(&mut input)? {
        let key = read_bytes(&mut input, key_len)?;
        let value_len =
            read_u32(&mut input)?.ok_or_else(|| io::Error::other("truncated snapshot record"))?;
        let value = read_bytes(&mut input, value_len)?;
        if !key.starts_with(&keys::group_prefix(group)) {
            return Err(io::Error::other("snapshot record of another group"));
        }
        if key.starts_with(&endpoint_prefix) {
            endpoints += 1;
        }
        batch.insert(&store.data, key, value);
        pending += 1;
        if pending == BATCH_RECORDS {
            std::mem::replace(&mut batch, store.db.batch())
                .commit()
                .map_err(io::Error::other)?;
            pending = 0;
        }
    }
    let applied = AppliedState {
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
        endpoints,
    };
    batch.insert(
        &store.raft_state,
        keys::state_key(group, state::APPLIED),
        codec::encode(&applied),
    );
    batch.commit().map_err(io::Error::other)?;
    store.sync()?;
    Ok(endpoints)
}

/// Whether `group` is the meta group.
pub fn is_meta(group: GroupId) -> bool {
    group == META_GROUP
}
