//! Replicated commands. Applying a command is deterministic: it depends only on the command
//! and the state before it (the time of a write travels inside the command).
//!
//! Commands and answers live for one proposal and are mostly serialized, so variants are not
//! boxed to even out their sizes.
#![allow(clippy::large_enum_variant)]

use serde::{Deserialize, Serialize};

use crate::domain::FieldViolation;
use crate::domain::campaign::{
    Campaign, CampaignRun, CampaignState, EffectiveLimits, IntentStatus, RunCounts, RunState,
    SendIntent,
};
use crate::domain::channel::{ChannelConfig, ChannelKind};
use crate::domain::endpoint::{Endpoint, EndpointInput, EndpointStatus};
use crate::domain::event::Event;
use crate::domain::import_job::ImportJob;
use crate::domain::message::InboxMessage;
use crate::domain::otp::{OtpRecord, OtpVerdict};
use crate::domain::placement::{NodeId, NodeRecord, NodeState, ShardPlacement};
use crate::domain::project::{Project, ProjectSettings};
use crate::domain::segment::SegmentRecord;
use crate::domain::template::{Template, TemplateType};

/// A command in a Raft entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// A change to the meta group's state.
    Meta(MetaCommand),
    /// Operations on one shard, gathered from concurrent requests into one entry.
    Shard(Vec<ShardOp>),
}

/// Commands of the meta group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Stores a new project; refused if the id exists.
    CreateProject(Project),
    /// Replaces a project's settings.
    UpdateProjectSettings {
        /// The project.
        project_id: String,
        /// The new settings.
        settings: ProjectSettings,
    },
    /// Removes a project and its event types (shard data is removed by `DeleteProjectData`).
    DeleteProject {
        /// The project.
        project_id: String,
    },
    /// Membership and placement.
    Cluster(ClusterCommand),
    /// Message templates.
    Template(TemplateCommand),
    /// Segments.
    Segment(SegmentCommand),
    /// Import jobs.
    Import(ImportCommand),
    /// Channel settings of projects.
    Channel(ChannelCommand),
    /// Campaigns and their runs.
    Campaign(CampaignCommand),
    /// Registers event types of a project up to `limit` distinct types; answers which of
    /// `event_types` are now registered.
    RegisterEventTypes {
        /// The project.
        project_id: String,
        /// Types seen in a request that the node did not know yet.
        event_types: Vec<String>,
        /// Most distinct types the project may have.
        limit: usize,
    },
}

/// How a template write treats existing versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TemplateWrite {
    /// Version 1 of a new template; refused if the template exists.
    Create,
    /// A new version, which becomes the active one; refused if the template does not exist.
    NewVersion,
    /// Replaces the latest version in place; refused if the template does not exist.
    ReplaceLatest,
}

/// Template commands of the meta group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TemplateCommand {
    /// Writes a template version (its `version` field is assigned here).
    Put {
        /// The template.
        template: Template,
        /// How existing versions are treated.
        write: TemplateWrite,
    },
    /// Makes `version` the one sends use.
    SetActive {
        /// The project.
        project_id: String,
        /// The type.
        template_type: TemplateType,
        /// The template.
        name: String,
        /// The version.
        version: u32,
    },
    /// Deletes one version, or every version when `version` is None.
    Delete {
        /// The project.
        project_id: String,
        /// The type.
        template_type: TemplateType,
        /// The template.
        name: String,
        /// The version.
        version: Option<u32>,
    },
}

/// Segment commands of the meta group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SegmentCommand {
    /// Writes version 1 (`create`) or the next version of a segment; the record's version is
    /// assigned here.
    Put {
        /// The segment.
        record: SegmentRecord,
        /// Whether this creates the segment (refused if it exists) or updates it (refused if
        /// it does not).
        create: bool,
    },
    /// Deletes every version of a segment.
    Delete {
        /// The project.
        project_id: String,
        /// The segment.
        segment_id: String,
    },
}

/// Import job commands of the meta group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ImportCommand {
    /// Stores a new job; refused if its project does not exist.
    Put(ImportJob),
    /// Replaces a job's progress; refused if the job does not exist (its project was
    /// deleted meanwhile) or has already ended.
    Update(ImportJob),
}

/// Channel settings commands of the meta group (SPEC PRJ-3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ChannelCommand {
    /// Replaces one channel's settings of a project, keeping each stored secret the new
    /// settings leave empty; refused if the project does not exist.
    Put {
        /// The project.
        project_id: String,
        /// The channel's new settings.
        settings: ChannelConfig,
    },
    /// Removes one channel's settings; answers whether they existed.
    Delete {
        /// The project.
        project_id: String,
        /// The channel.
        channel: ChannelKind,
    },
}

