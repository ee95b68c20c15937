//! Campaigns (SPEC CMP): versions, state and runs in the meta group; the scheduler that
//! starts runs on the meta leader; KPIs summed over every shard.
//!
//! Shards execute their part of each run in [`super::campaign_exec`].

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use futures::future::join_all;

use super::{Cluster, ClusterError, Result, now_rfc3339};
use crate::domain::FieldViolation;
use crate::domain::campaign::{
    Campaign, CampaignRun, CampaignState, KPI_NAMES, KpiCounts, RunCounts, RunState, day_of,
    kpi_value, validate_campaign,
};
use crate::domain::schedule::{Frequency, Schedule};
use crate::domain::segment::parse_instant;
use crate::domain::template::TemplateType;
use crate::raft::campaign_state::{campaign_head_key, campaign_key};
use crate::raft::command::{CampaignCommand, CampaignHead, MetaCommand, MetaResponse};
use crate::raft::{META_GROUP, shard_group};
use crate::storage::{codec, keys, keys::tag};

/// The run id of an event campaign's one run.
pub const EVENT_RUN: &str = "event";

/// One value of a KPI (ANL-3).
#[derive(Debug, Clone, PartialEq)]
pub struct KpiRow {
    /// YYYY-MM-DD (UTC).
    pub date: String,
    /// The treatment, when grouped by treatment.
    pub treatment: Option<u32>,
    /// The value.
    pub value: f64,
}

fn not_found(campaign_id: &str) -> ClusterError {
    ClusterError::NotFound(format!("campaign {campaign_id:?} not found"))
}

fn unexpected(answer: MetaResponse) -> ClusterError {
    ClusterError::Internal(format!("unexpected answer {answer:?}"))
}

/// The schedules of a campaign: 0 is the campaign's own, with the treatments that have none;
/// `k` is treatment `k - 1`'s own. Each with the treatments its runs send.
pub fn schedule_groups(campaign: &Campaign) -> Vec<(u32, &Schedule, Vec<u32>)> {
    let mut groups = Vec::new();
    let shared: Vec<u32> = campaign
        .treatments
        .iter()
        .enumerate()
        .filter(|(_, t)| t.schedule.is_none())
        .map(|(i, _)| i as u32)
        .collect();
    if !shared.is_empty() {
        groups.push((0, &campaign.schedule, shared));
    }
    for (i, treatment) in campaign.treatments.iter().enumerate() {
        if let Some(schedule) = &treatment.schedule {
            groups.push((i as u32 + 1, schedule, vec![i as u32]));
        }
    }
    groups
}

/// The instant a campaign's "IMMEDIATE" means: its creation.
pub fn created_at(campaign: &Campaign) -> DateTime<Utc> {
    parse_instant(&campaign.creation_date).unwrap_or_else(Utc::now)
}

impl Cluster {
    /// Checks the campaign's references: its segment and the templates it names.
    async fn check_references(&self, campaign: &Campaign) -> Result<()> {
        let mut violations = Vec::new();
        match self
            .get_segment(
                &campaign.project_id,
                &campaign.segment_id,
                campaign.segment_version,
            )
            .await
        {
            Ok(_) => {}
            Err(ClusterError::NotFound(message)) => {
                violations.push(FieldViolation::new("segment_id", message));
            }
            Err(error) => return Err(error),
        }
        for (i, treatment) in campaign.treatments.iter().enumerate() {
            for (kind, (name, version)) in &treatment.message.templates {
                match self
                    .get_template(&campaign.project_id, *kind, name, *version)
                    .await
                {
                    Ok(_) => {}
                    Err(ClusterError::NotFound(message)) => violations.push(FieldViolation::new(
                        format!("treatments[{i}].templates.{}", kind_field(*kind)),
                        message,
                    )),
                    Err(error) => return Err(error),
                }
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ClusterError::InvalidArgument(violations))
        }
    }

