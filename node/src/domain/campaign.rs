//! Campaigns (SPEC CMP-1..8): the stored record, its validation, and the rules a shard applies
//! to each endpoint of a run: treatment by cohort, holdout, event filters and caps.
//!
//! Schedules, local time and quiet time are in [`super::schedule`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::event::Event;
use super::hashing::stable_hash;
use super::project::{CampaignLimits, QuietTime, validate_name};
use super::schedule::{Frequency, Schedule, is_quiet, validate_schedule};
use super::segment::{AttributeDimension, MetricDimension};
use super::template::{TemplateContent, TemplateType};
use super::violation::{FieldViolation, join};

/// Most treatments of an A/B campaign (CMP-4).
pub const MAX_TREATMENTS: usize = 5;

/// Lifecycle of a campaign (CMP-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CampaignState {
    /// Saved, not yet scheduled (no schedule start).
    Draft,
    /// Waiting for its first run.
    Scheduled,
    /// A run is going on.
    Executing,
    /// Between two runs of a recurring schedule.
    PendingNextRun,
    /// Paused by the user; no run starts and running ones stop sending.
    Paused,
    /// Every run is done.
    Completed,
    /// Deleted; kept only while its runs wind down.
    Deleted,
    /// Its segment or a template it names is gone.
    Invalid,
}

impl CampaignState {
    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Scheduled => "SCHEDULED",
            Self::Executing => "EXECUTING",
            Self::PendingNextRun => "PENDING_NEXT_RUN",
            Self::Paused => "PAUSED",
            Self::Completed => "COMPLETED",
            Self::Deleted => "DELETED",
            Self::Invalid => "INVALID",
        }
    }

    /// Whether the scheduler still has work for a campaign in this state.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Self::Scheduled | Self::Executing | Self::PendingNextRun
        )
    }
}

/// What one treatment sends, per content kind: inline content or a stored template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignMessage {
    /// Inline content per kind.
    pub inline: BTreeMap<TemplateType, TemplateContent>,
    /// Stored templates per kind: name and version (None: the active one). A template wins
    /// over inline content of the same kind.
    pub templates: BTreeMap<TemplateType, (String, Option<u32>)>,
}

impl CampaignMessage {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.inline.is_empty() && self.templates.is_empty()
    }
}

/// One treatment of a campaign (CMP-4); a campaign without A/B has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Treatment {
    /// Name for people; may be empty.
    pub name: String,
    /// Share of the audience, percent.
    pub size_percent: u32,
    /// What it sends.
    pub message: CampaignMessage,
    /// Its own schedule; None: the campaign's.
    pub schedule: Option<Schedule>,
}

/// Limits of one campaign (CMP-5); None inherits the project's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignLimitOverrides {
    /// Most messages one endpoint gets from this campaign per day.
    pub daily: Option<u32>,
    /// Most messages one endpoint gets from this campaign in total.
    pub total: Option<u32>,
    /// Most messages one endpoint gets from this campaign per session.
    pub session: Option<u32>,
    /// Messages per second of the whole campaign.
    pub messages_per_second: Option<u32>,
    /// Longest time after its event an event-triggered send may still go out, seconds.
    pub maximum_duration_secs: Option<u32>,
}

/// The limits in force for a campaign: its overrides over the project's defaults; 0 is none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveLimits {
    /// Per endpoint per day from this campaign.
    pub daily: u32,
    /// Per endpoint in total from this campaign.
    pub total: u32,
    /// Per endpoint per session from this campaign.
    pub session: u32,
    /// Per endpoint per day from all campaigns of the project.
    pub project_daily: u32,
    /// Messages per second of the campaign.
    pub messages_per_second: u32,
    /// Longest delay of an event-triggered send, seconds.
    pub maximum_duration_secs: u32,
}

impl CampaignLimitOverrides {
    /// These overrides over the project's `defaults`. The project's `daily` is its cap across
    /// campaigns; a campaign's own daily cap has no project default.
    pub fn effective(&self, defaults: &CampaignLimits) -> EffectiveLimits {
        EffectiveLimits {
            daily: self.daily.unwrap_or(0),
            total: self.total.unwrap_or(defaults.total),
            session: self.session.unwrap_or(defaults.session),
            project_daily: defaults.daily,
            messages_per_second: self
                .messages_per_second
                .unwrap_or(defaults.messages_per_second),
            maximum_duration_secs: self
                .maximum_duration_secs
                .unwrap_or(defaults.maximum_duration_secs),
        }
    }
}