/// Campaign commands of the meta group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CampaignCommand {
    /// Writes version 1 (`create`, refused if the campaign exists) or the next version
    /// (refused if it does not); the version is assigned here. A new version of a paused or
    /// unpaused campaign sets its state accordingly.
    Put {
        /// The campaign.
        campaign: Campaign,
        /// Create or update.
        create: bool,
    },
    /// Deletes every version, its status and its runs.
    Delete {
        /// The project.
        project_id: String,
        /// The campaign.
        campaign_id: String,
    },
    /// Records a new run and moves the schedule's next run number (the scheduler on the meta
    /// leader); a run that exists already is left as it is.
    StartRun {
        /// The run.
        run: CampaignRun,
        /// The schedule the run belongs to, and its next run number after this one.
        next: Option<(u32, u32)>,
    },
    /// A shard leader reports its part of a run.
    ReportPart {
        /// The project.
        project_id: String,
        /// The campaign.
        campaign_id: String,
        /// The run.
        run_id: String,
        /// The shard (0-based).
        shard: u32,
        /// Its counts so far.
        counts: RunCounts,
        /// Whether the shard has finished its part.
        done: bool,
    },
    /// Ends a run.
    EndRun {
        /// The project.
        project_id: String,
        /// The campaign.
        campaign_id: String,
        /// The run.
        run_id: String,
        /// Completed or cancelled.
        state: RunState,
        /// RFC 3339.
        at: String,
    },
    /// Sets a campaign's state (the scheduler).
    SetState {
        /// The project.
        project_id: String,
        /// The campaign.
        campaign_id: String,
        /// The new state.
        state: CampaignState,
    },
}

/// A campaign's latest version, its state and where its schedules are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignHead {
    /// Highest version written.
    pub latest: u32,
    /// The state (DRAFT when never scheduled).
    pub state: Option<CampaignState>,
    /// Per schedule (0: the campaign's, k: the k-th treatment's own), the number of the next
    /// run to start.
    pub next_run: std::collections::BTreeMap<u32, u32>,
}

/// One endpoint of a run, as the shard leader proposes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntentRequest {
    /// The endpoint.
    pub endpoint_id: String,
    /// Empty for scheduled runs; the triggering event id for event campaigns.
    pub trigger: String,
    /// The message id to use if the send is admitted.
    pub message_id: String,
    /// The endpoint's treatment.
    pub treatment: u32,
    /// PENDING to send (the caps decide), or why nothing is sent (holdout, quiet time…).
    pub status: IntentStatus,
    /// Why, for people.
    pub reason: String,
    /// When the triggering event happened (ms); 0 for scheduled runs.
    pub event_ms: i64,
}

/// The answer for one [`IntentRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IntentAnswer {
    /// Stored now, in this status (PENDING: send it; CAPPED: a cap refused it).
    New(SendIntent),
    /// The endpoint already has an intent in this run: nothing to do.
    Existing(SendIntent),
}

/// The outcome of one sent intent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntentOutcome {
    /// The endpoint.
    pub endpoint_id: String,
    /// As in the intent.
    pub trigger: String,
    /// DELIVERED or FAILED.
    pub status: IntentStatus,
    /// The provider's answer, for people.
    pub reason: String,
    /// The message event (EVT-2) to store, built when applied (keeping it out of the log):
    /// its type (`_email.send`…) and the provider's delivery status (`SUCCESSFUL`…).
    pub event: Option<OutcomeEvent>,
}

/// What the message event of an outcome says beyond the intent and the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutcomeEvent {
    /// `_email.send`, `_sms.sent`…
    pub event_type: String,
    /// The provider's answer, e.g. `SUCCESSFUL`.
    pub delivery_status: String,
}

/// Latest and active versions of a template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateHead {
    /// Highest version written.
    pub latest: u32,
    /// Version sends use.
    pub active: u32,
}