    async fn write_campaign(
        &self,
        campaign: Campaign,
        create: bool,
    ) -> Result<(Campaign, CampaignState)> {
        self.project(&campaign.project_id).await?;
        let violations = validate_campaign(&campaign);
        if !violations.is_empty() {
            return Err(ClusterError::InvalidArgument(violations));
        }
        self.check_references(&campaign).await?;
        let campaign_id = campaign.campaign_id.clone();
        match self
            .write_meta(MetaCommand::Campaign(CampaignCommand::Put {
                campaign,
                create,
            }))
            .await?
        {
            MetaResponse::Campaign { campaign, state } => Ok((campaign, state)),
            MetaResponse::CampaignNotFound if create => Err(ClusterError::AlreadyExists(format!(
                "campaign {campaign_id:?} exists"
            ))),
            MetaResponse::CampaignNotFound => Err(not_found(&campaign_id)),
            other => Err(unexpected(other)),
        }
    }

    /// Stores version 1 of a new campaign with a new id (CMP-1).
    pub async fn create_campaign(
        &self,
        mut campaign: Campaign,
    ) -> Result<(Campaign, CampaignState)> {
        if campaign.campaign_id.is_empty() {
            campaign.campaign_id = uuid::Uuid::new_v4().simple().to_string();
        }
        let now = now_rfc3339();
        campaign.creation_date = now.clone();
        campaign.last_modified_date = now;
        self.write_campaign(campaign, true).await
    }

    /// Stores the next version of a campaign; pausing and resuming are updates of `is_paused`.
    pub async fn update_campaign(
        &self,
        mut campaign: Campaign,
    ) -> Result<(Campaign, CampaignState)> {
        let (current, _) = self
            .get_campaign(&campaign.project_id, &campaign.campaign_id, None)
            .await?;
        campaign.creation_date = current.creation_date;
        campaign.last_modified_date = now_rfc3339();
        self.write_campaign(campaign, false).await
    }

    /// One version of a campaign (None: the latest) and the campaign's state.
    pub async fn get_campaign(
        &self,
        project_id: &str,
        campaign_id: &str,
        version: Option<u32>,
    ) -> Result<(Campaign, CampaignState)> {
        self.project(project_id).await?;
        let head: CampaignHead = self
            .read_value(META_GROUP, campaign_head_key(project_id, campaign_id))
            .await?
            .ok_or_else(|| not_found(campaign_id))?;
        let version = version.unwrap_or(head.latest);
        let campaign: Campaign = self
            .read_value(META_GROUP, campaign_key(project_id, campaign_id, version))
            .await?
            .ok_or_else(|| {
                ClusterError::NotFound(format!("campaign {campaign_id:?} has no version {version}"))
            })?;
        Ok((campaign, head.state.unwrap_or(CampaignState::Draft)))
    }

    /// The latest version of every campaign of a project, with its state.
    pub async fn list_campaigns(&self, project_id: &str) -> Result<Vec<(Campaign, CampaignState)>> {
        self.project(project_id).await?;
        let heads = self
            .read_records(
                META_GROUP,
                keys::data_key(META_GROUP, tag::CAMPAIGN_HEAD, &[project_id]),
            )
            .await?;
        let mut campaigns = Vec::new();
        for (key, value) in heads {
            let head: CampaignHead = codec::decode(&value).map_err(ClusterError::internal)?;
            let fields = keys::data_fields(&key);
            let Some(campaign_id) = fields.get(1) else {
                continue;
            };
            if let Some(campaign) = self
                .read_value::<Campaign>(
                    META_GROUP,
                    campaign_key(project_id, campaign_id, head.latest),
                )
                .await?
            {
                campaigns.push((campaign, head.state.unwrap_or(CampaignState::Draft)));
            }
        }
        Ok(campaigns)
    }

    /// Every version of a campaign, oldest first.
    pub async fn campaign_versions(
        &self,
        project_id: &str,
        campaign_id: &str,
    ) -> Result<Vec<Campaign>> {
        self.project(project_id).await?;
        let records = self
            .read_records(
                META_GROUP,
                keys::data_key(META_GROUP, tag::CAMPAIGN, &[project_id, campaign_id]),
            )
            .await?;
        if records.is_empty() {
            return Err(not_found(campaign_id));
        }
        records
            .into_iter()
            .map(|(_, value)| codec::decode(&value).map_err(ClusterError::internal))
            .collect()
    }

