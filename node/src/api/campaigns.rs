//! `herald.v1.Campaigns` and `herald.v1.Analytics`: campaigns with their versions and runs
//! (SPEC CMP), and campaign KPIs over a date range (ANL-3).
//!
//! The conversions both ways live here too ([`campaign_from_proto`], [`campaign_to_proto`]):
//! reading a request reports every problem at once, the names it cannot read (frequency,
//! operators), bad inline content and all that [`validate_campaign`] finds; whether the
//! segment and templates exist is the cluster's to check.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use herald_proto::v1 as pb;
use herald_proto::v1::analytics_server::Analytics;
use herald_proto::v1::campaigns_server::Campaigns;
use tonic::{Request, Response, Status};

use super::status::{invalid_argument, to_status, under};
use super::templates::{email_from, in_app_from, push_from, sms_from, voice_from};
use super::{ClusterHandle, check_ids, observed};
use crate::cluster::ClusterError;
use crate::cluster::campaigns::KpiRow;
use crate::domain::FieldViolation;
use crate::domain::campaign::{
    Campaign, CampaignLimitOverrides, CampaignMessage, CampaignRun, CampaignState, EventFilter,
    KPI_NAMES, RunCounts, Treatment, validate_campaign,
};
use crate::domain::endpoint::validate_id;
use crate::domain::limits::Limits;
use crate::domain::project::QuietTime;
use crate::domain::schedule::{Frequency, Schedule};
use crate::domain::segment::{
    AttributeDimension, AttributeKind, MetricComparison, MetricDimension, WireName, parse_wire,
};
use crate::domain::template::{self, TemplateContent, TemplateType};
use crate::domain::violation::join;

/// The layout of `GetCampaignDateRangeKpi` dates.
const DATE_FORMAT: &str = "%Y-%m-%d";

/// The Campaigns service.
pub struct CampaignsApi {
    cluster: ClusterHandle,
}

impl CampaignsApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

/// The Analytics service.
pub struct AnalyticsApi {
    cluster: ClusterHandle,
}

impl AnalyticsApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

/// The campaign a write carries at `field`, for `project_id` and `campaign_id` (empty when
/// creating), with every problem reported at once.
///
/// A top-level `message`/`template_configuration` becomes the one treatment, sized 100%
/// minus the holdout. When a frequency cannot be read the campaign is not validated further:
/// any stand-in frequency would report problems the user does not have.
pub fn campaign_from_proto(
    project_id: &str,
    campaign_id: &str,
    field: &str,
    write: Option<pb::WriteCampaign>,
) -> Result<Campaign, Vec<FieldViolation>> {
    let Some(write) = write else {
        return Err(vec![FieldViolation::new(field, "is required")]);
    };
    let mut reader = CampaignReader::default();
    let has_top_level_message = write.message.is_some() || write.template_configuration.is_some();
    let treatments = if write.treatments.is_empty() {
        if has_top_level_message {
            vec![Treatment {
                name: String::new(),
                size_percent: 100u32.saturating_sub(write.holdout_percent),
                message: reader.message(field, write.message, write.template_configuration),
                schedule: None,
            }]
        } else {
            Vec::new()
        }
    } else {
        if has_top_level_message {
            reader.violations.push(FieldViolation::new(
                join(field, "message"),
                "give the message either at the top level (one treatment) or in treatments, \
                 not both",
            ));
        }
        write
            .treatments
            .into_iter()
            .enumerate()
            .map(|(index, treatment)| {
                let treatment_field = join(field, &format!("treatments[{index}]"));
                Treatment {
                    name: treatment.name,
                    size_percent: treatment.size_percent,
                    message: reader.message(
                        &treatment_field,
                        treatment.message,
                        treatment.template_configuration,
                    ),
                    schedule: treatment.schedule.map(|schedule| {
                        reader.schedule(&join(&treatment_field, "schedule"), schedule)
                    }),
                }
            })
            .collect()
    };
    let schedule = reader.schedule(&join(field, "schedule"), write.schedule.unwrap_or_default());
    let event_filter = write
        .event_filter
        .map(|filter| reader.event_filter(&join(field, "event_filter"), filter));
    let campaign = Campaign {
        project_id: project_id.to_string(),
        campaign_id: campaign_id.to_string(),
        version: 0,
        name: write.name,
        description: write.description,
        segment_id: write.segment_id,
        segment_version: (write.segment_version != 0).then_some(write.segment_version),
        treatments,
        holdout_percent: write.holdout_percent,
        schedule,
        event_filter,
        limits: limits_from_proto(write.limits.unwrap_or_default()),
        is_paused: write.is_paused,
        creation_date: String::new(),
        last_modified_date: String::new(),
    };
    let mut violations = reader.violations;
    if !reader.unreadable_frequency {
        violations.extend(
            validate_campaign(&campaign).into_iter().map(|violation| {
                FieldViolation::new(join(field, &violation.field), violation.reason)
            }),
        );
    }
    if violations.is_empty() {
        Ok(campaign)
    } else {
        Err(violations)
    }
}

