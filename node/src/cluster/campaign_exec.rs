//! The send path of campaigns on shard leaders (DESIGN "A send", SPEC CMP-3..6).
//!
//! Every node runs one loop. On the meta leader it runs the scheduler
//! ([`Cluster::schedule_campaigns`]); on every node, for each shard it leads, it executes that
//! shard's part of each executing run in passes over pages of the segment's members:
//! holdout and treatment by cohort → local time → opt-out and quiet time → the campaign hook →
//! commit intents (the state machine checks and moves the caps) → render → channel → commit
//! outcomes. A pass skips endpoints that already have an intent in the run, so a pass cut
//! short by a crash or a failover is simply run again. A new leader first re-dispatches the
//! intents that have no outcome, with their committed message ids.
//!
//! Event campaigns are triggered on the shard leader after an event batch commits: matching
//! events go through a bounded queue to [`Cluster::handle_trigger`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use openraft::async_runtime::watch::WatchReceiver;
use tokio::sync::mpsc;

use super::campaigns::EVENT_RUN;
use super::messages::{Compiled, SendAs, SendContent, new_message_id};
use super::{Cluster, ClusterError, Result};
use crate::channels::DeliveryStatus;
use crate::domain::campaign::{
    Assignment, Campaign, CampaignState, Decision, EffectiveLimits, IntentStatus, RunCounts,
    RunState, SendIntent, assign, decide, quiet_time_of,
};
use crate::domain::channel::ChannelSettings;
use crate::domain::endpoint::{Endpoint, EndpointStatus, OptOut};
use crate::domain::event::Event;
use crate::domain::message::send_event_type;
use crate::domain::project::Project;
use crate::domain::rate::{RateLimiter, node_share};
use crate::domain::schedule::{Frequency, Schedule, is_quiet, parse_zone};
use crate::domain::segment::{
    EndpointFacts, SegmentDefinition, SegmentReference, matches as segment_matches, parse_instant,
};
use crate::domain::segment_index::CompiledSegment;
use crate::raft::campaign_state::{PendingIntent, RunPart, RunRef, intent_key, part_key};
use crate::raft::command::{IntentAnswer, IntentOutcome, IntentRequest, OutcomeEvent, ShardOp};
use crate::raft::state_machine::Activity;
use crate::raft::{GroupId, META_GROUP, shard_group};
use crate::storage::keys::{self, tag};

/// How often the campaign loop looks for work.
const TICK: Duration = Duration::from_millis(250);

/// Endpoints per page of a pass: one intent entry and one outcome entry per page.
const PAGE: usize = 512;

/// Triggers waiting for their send; more are dropped (and logged) rather than queued
/// without bound.
const TRIGGER_QUEUE: usize = 10_000;

/// How long a campaign state read for the pause check of sends is reused.
const STATE_TTL: Duration = Duration::from_millis(100);

/// Longest wait between two passes of a local-time run that still has endpoints to come.
const LOCAL_PASS_MAX_WAIT: Duration = Duration::from_secs(60);

/// An event that matched an event campaign's filter.
#[derive(Debug)]
pub struct Trigger {
    campaign: Arc<Campaign>,
    endpoint_id: String,
    event_id: String,
    event_ms: i64,
}

/// A shard leadership: sends happen only while it holds, so a deposed leader never sends
/// what its successor re-dispatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    group: GroupId,
    term: u64,
}

/// In-memory state of the campaign loop on this node.
pub struct Runtime {
    /// Passes going on: (shard, project, campaign, run).
    running: Mutex<HashSet<(u32, String, String, String)>>,
    /// When the next pass of a local-time run is worth doing.
    next_pass: Mutex<HashMap<(u32, String, String, String), tokio::time::Instant>>,
    /// Shards whose pending intents were re-dispatched, with the term it was done in.
    recovered: Mutex<HashMap<u32, u64>>,
    /// Live event campaigns per project, refreshed from the local meta copy every tick.
    event_campaigns: RwLock<HashMap<String, Vec<Arc<Campaign>>>>,
    /// Matching events on their way to [`Cluster::handle_trigger`].
    triggers: mpsc::Sender<Trigger>,
    /// Taken by the loop when it starts.
    trigger_receiver: Mutex<Option<mpsc::Receiver<Trigger>>>,
    /// Messages-per-second limiters per campaign (this node's share).
    pacing: Mutex<HashMap<String, (f64, RateLimiter)>>,
    /// Campaign states as last read from the local meta copy, by campaign id, with when:
    /// every send checks for a pause, and reading the head for each would cost a storage read.
    states: Mutex<HashMap<String, (std::time::Instant, Option<CampaignState>)>>,
    /// For campaign hooks.
    http: reqwest::Client,
}