    /// Deletes a campaign, its versions and runs; shards stop sending it at their next page.
    pub async fn delete_campaign(&self, project_id: &str, campaign_id: &str) -> Result<Campaign> {
        self.project(project_id).await?;
        match self
            .write_meta(MetaCommand::Campaign(CampaignCommand::Delete {
                project_id: project_id.to_string(),
                campaign_id: campaign_id.to_string(),
            }))
            .await?
        {
            MetaResponse::Campaign { campaign, .. } => Ok(campaign),
            MetaResponse::CampaignNotFound => Err(not_found(campaign_id)),
            other => Err(unexpected(other)),
        }
    }

    /// The runs of a campaign (CMP-8), oldest first, with their counts as shards reported them.
    pub async fn campaign_runs(
        &self,
        project_id: &str,
        campaign_id: &str,
    ) -> Result<Vec<CampaignRun>> {
        self.get_campaign(project_id, campaign_id, None).await?;
        let records = self
            .read_records(
                META_GROUP,
                keys::data_key(META_GROUP, tag::CAMPAIGN_RUN, &[project_id, campaign_id]),
            )
            .await?;
        let mut runs: Vec<CampaignRun> = records
            .into_iter()
            .map(|(_, value)| codec::decode(&value).map_err(ClusterError::internal))
            .collect::<Result<_>>()?;
        runs.sort_by(|a, b| {
            (a.start_time.as_str(), a.run_id.as_str())
                .cmp(&(b.start_time.as_str(), b.run_id.as_str()))
        });
        Ok(runs)
    }

    /// A KPI of a campaign per day from `start` to `end` inclusive (ANL-3), summed over every
    /// shard, optionally per treatment. Days without sends answer 0.
    pub async fn campaign_kpi(
        &self,
        project_id: &str,
        campaign_id: &str,
        kpi_name: &str,
        start: NaiveDate,
        end: NaiveDate,
        by_treatment: bool,
    ) -> Result<Vec<KpiRow>> {
        if !KPI_NAMES.contains(&kpi_name) {
            return Err(ClusterError::InvalidArgument(vec![FieldViolation::new(
                "kpi_name",
                format!("{kpi_name:?} is not one of {}", KPI_NAMES.join(", ")),
            )]));
        }
        if end < start {
            return Err(ClusterError::InvalidArgument(vec![FieldViolation::new(
                "end_date",
                "is before start_date",
            )]));
        }
        self.get_campaign(project_id, campaign_id, None).await?;
        let day = |date: NaiveDate| {
            day_of(
                date.and_hms_opt(0, 0, 0)
                    .map_or(0, |t| t.and_utc().timestamp_millis()),
            )
        };
        let (first, last) = (day(start), day(end));
        let reads = (0..self.config.cluster.shards).map(|shard| {
            let group = shard_group(shard);
            self.read_records(
                group,
                keys::data_key(group, tag::CAMPAIGN_KPI, &[project_id, campaign_id]),
            )
        });
        let mut sums: BTreeMap<(i64, u32), KpiCounts> = BTreeMap::new();
        for records in join_all(reads).await {
            for (key, value) in records? {
                let fields = keys::data_fields(&key);
                let (Some(day), Some(treatment)) = (
                    fields.get(2).and_then(|d| d.parse::<i64>().ok()),
                    fields.get(3).and_then(|t| t.parse::<u32>().ok()),
                ) else {
                    continue;
                };
                if day < first || day > last {
                    continue;
                }
                let counts: KpiCounts = codec::decode(&value).map_err(ClusterError::internal)?;
                let treatment = if by_treatment { treatment } else { 0 };
                sums.entry((day, treatment)).or_default().add(&counts);
            }
        }
        let treatments: Vec<u32> = if by_treatment {
            let mut seen: Vec<u32> = sums.keys().map(|(_, t)| *t).collect();
            seen.sort_unstable();
            seen.dedup();
            if seen.is_empty() { vec![0] } else { seen }
        } else {
            vec![0]
        };
        let mut rows = Vec::new();
        for day in first..=last {
            for treatment in &treatments {
                let counts = sums.get(&(day, *treatment)).copied().unwrap_or_default();
                rows.push(KpiRow {
                    date: crate::domain::campaign::date_of_day(day),
                    treatment: by_treatment.then_some(*treatment),
                    value: kpi_value(kpi_name, &counts).unwrap_or_default(),
                });
            }
        }
        Ok(rows)
    }