/// Which events trigger an event campaign (CMP-3); an event matches when it meets all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventFilter {
    /// Event types, any of which matches; empty: any type.
    pub event_types: Vec<String>,
    /// Conditions on event attributes (INCLUSIVE, EXCLUSIVE, CONTAINS…).
    pub attributes: BTreeMap<String, AttributeDimension>,
    /// Comparisons on event metrics.
    pub metrics: BTreeMap<String, MetricDimension>,
}

impl EventFilter {
    /// Whether `event` triggers the campaign. Message events (`_email.send`…) never do, so a
    /// campaign cannot trigger itself.
    pub fn matches(&self, event: &Event) -> bool {
        if is_message_event(&event.event_type) {
            return false;
        }
        if !self.event_types.is_empty() && !self.event_types.contains(&event.event_type) {
            return false;
        }
        let attributes_match = self.attributes.iter().all(|(name, dimension)| {
            let values: Vec<String> = event.attributes.get(name).cloned().into_iter().collect();
            dimension.matches(&values)
        });
        attributes_match
            && self
                .metrics
                .iter()
                .all(|(name, dimension)| dimension.matches(event.metrics.get(name).copied()))
    }
}

/// Whether an event type is one Herald records for its own sends (EVT-2).
pub fn is_message_event(event_type: &str) -> bool {
    [
        "_email.", "_sms.", "_push.", "_voice.", "_inapp.", "_custom.",
    ]
    .iter()
    .any(|prefix| event_type.starts_with(prefix))
}

/// A campaign version as stored in the meta group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// The project.
    pub project_id: String,
    /// Assigned at creation.
    pub campaign_id: String,
    /// 1 at creation, one more at every update.
    pub version: u32,
    /// Name for people.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The audience.
    pub segment_id: String,
    /// A fixed segment version; None: the latest at each run (CMP-7).
    pub segment_version: Option<u32>,
    /// One or more treatments (CMP-4).
    pub treatments: Vec<Treatment>,
    /// Share of the audience that receives nothing, percent.
    pub holdout_percent: u32,
    /// When it runs.
    pub schedule: Schedule,
    /// For EVENT schedules: what triggers a send.
    pub event_filter: Option<EventFilter>,
    /// Caps and rates.
    pub limits: CampaignLimitOverrides,
    /// Paused by the user.
    pub is_paused: bool,
    /// RFC 3339.
    pub creation_date: String,
    /// RFC 3339.
    pub last_modified_date: String,
}

/// Checks a campaign as the user wrote it; every problem at once.
pub fn validate_campaign(campaign: &Campaign) -> Vec<FieldViolation> {
    let mut violations = validate_name("name", &campaign.name);
    if campaign.segment_id.trim().is_empty() {
        violations.push(FieldViolation::new("segment_id", "is required"));
    }
    violations.extend(validate_schedule("schedule", &campaign.schedule));
    if campaign.treatments.is_empty() {
        violations.push(FieldViolation::new(
            "treatments",
            "needs at least one treatment (the campaign's message)",
        ));
    }
    if campaign.treatments.len() > MAX_TREATMENTS {
        violations.push(FieldViolation::new(
            "treatments",
            format!(
                "has {} treatments; at most {MAX_TREATMENTS}",
                campaign.treatments.len()
            ),
        ));
    }
    for (i, treatment) in campaign.treatments.iter().enumerate() {
        let field = format!("treatments[{i}]");
        if treatment.message.is_empty() {
            violations.push(FieldViolation::new(
                join(&field, "message"),
                "needs inline content or a template",
            ));
        }
        if treatment.size_percent > 100 {
            violations.push(FieldViolation::new(
                join(&field, "size_percent"),
                format!("{} is over 100", treatment.size_percent),
            ));
        }
        if let Some(schedule) = &treatment.schedule {
            let own = join(&field, "schedule");
            violations.extend(validate_schedule(&own, schedule));
            if (schedule.frequency == Frequency::Event)
                != (campaign.schedule.frequency == Frequency::Event)
            {
                violations.push(FieldViolation::new(
                    join(&own, "frequency"),
                    "a treatment is event-triggered exactly when its campaign is",
                ));
            }
        }
    }
    if campaign.holdout_percent > 100 {
        violations.push(FieldViolation::new(
            "holdout_percent",
            format!("{} is over 100", campaign.holdout_percent),
        ));
    }
    let sizes: u32 = campaign.treatments.iter().map(|t| t.size_percent).sum();
    if !campaign.treatments.is_empty() && sizes + campaign.holdout_percent != 100 {
        violations.push(FieldViolation::new(
            "treatments",
            format!(
                "treatment sizes ({sizes}%) and the holdout ({}%) must add up to 100%",
                campaign.holdout_percent
            ),
        ));
    }
    match (campaign.schedule.frequency, &campaign.event_filter) {
        (Frequency::Event, None) => violations.push(FieldViolation::new(
            "event_filter",
            "is required for an EVENT schedule",
        )),
        (Frequency::Event, Some(filter)) => {
            for (name, dimension) in &filter.attributes {
                if dimension.values.is_empty() {
                    violations.push(FieldViolation::new(
                        format!("event_filter.attributes[\"{name}\"].values"),
                        "needs at least one value",
                    ));
                }
            }
        }
        (_, Some(_)) => violations.push(FieldViolation::new(
            "event_filter",
            "is only for an EVENT schedule",
        )),
        (_, None) => {}
    }
    violations
}