/// Reads proto messages into domain values, recording what it cannot read as it goes.
#[derive(Default)]
struct CampaignReader {
    violations: Vec<FieldViolation>,
    /// A frequency was not one of [`Frequency::ALL`].
    unreadable_frequency: bool,
}

impl CampaignReader {
    /// The message of the treatment at `field` (`<field>.message` inline, validated like a
    /// template; `<field>.template_configuration` by name).
    fn message(
        &mut self,
        field: &str,
        inline: Option<pb::DirectMessageConfiguration>,
        templates: Option<pb::TemplateConfiguration>,
    ) -> CampaignMessage {
        let mut message = CampaignMessage::default();
        let inline = inline.unwrap_or_default();
        let parts = [
            inline.email.map(email_from),
            inline.sms.map(sms_from),
            inline.push.map(push_from),
            inline.voice.map(voice_from),
            inline.in_app.map(in_app_from),
        ];
        let message_field = join(field, "message");
        for part in parts.into_iter().flatten() {
            self.violations.extend(template::validate_template(
                &message_field,
                &part,
                &BTreeMap::new(),
            ));
            message.inline.insert(part.template_type(), part);
        }
        let templates = templates.unwrap_or_default();
        let references = [
            (TemplateType::Email, "email", templates.email),
            (TemplateType::Sms, "sms", templates.sms),
            (TemplateType::Push, "push", templates.push),
            (TemplateType::Voice, "voice", templates.voice),
            (TemplateType::InApp, "in_app", templates.in_app),
        ];
        let templates_field = join(field, "template_configuration");
        for (kind, kind_field, reference) in references {
            let Some(reference) = reference else {
                continue;
            };
            self.violations.extend(template::validate_name(
                &format!("{templates_field}.{kind_field}.name"),
                &reference.name,
            ));
            let version = (reference.version != 0).then_some(reference.version);
            message.templates.insert(kind, (reference.name, version));
        }
        message
    }

    fn schedule(&mut self, field: &str, schedule: pb::Schedule) -> Schedule {
        let frequency_text = schedule.frequency.trim().to_ascii_uppercase();
        let frequency = if frequency_text.is_empty() {
            Frequency::Once
        } else {
            match Frequency::parse(&frequency_text) {
                Some(frequency) => frequency,
                None => {
                    let names: Vec<&str> = Frequency::ALL.iter().map(|f| f.as_str()).collect();
                    self.violations.push(FieldViolation::new(
                        join(field, "frequency"),
                        format!(
                            "{:?} is not one of {}",
                            schedule.frequency,
                            names.join(", ")
                        ),
                    ));
                    self.unreadable_frequency = true;
                    Frequency::Once
                }
            }
        };
        let start_time = if schedule.start_time.eq_ignore_ascii_case("IMMEDIATE") {
            "IMMEDIATE".to_string()
        } else {
            schedule.start_time
        };
        Schedule {
            start_time,
            end_time: schedule.end_time,
            frequency,
            is_local_time: schedule.is_local_time,
            timezone: schedule.timezone,
            quiet_time: schedule.quiet_time.map(|quiet| QuietTime {
                start: quiet.start,
                end: quiet.end,
            }),
        }
    }