    /// Campaign heads in this node's meta copy: (project, campaign, head).
    pub(crate) fn local_campaign_heads(&self) -> Result<Vec<(String, String, CampaignHead)>> {
        Ok(self
            .store
            .scan::<CampaignHead>(
                &self.store.data,
                &keys::data_key(META_GROUP, tag::CAMPAIGN_HEAD, &[]),
            )
            .map_err(ClusterError::internal)?
            .into_iter()
            .filter_map(|(key, head)| {
                let mut fields = keys::data_fields(&key).into_iter();
                Some((fields.next()?, fields.next()?, head))
            })
            .collect())
    }

    /// A campaign version in this node's meta copy.
    pub(crate) fn local_campaign(
        &self,
        project_id: &str,
        campaign_id: &str,
        version: u32,
    ) -> Result<Option<Campaign>> {
        self.store
            .get(
                &self.store.data,
                &campaign_key(project_id, campaign_id, version),
            )
            .map_err(ClusterError::internal)
    }

    /// A campaign's head in this node's meta copy.
    pub(crate) fn local_campaign_head(
        &self,
        project_id: &str,
        campaign_id: &str,
    ) -> Result<Option<CampaignHead>> {
        self.store
            .get(
                &self.store.data,
                &campaign_head_key(project_id, campaign_id),
            )
            .map_err(ClusterError::internal)
    }

    /// Runs in this node's meta copy: every run, or those of one campaign.
    pub(crate) fn local_runs(&self, campaign: Option<(&str, &str)>) -> Result<Vec<CampaignRun>> {
        let prefix = match campaign {
            Some((project_id, campaign_id)) => {
                keys::data_key(META_GROUP, tag::CAMPAIGN_RUN, &[project_id, campaign_id])
            }
            None => keys::data_key(META_GROUP, tag::CAMPAIGN_RUN, &[]),
        };
        Ok(self
            .store
            .scan::<CampaignRun>(&self.store.data, &prefix)
            .map_err(ClusterError::internal)?
            .into_iter()
            .map(|(_, run)| run)
            .collect())
    }