/// Where one endpoint falls in a campaign (CMP-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Assignment {
    /// In the holdout: receives nothing.
    Holdout,
    /// Receives this treatment (index into the campaign's treatments).
    Treatment(u32),
}

/// The campaign's bucket (0–99) of an endpoint: its cohort turned by a per-campaign amount,
/// so assignment is stable across runs and versions but differs between campaigns.
pub fn bucket(campaign_id: &str, cohort_id: u8) -> u32 {
    let turn = (stable_hash(&["campaign-cohort", campaign_id]) % 100) as u32;
    (u32::from(cohort_id) + turn) % 100
}

/// The assignment of an endpoint with `cohort_id`: buckets below the holdout percent are held
/// out, the rest are cut into the treatments in order by their sizes.
pub fn assign(campaign: &Campaign, cohort_id: u8) -> Assignment {
    let bucket = bucket(&campaign.campaign_id, cohort_id);
    if bucket < campaign.holdout_percent {
        return Assignment::Holdout;
    }
    let mut upper = campaign.holdout_percent;
    for (index, treatment) in campaign.treatments.iter().enumerate() {
        upper += treatment.size_percent;
        if bucket < upper {
            return Assignment::Treatment(index as u32);
        }
    }
    // Sizes add up to 100 for a valid campaign; anything left goes to the last treatment.
    Assignment::Treatment(campaign.treatments.len().saturating_sub(1) as u32)
}

/// Why a send was not admitted by the caps (CMP-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapReason {
    /// The campaign's daily cap.
    CampaignDaily,
    /// The campaign's total cap.
    CampaignTotal,
    /// The campaign's per-session cap.
    CampaignSession,
    /// The project's daily cap across campaigns.
    ProjectDaily,
}

impl CapReason {
    /// For people.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CampaignDaily => "the campaign's daily cap for the endpoint is reached",
            Self::CampaignTotal => "the campaign's total cap for the endpoint is reached",
            Self::CampaignSession => "the campaign's per-session cap for the endpoint is reached",
            Self::ProjectDaily => "the project's daily cap for the endpoint is reached",
        }
    }
}

/// Messages one endpoint received from one campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignCount {
    /// In total.
    pub total: u32,
    /// Day number (days since 1970-01-01, UTC) of `day_count`.
    pub day: i64,
    /// On `day`.
    pub day_count: u32,
    /// Session number (the endpoint's session count) of `session_count`.
    pub session: u64,
    /// In `session`.
    pub session_count: u32,
    /// Day number of the last delivery counted in the unique deliveries (-1: none).
    pub last_delivered_day: i64,
    /// Day number of the last open counted in the unique opens (-1: none).
    pub last_open_day: i64,
}

/// Messages one endpoint received from the campaigns of its project: the counters caps are
/// checked against, moved when a send intent is committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCaps {
    /// Day number of `project_day_count`.
    pub project_day: i64,
    /// From all campaigns on `project_day`.
    pub project_day_count: u32,
    /// Per campaign.
    pub campaigns: BTreeMap<String, CampaignCount>,
}

impl EndpointCaps {
    /// Whether one more message from `campaign_id` on `day` in `session` stays within `limits`.
    pub fn check(
        &self,
        campaign_id: &str,
        limits: &EffectiveLimits,
        day: i64,
        session: u64,
    ) -> Result<(), CapReason> {
        let project_today = if self.project_day == day {
            self.project_day_count
        } else {
            0
        };
        if limits.project_daily > 0 && project_today >= limits.project_daily {
            return Err(CapReason::ProjectDaily);
        }
        let Some(count) = self.campaigns.get(campaign_id) else {
            return Ok(());
        };
        if limits.total > 0 && count.total >= limits.total {
            return Err(CapReason::CampaignTotal);
        }
        let today = if count.day == day { count.day_count } else { 0 };
        if limits.daily > 0 && today >= limits.daily {
            return Err(CapReason::CampaignDaily);
        }
        let this_session = if count.session == session {
            count.session_count
        } else {
            0
        };
        if limits.session > 0 && this_session >= limits.session {
            return Err(CapReason::CampaignSession);
        }
        Ok(())
    }