    fn event_filter(&mut self, field: &str, filter: pb::EventFilter) -> EventFilter {
        // Sorted first, so violations come in the order validation reports them.
        let attributes: BTreeMap<String, pb::AttributeDimension> =
            filter.attributes.into_iter().collect();
        let metrics: BTreeMap<String, pb::MetricDimension> = filter.metrics.into_iter().collect();
        let attributes_field = join(field, "attributes");
        let metrics_field = join(field, "metrics");
        EventFilter {
            event_types: filter.event_types,
            attributes: attributes
                .into_iter()
                .map(|(name, attribute)| {
                    let kind = if attribute.kind.is_empty() {
                        AttributeKind::Inclusive
                    } else {
                        parse_wire(
                            &format!("{attributes_field}[{name:?}].kind"),
                            &attribute.kind,
                            &mut self.violations,
                        )
                        .unwrap_or(AttributeKind::Inclusive)
                    };
                    let dimension = AttributeDimension {
                        kind,
                        values: attribute.values,
                    };
                    (name, dimension)
                })
                .collect(),
            metrics: metrics
                .into_iter()
                .map(|(name, metric)| {
                    let comparison_field = format!("{metrics_field}[{name:?}].comparison");
                    let comparison = if metric.comparison.is_empty() {
                        let names: Vec<&str> =
                            MetricComparison::ALL.iter().map(|c| c.as_str()).collect();
                        self.violations.push(FieldViolation::new(
                            comparison_field,
                            format!("is required: one of {}", names.join(", ")),
                        ));
                        None
                    } else {
                        parse_wire(&comparison_field, &metric.comparison, &mut self.violations)
                    };
                    let dimension = MetricDimension {
                        comparison: comparison.unwrap_or(MetricComparison::ALL[0]),
                        value: metric.value,
                        upper: metric.upper,
                    };
                    (name, dimension)
                })
                .collect(),
        }
    }
}

fn limits_from_proto(limits: pb::CampaignLimitOverrides) -> CampaignLimitOverrides {
    CampaignLimitOverrides {
        daily: limits.daily,
        total: limits.total,
        session: limits.session,
        messages_per_second: limits.messages_per_second,
        maximum_duration_secs: limits.maximum_duration_secs,
    }
}

fn limits_to_proto(limits: &CampaignLimitOverrides) -> pb::CampaignLimitOverrides {
    pb::CampaignLimitOverrides {
        daily: limits.daily,
        total: limits.total,
        session: limits.session,
        messages_per_second: limits.messages_per_second,
        maximum_duration_secs: limits.maximum_duration_secs,
    }
}

/// A schedule as the API answers it.
pub fn schedule_to_proto(schedule: &Schedule) -> pb::Schedule {
    pb::Schedule {
        start_time: schedule.start_time.clone(),
        end_time: schedule.end_time.clone(),
        frequency: schedule.frequency.as_str().to_string(),
        is_local_time: schedule.is_local_time,
        timezone: schedule.timezone.clone(),
        quiet_time: schedule.quiet_time.as_ref().map(|quiet| pb::QuietTime {
            start: quiet.start.clone(),
            end: quiet.end.clone(),
        }),
    }
}

fn event_filter_to_proto(filter: &EventFilter) -> pb::EventFilter {
    pb::EventFilter {
        event_types: filter.event_types.clone(),
        attributes: super::segments::attributes_to_proto(&filter.attributes),
        metrics: super::segments::metrics_to_proto(&filter.metrics),
    }
}