impl Default for Runtime {
    fn default() -> Self {
        let (triggers, receiver) = mpsc::channel(TRIGGER_QUEUE);
        Self {
            running: Mutex::default(),
            next_pass: Mutex::default(),
            recovered: Mutex::default(),
            event_campaigns: RwLock::default(),
            triggers,
            trigger_receiver: Mutex::new(Some(receiver)),
            pacing: Mutex::default(),
            states: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }
}

/// What a shard needs to send one campaign version.
struct RunContext {
    project: Project,
    campaign: Campaign,
    /// Per treatment.
    compiled: Vec<Compiled>,
    settings: ChannelSettings,
    limits: EffectiveLimits,
    segment: SegmentDefinition,
    references: BTreeMap<SegmentReference, SegmentDefinition>,
}

impl RunContext {
    /// Whether an endpoint belongs to the campaign's segment now (plain evaluator).
    fn in_segment(&self, facts: &EndpointFacts, now: DateTime<Utc>) -> bool {
        let resolver = |id: &str, version: Option<u32>| {
            self.references
                .iter()
                .find(|(r, _)| r.id == id && r.version == version)
                .map(|(_, d)| d)
        };
        segment_matches(&self.segment, facts, now, &resolver).unwrap_or(false)
    }
}

/// Starts the campaign loop and the trigger worker of a node.
pub fn spawn_loops(cluster: Arc<Cluster>) {
    let weak = Arc::downgrade(&cluster);
    let tick = super::membership::every(weak.clone(), TICK, |cluster| async move {
        cluster.refresh_event_campaigns();
        if cluster.leads(META_GROUP)
            && let Err(error) = cluster.schedule_campaigns().await
        {
            tracing::warn!(%error, "campaign scheduler round failed");
        }
        cluster.execute_runs();
    });
    let receiver = cluster
        .campaign_runtime
        .trigger_receiver
        .lock()
        .expect("lock")
        .take();
    let mut handles = vec![tick];
    if let Some(mut receiver) = receiver {
        handles.push(tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(256));
            while let Some(trigger) = receiver.recv().await {
                let Some(cluster) = weak.upgrade() else {
                    return;
                };
                if cluster.is_stopping() {
                    return;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                tokio::spawn(async move {
                    let campaign_id = trigger.campaign.campaign_id.clone();
                    if let Err(error) = cluster.handle_trigger(trigger).await {
                        tracing::warn!(%error, campaign_id, "event-triggered send failed");
                    }
                    drop(permit);
                });
            }
        }));
    }
    cluster.loops.lock().expect("lock").extend(handles);
}

/// The schedule a run follows: `s0-…` the campaign's, `sK-…` treatment K-1's own.
fn run_schedule<'a>(campaign: &'a Campaign, run_id: &str) -> &'a Schedule {
    let group: usize = run_id
        .strip_prefix('s')
        .and_then(|rest| rest.split('-').next())
        .and_then(|k| k.parse().ok())
        .unwrap_or(0);
    match group {
        0 => &campaign.schedule,
        k => campaign
            .treatments
            .get(k - 1)
            .and_then(|t| t.schedule.as_ref())
            .unwrap_or(&campaign.schedule),
    }
}

/// Records the time of one phase of a page (see [`crate::metrics::CAMPAIGN_PAGE_SECONDS`]).
fn page_phase(phase: &'static str, started: std::time::Instant) {
    metrics::histogram!(crate::metrics::CAMPAIGN_PAGE_SECONDS, "phase" => phase)
        .record(started.elapsed().as_secs_f64());
}

/// Sends handed to the channel workers as one batch (unpaced campaigns).
const SEND_BATCH: usize = 64;

/// Adds the outcomes of finished sends to `ready`; a send skipped because the shard's
/// leadership moved (None) sets `deposed`.
fn take_outcomes(
    batch: Vec<Option<IntentOutcome>>,
    ready: &mut Vec<IntentOutcome>,
    deposed: &mut bool,
) {
    for outcome in batch {
        match outcome {
            Some(outcome) => ready.push(outcome),
            None => *deposed = true,
        }
    }
}

/// A pending intent with its record, as a new leader re-dispatches it.
type PendingSend = (PendingIntent, SendIntent);

/// The outcome of a send to `endpoint` to commit, with its message event.
fn outcome_of(
    endpoint: &Endpoint,
    trigger: &str,
    outcome: crate::channels::DeliveryOutcome,
) -> IntentOutcome {
    IntentOutcome {
        endpoint_id: endpoint.endpoint_id.clone(),
        trigger: trigger.to_string(),
        status: to_intent_status(outcome.status),
        reason: outcome.status_message,
        event: Some(OutcomeEvent {
            event_type: send_event_type(endpoint.channel_type).to_string(),
            delivery_status: outcome.status.as_str().to_string(),
        }),
    }
}

fn to_intent_status(status: DeliveryStatus) -> IntentStatus {
    match status {
        DeliveryStatus::Successful | DeliveryStatus::Duplicate => IntentStatus::Delivered,
        DeliveryStatus::OptOut => IntentStatus::OptOut,
        _ => IntentStatus::Failed,
    }
}