    /// Counts one message from `campaign_id` on `day` in `session`.
    pub fn record(&mut self, campaign_id: &str, day: i64, session: u64) {
        if self.project_day == day {
            self.project_day_count += 1;
        } else {
            self.project_day = day;
            self.project_day_count = 1;
        }
        let count = self
            .campaigns
            .entry(campaign_id.to_string())
            .or_insert_with(|| CampaignCount {
                last_delivered_day: -1,
                last_open_day: -1,
                ..CampaignCount::default()
            });
        count.total += 1;
        if count.day == day {
            count.day_count += 1;
        } else {
            count.day = day;
            count.day_count = 1;
        }
        if count.session == session {
            count.session_count += 1;
        } else {
            count.session = session;
            count.session_count = 1;
        }
    }

    /// Checks and, when admitted, counts one message.
    pub fn admit(
        &mut self,
        campaign_id: &str,
        limits: &EffectiveLimits,
        day: i64,
        session: u64,
    ) -> Result<(), CapReason> {
        self.check(campaign_id, limits, day, session)?;
        self.record(campaign_id, day, session);
        Ok(())
    }
}

/// Day number (days since 1970-01-01, UTC) of a millisecond timestamp.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// The date (YYYY-MM-DD) of a day number.
pub fn date_of_day(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// What became of one endpoint's send in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntentStatus {
    /// Committed, handed to a channel; no outcome yet.
    Pending,
    /// The provider accepted it.
    Delivered,
    /// The provider refused it or it failed after retries.
    Failed,
    /// In the holdout: nothing sent.
    Holdout,
    /// Skipped by quiet time; counts as targeted.
    QuietTime,
    /// Skipped by a cap; counts as targeted.
    Capped,
    /// Opted out or inactive; nothing sent.
    OptOut,
    /// Left out by the project's campaign hook.
    Filtered,
    /// An event-triggered send that could not go out within the campaign's maximum duration.
    Expired,
}

impl IntentStatus {
    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Delivered => "DELIVERED",
            Self::Failed => "FAILED",
            Self::Holdout => "HOLDOUT",
            Self::QuietTime => "QUIET_TIME",
            Self::Capped => "CAPPED",
            Self::OptOut => "OPT_OUT",
            Self::Filtered => "FILTERED",
            Self::Expired => "EXPIRED",
        }
    }
}

/// The record of one endpoint in one run (or of one trigger of an event campaign): it exists
/// at most once, which is what makes a send accounted exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendIntent {
    /// The message id, the provider's idempotency key.
    pub message_id: String,
    /// The campaign version the run uses.
    pub campaign_version: u32,
    /// The assignment.
    pub treatment: u32,
    /// What became of it.
    pub status: IntentStatus,
    /// Why, for people (cap reason, provider answer…).
    pub reason: String,
    /// When the intent was committed, ms since the epoch.
    pub created_ms: i64,
    /// For event-triggered sends: when the event happened (ms); 0 otherwise.
    pub event_ms: i64,
}

/// Counts of one run (or one shard's part of it) (CMP-8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Endpoints the run chose (sent, skipped by quiet time or caps, opted out); not the
    /// holdout.
    pub targeted: u64,
    /// Handed to a channel.
    pub sent: u64,
    /// Accepted by the provider.
    pub delivered: u64,
    /// Refused or failed.
    pub failed: u64,
    /// Held out.
    pub holdout: u64,
    /// Skipped by quiet time.
    pub quiet_time: u64,
    /// Skipped by caps.
    pub capped: u64,
    /// Opted out or inactive.
    pub opted_out: u64,
    /// Left out by the campaign hook.
    pub filtered: u64,
    /// Event sends dropped after the maximum duration.
    pub expired: u64,
}

impl RunCounts {
    /// Adds `other` into these.
    pub fn add(&mut self, other: &RunCounts) {
        self.targeted += other.targeted;
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.holdout += other.holdout;
        self.quiet_time += other.quiet_time;
        self.capped += other.capped;
        self.opted_out += other.opted_out;
        self.filtered += other.filtered;
        self.expired += other.expired;
    }

    /// Counts a new intent in `status`.
    pub fn count_new(&mut self, status: IntentStatus) {
        match status {
            IntentStatus::Holdout => self.holdout += 1,
            IntentStatus::Filtered => self.filtered += 1,
            IntentStatus::Pending => {
                self.targeted += 1;
                self.sent += 1;
            }
            IntentStatus::QuietTime => {
                self.targeted += 1;
                self.quiet_time += 1;
            }
            IntentStatus::Capped => {
                self.targeted += 1;
                self.capped += 1;
            }
            IntentStatus::OptOut => {
                self.targeted += 1;
                self.opted_out += 1;
            }
            IntentStatus::Expired => {
                self.targeted += 1;
                self.expired += 1;
            }
            IntentStatus::Delivered => self.delivered += 1,
            IntentStatus::Failed => self.failed += 1,
        }
    }
}