/// Inline content into the part of a direct message configuration it belongs to.
fn put_inline(configuration: &mut pb::DirectMessageConfiguration, content: &TemplateContent) {
    match content {
        TemplateContent::Email(t) => {
            configuration.email = Some(pb::EmailTemplate {
                subject: t.subject.clone(),
                html_part: t.html_part.clone(),
                text_part: t.text_part.clone(),
            })
        }
        TemplateContent::Sms(t) => {
            configuration.sms = Some(pb::SmsTemplate {
                body: t.body.clone(),
            })
        }
        TemplateContent::Push(t) => {
            configuration.push = Some(pb::PushTemplate {
                title: t.title.clone(),
                body: t.body.clone(),
                action: t.action.clone(),
                url: t.url.clone(),
                image_url: t.image_url.clone(),
                silent: t.silent,
                raw_data: t.raw_data.clone().into_iter().collect(),
            })
        }
        TemplateContent::Voice(t) => {
            configuration.voice = Some(pb::VoiceTemplate {
                body: t.body.clone(),
                language_code: t.language_code.clone(),
                voice_id: t.voice_id.clone(),
            })
        }
        TemplateContent::InApp(t) => {
            configuration.in_app = Some(pb::InAppTemplate {
                layout: t.layout.clone(),
                header: t.header.clone(),
                body: t.body.clone(),
                image_url: t.image_url.clone(),
                button_text: t.button_text.clone(),
                button_url: t.button_url.clone(),
            })
        }
    }
}

/// A treatment's message as the inline part and the template part; each is absent when
/// empty.
fn message_to_proto(
    message: &CampaignMessage,
) -> (
    Option<pb::DirectMessageConfiguration>,
    Option<pb::TemplateConfiguration>,
) {
    let inline = (!message.inline.is_empty()).then(|| {
        let mut configuration = pb::DirectMessageConfiguration::default();
        for content in message.inline.values() {
            put_inline(&mut configuration, content);
        }
        configuration
    });
    let templates = (!message.templates.is_empty()).then(|| {
        let mut configuration = pb::TemplateConfiguration::default();
        for (kind, (name, version)) in &message.templates {
            let reference = Some(pb::TemplateReference {
                name: name.clone(),
                version: version.unwrap_or(0),
            });
            match kind {
                TemplateType::Email => configuration.email = reference,
                TemplateType::Sms => configuration.sms = reference,
                TemplateType::Push => configuration.push = reference,
                TemplateType::Voice => configuration.voice = reference,
                TemplateType::InApp => configuration.in_app = reference,
            }
        }
        configuration
    });
    (inline, templates)
}

/// A stored campaign version in `state` as the API answers it.
pub fn campaign_to_proto(campaign: &Campaign, state: CampaignState) -> pb::Campaign {
    pb::Campaign {
        project_id: campaign.project_id.clone(),
        campaign_id: campaign.campaign_id.clone(),
        version: campaign.version,
        name: campaign.name.clone(),
        description: campaign.description.clone(),
        segment_id: campaign.segment_id.clone(),
        segment_version: campaign.segment_version.unwrap_or(0),
        treatments: campaign
            .treatments
            .iter()
            .map(|treatment| {
                let (message, template_configuration) = message_to_proto(&treatment.message);
                pb::Treatment {
                    name: treatment.name.clone(),
                    size_percent: treatment.size_percent,
                    message,
                    template_configuration,
                    schedule: treatment.schedule.as_ref().map(schedule_to_proto),
                }
            })
            .collect(),
        holdout_percent: campaign.holdout_percent,
        schedule: Some(schedule_to_proto(&campaign.schedule)),
        event_filter: campaign.event_filter.as_ref().map(event_filter_to_proto),
        limits: Some(limits_to_proto(&campaign.limits)),
        is_paused: campaign.is_paused,
        state: state.as_str().to_string(),
        creation_date: campaign.creation_date.clone(),
        last_modified_date: campaign.last_modified_date.clone(),
    }
}

fn counts_to_proto(counts: &RunCounts) -> pb::RunCounts {
    pb::RunCounts {
        targeted: counts.targeted,
        sent: counts.sent,
        delivered: counts.delivered,
        failed: counts.failed,
        holdout: counts.holdout,
        quiet_time: counts.quiet_time,
        capped: counts.capped,
        opted_out: counts.opted_out,
        filtered: counts.filtered,
        expired: counts.expired,
    }
}

/// A run as the API answers it: its counts summed over the shards that reported.
pub fn run_to_proto(run: &CampaignRun) -> pb::CampaignActivity {
    pb::CampaignActivity {
        run_id: run.run_id.clone(),
        campaign_version: run.campaign_version,
        state: run.state.as_str().to_string(),
        nominal: run.nominal.clone(),
        treatments: run.treatments.clone(),
        start_time: run.start_time.clone(),
        end_time: run.end_time.clone(),
        counts: Some(counts_to_proto(&run.totals())),
    }
}