impl Cluster {
    fn local_get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.store
            .get(&self.store.data, key)
            .map_err(ClusterError::internal)
    }

    /// Rebuilds the map of live event campaigns from the local meta copy.
    fn refresh_event_campaigns(&self) {
        let mut live: HashMap<String, Vec<Arc<Campaign>>> = HashMap::new();
        if let Ok(heads) = self.local_campaign_heads() {
            for (project_id, campaign_id, head) in heads {
                if !head.state.is_some_and(CampaignState::is_live) {
                    continue;
                }
                if let Ok(Some(campaign)) =
                    self.local_campaign(&project_id, &campaign_id, head.latest)
                    && campaign.schedule.frequency == Frequency::Event
                    && !campaign.is_paused
                {
                    live.entry(project_id).or_default().push(Arc::new(campaign));
                }
            }
        }
        *self.campaign_runtime.event_campaigns.write().expect("lock") = live;
    }

    /// Whether a project has live event campaigns (cheap: checked on every event batch).
    pub(crate) fn has_event_campaigns(&self, project_id: &str) -> bool {
        self.campaign_runtime
            .event_campaigns
            .read()
            .expect("lock")
            .contains_key(project_id)
    }

    /// Called by the shard leader after an event batch of an endpoint committed: queues a
    /// trigger for each live event campaign of the project whose filter an event matches.
    pub(crate) fn check_triggers(
        &self,
        project_id: &str,
        endpoint_id: &str,
        events: &[(String, Event)],
    ) {
        let campaigns = {
            let live = self.campaign_runtime.event_campaigns.read().expect("lock");
            match live.get(project_id) {
                Some(campaigns) => campaigns.clone(),
                None => return,
            }
        };
        for (event_id, event) in events {
            for campaign in &campaigns {
                let Some(filter) = &campaign.event_filter else {
                    continue;
                };
                if !filter.matches(event) {
                    continue;
                }
                let trigger = Trigger {
                    campaign: campaign.clone(),
                    endpoint_id: endpoint_id.to_string(),
                    event_id: event_id.clone(),
                    event_ms: parse_instant(&event.timestamp)
                        .map_or_else(|| Utc::now().timestamp_millis(), |t| t.timestamp_millis()),
                };
                if self.campaign_runtime.triggers.try_send(trigger).is_err() {
                    tracing::warn!(
                        project_id,
                        campaign_id = campaign.campaign_id,
                        endpoint_id,
                        "trigger queue full; event-triggered send dropped"
                    );
                }
            }
        }
    }

    /// Loads what sending a campaign version needs.
    async fn run_context(
        &self,
        project_id: &str,
        campaign_id: &str,
        version: u32,
    ) -> Result<RunContext> {
        let project = self.project(project_id).await?;
        let campaign = match self.local_campaign(project_id, campaign_id, version)? {
            Some(campaign) => campaign,
            None => {
                self.get_campaign(project_id, campaign_id, Some(version))
                    .await?
                    .0
            }
        };
        let mut compiled = Vec::with_capacity(campaign.treatments.len());
        for treatment in &campaign.treatments {
            let content = SendContent {
                inline: treatment.message.inline.clone(),
                templates: treatment.message.templates.clone(),
                substitutions: BTreeMap::new(),
                origination_number: String::new(),
            };
            compiled.push(self.compile_content(project_id, &content).await?);
        }
        let settings = self.get_channel_settings(project_id).await?;
        let limits = campaign.limits.effective(&project.settings.limits);
        let segment = self
            .get_segment(project_id, &campaign.segment_id, campaign.segment_version)
            .await?
            .definition;
        let references = self.load_segment_references(project_id, &segment).await?;
        Ok(RunContext {
            project,
            campaign,
            compiled,
            settings,
            limits,
            segment,
            references,
        })
    }

    fn compile_context_segment(&self, ctx: &RunContext) -> Result<CompiledSegment> {
        let resolver = |id: &str, version: Option<u32>| {
            ctx.references
                .iter()
                .find(|(r, _)| r.id == id && r.version == version)
                .map(|(_, d)| d)
        };
        CompiledSegment::compile(&ctx.segment, &resolver)
            .map_err(|error| ClusterError::FailedPrecondition(error.to_string()))
    }

    /// Waits for the campaign's messages-per-second (this node's share).
    async fn pace(&self, campaign_id: &str, messages_per_second: u32) {
        if messages_per_second == 0 {
            return;
        }
        let share = node_share(messages_per_second, self.active_node_count());
        loop {
            let next = {
                let mut pacing = self.campaign_runtime.pacing.lock().expect("lock");
                let entry = pacing.entry(campaign_id.to_string()).or_insert_with(|| {
                    (share, RateLimiter::new(share, share.ceil().max(1.0) as u32))
                });
                if entry.0 != share {
                    *entry = (share, RateLimiter::new(share, share.ceil().max(1.0) as u32));
                }
                let now = std::time::Instant::now();
                if entry.1.try_take(now) {
                    return;
                }
                entry.1.next_available(now)
            };
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        }
    }

    /// Holds a send while its campaign is paused (CMP-1); answers false when the campaign is
    /// gone or the node stops (its outcome is then not committed, see `commit_and_send`).
    async fn wait_while_paused(&self, project_id: &str, campaign_id: &str) -> bool {
        loop {
            match self.recent_campaign_state(project_id, campaign_id) {
                None | Some(CampaignState::Deleted) => return false,
                _ if self.is_stopping() => return false,
                Some(CampaignState::Paused) => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Some(_) => return true,
            }
        }
    }

    /// The campaign's state from the local meta copy, at most [`STATE_TTL`] old.
    fn recent_campaign_state(&self, project_id: &str, campaign_id: &str) -> Option<CampaignState> {
        let now = std::time::Instant::now();
        if let Some((read, state)) = self
            .campaign_runtime
            .states
            .lock()
            .expect("lock")
            .get(campaign_id)
            && now.duration_since(*read) < STATE_TTL
        {
            return *state;
        }
        let state = self
            .local_campaign_head(project_id, campaign_id)
            .ok()
            .flatten()
            .and_then(|head| head.state);
        self.campaign_runtime
            .states
            .lock()
            .expect("lock")
            .insert(campaign_id.to_string(), (now, state));
        state
    }

    /// Sends one committed intent after its turn of the campaign's messages per second, and
    /// answers its outcome, with the message event.
    async fn dispatch(
        &self,
        ctx: &RunContext,
        lease: Lease,
        endpoint: &Endpoint,
        trigger: &str,
        intent: &SendIntent,
    ) -> Option<IntentOutcome> {
        self.pace(&ctx.campaign.campaign_id, ctx.limits.messages_per_second)
            .await;
        self.dispatch_many(
            ctx,
            lease,
            vec![(endpoint, trigger.to_string(), intent.clone())],
        )
        .await
        .pop()
        .flatten()
    }

    /// Sends committed intents and answers their outcomes (None for a send skipped because
    /// another node leads the shard now), with the message events: the pause and the
    /// leadership are checked once, and the messages of a channel go to its workers together.
    async fn dispatch_many(
        &self,
        ctx: &RunContext,
        lease: Lease,
        sends: Vec<(&Endpoint, String, SendIntent)>,
    ) -> Vec<Option<IntentOutcome>> {
        if !self
            .wait_while_paused(&ctx.campaign.project_id, &ctx.campaign.campaign_id)
            .await
        {
            return sends
                .into_iter()
                .map(|(endpoint, trigger, _)| {
                    Some(IntentOutcome {
                        endpoint_id: endpoint.endpoint_id.clone(),
                        trigger,
                        status: IntentStatus::Failed,
                        reason: "the campaign was deleted before the send".into(),
                        event: None,
                    })
                })
                .collect();
        }
        if !self.still_leads(lease) {
            // Another node leads the shard now and re-dispatches these intents itself: sending
            // here too would repeat the messages without any crash.
            return vec![None; sends.len()];
        }
        let outcomes = if ctx.compiled.is_empty() {
            let none = crate::channels::DeliveryOutcome::new(
                DeliveryStatus::PermanentFailure,
                "the campaign has no message",
            );
            vec![none; sends.len()]
        } else {
            let recipients: Vec<_> = sends
                .iter()
                .map(|(endpoint, _, intent)| {
                    let compiled = ctx
                        .compiled
                        .get(intent.treatment as usize)
                        .unwrap_or(&ctx.compiled[0]);
                    let how = SendAs {
                        message_id: &intent.message_id,
                        origination_number: "",
                        wait: true,
                    };
                    (compiled, *endpoint, how)
                })
                .collect();
            self.render_and_send_many(&ctx.settings, &recipients).await
        };
        sends
            .iter()
            .zip(outcomes)
            .map(|((endpoint, trigger, _), outcome)| Some(outcome_of(endpoint, trigger, outcome)))
            .collect()
    }

    /// This node's leadership of `group` now, if it leads it.
    fn lease(&self, group: GroupId) -> Option<Lease> {
        let handle = self.local_group(group)?;
        let metrics = handle.raft.metrics().borrow_watched().clone();
        (metrics.current_leader == Some(self.node_id)).then_some(Lease {
            group,
            term: metrics.current_term,
        })
    }

    /// Whether this node still leads the group in the lease's term (checked before every
    /// send, so it reads the metrics in place instead of cloning them).
    fn still_leads(&self, lease: Lease) -> bool {
        let Some(handle) = self.local_group(lease.group) else {
            return false;
        };
        let metrics = handle.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics.current_leader == Some(self.node_id) && metrics.current_term == lease.term
    }

    /// Starts a pass for each executing run on each shard this node leads, unless one is going
    /// on or a local-time run has nobody due yet.
    fn execute_runs(self: &Arc<Self>) {
        let runs = match self.local_runs(None) {
            Ok(runs) => runs,
            Err(error) => {
                tracing::warn!(%error, "campaign runs unreadable");
                return;
            }
        };
        let executing: Vec<_> = runs
            .into_iter()
            .filter(|run| run.state == RunState::Executing)
            .collect();
        for shard in 0..self.config.cluster.shards {
            let group = shard_group(shard);
            if !self.leads(group) {
                continue;
            }
            let Some(term) = self
                .local_group(group)
                .map(|handle| handle.raft.metrics().borrow_watched().current_term)
            else {
                continue;
            };
            let recovered = self
                .campaign_runtime
                .recovered
                .lock()
                .expect("lock")
                .get(&shard)
                .copied();
            if recovered != Some(term) {
                let key = (shard, String::new(), String::new(), "recover".to_string());
                if self
                    .campaign_runtime
                    .running
                    .lock()
                    .expect("lock")
                    .insert(key.clone())
                {
                    let cluster = self.clone();
                    tokio::spawn(async move {
                        match cluster.recover_pending(group).await {
                            Ok(()) => {
                                cluster
                                    .campaign_runtime
                                    .recovered
                                    .lock()
                                    .expect("lock")
                                    .insert(shard, term);
                            }
                            Err(error) => tracing::warn!(shard, %error, "re-dispatch failed"),
                        }
                        cluster
                            .campaign_runtime
                            .running
                            .lock()
                            .expect("lock")
                            .remove(&key);
                    });
                }
                continue;
            }
            for run in &executing {
                let key = (
                    shard,
                    run.project_id.clone(),
                    run.campaign_id.clone(),
                    run.run_id.clone(),
                );
                let reported_done = run.parts.get(&shard).is_some_and(|(_, done)| *done);
                if reported_done {
                    continue;
                }
                if let Some(at) = self
                    .campaign_runtime
                    .next_pass
                    .lock()
                    .expect("lock")
                    .get(&key)
                    && *at > tokio::time::Instant::now()
                {
                    continue;
                }
                if run.run_id == EVENT_RUN {
                    // Triggers send; this only reports the shard's counts now and then.
                    self.campaign_runtime
                        .next_pass
                        .lock()
                        .expect("lock")
                        .insert(key, tokio::time::Instant::now() + Duration::from_secs(1));
                    let run_ref = RunRef {
                        project_id: &run.project_id,
                        campaign_id: &run.campaign_id,
                        run_id: &run.run_id,
                    };
                    let reported = run
                        .parts
                        .get(&shard)
                        .map(|(counts, _)| *counts)
                        .unwrap_or_default();
                    if let Ok(part) = self.local_part(group, run_ref)
                        && part.counts != reported
                    {
                        let cluster = self.clone();
                        let run = run.clone();
                        tokio::spawn(async move {
                            if let Err(error) =
                                cluster.report_part(&run, shard, part.counts, false).await
                            {
                                tracing::debug!(%error, "event run counts not reported");
                            }
                        });
                    }
                    continue;
                }
                if !self
                    .campaign_runtime
                    .running
                    .lock()
                    .expect("lock")
                    .insert(key.clone())
                {
                    continue;
                }
                let cluster = self.clone();
                let run = run.clone();
                tokio::spawn(async move {
                    let outcome = cluster.run_pass(shard, &run).await;
                    let runtime = &cluster.campaign_runtime;
                    match outcome {
                        Ok(Some(next)) => {
                            runtime
                                .next_pass
                                .lock()
                                .expect("lock")
                                .insert(key.clone(), next);
                        }
                        Ok(None) => {
                            runtime.next_pass.lock().expect("lock").remove(&key);
                        }
                        Err(ClusterError::NotFound(reason)) => {
                            // Its segment or a template is gone: the campaign cannot send.
                            cluster.invalidate(&run, &reason).await;
                        }
                        Err(error) => {
                            tracing::warn!(shard, run_id = run.run_id, %error, "campaign pass failed");
                            runtime.next_pass.lock().expect("lock").insert(
                                key.clone(),
                                tokio::time::Instant::now() + Duration::from_secs(1),
                            );
                        }
                    }
                    runtime.running.lock().expect("lock").remove(&key);
                });
            }
        }
    }

    /// Cancels a run whose campaign can no longer send (its segment or a template was deleted)
    /// and marks the campaign INVALID (CMP-1), so no pass keeps retrying it.
    async fn invalidate(&self, run: &crate::domain::campaign::CampaignRun, reason: &str) {
        tracing::warn!(
            project_id = run.project_id,
            campaign_id = run.campaign_id,
            run_id = run.run_id,
            reason,
            "campaign is invalid; its run is cancelled"
        );
        let commands = [
            crate::raft::command::CampaignCommand::EndRun {
                project_id: run.project_id.clone(),
                campaign_id: run.campaign_id.clone(),
                run_id: run.run_id.clone(),
                state: RunState::Cancelled,
                at: super::now_rfc3339(),
            },
            crate::raft::command::CampaignCommand::SetState {
                project_id: run.project_id.clone(),
                campaign_id: run.campaign_id.clone(),
                state: CampaignState::Invalid,
            },
        ];
        for command in commands {
            if let Err(error) = self
                .write_meta(crate::raft::command::MetaCommand::Campaign(command))
                .await
            {
                tracing::warn!(%error, "campaign not marked invalid");
            }
        }
    }

    /// This shard's counts of a run, as applied here.
    fn local_part(&self, group: GroupId, run: RunRef<'_>) -> Result<RunPart> {
        Ok(self.local_get(&part_key(group, run))?.unwrap_or_default())
    }

    /// One pass of a shard over a run's audience. Answers when the next pass is due (a
    /// local-time run with endpoints still to come), or None when the shard's part is done.
    async fn run_pass(
        &self,
        shard: u32,
        run: &crate::domain::campaign::CampaignRun,
    ) -> Result<Option<tokio::time::Instant>> {
        let group = shard_group(shard);
        let run_ref = RunRef {
            project_id: &run.project_id,
            campaign_id: &run.campaign_id,
            run_id: &run.run_id,
        };
        let index = shard as usize;
        let lease = self
            .lease(group)
            .ok_or_else(|| ClusterError::Unavailable(format!("shard {shard} is led elsewhere")))?;
        if self.local_part(group, run_ref)?.done {
            let counts = self.local_part(group, run_ref)?.counts;
            self.report_part(run, shard, counts, true).await?;
            return Ok(None);
        }
        let ctx = self
            .run_context(&run.project_id, &run.campaign_id, run.campaign_version)
            .await?;
        let schedule = run_schedule(&ctx.campaign, &run.run_id).clone();
        let nominal =
            NaiveDateTime::parse_from_str(&run.nominal, "%Y-%m-%dT%H:%M:%S").map_err(|error| {
                ClusterError::Internal(format!("bad run time {:?}: {error}", run.nominal))
            })?;
        let segment = self.compile_context_segment(&ctx)?;
        let started = Utc::now();
        let mut members: Vec<String> = {
            let handle = self
                .local_group(group)
                .ok_or_else(|| ClusterError::Unavailable(format!("shard {shard} is not here")))?;
            let indexes = handle.segments.read().expect("segment index lock");
            indexes
                .get(&run.project_id)
                .map(|index| {
                    index
                        .members(&segment, started)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        members.sort_unstable();
        let quiet = quiet_time_of(&schedule, &ctx.project.settings.quiet_time).clone();
        let holdout_run = run.run_id.starts_with("s0-");
        let mut next_due: Option<DateTime<Utc>> = None;
        let mut last_report = tokio::time::Instant::now();
        // Nothing of this run has been committed in this shard yet: no intent to look for.
        // (The state machine refuses a second intent anyway; this only saves lookups.)
        let fresh = self.local_part(group, run_ref)?.counts == RunCounts::default();
        for page in members.chunks(PAGE) {
            if self.is_stopping() || !self.still_leads(lease) {
                return Err(ClusterError::Unavailable(
                    "no longer the shard leader".into(),
                ));
            }
            let head = self.local_campaign_head(&run.project_id, &run.campaign_id)?;
            match head.and_then(|head| head.state) {
                None | Some(CampaignState::Deleted) => return Ok(None),
                Some(CampaignState::Paused) => {
                    return Ok(Some(tokio::time::Instant::now() + Duration::from_secs(1)));
                }
                Some(_) => {}
            }
            let now = Utc::now();
            let read_started = std::time::Instant::now();
            let mut requests = Vec::new();
            let mut endpoints: HashMap<String, Endpoint> = HashMap::new();
            for endpoint_id in page {
                if !fresh
                    && self
                        .local_get::<SendIntent>(&intent_key(
                            group,
                            tag::SEND_INTENT,
                            run_ref,
                            endpoint_id,
                            "",
                        ))?
                        .is_some()
                {
                    continue;
                }
                let Some(endpoint) = self.local_get::<Endpoint>(&keys::data_key(
                    group,
                    tag::ENDPOINT,
                    &[&run.project_id, endpoint_id],
                ))?
                else {
                    continue;
                };
                let (treatment, mut status, mut reason) =
                    match assign(&ctx.campaign, endpoint.cohort_id) {
                        Assignment::Holdout if holdout_run => {
                            (0, IntentStatus::Holdout, "in the holdout")
                        }
                        Assignment::Holdout => continue,
                        Assignment::Treatment(t) if run.treatments.contains(&t) => {
                            (t, IntentStatus::Pending, "")
                        }
                        Assignment::Treatment(_) => continue,
                    };
                if status == IntentStatus::Pending {
                    let zone = parse_zone(&endpoint.demographic.timezone);
                    match decide(&schedule, &quiet, nominal, zone, now) {
                        Decision::NotDue(due) => {
                            next_due = Some(next_due.map_or(due, |next| next.min(due)));
                            continue;
                        }
                        _ if endpoint.opt_out == OptOut::All
                            || endpoint.status == EndpointStatus::Inactive =>
                        {
                            status = IntentStatus::OptOut;
                            reason = "the endpoint opted out or is inactive";
                        }
                        Decision::Quiet => {
                            status = IntentStatus::QuietTime;
                            reason = "inside the endpoint's quiet time";
                        }
                        Decision::Send => {}
                    }
                }
                requests.push(IntentRequest {
                    endpoint_id: endpoint_id.clone(),
                    trigger: String::new(),
                    message_id: new_message_id(),
                    treatment,
                    status,
                    reason: reason.to_string(),
                    event_ms: 0,
                });
                endpoints.insert(endpoint_id.clone(), endpoint);
            }
            if requests.is_empty() {
                continue;
            }
            page_phase("read", read_started);
            self.apply_hook(&ctx, &endpoints, &mut requests).await?;
            self.commit_and_send(index, lease, &ctx, run_ref, requests, &endpoints)
                .await?;
            if last_report.elapsed() >= Duration::from_secs(2) {
                last_report = tokio::time::Instant::now();
                let counts = self.local_part(group, run_ref)?.counts;
                self.report_part(run, shard, counts, false).await?;
            }
        }
        let now = Utc::now();
        let all_due = !schedule.is_local_time || now >= schedule.latest_due(nominal);
        if next_due.is_none() && all_due {
            self.propose(
                index,
                ShardOp::FinishRunPart {
                    project_id: run.project_id.clone(),
                    campaign_id: run.campaign_id.clone(),
                    run_id: run.run_id.clone(),
                },
            )
            .await?;
            let counts = self.local_part(group, run_ref)?.counts;
            self.report_part(run, shard, counts, true).await?;
            return Ok(None);
        }
        let counts = self.local_part(group, run_ref)?.counts;
        self.report_part(run, shard, counts, false).await?;
        let wait = next_due
            .map(|due| (due - now).to_std().unwrap_or_default())
            .unwrap_or(LOCAL_PASS_MAX_WAIT)
            .min(LOCAL_PASS_MAX_WAIT);
        Ok(Some(tokio::time::Instant::now() + wait))
    }

    /// Commits the intents of a page, sends the admitted ones and commits their outcomes.
    async fn commit_and_send(
        &self,
        index: usize,
        lease: Lease,
        ctx: &RunContext,
        run: RunRef<'_>,
        requests: Vec<IntentRequest>,
        endpoints: &HashMap<String, Endpoint>,
    ) -> Result<()> {
        let triggers: Vec<(String, String)> = requests
            .iter()
            .map(|r| (r.endpoint_id.clone(), r.trigger.clone()))
            .collect();
        let intents_started = std::time::Instant::now();
        let answer = self
            .propose(
                index,
                ShardOp::CommitIntents {
                    project_id: run.project_id.to_string(),
                    campaign_id: run.campaign_id.to_string(),
                    run_id: run.run_id.to_string(),
                    campaign_version: ctx.campaign.version,
                    limits: ctx.limits,
                    now_ms: Utc::now().timestamp_millis(),
                    intents: requests,
                },
            )
            .await?;
        page_phase("intents", intents_started);
        let crate::raft::command::ShardOpResult::Intents(answers) = answer else {
            return Err(ClusterError::Internal(format!(
                "unexpected answer {answer:?}"
            )));
        };
        let sends: Vec<_> = answers
            .into_iter()
            .zip(triggers)
            .filter_map(|(answer, (endpoint_id, trigger))| match answer {
                IntentAnswer::New(intent) if intent.status == IntentStatus::Pending => {
                    Some((endpoint_id, trigger, intent))
                }
                _ => None,
            })
            .filter_map(|(endpoint_id, trigger, intent)| {
                endpoints
                    .get(&endpoint_id)
                    .map(|endpoint| (endpoint, trigger, intent))
            })
            .collect();
        let outcomes: FuturesUnordered<BoxFuture<'_, Vec<Option<IntentOutcome>>>> =
            if ctx.limits.messages_per_second == 0 {
                // Unpaced: the page goes out in batches, each checked and handed over once.
                let mut sends = sends;
                let mut batches = Vec::new();
                while !sends.is_empty() {
                    let rest = sends.split_off(sends.len().min(SEND_BATCH));
                    batches.push(std::mem::replace(&mut sends, rest));
                }
                batches
                    .into_iter()
                    .map(|batch| async move { self.dispatch_many(ctx, lease, batch).await }.boxed())
                    .collect()
            } else {
                sends
                    .into_iter()
                    .map(|(endpoint, trigger, intent)| {
                        async move {
                            vec![self.dispatch(ctx, lease, endpoint, &trigger, &intent).await]
                        }
                        .boxed()
                    })
                    .collect()
            };
        let sends_started = std::time::Instant::now();
        let committed = self
            .commit_outcomes_as_they_come(index, run, outcomes)
            .await;
        page_phase("sends", sends_started);
        committed
    }

    /// Commits outcomes as sends finish, in batches of whatever is ready (so a crash repeats
    /// as few accepted sends as possible), one proposal at a time while the sends go on;
    /// stops with an error when a send was skipped because this node lost the shard's
    /// leadership, or when the node stops.
    async fn commit_outcomes_as_they_come(
        &self,
        index: usize,
        run: RunRef<'_>,
        mut outcomes: FuturesUnordered<BoxFuture<'_, Vec<Option<IntentOutcome>>>>,
    ) -> Result<()> {
        let mut deposed = false;
        let mut ready: Vec<IntentOutcome> = Vec::new();
        let mut committing: Option<BoxFuture<'_, Result<()>>> = None;
        loop {
            if committing.is_none() && !ready.is_empty() {
                if self.is_stopping() {
                    // Outcomes of sends cut short by the stop would be wrong: the intents stay
                    // pending and are re-dispatched when the node (or the next leader) starts.
                    return Err(ClusterError::Unavailable("the node is stopping".into()));
                }
                let op = ShardOp::CommitOutcomes {
                    project_id: run.project_id.to_string(),
                    campaign_id: run.campaign_id.to_string(),
                    run_id: run.run_id.to_string(),
                    now_ms: Utc::now().timestamp_millis(),
                    outcomes: std::mem::take(&mut ready),
                };
                committing = Some(
                    async move {
                        let started = std::time::Instant::now();
                        self.propose(index, op).await?;
                        page_phase("outcomes", started);
                        Ok(())
                    }
                    .boxed(),
                );
            }
            match committing.as_mut() {
                None if outcomes.is_empty() => break,
                None => {
                    if let Some(batch) = outcomes.next().await {
                        take_outcomes(batch, &mut ready, &mut deposed);
                    }
                }
                Some(proposal) => {
                    tokio::select! {
                        committed = proposal => {
                            committing = None;
                            committed?;
                        }
                        Some(batch) = outcomes.next(), if !outcomes.is_empty() => {
                            take_outcomes(batch, &mut ready, &mut deposed);
                        }
                    }
                }
            }
        }
        if deposed {
            return Err(ClusterError::Unavailable(
                "no longer the shard leader".into(),
            ));
        }
        Ok(())
    }

    /// The project's campaign hook (FILTER mode): the page's endpoints about to be sent go to
    /// the hook's URL; those it does not answer are left out (FILTERED).
    async fn apply_hook(
        &self,
        ctx: &RunContext,
        endpoints: &HashMap<String, Endpoint>,
        requests: &mut [IntentRequest],
    ) -> Result<()> {
        let hook = &ctx.project.settings.campaign_hook;
        if hook.web_url.is_empty() {
            return Ok(());
        }
        let audience: serde_json::Map<String, serde_json::Value> = requests
            .iter()
            .filter(|r| r.status == IntentStatus::Pending)
            .filter_map(|r| endpoints.get(&r.endpoint_id).map(|e| (r, e)))
            .map(|(r, endpoint)| {
                (
                    r.endpoint_id.clone(),
                    serde_json::json!({
                        "Address": endpoint.address,
                        "ChannelType": endpoint.channel_type.as_str(),
                        "Attributes": endpoint.attributes,
                        "Metrics": endpoint.metrics,
                        "User": {
                            "UserId": endpoint.user.user_id,
                            "UserAttributes": endpoint.user.user_attributes,
                        },
                        "TreatmentId": r.treatment,
                    }),
                )
            })
            .collect();
        if audience.is_empty() {
            return Ok(());
        }
        let body = serde_json::json!({
            "ApplicationId": ctx.project.project_id,
            "CampaignId": ctx.campaign.campaign_id,
            "Endpoints": audience,
        });
        let answer = self
            .campaign_runtime
            .http
            .post(&hook.web_url)
            .json(&body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| ClusterError::Unavailable(format!("campaign hook failed: {error}")))?;
        let kept: serde_json::Map<String, serde_json::Value> =
            answer.json().await.map_err(|error| {
                ClusterError::Unavailable(format!(
                    "campaign hook answered no endpoint map: {error}"
                ))
            })?;
        for request in requests.iter_mut() {
            if request.status == IntentStatus::Pending && !kept.contains_key(&request.endpoint_id) {
                request.status = IntentStatus::Filtered;
                request.reason = "left out by the campaign hook".to_string();
            }
        }
        Ok(())
    }

    /// Re-dispatches every intent of a shard that has no outcome (a new leader, or a restart),
    /// with its committed message id, and commits the outcomes.
    async fn recover_pending(&self, group: GroupId) -> Result<()> {
        let lease = self
            .lease(group)
            .ok_or_else(|| ClusterError::Unavailable(format!("group {group} is led elsewhere")))?;
        let mut pending: Vec<PendingSend> = Vec::new();
        for (key, ()) in self
            .store
            .scan::<()>(
                &self.store.data,
                &keys::data_key(group, tag::PENDING_INTENT, &[]),
            )
            .map_err(ClusterError::internal)?
        {
            let Some(marker) = PendingIntent::from_key(&key) else {
                continue;
            };
            let intent = self.local_get::<SendIntent>(&intent_key(
                group,
                tag::SEND_INTENT,
                marker.run(),
                &marker.endpoint_id,
                &marker.trigger,
            ))?;
            if let Some(intent) = intent.filter(|intent| intent.status == IntentStatus::Pending) {
                pending.push((marker, intent));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        tracing::info!(
            group,
            intents = pending.len(),
            "re-dispatching intents without an outcome"
        );
        // By project, campaign, run and campaign version.
        let mut by_run: BTreeMap<(String, String, String, u32), Vec<PendingSend>> = BTreeMap::new();
        for (marker, intent) in pending {
            by_run
                .entry((
                    marker.project_id.clone(),
                    marker.campaign_id.clone(),
                    marker.run_id.clone(),
                    intent.campaign_version,
                ))
                .or_default()
                .push((marker, intent));
        }
        let index = (group - 1) as usize;
        for ((project_id, campaign_id, run_id, version), intents) in by_run {
            let ctx = match self.run_context(&project_id, &campaign_id, version).await {
                Ok(ctx) => Some(ctx),
                Err(ClusterError::NotFound(_)) => None,
                Err(error) => return Err(error),
            };
            let run = RunRef {
                project_id: &project_id,
                campaign_id: &campaign_id,
                run_id: &run_id,
            };
            let outcomes: FuturesUnordered<BoxFuture<'_, Vec<Option<IntentOutcome>>>> = intents
                .iter()
                .map(|(pending, intent)| {
                    let ctx = ctx.as_ref();
                    async move {
                        let endpoint = self.local_get::<Endpoint>(&keys::data_key(
                            group,
                            tag::ENDPOINT,
                            &[&pending.project_id, &pending.endpoint_id],
                        ));
                        let outcome = match (ctx, endpoint) {
                            (Some(ctx), Ok(Some(endpoint))) => {
                                self.dispatch(ctx, lease, &endpoint, &pending.trigger, intent)
                                    .await
                            }
                            _ => Some(IntentOutcome {
                                endpoint_id: pending.endpoint_id.clone(),
                                trigger: pending.trigger.clone(),
                                status: IntentStatus::Failed,
                                reason: "the endpoint or campaign was deleted before the send"
                                    .into(),
                                event: None,
                            }),
                        };
                        vec![outcome]
                    }
                    .boxed()
                })
                .collect();
            self.commit_outcomes_as_they_come(index, run, outcomes)
                .await?;
        }
        Ok(())
    }

    /// Sends an event campaign's message to the endpoint whose event matched its filter
    /// (CMP-3): within the campaign's window, segment, holdout, quiet time, caps and maximum
    /// duration; one intent per triggering event.
    async fn handle_trigger(&self, trigger: Trigger) -> Result<()> {
        let campaign = &trigger.campaign;
        let project_id = &campaign.project_id;
        let now = Utc::now();
        if let Some(start) = parse_instant(&campaign.schedule.start_time)
            && trigger.event_ms < start.timestamp_millis()
        {
            return Ok(());
        }
        if let Some(end) = parse_instant(&campaign.schedule.end_time)
            && now > end
        {
            return Ok(());
        }
        let index = self.shard_index(project_id, &trigger.endpoint_id);
        let group = shard_group(index as u32);
        let Some(lease) = self.lease(group) else {
            // Leadership moved since the events committed; the trigger is dropped (see the
            // known gaps in docs/ARCHITECTURE.md).
            return Ok(());
        };
        let Some(endpoint) = self.local_get::<Endpoint>(&keys::data_key(
            group,
            tag::ENDPOINT,
            &[project_id, &trigger.endpoint_id],
        ))?
        else {
            return Ok(());
        };
        let ctx = self
            .run_context(project_id, &campaign.campaign_id, campaign.version)
            .await?;
        let activity: Option<Activity> = self.local_get(&keys::data_key(
            group,
            tag::ACTIVITY,
            &[project_id, &trigger.endpoint_id],
        ))?;
        let last_seen = activity.as_ref().and_then(|a| parse_instant(&a.last_seen));
        let mut facts = EndpointFacts::from_endpoint(&endpoint, last_seen);
        // Imported segments (SEG-3) are membership records of their own.
        facts.imported_by = self
            .store
            .scan::<()>(
                &self.store.data,
                &keys::data_key(group, tag::IMPORTED, &[project_id, &trigger.endpoint_id]),
            )
            .map_err(ClusterError::internal)?
            .into_iter()
            .filter_map(|(key, ())| keys::data_fields(&key).pop())
            .collect();
        if !ctx.in_segment(&facts, now) {
            return Ok(());
        }
        let (treatment, mut status, mut reason) = match assign(campaign, endpoint.cohort_id) {
            Assignment::Holdout => (0, IntentStatus::Holdout, "in the holdout"),
            Assignment::Treatment(t) => (t, IntentStatus::Pending, ""),
        };
        let zone = parse_zone(&endpoint.demographic.timezone);
        let quiet = quiet_time_of(&campaign.schedule, &ctx.project.settings.quiet_time);
        if status == IntentStatus::Pending {
            let max_ms = i64::from(ctx.limits.maximum_duration_secs) * 1000;
            if endpoint.opt_out == OptOut::All || endpoint.status == EndpointStatus::Inactive {
                status = IntentStatus::OptOut;
                reason = "the endpoint opted out or is inactive";
            } else if max_ms > 0 && now.timestamp_millis() - trigger.event_ms > max_ms {
                status = IntentStatus::Expired;
                reason = "not sent within the campaign's maximum duration after its event";
            } else if is_quiet(quiet, now, zone.unwrap_or_else(|| campaign.schedule.zone())) {
                status = IntentStatus::QuietTime;
                reason = "inside the endpoint's quiet time";
            }
        }
        let request = IntentRequest {
            endpoint_id: trigger.endpoint_id.clone(),
            trigger: trigger.event_id.clone(),
            message_id: new_message_id(),
            treatment,
            status,
            reason: reason.to_string(),
            event_ms: trigger.event_ms,
        };
        let endpoints = HashMap::from([(trigger.endpoint_id.clone(), endpoint)]);
        let mut requests = vec![request];
        self.apply_hook(&ctx, &endpoints, &mut requests).await?;
        let run = RunRef {
            project_id,
            campaign_id: &campaign.campaign_id,
            run_id: EVENT_RUN,
        };
        self.commit_and_send(index, lease, &ctx, run, requests, &endpoints)
            .await
    }
}