/// State of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Shards are working on it.
    Executing,
    /// Every shard finished its part.
    Completed,
    /// Stopped before it finished (the campaign was paused or deleted).
    Cancelled,
}

impl RunState {
    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Executing => "EXECUTING",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

/// One run of a campaign, stored in the meta group (the "activity" of CMP-8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignRun {
    /// The project.
    pub project_id: String,
    /// The campaign.
    pub campaign_id: String,
    /// `s{schedule}-{n}` for scheduled runs (schedule 0 is the campaign's, k the k-th
    /// treatment's own), `event` for the one run of an event campaign.
    pub run_id: String,
    /// The campaign version it sends.
    pub campaign_version: u32,
    /// Treatments this run sends.
    pub treatments: Vec<u32>,
    /// Nominal time: a wall clock (`YYYY-MM-DDTHH:MM:SS`), in each endpoint's zone for
    /// local-time runs, otherwise in the campaign zone.
    pub nominal: String,
    /// Its state.
    pub state: RunState,
    /// RFC 3339: when the scheduler started it.
    pub start_time: String,
    /// RFC 3339: when it completed; empty until then.
    pub end_time: String,
    /// Each shard's counts as last reported, and whether the shard finished.
    pub parts: BTreeMap<u32, (RunCounts, bool)>,
}

impl CampaignRun {
    /// The run's counts over every shard reported so far.
    pub fn totals(&self) -> RunCounts {
        let mut totals = RunCounts::default();
        for (counts, _) in self.parts.values() {
            totals.add(counts);
        }
        totals
    }

    /// Whether all of `shards` shards have finished.
    pub fn all_parts_done(&self, shards: u32) -> bool {
        (0..shards).all(|shard| self.parts.get(&shard).is_some_and(|(_, done)| *done))
    }
}

/// Delivery KPIs of one campaign, day and treatment in one shard (CMP-8, ANL-3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KpiCounts {
    /// Messages handed to a channel.
    pub attempted: u64,
    /// Messages the provider accepted.
    pub delivered: u64,
    /// Endpoints delivered to (each once per day).
    pub unique_delivered: u64,
    /// `_email.open` events.
    pub email_opens: u64,
    /// Endpoints that opened (each once per day).
    pub unique_email_opens: u64,
    /// `_email.click` events.
    pub email_clicks: u64,
}

impl KpiCounts {
    /// Adds `other` into these.
    pub fn add(&mut self, other: &KpiCounts) {
        self.attempted += other.attempted;
        self.delivered += other.delivered;
        self.unique_delivered += other.unique_delivered;
        self.email_opens += other.email_opens;
        self.unique_email_opens += other.unique_email_opens;
        self.email_clicks += other.email_clicks;
    }
}

/// The KPIs `GetCampaignDateRangeKpi` answers (ANL-3).
pub const KPI_NAMES: &[&str] = &[
    "successful-delivery-rate",
    "unique-deliveries",
    "attempted-deliveries",
    "email-open-rate",
    "direct-email-opens",
    "email-clicks",
];

/// The value of KPI `name` over `counts`; None for an unknown name.
pub fn kpi_value(name: &str, counts: &KpiCounts) -> Option<f64> {
    let rate = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    Some(match name {
        "successful-delivery-rate" => rate(counts.delivered, counts.attempted),
        "unique-deliveries" => counts.unique_delivered as f64,
        "attempted-deliveries" => counts.attempted as f64,
        "email-open-rate" => rate(counts.unique_email_opens, counts.delivered),
        "direct-email-opens" => counts.email_opens as f64,
        "email-clicks" => counts.email_clicks as f64,
        _ => return None,
    })
}

/// The quiet time in force: the schedule's own, else the project's.
pub fn quiet_time_of<'a>(schedule: &'a Schedule, project: &'a QuietTime) -> &'a QuietTime {
    schedule.quiet_time.as_ref().unwrap_or(project)
}

/// What a pass of a run does with one endpoint at `now` (CMP-2, CMP-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Its time has not come (local-time runs): look again at this instant.
    NotDue(chrono::DateTime<chrono::Utc>),
    /// Due, but inside its quiet time: skipped for this run, counted as targeted.
    Quiet,
    /// Due and outside quiet time: send now.
    Send,
}