fn kpi_row_to_proto(row: KpiRow) -> pb::KpiRow {
    pb::KpiRow {
        date: row.date,
        treatment_id: row.treatment,
        value: row.value,
    }
}

/// The status of a failed write: violations placed under the request's `campaign`, template
/// paths spelled the way the proto names them.
fn write_error(error: ClusterError) -> Status {
    let error = match error {
        ClusterError::InvalidArgument(violations) => ClusterError::InvalidArgument(
            violations
                .into_iter()
                .map(|violation| {
                    FieldViolation::new(proto_path(&violation.field), violation.reason)
                })
                .collect(),
        ),
        other => other,
    };
    to_status(under("campaign", error))
}

/// A domain path in the proto's words: `treatments[0].templates.email` (a template that does
/// not exist) is `treatments[0].template_configuration.email.name`.
fn proto_path(field: &str) -> String {
    match field.split_once(".templates.") {
        Some((treatment, kind)) if treatment.starts_with("treatments[") && !kind.contains('.') => {
            format!("{treatment}.template_configuration.{kind}.name")
        }
        _ => field.to_string(),
    }
}

/// Checks the ids and reads the campaign of a write, reporting every problem at once.
fn write_input(
    ids: &[(&str, &str)],
    project_id: &str,
    campaign_id: &str,
    write: Option<pb::WriteCampaign>,
    limits: &Limits,
) -> Result<Campaign, Status> {
    let mut violations = Vec::new();
    for (field, id) in ids {
        validate_id(field, id, limits, &mut violations);
    }
    match campaign_from_proto(project_id, campaign_id, "campaign", write) {
        Ok(campaign) if violations.is_empty() => Ok(campaign),
        Ok(_) => Err(invalid_argument(&violations)),
        Err(more) => {
            violations.extend(more);
            Err(invalid_argument(&violations))
        }
    }
}

/// The dates and KPI a KPI request asks for, every problem at once.
fn kpi_input(
    request: &pb::GetCampaignDateRangeKpiRequest,
    limits: &Limits,
) -> Result<(NaiveDate, NaiveDate), Status> {
    let mut violations = Vec::new();
    validate_id("project_id", &request.project_id, limits, &mut violations);
    validate_id("campaign_id", &request.campaign_id, limits, &mut violations);
    if !KPI_NAMES.contains(&request.kpi_name.as_str()) {
        violations.push(FieldViolation::new(
            "kpi_name",
            format!(
                "{:?} is not one of {}",
                request.kpi_name,
                KPI_NAMES.join(", ")
            ),
        ));
    }
    let mut date = |field: &str, text: &str| {
        let parsed = NaiveDate::parse_from_str(text, DATE_FORMAT).ok();
        if parsed.is_none() {
            violations.push(FieldViolation::new(
                field,
                format!("{text:?} is not a date YYYY-MM-DD"),
            ));
        }
        parsed
    };
    let start = date("start_date", &request.start_date);
    let end = date("end_date", &request.end_date);
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        violations.push(FieldViolation::new(
            "end_date",
            format!("{end} is before start_date {start}"),
        ));
    }
    match (start, end) {
        (Some(start), Some(end)) if violations.is_empty() => Ok((start, end)),
        _ => Err(invalid_argument(&violations)),
    }
}

/// A version asked for: 0 is the latest.
fn requested_version(version: u32) -> Option<u32> {
    (version != 0).then_some(version)
}