/// Membership and placement commands of the meta group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterCommand {
    /// Records the first node and one placement per shard on it; no-op once done.
    Bootstrap {
        /// The first node.
        node: NodeRecord,
        /// Shard count of the cluster.
        shards: u32,
    },
    /// Gives a joining node the next id (or its existing id when it retries with the same
    /// peer address).
    AddNode {
        /// Where clients reach it.
        client_addr: String,
        /// Where peers reach it.
        peer_addr: String,
    },
    /// Changes a node's lifecycle state.
    SetNodeState {
        /// The node.
        node_id: NodeId,
        /// The new state.
        state: NodeState,
    },
    /// Replaces targets and preferred leaders of shards (their reported state is kept).
    SetTargets(Vec<ShardPlacement>),
    /// A shard leader reports the shard's voters, leader, term and lag.
    ReportShard {
        /// The shard.
        shard: u32,
        /// Its voters.
        voters: std::collections::BTreeSet<NodeId>,
        /// Its leader.
        leader: NodeId,
        /// Its term.
        term: u64,
        /// Largest follower lag.
        max_lag: u64,
    },
}

/// Operations on a shard's endpoints, users and events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardOp {
    /// Creates or replaces an endpoint; when its user changes, records pending user-index
    /// changes to be carried to the users' shards.
    UpsertEndpoint {
        /// The project.
        project_id: String,
        /// The endpoint.
        endpoint_id: String,
        /// What the client wrote (validated).
        input: EndpointInput,
        /// RFC 3339 time of the request.
        now: String,
    },
    /// Removes an endpoint, its events and activity; records a pending removal from its
    /// user's index.
    DeleteEndpoint {
        /// The project.
        project_id: String,
        /// The endpoint.
        endpoint_id: String,
    },
    /// Stores events of one endpoint (an event id seen before is overwritten, so a retried
    /// request is not counted twice) and updates the endpoint's activity.
    PutEvents {
        /// The project.
        project_id: String,
        /// The endpoint.
        endpoint_id: String,
        /// Event id and event.
        events: Vec<(String, Event)>,
    },
    /// Adds or removes one entry of the user index (this shard holds the user).
    IndexUser {
        /// The project.
        project_id: String,
        /// The user.
        user_id: String,
        /// The endpoint.
        endpoint_id: String,
        /// Whether the endpoint belongs to the user.
        present: bool,
    },
    /// Forgets a pending user-index change once the user's shard applied it, unless a newer
    /// change replaced it meanwhile.
    ClearPendingIndex {
        /// The project.
        project_id: String,
        /// The user.
        user_id: String,
        /// The endpoint.
        endpoint_id: String,
        /// The change that was carried.
        present: bool,
    },
    /// Removes every record of a project in this shard.
    DeleteProjectData {
        /// The project.
        project_id: String,
    },
    /// Sets an endpoint's status (a provider said its address or token does not exist) and
    /// updates the segment index; an absent endpoint is left absent.
    SetEndpointStatus {
        /// The project.
        project_id: String,
        /// The endpoint.
        endpoint_id: String,
        /// The new status.
        status: EndpointStatus,
    },
    /// Puts endpoints in the imported segment of an import job (SEG-3): records
    /// `IMPORTED | project | endpoint | job` and updates the segment index for each endpoint
    /// that exists here; an absent endpoint is skipped (it was deleted since its import).
    AddImported {
        /// The project.
        project_id: String,
        /// The import job whose segment holds the endpoints.
        import_job_id: String,
        /// Endpoints of this shard the job imported.
        endpoint_ids: Vec<String>,
    },
    /// Adds an in-app message to an endpoint's inbox.
    PutInboxMessage {
        /// The project.
        project_id: String,
        /// The endpoint.
        endpoint_id: String,
        /// The message.
        message: InboxMessage,
    },
    /// Stores a one-time password under `otp_key`, replacing any earlier code for the same
    /// destination and reference.
    PutOtp {
        /// The project.
        project_id: String,
        /// [`crate::domain::otp::otp_key`] of the destination and reference.
        otp_key: String,
        /// The hashed code, its expiry and attempts.
        record: OtpRecord,
    },
    /// Commits the intents of some endpoints of a run (SPEC CMP-5): an endpoint that has an
    /// intent in the run keeps it; a PENDING one is checked against the caps, which it moves
    /// when admitted. Answers `ShardOpResult::Intents` in order.
    CommitIntents {
        /// The project.
        project_id: String,
        /// The campaign.
        campaign_id: String,
        /// The run.
        run_id: String,
        /// The campaign version.
        campaign_version: u32,
        /// Caps in force.
        limits: EffectiveLimits,
        /// Milliseconds since the epoch of the proposal (the cap day).
        now_ms: i64,
        /// The endpoints.
        intents: Vec<IntentRequest>,
    },
    /// Commits what became of sent intents: their status, run counts, KPIs and message events.
    /// An intent that already has an outcome is left alone.
    CommitOutcomes {
        /// The project.
        project_id: String,
        /// The campaign.
        campaign_id: String,
        /// The run.
        run_id: String,
        /// Milliseconds since the epoch (the KPI day).
        now_ms: i64,
        /// The outcomes.
        outcomes: Vec<IntentOutcome>,
    },
    /// Marks this shard's part of a run finished.
    FinishRunPart {
        /// The project.
        project_id: String,
        /// The campaign.
        campaign_id: String,
        /// The run.
        run_id: String,
    },
    /// Judges a verification attempt and consumes the code or one attempt (answers
    /// `ShardOpResult::Otp`).
    VerifyOtp {
        /// The project.
        project_id: String,
        /// [`crate::domain::otp::otp_key`] of the destination and reference.
        otp_key: String,
        /// The salt the caller hashed with.
        salt: String,
        /// The attempted code hashed with `salt`.
        candidate_hash: String,
        /// Milliseconds since the Unix epoch of the request.
        now_ms: i64,
    },
}