    /// One pass of the scheduler (meta leader only): ends runs whose shards are all done,
    /// starts runs that are due, and keeps each campaign's state (CMP-1, CMP-2).
    pub(crate) async fn schedule_campaigns(&self) -> Result<()> {
        let now = Utc::now();
        let shards = self.config.cluster.shards;
        for (project_id, campaign_id, head) in self.local_campaign_heads()? {
            let Some(state) = head.state else { continue };
            if matches!(
                state,
                CampaignState::Completed | CampaignState::Deleted | CampaignState::Invalid
            ) {
                continue;
            }
            let Some(campaign) = self.local_campaign(&project_id, &campaign_id, head.latest)?
            else {
                continue;
            };
            let runs = self.local_runs(Some((&project_id, &campaign_id)))?;
            let event_campaign = campaign.schedule.frequency == Frequency::Event;
            let window_closed =
                parse_instant(&campaign.schedule.end_time).is_some_and(|end| now > end);
            let mut executing = false;
            for run in runs.iter().filter(|run| run.state == RunState::Executing) {
                let finished = if run.run_id == EVENT_RUN {
                    window_closed || !event_campaign
                } else {
                    run.all_parts_done(shards)
                };
                if finished {
                    self.write_meta(MetaCommand::Campaign(CampaignCommand::EndRun {
                        project_id: project_id.clone(),
                        campaign_id: campaign_id.clone(),
                        run_id: run.run_id.clone(),
                        state: RunState::Completed,
                        at: now_rfc3339(),
                    }))
                    .await?;
                } else {
                    executing = true;
                }
            }
            if state == CampaignState::Paused {
                continue;
            }
            let mut pending = false;
            if event_campaign {
                let started =
                    parse_instant(&campaign.schedule.start_time).is_none_or(|start| start <= now);
                let exists = runs.iter().any(|run| run.run_id == EVENT_RUN);
                if started && !window_closed && !exists {
                    self.start_run(
                        &campaign,
                        EVENT_RUN,
                        None,
                        (0..campaign.treatments.len() as u32).collect(),
                        String::new(),
                    )
                    .await?;
                    executing = true;
                }
                pending = !started;
            } else {
                let created = created_at(&campaign);
                for (group, schedule, treatments) in schedule_groups(&campaign) {
                    let next = head.next_run.get(&group).copied().unwrap_or(0);
                    let Some(nominal) = schedule.nominal_run(next, created) else {
                        continue;
                    };
                    if schedule.earliest_due(nominal) <= now {
                        let run_id = format!("s{group}-{next}");
                        self.start_run(
                            &campaign,
                            &run_id,
                            Some((group, next + 1)),
                            treatments,
                            nominal.format("%Y-%m-%dT%H:%M:%S").to_string(),
                        )
                        .await?;
                        executing = true;
                        pending |= schedule.nominal_run(next + 1, created).is_some();
                    } else {
                        pending = true;
                    }
                }
            }
            let wanted = if executing {
                CampaignState::Executing
            } else if pending {
                if runs.is_empty() {
                    CampaignState::Scheduled
                } else {
                    CampaignState::PendingNextRun
                }
            } else {
                CampaignState::Completed
            };
            if wanted != state {
                self.write_meta(MetaCommand::Campaign(CampaignCommand::SetState {
                    project_id: project_id.clone(),
                    campaign_id: campaign_id.clone(),
                    state: wanted,
                }))
                .await?;
            }
        }
        Ok(())
    }

    async fn start_run(
        &self,
        campaign: &Campaign,
        run_id: &str,
        next: Option<(u32, u32)>,
        treatments: Vec<u32>,
        nominal: String,
    ) -> Result<()> {
        let run = CampaignRun {
            project_id: campaign.project_id.clone(),
            campaign_id: campaign.campaign_id.clone(),
            run_id: run_id.to_string(),
            campaign_version: campaign.version,
            treatments,
            nominal,
            state: RunState::Executing,
            start_time: now_rfc3339(),
            end_time: String::new(),
            parts: BTreeMap::new(),
        };
        tracing::info!(
            project_id = campaign.project_id,
            campaign_id = campaign.campaign_id,
            run_id,
            "campaign run starts"
        );
        self.write_meta(MetaCommand::Campaign(CampaignCommand::StartRun {
            run,
            next,
        }))
        .await?;
        Ok(())
    }

    /// Reports a shard's part of a run to the meta group.
    pub(crate) async fn report_part(
        &self,
        run: &CampaignRun,
        shard: u32,
        counts: RunCounts,
        done: bool,
    ) -> Result<()> {
        self.write_meta(MetaCommand::Campaign(CampaignCommand::ReportPart {
            project_id: run.project_id.clone(),
            campaign_id: run.campaign_id.clone(),
            run_id: run.run_id.clone(),
            shard,
            counts,
            done,
        }))
        .await?;
        Ok(())
    }
}

/// The field name of a content kind in requests.
fn kind_field(kind: TemplateType) -> &'static str {
    match kind {
        TemplateType::Email => "email",
        TemplateType::Sms => "sms",
        TemplateType::Push => "push",
        TemplateType::Voice => "voice",
        TemplateType::InApp => "in_app",
    }
}