#[tonic::async_trait]
impl Campaigns for CampaignsApi {
    async fn create_campaign(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        observed("CreateCampaign", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            let campaign = write_input(
                &[("project_id", &request.project_id)],
                &request.project_id,
                "",
                request.campaign,
                cluster.limits(),
            )?;
            let (campaign, state) = cluster
                .create_campaign(campaign)
                .await
                .map_err(write_error)?;
            Ok(campaign_to_proto(&campaign, state))
        })
        .await
    }

    async fn update_campaign(
        &self,
        request: Request<pb::UpdateCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        observed("UpdateCampaign", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            let campaign = write_input(
                &[
                    ("project_id", &request.project_id),
                    ("campaign_id", &request.campaign_id),
                ],
                &request.project_id,
                &request.campaign_id,
                request.campaign,
                cluster.limits(),
            )?;
            let (campaign, state) = cluster
                .update_campaign(campaign)
                .await
                .map_err(write_error)?;
            Ok(campaign_to_proto(&campaign, state))
        })
        .await
    }

    async fn get_campaign(
        &self,
        request: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        observed("GetCampaign", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("campaign_id", &request.campaign_id),
                ],
                cluster.limits(),
            )?;
            let (campaign, state) = cluster
                .get_campaign(
                    &request.project_id,
                    &request.campaign_id,
                    requested_version(request.version),
                )
                .await
                .map_err(to_status)?;
            Ok(campaign_to_proto(&campaign, state))
        })
        .await
    }

    async fn get_campaigns(
        &self,
        request: Request<pb::GetCampaignsRequest>,
    ) -> Result<Response<pb::CampaignsResponse>, Status> {
        observed("GetCampaigns", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(&[("project_id", &request.project_id)], cluster.limits())?;
            let campaigns = cluster
                .list_campaigns(&request.project_id)
                .await
                .map_err(to_status)?;
            Ok(pb::CampaignsResponse {
                campaigns: campaigns
                    .iter()
                    .map(|(campaign, state)| campaign_to_proto(campaign, *state))
                    .collect(),
            })
        })
        .await
    }

    async fn get_campaign_versions(
        &self,
        request: Request<pb::GetCampaignVersionsRequest>,
    ) -> Result<Response<pb::CampaignsResponse>, Status> {
        observed("GetCampaignVersions", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("campaign_id", &request.campaign_id),
                ],
                cluster.limits(),
            )?;
            // Earlier versions carry the campaign's state too: it is the campaign's, not the
            // version's.
            let (_, state) = cluster
                .get_campaign(&request.project_id, &request.campaign_id, None)
                .await
                .map_err(to_status)?;
            let versions = cluster
                .campaign_versions(&request.project_id, &request.campaign_id)
                .await
                .map_err(to_status)?;
            Ok(pb::CampaignsResponse {
                campaigns: versions
                    .iter()
                    .map(|campaign| campaign_to_proto(campaign, state))
                    .collect(),
            })
        })
        .await
    }

    async fn delete_campaign(
        &self,
        request: Request<pb::DeleteCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        observed("DeleteCampaign", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("campaign_id", &request.campaign_id),
                ],
                cluster.limits(),
            )?;
            let campaign = cluster
                .delete_campaign(&request.project_id, &request.campaign_id)
                .await
                .map_err(to_status)?;
            Ok(campaign_to_proto(&campaign, CampaignState::Deleted))
        })
        .await
    }

    async fn get_campaign_activities(
        &self,
        request: Request<pb::GetCampaignActivitiesRequest>,
    ) -> Result<Response<pb::CampaignActivitiesResponse>, Status> {
        observed("GetCampaignActivities", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("campaign_id", &request.campaign_id),
                ],
                cluster.limits(),
            )?;
            let runs = cluster
                .campaign_runs(&request.project_id, &request.campaign_id)
                .await
                .map_err(to_status)?;
            Ok(pb::CampaignActivitiesResponse {
                activities: runs.iter().map(run_to_proto).collect(),
            })
        })
        .await
    }
}