/// A pending change of the user index, kept in the endpoint's shard until the user's shard
/// has applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingIndex {
    /// The project.
    pub project_id: String,
    /// The user.
    pub user_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// Whether the endpoint belongs to the user.
    pub present: bool,
}

/// What applying a command answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Answer to a meta command.
    Meta(MetaResponse),
    /// One answer per operation of a shard entry, in order.
    Shard(Vec<ShardOpResult>),
    /// A blank or membership entry.
    Empty,
}

/// Answer to a meta command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaResponse {
    /// The project after the command.
    Project(Project),
    /// The project does not exist.
    ProjectNotFound,
    /// A project with that id exists.
    ProjectExists,
    /// The id of a node.
    NodeId(NodeId),
    /// A template version and its template's versions.
    Template {
        /// The version written or selected.
        template: Template,
        /// Its template's latest and active versions.
        head: TemplateHead,
    },
    /// The named template or version does not exist.
    TemplateNotFound(String),
    /// A template of that name and type exists.
    TemplateExists,
    /// Template versions deleted.
    TemplatesDeleted(u32),
    /// A segment version (written, or the latest one deleted).
    Segment(SegmentRecord),
    /// The segment does not exist, or exists already when creating.
    SegmentNotFound,
    /// An import job after the command.
    ImportJob(ImportJob),
    /// The import job does not exist or has ended.
    ImportJobNotFound,
    /// One channel's settings as stored (secrets included: the API drops them).
    Channel(ChannelConfig),
    /// Whether a deleted channel existed.
    ChannelDeleted(bool),
    /// A campaign version and the campaign's state.
    Campaign {
        /// The version written, or the latest one deleted.
        campaign: Campaign,
        /// Its state.
        state: CampaignState,
    },
    /// The campaign does not exist (or exists already when creating).
    CampaignNotFound,
    /// A run after the command.
    Run(CampaignRun),
    /// The run does not exist.
    RunNotFound,
    /// Done.
    Done,
    /// Which requested event types are registered; the rest exceed the limit.
    EventTypes {
        /// Registered (now or before).
        accepted: Vec<String>,
    },
}

/// Answer to one shard operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardOpResult {
    /// The endpoint after an upsert, or the endpoint that a delete removed (None: absent).
    Endpoint {
        /// The endpoint.
        endpoint: Option<Box<Endpoint>>,
        /// User-index changes the caller must carry to the users' shards.
        pending: Vec<PendingIndex>,
    },
    /// Events stored: how many.
    Events(usize),
    /// Done.
    Done,
    /// Refused by a rule that only the state can check (a new endpoint without a channel
    /// type, an address that does not fit the stored channel); the field is relative to the
    /// endpoint input.
    Refused(FieldViolation),
    /// The verdict of a one-time password attempt.
    Otp(OtpVerdict),
    /// One answer per intent of `CommitIntents`, in order.
    Intents(Vec<IntentAnswer>),
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Meta(command) => write!(f, "meta {command:?}"),
            Self::Shard(ops) => write!(f, "shard batch of {} ops", ops.len()),
        }
    }
}

impl std::fmt::Display for CommandResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Meta(answer) => write!(f, "meta {answer:?}"),
            Self::Shard(results) => write!(f, "{} shard results", results.len()),
            Self::Empty => write!(f, "empty"),
        }
    }
}