/// Decides for an endpoint in `endpoint_zone` (None: the campaign's zone) whether a run with
/// nominal time `nominal` sends to it at `now`.
pub fn decide(
    schedule: &Schedule,
    quiet: &QuietTime,
    nominal: chrono::NaiveDateTime,
    endpoint_zone: Option<chrono_tz::Tz>,
    now: chrono::DateTime<chrono::Utc>,
) -> Decision {
    let due = schedule.due_at(nominal, endpoint_zone);
    if due > now {
        return Decision::NotDue(due);
    }
    if is_quiet(quiet, now, endpoint_zone.unwrap_or_else(|| schedule.zone())) {
        Decision::Quiet
    } else {
        Decision::Send
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn campaign(holdout: u32, sizes: &[u32]) -> Campaign {
        let message = CampaignMessage {
            templates: BTreeMap::from([(TemplateType::Email, ("welcome".to_string(), None))]),
            ..Default::default()
        };
        Campaign {
            project_id: "p".into(),
            campaign_id: "c1".into(),
            version: 1,
            name: "spring".into(),
            description: String::new(),
            segment_id: "s".into(),
            segment_version: None,
            treatments: sizes
                .iter()
                .map(|size| Treatment {
                    name: String::new(),
                    size_percent: *size,
                    message: message.clone(),
                    schedule: None,
                })
                .collect(),
            holdout_percent: holdout,
            schedule: Schedule {
                start_time: "IMMEDIATE".into(),
                end_time: String::new(),
                frequency: Frequency::Once,
                is_local_time: false,
                timezone: String::new(),
                quiet_time: None,
            },
            event_filter: None,
            limits: CampaignLimitOverrides::default(),
            is_paused: false,
            creation_date: String::new(),
            last_modified_date: String::new(),
        }
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn a_simple_campaign_is_valid() {
        assert_eq!(validate_campaign(&campaign(0, &[100])), vec![]);
        assert_eq!(validate_campaign(&campaign(10, &[45, 45])), vec![]);
    }

    #[test]
    fn sizes_must_add_up_and_treatments_are_bounded() {
        assert_eq!(
            fields(&validate_campaign(&campaign(0, &[50]))),
            ["treatments"]
        );
        let six = campaign(0, &[20, 20, 20, 20, 10, 10]);
        assert_eq!(fields(&validate_campaign(&six)), ["treatments"]);
        let mut none = campaign(100, &[]);
        none.segment_id = String::new();
        assert_eq!(
            fields(&validate_campaign(&none)),
            ["segment_id", "treatments"]
        );
    }

    #[test]
    fn event_filter_goes_with_event_schedules() {
        let mut event = campaign(0, &[100]);
        event.schedule.frequency = Frequency::Event;
        assert_eq!(fields(&validate_campaign(&event)), ["event_filter"]);
        event.event_filter = Some(EventFilter::default());
        assert_eq!(validate_campaign(&event), vec![]);
        let mut once = campaign(0, &[100]);
        once.event_filter = Some(EventFilter::default());
        assert_eq!(fields(&validate_campaign(&once)), ["event_filter"]);
    }

    #[test]
    fn assignment_follows_the_sizes() {
        let c = campaign(10, &[30, 60]);
        let mut counts = [0u32; 3];
        for cohort in 0..100u8 {
            match assign(&c, cohort) {
                Assignment::Holdout => counts[0] += 1,
                Assignment::Treatment(t) => counts[t as usize + 1] += 1,
            }
        }
        assert_eq!(counts, [10, 30, 60]);
    }

    fn event(event_type: &str, plan: &str, amount: f64) -> Event {
        Event {
            event_type: event_type.into(),
            timestamp: "2026-11-25T10:00:00Z".into(),
            attributes: BTreeMap::from([("plan".to_string(), plan.to_string())]),
            metrics: BTreeMap::from([("amount".to_string(), amount)]),
            session: None,
            app_package_name: String::new(),
            app_title: String::new(),
            app_version_code: String::new(),
            client_sdk_version: String::new(),
            sdk_name: String::new(),
        }
    }

    #[test]
    fn event_filters_check_type_attributes_and_metrics() {
        use super::super::segment::{AttributeKind, MetricComparison};
        let filter = EventFilter {
            event_types: vec!["purchase".into()],
            attributes: BTreeMap::from([(
                "plan".to_string(),
                AttributeDimension {
                    kind: AttributeKind::Inclusive,
                    values: vec!["pro".into()],
                },
            )]),
            metrics: BTreeMap::from([(
                "amount".to_string(),
                MetricDimension {
                    comparison: MetricComparison::GreaterThan,
                    value: 10.0,
                    upper: None,
                },
            )]),
        };
        assert!(filter.matches(&event("purchase", "pro", 11.0)));
        assert!(!filter.matches(&event("purchase", "pro", 10.0)));
        assert!(!filter.matches(&event("purchase", "free", 11.0)));
        assert!(!filter.matches(&event("refund", "pro", 11.0)));
        let any = EventFilter::default();
        assert!(any.matches(&event("anything", "", 0.0)));
        assert!(!any.matches(&event("_email.send", "", 0.0)));
    }

    #[test]
    fn kpis_are_rates_and_counts() {
        let counts = KpiCounts {
            attempted: 10,
            delivered: 8,
            unique_delivered: 8,
            email_opens: 5,
            unique_email_opens: 4,
            email_clicks: 1,
        };
        assert_eq!(kpi_value("successful-delivery-rate", &counts), Some(0.8));
        assert_eq!(kpi_value("email-open-rate", &counts), Some(0.5));
        assert_eq!(kpi_value("direct-email-opens", &counts), Some(5.0));
        assert_eq!(
            kpi_value("email-open-rate", &KpiCounts::default()),
            Some(0.0)
        );
        assert_eq!(kpi_value("no-such-kpi", &counts), None);
    }

    /// One attempted send: which campaign (0..3), day offset and session.
    fn sends() -> impl Strategy<Value = Vec<(usize, i64, u64)>> {
        proptest::collection::vec((0usize..3, 0i64..4, 0u64..3), 0..200)
    }

    fn limits() -> impl Strategy<Value = EffectiveLimits> {
        (0u32..4, 0u32..8, 0u32..3, 0u32..5).prop_map(|(daily, total, session, project)| {
            EffectiveLimits {
                daily,
                total,
                session,
                project_daily: project,
                messages_per_second: 0,
                maximum_duration_secs: 0,
            }
        })
    }

    const ZONES: &[&str] = &[
        "Asia/Kathmandu",
        "Pacific/Tongatapu",
        "Pacific/Chatham",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "America/St_Johns",
        "UTC",
    ];

    /// Runs a local-time run through passes every `step_minutes` of a controlled clock from
    /// the earliest due instant for 30 hours; answers the first decision (time and what) for
    /// an endpoint in `zone`.
    fn first_decision(
        schedule: &Schedule,
        quiet: &QuietTime,
        nominal: chrono::NaiveDateTime,
        zone: chrono_tz::Tz,
        step_minutes: i64,
    ) -> Option<(chrono::DateTime<chrono::Utc>, Decision)> {
        let mut now = schedule.earliest_due(nominal);
        let end = now + chrono::Duration::hours(30);
        while now <= end {
            match decide(schedule, quiet, nominal, Some(zone), now) {
                Decision::NotDue(_) => now += chrono::Duration::minutes(step_minutes),
                decision => return Some((now, decision)),
            }
        }
        None
    }

    #[test]
    fn local_time_on_a_dst_day_and_in_odd_offsets() {
        use chrono::{NaiveDate, TimeZone, Timelike};
        let schedule = Schedule {
            start_time: "2026-03-08T09:00:00Z".into(),
            end_time: String::new(),
            frequency: Frequency::Once,
            is_local_time: true,
            timezone: "UTC".into(),
            quiet_time: None,
        };
        let quiet = QuietTime {
            start: "22:00".into(),
            end: "07:00".into(),
        };
        // New York springs forward on 2026-03-08: 09:00 EDT is 13:00Z, not 14:00Z.
        let nominal = NaiveDate::from_ymd_opt(2026, 3, 8)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap();
        for (zone, utc) in [
            ("America/New_York", (2026, 3, 8, 13, 0)),
            ("Asia/Kathmandu", (2026, 3, 8, 3, 15)),
            ("Pacific/Tongatapu", (2026, 3, 7, 20, 0)),
        ] {
            let zone: chrono_tz::Tz = zone.parse().unwrap();
            let (at, decision) = first_decision(&schedule, &quiet, nominal, zone, 1).unwrap();
            assert_eq!(decision, Decision::Send, "{zone}");
            assert_eq!(
                at,
                chrono::Utc
                    .with_ymd_and_hms(utc.0, utc.1, utc.2, utc.3, utc.4, 0)
                    .unwrap(),
                "{zone}"
            );
            assert_eq!(at.with_timezone(&zone).hour(), 9, "{zone}");
        }
        // A 06:30 run sits inside 22:00–07:00 everywhere: skipped, never sent.
        let early = nominal.with_hour(6).unwrap().with_minute(30).unwrap();
        for zone in ZONES {
            let zone: chrono_tz::Tz = zone.parse().unwrap();
            let (_, decision) = first_decision(&schedule, &quiet, early, zone, 5).unwrap();
            assert_eq!(decision, Decision::Quiet, "{zone}");
        }
    }

    proptest! {
        /// CMP-2, CMP-6 with a controlled clock: in every zone, a local-time run reaches the
        /// endpoint at the first pass at or after the run's clock time there (a DST gap moves
        /// it forward by the gap), and a send never happens inside the quiet time.
        #[test]
        fn local_time_sends_at_the_local_clock_and_never_in_quiet_hours(
            zone in proptest::sample::select(ZONES),
            day in 0i64..730,
            minute_of_day in 0u32..1440,
            quiet_start in 0u32..1440,
            quiet_length in 0u32..720,
            step in 1i64..20,
        ) {
            use chrono::{NaiveDate, Timelike};
            let zone: chrono_tz::Tz = zone.parse().unwrap();
            let date = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Duration::days(day);
            let nominal = date
                .and_hms_opt(minute_of_day / 60, minute_of_day % 60, 0)
                .unwrap();
            let quiet_end = (quiet_start + quiet_length) % 1440;
            let quiet = QuietTime {
                start: format!("{:02}:{:02}", quiet_start / 60, quiet_start % 60),
                end: format!("{:02}:{:02}", quiet_end / 60, quiet_end % 60),
            };
            let schedule = Schedule {
                start_time: "2026-01-01T00:00:00Z".into(),
                end_time: String::new(),
                frequency: Frequency::Once,
                is_local_time: true,
                timezone: "UTC".into(),
                quiet_time: None,
            };
            let (at, decision) = first_decision(&schedule, &quiet, nominal, zone, step).unwrap();
            let due = schedule.due_at(nominal, Some(zone));
            prop_assert!(at >= due && at < due + chrono::Duration::minutes(step));
            prop_assert!(at >= schedule.earliest_due(nominal) && due <= schedule.latest_due(nominal));
            // The local clock at the due instant is the run's clock, or later by a DST gap.
            let local = due.with_timezone(&zone).naive_local();
            let drift = local - nominal;
            prop_assert!(
                drift >= chrono::Duration::zero() && drift <= chrono::Duration::minutes(60),
                "local {local} for nominal {nominal}"
            );
            let quiet_now = is_quiet(&quiet, at, zone);
            match decision {
                Decision::Send => prop_assert!(!quiet_now),
                Decision::Quiet => prop_assert!(quiet_now),
                Decision::NotDue(_) => prop_assert!(false, "first decision is not NotDue"),
            }
            let _ = at.with_timezone(&zone).minute();
        }

        /// CMP-5: whatever the order of attempts across campaigns, days and sessions, the
        /// admitted sends never exceed any cap, and a send is refused only when one is reached.
        #[test]
        fn caps_are_never_exceeded(limits in limits(), mut attempts in sends()) {
            // Days only move forward for one endpoint; sessions too within a day.
            attempts.sort_by_key(|(_, day, session)| (*day, *session));
            let campaigns = ["a", "b", "c"];
            let mut caps = EndpointCaps::default();
            let mut admitted: Vec<(usize, i64, u64)> = Vec::new();
            for (campaign, day, session) in attempts {
                // Session numbers only grow: number them across days.
                let session = day as u64 * 3 + session;
                let id = campaigns[campaign];
                let count = |f: &dyn Fn(&(usize, i64, u64)) -> bool| {
                    admitted.iter().filter(|a| f(a)).count() as u32
                };
                let project_today = count(&|a| a.1 == day);
                let total = count(&|a| a.0 == campaign);
                let today = count(&|a| a.0 == campaign && a.1 == day);
                let in_session = count(&|a| a.0 == campaign && a.2 == session);
                let expected_ok = (limits.project_daily == 0 || project_today < limits.project_daily)
                    && (limits.total == 0 || total < limits.total)
                    && (limits.daily == 0 || today < limits.daily)
                    && (limits.session == 0 || in_session < limits.session);
                let verdict = caps.admit(id, &limits, day, session);
                prop_assert_eq!(verdict.is_ok(), expected_ok, "verdict {:?}", verdict);
                if verdict.is_ok() {
                    admitted.push((campaign, day, session));
                }
            }
        }

        /// CMP-4: assignment depends only on the campaign and the cohort, and the holdout and
        /// treatments get exactly their percentages of the 100 cohorts.
        #[test]
        fn assignment_is_stable_and_proportional(holdout in 0u32..=100, split in 0u32..=100) {
            let rest = 100 - holdout;
            let first = rest * split / 100;
            let c = campaign(holdout, &[first, rest - first]);
            let mut counts = [0u32; 3];
            for cohort in 0..100u8 {
                let a = assign(&c, cohort);
                prop_assert_eq!(a, assign(&c, cohort));
                match a {
                    Assignment::Holdout => counts[0] += 1,
                    Assignment::Treatment(t) => counts[t as usize + 1] += 1,
                }
            }
            prop_assert_eq!(counts, [holdout, first, rest - first]);
        }
    }
}