#[tonic::async_trait]
impl Analytics for AnalyticsApi {
    async fn get_campaign_date_range_kpi(
        &self,
        request: Request<pb::GetCampaignDateRangeKpiRequest>,
    ) -> Result<Response<pb::CampaignDateRangeKpiResponse>, Status> {
        observed("GetCampaignDateRangeKpi", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            let (start, end) = kpi_input(&request, cluster.limits())?;
            let rows = cluster
                .campaign_kpi(
                    &request.project_id,
                    &request.campaign_id,
                    &request.kpi_name,
                    start,
                    end,
                    request.by_treatment,
                )
                .await
                .map_err(to_status)?;
            Ok(pb::CampaignDateRangeKpiResponse {
                project_id: request.project_id,
                campaign_id: request.campaign_id,
                kpi_name: request.kpi_name,
                start_date: start.format(DATE_FORMAT).to_string(),
                end_date: end.format(DATE_FORMAT).to_string(),
                rows: rows.into_iter().map(kpi_row_to_proto).collect(),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn sms_write(holdout: u32) -> pb::WriteCampaign {
        pb::WriteCampaign {
            name: "spring".into(),
            segment_id: "s1".into(),
            message: Some(pb::DirectMessageConfiguration {
                sms: Some(pb::SmsTemplate {
                    body: "hello {{User.UserAttributes.FirstName}}".into(),
                }),
                ..Default::default()
            }),
            holdout_percent: holdout,
            schedule: Some(pb::Schedule {
                start_time: "immediate".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    /// A top-level message is the one treatment, sized to what the holdout leaves, and
    /// answers the way it was written.
    #[test]
    fn a_top_level_message_is_the_single_treatment() {
        let campaign = campaign_from_proto("p", "", "campaign", Some(sms_write(10))).unwrap();
        assert_eq!(campaign.treatments.len(), 1);
        assert_eq!(campaign.treatments[0].size_percent, 90);
        assert_eq!(campaign.schedule.start_time, "IMMEDIATE");
        assert_eq!(campaign.schedule.frequency, Frequency::Once);
        let answer = campaign_to_proto(&campaign, CampaignState::Scheduled);
        let sms = answer.treatments[0].message.as_ref().unwrap().sms.as_ref();
        assert_eq!(sms.unwrap().body, "hello {{User.UserAttributes.FirstName}}");
        assert_eq!(answer.treatments[0].template_configuration, None);
        assert_eq!(answer.state, "SCHEDULED");
    }

    /// Names that cannot be read, bad inline content and a message given twice are all
    /// reported in one answer, each under its path.
    #[test]
    fn every_unreadable_field_is_named() {
        let mut write = sms_write(0);
        write.treatments = vec![pb::Treatment {
            size_percent: 100,
            message: Some(pb::DirectMessageConfiguration {
                email: Some(pb::EmailTemplate::default()),
                ..Default::default()
            }),
            template_configuration: Some(pb::TemplateConfiguration {
                sms: Some(pb::TemplateReference {
                    name: "bad name".into(),
                    version: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }];
        write.schedule = Some(pb::Schedule {
            start_time: "IMMEDIATE".into(),
            frequency: "fortnightly".into(),
            ..Default::default()
        });
        write.event_filter = Some(pb::EventFilter {
            metrics: HashMap::from([(
                "amount".to_string(),
                pb::MetricDimension {
                    comparison: "BIGGER".into(),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        });
        let violations = campaign_from_proto("p", "", "campaign", Some(write)).unwrap_err();
        let mut named = fields(&violations);
        named.sort();
        assert!(named.contains(&"campaign.message"), "{violations:?}");
        assert!(
            named.contains(&"campaign.treatments[0].message.email.subject"),
            "{violations:?}"
        );
        assert!(
            named.contains(&"campaign.treatments[0].template_configuration.sms.name"),
            "{violations:?}"
        );
        assert!(
            named.contains(&"campaign.schedule.frequency"),
            "{violations:?}"
        );
        assert!(
            named.contains(&"campaign.event_filter.metrics[\"amount\"].comparison"),
            "{violations:?}"
        );
    }

    /// Domain rules are reported under the request's path.
    #[test]
    fn domain_rules_are_named_under_the_request() {
        let mut write = sms_write(0);
        write.message = None;
        write.treatments = vec![
            pb::Treatment {
                size_percent: 30,
                template_configuration: Some(pb::TemplateConfiguration {
                    email: Some(pb::TemplateReference {
                        name: "welcome".into(),
                        version: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            2
        ];
        let violations = campaign_from_proto("p", "", "campaign", Some(write)).unwrap_err();
        assert_eq!(fields(&violations), ["campaign.treatments"]);
    }
}
