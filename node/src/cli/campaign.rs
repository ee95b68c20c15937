//! `herald campaign ...` and `herald kpi campaign`: campaigns, their versions and runs
//! (SPEC CMP), and campaign KPIs over a date range (ANL-3).
//!
//! A campaign is written from flags, from a JSON file (the `CreateCampaignRequest` with the
//! proto's field names, see [`CAMPAIGN_FILE_HELP`]) or both: flags apply on top of the file.
//! `update`, `pause` and `resume` read the latest version, change it and write the next one.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use herald_proto::v1 as proto;
use herald_proto::v1::analytics_client::AnalyticsClient;
use herald_proto::v1::campaigns_client::CampaignsClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tonic::transport::Channel;

use super::ConnectArgs;
use super::output::{Table, print_json, status_error};
use super::project::parse_clock_time;
use super::template::text_or_file;

/// What a campaign file looks like, shown in `herald campaign create --help`.
pub const CAMPAIGN_FILE_HELP: &str = r#"CAMPAIGN FILE (JSON; "-" reads standard input)

The CreateCampaignRequest with the proto's field names; every field may be left out.
"project_id" and (for update) "campaign_id" may be given, and must then match the flags.
Flags given with --file change the file's campaign. A single-treatment campaign may put
"message" and "template_configuration" at the top of "campaign" instead of "treatments".

A/B test of two emails to 90% of a segment, 10% held out, every Monday 09:00 in each
endpoint's own time zone, at most one message a day and three in total:

  {
    "campaign": {
      "name": "spring sale",
      "segment_id": "SEGMENT_ID",
      "holdout_percent": 10,
      "schedule": {
        "start_time": "2026-04-06T09:00:00Z", "end_time": "2026-05-01T00:00:00Z",
        "frequency": "WEEKLY", "is_local_time": true,
        "quiet_time": {"start": "22:00", "end": "08:00"}
      },
      "limits": {"daily": 1, "total": 3},
      "treatments": [
        {"name": "A", "size_percent": 45,
         "template_configuration": {"email": {"name": "spring-a"}}},
        {"name": "B", "size_percent": 45,
         "message": {"email": {"subject": "Spring is here",
                               "html_part": "<p>Hi {{User.UserAttributes.FirstName}}</p>"}}}
      ]
    }
  }

An SMS to whoever signs up on the pro plan, within an hour of the event:

  {
    "campaign": {
      "name": "welcome pro",
      "segment_id": "SEGMENT_ID",
      "message": {"sms": {"body": "Welcome to pro!"}},
      "schedule": {"start_time": "IMMEDIATE", "end_time": "2026-12-31T00:00:00Z",
                   "frequency": "EVENT"},
      "event_filter": {"event_types": ["signup"],
                       "attributes": {"plan": {"kind": "INCLUSIVE", "values": ["pro"]}}},
      "limits": {"maximum_duration_secs": 3600}
    }
  }"#;

/// `herald campaign ...`
#[derive(Debug, clap::Args)]
pub struct CampaignArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: CampaignCommand,
}

/// The campaign commands.
#[derive(Debug, clap::Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign from flags and/or a JSON file; prints it with its new id.
    #[command(after_long_help = CAMPAIGN_FILE_HELP)]
    Create(Box<CampaignWriteArgs>),
    /// Write the next version: the latest one (or --file) changed by the flags given.
    #[command(after_long_help = CAMPAIGN_FILE_HELP)]
    Update(Box<CampaignUpdateArgs>),
    /// Print a campaign (the latest version unless --version).
    Get(CampaignRefArgs),
    /// List a project's campaigns (their latest versions).
    List {
        /// The project id.
        #[arg(long)]
        project: String,
    },
    /// List every version of a campaign.
    Versions(CampaignIdArgs),
    /// Delete a campaign: no run starts any more and running ones stop.
    Delete(CampaignIdArgs),
    /// Pause a campaign (writes a new version).
    Pause(CampaignIdArgs),
    /// Resume a paused campaign (writes a new version).
    Resume(CampaignIdArgs),
    /// List a campaign's runs with their counts.
    Activities(CampaignIdArgs),
}

/// Names one campaign.
#[derive(Debug, Clone, clap::Args)]
pub struct CampaignIdArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The campaign id.
    #[arg(long)]
    pub campaign: String,
}

/// Names one campaign and optionally a version.
#[derive(Debug, Clone, clap::Args)]
pub struct CampaignRefArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The campaign id.
    #[arg(long)]
    pub campaign: String,
    /// A version number [default: the latest].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub version: Option<u32>,
}

/// `herald campaign update`: which campaign, and what to change.
#[derive(Debug, Clone, clap::Args)]
pub struct CampaignUpdateArgs {
    /// The campaign id.
    #[arg(long)]
    pub campaign: String,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub write: CampaignWriteArgs,
}

/// What a create or update writes; flags not given keep the file's (or, for update, the
/// latest version's) value. Message flags apply to a campaign with one treatment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CampaignWriteArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The campaign as JSON (see --help); "-" reads standard input.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Name for people.
    #[arg(long)]
    pub name: Option<String>,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// The segment id of the audience.
    #[arg(long)]
    pub segment: Option<String>,
    /// A fixed segment version; 0 follows the latest at each run.
    #[arg(long)]
    pub segment_version: Option<u32>,
    /// Stored email template to send.
    #[arg(long, value_name = "NAME")]
    pub email_template: Option<String>,
    /// Stored SMS template to send.
    #[arg(long, value_name = "NAME")]
    pub sms_template: Option<String>,
    /// Stored push template to send.
    #[arg(long, value_name = "NAME")]
    pub push_template: Option<String>,
    /// Inline SMS text (or @FILE).
    #[arg(long, value_name = "TEXT")]
    pub sms_body: Option<String>,
    /// Inline email subject.
    #[arg(long, value_name = "TEXT")]
    pub email_subject: Option<String>,
    /// Inline email HTML part (or @FILE).
    #[arg(long, value_name = "HTML")]
    pub email_html: Option<String>,
    /// Inline email text part (or @FILE).
    #[arg(long, value_name = "TEXT")]
    pub email_text: Option<String>,
    /// When it starts: IMMEDIATE or an RFC 3339 time.
    #[arg(long, value_name = "IMMEDIATE|RFC3339", value_parser = parse_start)]
    pub start: Option<String>,
    /// When a recurring or event campaign ends, RFC 3339.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub end: Option<String>,
    /// How often it runs; EVENT sends on matching events (see --event-type).
    #[arg(long, value_name = "ONCE|HOURLY|DAILY|WEEKLY|MONTHLY|EVENT", value_parser = parse_frequency)]
    pub frequency: Option<String>,
    /// Send at the schedule's time in each endpoint's own time zone (`--local-time false`
    /// turns it off).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub local_time: Option<bool>,
    /// IANA time zone of the schedule, e.g. America/Sao_Paulo.
    #[arg(long, value_name = "IANA")]
    pub timezone: Option<String>,
    /// Start of the campaign's quiet time, local clock HH:MM ("" with --quiet-end "" uses
    /// the project's).
    #[arg(long, value_name = "HH:MM", value_parser = parse_clock_time)]
    pub quiet_start: Option<String>,
    /// End of the campaign's quiet time, local clock HH:MM.
    #[arg(long, value_name = "HH:MM", value_parser = parse_clock_time)]
    pub quiet_end: Option<String>,
    /// Most messages one endpoint gets from this campaign per day (0: no limit).
    #[arg(long, value_name = "N")]
    pub daily_cap: Option<u32>,
    /// Most messages one endpoint gets from this campaign in total (0: no limit).
    #[arg(long, value_name = "N")]
    pub total_cap: Option<u32>,
    /// Most messages one endpoint gets from this campaign per session (0: no limit).
    #[arg(long, value_name = "N")]
    pub session_cap: Option<u32>,
    /// Most messages per second the campaign sends (0: no limit).
    #[arg(long, value_name = "N")]
    pub mps: Option<u32>,
    /// Longest an event-triggered send may wait after its event, seconds.
    #[arg(long, value_name = "N")]
    pub max_duration_secs: Option<u32>,
    /// Share of the audience held out (receives nothing), percent; a single treatment gets
    /// the rest.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub holdout: Option<u32>,
    /// An event type that triggers the campaign, repeatable; implies --frequency EVENT.
    #[arg(long = "event-type", value_name = "TYPE")]
    pub event_types: Vec<String>,
}

/// `herald kpi ...`
#[derive(Debug, clap::Args)]
pub struct KpiArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: KpiCommand,
}

/// The KPI commands.
#[derive(Debug, clap::Subcommand)]
pub enum KpiCommand {
    /// One campaign KPI per day over a date range (UTC days, both ends included).
    Campaign(CampaignKpiArgs),
}

/// `herald kpi campaign`
#[derive(Debug, Clone, clap::Args)]
pub struct CampaignKpiArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The campaign id.
    #[arg(long)]
    pub campaign: String,
    /// successful-delivery-rate, unique-deliveries, attempted-deliveries, email-open-rate,
    /// direct-email-opens or email-clicks.
    #[arg(long, value_name = "NAME")]
    pub kpi: String,
    /// First day, YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub start: String,
    /// Last day, YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub end: String,
    /// One row per day and treatment.
    #[arg(long)]
    pub by_treatment: bool,
}

/// Parses a schedule start: `IMMEDIATE` (any case) or an RFC 3339 time.
fn parse_start(text: &str) -> Result<String, String> {
    if text.eq_ignore_ascii_case("IMMEDIATE") {
        return Ok("IMMEDIATE".to_string());
    }
    parse_time(text)
}

/// Parses an RFC 3339 time.
fn parse_time(text: &str) -> Result<String, String> {
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(_) => Ok(text.to_string()),
        Err(_) => Err(format!(
            "{text:?} is not an RFC 3339 time (e.g. 2026-04-06T09:00:00Z)"
        )),
    }
}

/// The schedule frequencies a campaign may have.
const FREQUENCIES: [&str; 6] = ["ONCE", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "EVENT"];

/// Parses a frequency name, any case.
fn parse_frequency(text: &str) -> Result<String, String> {
    let upper = text.trim().to_ascii_uppercase();
    if FREQUENCIES.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!("{text:?} is not one of {}", FREQUENCIES.join(", ")))
    }
}

/// Parses a day `YYYY-MM-DD`.
fn parse_date(text: &str) -> Result<String, String> {
    match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) => Ok(date.format("%Y-%m-%d").to_string()),
        Err(_) => Err(format!("{text:?} is not a date YYYY-MM-DD")),
    }
}

/// A proto message and its JSON form, which have the same fields: the JSON side sorts maps
/// and accepts any field left out.
trait Mirror<P>: Sized {
    fn into_proto(self) -> P;
    fn from_proto(proto: P) -> Self;
}

macro_rules! same_in_json {
    ($($kind:ty),+) => {
        $(impl Mirror<$kind> for $kind {
            fn into_proto(self) -> $kind {
                self
            }
            fn from_proto(proto: $kind) -> Self {
                proto
            }
        })+
    };
}

same_in_json!(String, u32, u64, bool, f64);

impl<J: Mirror<P>, P> Mirror<Option<P>> for Option<J> {
    fn into_proto(self) -> Option<P> {
        self.map(J::into_proto)
    }
    fn from_proto(proto: Option<P>) -> Self {
        proto.map(J::from_proto)
    }
}

impl<J: Mirror<P>, P> Mirror<Vec<P>> for Vec<J> {
    fn into_proto(self) -> Vec<P> {
        self.into_iter().map(J::into_proto).collect()
    }
    fn from_proto(proto: Vec<P>) -> Self {
        proto.into_iter().map(J::from_proto).collect()
    }
}

impl<J: Mirror<P>, P> Mirror<HashMap<String, P>> for BTreeMap<String, J> {
    fn into_proto(self) -> HashMap<String, P> {
        self.into_iter()
            .map(|(key, value)| (key, value.into_proto()))
            .collect()
    }
    fn from_proto(proto: HashMap<String, P>) -> Self {
        proto
            .into_iter()
            .map(|(key, value)| (key, J::from_proto(value)))
            .collect()
    }
}

/// Declares the JSON form of proto message `proto::$proto`, field for field.
macro_rules! json_mirror {
    ($(#[$meta:meta])* $name:ident mirrors $proto:ident { $($field:ident: $kind:ty,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        #[allow(missing_docs)]
        pub struct $name {
            $(pub $field: $kind,)+
        }

        impl Mirror<proto::$proto> for $name {
            fn into_proto(self) -> proto::$proto {
                proto::$proto {
                    $($field: Mirror::into_proto(self.$field),)+
                }
            }
            fn from_proto(proto: proto::$proto) -> Self {
                Self {
                    $($field: Mirror::from_proto(proto.$field),)+
                }
            }
        }
    };
}

json_mirror! {
    /// Inline email content.
    EmailJson mirrors EmailTemplate { subject: String, html_part: String, text_part: String, }
}
json_mirror! {
    /// Inline SMS content.
    SmsJson mirrors SmsTemplate { body: String, }
}
json_mirror! {
    /// Inline push content.
    PushJson mirrors PushTemplate {
        title: String, body: String, action: String, url: String, image_url: String,
        silent: bool, raw_data: BTreeMap<String, String>,
    }
}
json_mirror! {
    /// Inline voice content.
    VoiceJson mirrors VoiceTemplate { body: String, language_code: String, voice_id: String, }
}
json_mirror! {
    /// Inline in-app content.
    InAppJson mirrors InAppTemplate {
        layout: String, header: String, body: String, image_url: String,
        button_text: String, button_url: String,
    }
}
json_mirror! {
    /// Inline content per channel kind.
    MessageJson mirrors DirectMessageConfiguration {
        email: Option<EmailJson>, sms: Option<SmsJson>, push: Option<PushJson>,
        voice: Option<VoiceJson>, in_app: Option<InAppJson>,
    }
}
json_mirror! {
    /// A stored template; version 0 is the active one.
    TemplateReferenceJson mirrors TemplateReference { name: String, version: u32, }
}
json_mirror! {
    /// Stored templates per channel kind.
    TemplatesJson mirrors TemplateConfiguration {
        email: Option<TemplateReferenceJson>, sms: Option<TemplateReferenceJson>,
        push: Option<TemplateReferenceJson>, voice: Option<TemplateReferenceJson>,
        in_app: Option<TemplateReferenceJson>,
    }
}
json_mirror! {
    /// Local clock times HH:MM.
    QuietTimeJson mirrors QuietTime { start: String, end: String, }
}
json_mirror! {
    /// When a campaign or treatment sends.
    ScheduleJson mirrors Schedule {
        start_time: String, end_time: String, frequency: String, is_local_time: bool,
        timezone: String, quiet_time: Option<QuietTimeJson>,
    }
}
json_mirror! {
    /// A condition on an event attribute.
    AttributeJson mirrors AttributeDimension { kind: String, values: Vec<String>, }
}
json_mirror! {
    /// A comparison of an event metric.
    MetricJson mirrors MetricDimension { comparison: String, value: f64, upper: Option<f64>, }
}
json_mirror! {
    /// Which events trigger an EVENT campaign.
    EventFilterJson mirrors EventFilter {
        event_types: Vec<String>, attributes: BTreeMap<String, AttributeJson>,
        metrics: BTreeMap<String, MetricJson>,
    }
}
json_mirror! {
    /// The campaign's own limits; absent ones are the project's.
    LimitsJson mirrors CampaignLimitOverrides {
        daily: Option<u32>, total: Option<u32>, session: Option<u32>,
        messages_per_second: Option<u32>, maximum_duration_secs: Option<u32>,
    }
}
json_mirror! {
    /// One treatment.
    TreatmentJson mirrors Treatment {
        name: String, size_percent: u32, message: Option<MessageJson>,
        template_configuration: Option<TemplatesJson>, schedule: Option<ScheduleJson>,
    }
}
json_mirror! {
    /// What a create or update writes.
    WriteCampaignJson mirrors WriteCampaign {
        name: String, description: String, segment_id: String, segment_version: u32,
        message: Option<MessageJson>, template_configuration: Option<TemplatesJson>,
        treatments: Vec<TreatmentJson>, holdout_percent: u32, schedule: Option<ScheduleJson>,
        event_filter: Option<EventFilterJson>, limits: Option<LimitsJson>, is_paused: bool,
    }
}
json_mirror! {
    /// A stored campaign version.
    CampaignJson mirrors Campaign {
        project_id: String, campaign_id: String, version: u32, name: String,
        description: String, segment_id: String, segment_version: u32,
        treatments: Vec<TreatmentJson>, holdout_percent: u32, schedule: Option<ScheduleJson>,
        event_filter: Option<EventFilterJson>, limits: Option<LimitsJson>, is_paused: bool,
        state: String, creation_date: String, last_modified_date: String,
    }
}
json_mirror! {
    /// Counts of one run.
    RunCountsJson mirrors RunCounts {
        targeted: u64, sent: u64, delivered: u64, failed: u64, holdout: u64, quiet_time: u64,
        capped: u64, opted_out: u64, filtered: u64, expired: u64,
    }
}
json_mirror! {
    /// One run of a campaign.
    ActivityJson mirrors CampaignActivity {
        run_id: String, campaign_version: u32, state: String, nominal: String,
        treatments: Vec<u32>, start_time: String, end_time: String,
        counts: Option<RunCountsJson>,
    }
}
json_mirror! {
    /// A KPI value on one day (for one treatment).
    KpiRowJson mirrors KpiRow { date: String, treatment_id: Option<u32>, value: f64, }
}
json_mirror! {
    /// A campaign KPI over a date range.
    KpiJson mirrors CampaignDateRangeKpiResponse {
        project_id: String, campaign_id: String, kpi_name: String, start_date: String,
        end_date: String, rows: Vec<KpiRowJson>,
    }
}

/// A campaign file: the create (or update) request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignFile {
    /// Must match --project when given.
    pub project_id: Option<String>,
    /// Must match --campaign when given (update only).
    pub campaign_id: Option<String>,
    /// The campaign.
    pub campaign: WriteCampaignJson,
}

/// Parses the JSON form of a campaign request.
pub fn parse_campaign_file(text: &str) -> anyhow::Result<CampaignFile> {
    serde_json::from_str(text)
        .context("not a campaign request (see `herald campaign create --help`)")
}

/// Reads a campaign file (`-` is standard input).
fn read_campaign_file(path: &Path) -> anyhow::Result<CampaignFile> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the campaign from standard input")?;
        text
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read campaign file {}", path.display()))?
    };
    parse_campaign_file(&text).with_context(|| format!("invalid campaign file {}", path.display()))
}

/// The write that reproduces a stored version: what update, pause and resume start from.
fn write_from_campaign(campaign: proto::Campaign) -> proto::WriteCampaign {
    proto::WriteCampaign {
        name: campaign.name,
        description: campaign.description,
        segment_id: campaign.segment_id,
        segment_version: campaign.segment_version,
        message: None,
        template_configuration: None,
        treatments: campaign.treatments,
        holdout_percent: campaign.holdout_percent,
        schedule: campaign.schedule,
        event_filter: campaign.event_filter,
        limits: campaign.limits,
        is_paused: campaign.is_paused,
    }
}

/// The message of the campaign's single treatment: the top-level one when there are no
/// treatments, else the only treatment's.
fn single_message(
    write: &mut proto::WriteCampaign,
) -> anyhow::Result<(
    &mut Option<proto::DirectMessageConfiguration>,
    &mut Option<proto::TemplateConfiguration>,
)> {
    match write.treatments.len() {
        0 => Ok((&mut write.message, &mut write.template_configuration)),
        1 => {
            let treatment = &mut write.treatments[0];
            Ok((
                &mut treatment.message,
                &mut treatment.template_configuration,
            ))
        }
        count => anyhow::bail!(
            "the campaign has {count} treatments; message flags change a single-treatment \
             campaign, edit the treatments with --file"
        ),
    }
}

impl CampaignWriteArgs {
    fn has_message_flags(&self) -> bool {
        [
            &self.email_template,
            &self.sms_template,
            &self.push_template,
            &self.sms_body,
            &self.email_subject,
            &self.email_html,
            &self.email_text,
        ]
        .iter()
        .any(|flag| flag.is_some())
    }

    /// Changes `write` by the flags given.
    fn apply(&self, write: &mut proto::WriteCampaign) -> anyhow::Result<()> {
        if let Some(name) = &self.name {
            write.name = name.clone();
        }
        if let Some(description) = &self.description {
            write.description = description.clone();
        }
        if let Some(segment) = &self.segment {
            write.segment_id = segment.clone();
        }
        if let Some(version) = self.segment_version {
            write.segment_version = version;
        }
        if self.has_message_flags() {
            self.apply_message(write)?;
        }
        if let Some(holdout) = self.holdout {
            write.holdout_percent = holdout;
            if let [treatment] = write.treatments.as_mut_slice() {
                treatment.size_percent = 100 - holdout;
            }
        }
        self.apply_schedule(write);
        let limits = write.limits.get_or_insert_default();
        for (flag, limit) in [
            (self.daily_cap, &mut limits.daily),
            (self.total_cap, &mut limits.total),
            (self.session_cap, &mut limits.session),
            (self.mps, &mut limits.messages_per_second),
            (self.max_duration_secs, &mut limits.maximum_duration_secs),
        ] {
            if flag.is_some() {
                *limit = flag;
            }
        }
        Ok(())
    }

    fn apply_message(&self, write: &mut proto::WriteCampaign) -> anyhow::Result<()> {
        let (inline, templates) = single_message(write)?;
        for (flag, kind) in [
            (&self.email_template, "email"),
            (&self.sms_template, "sms"),
            (&self.push_template, "push"),
        ] {
            let Some(name) = flag else {
                continue;
            };
            let reference = Some(proto::TemplateReference {
                name: name.clone(),
                version: 0,
            });
            let templates = templates.get_or_insert_default();
            match kind {
                "email" => templates.email = reference,
                "sms" => templates.sms = reference,
                _ => templates.push = reference,
            }
        }
        if self.sms_body.is_some() {
            inline.get_or_insert_default().sms = Some(proto::SmsTemplate {
                body: text_or_file(&self.sms_body)?,
            });
        }
        if self.email_subject.is_some() || self.email_html.is_some() || self.email_text.is_some() {
            let email = inline.get_or_insert_default().email.get_or_insert_default();
            if self.email_subject.is_some() {
                email.subject = text_or_file(&self.email_subject)?;
            }
            if self.email_html.is_some() {
                email.html_part = text_or_file(&self.email_html)?;
            }
            if self.email_text.is_some() {
                email.text_part = text_or_file(&self.email_text)?;
            }
        }
        Ok(())
    }

    fn apply_schedule(&self, write: &mut proto::WriteCampaign) {
        let changes_schedule = self.start.is_some()
            || self.end.is_some()
            || self.frequency.is_some()
            || self.local_time.is_some()
            || self.timezone.is_some()
            || self.quiet_start.is_some()
            || self.quiet_end.is_some()
            || !self.event_types.is_empty();
        if !changes_schedule {
            return;
        }
        let schedule = write.schedule.get_or_insert_default();
        if let Some(start) = &self.start {
            schedule.start_time = start.clone();
        }
        if let Some(end) = &self.end {
            schedule.end_time = end.clone();
        }
        if let Some(local_time) = self.local_time {
            schedule.is_local_time = local_time;
        }
        if let Some(timezone) = &self.timezone {
            schedule.timezone = timezone.clone();
        }
        if self.quiet_start.is_some() || self.quiet_end.is_some() {
            let quiet = schedule.quiet_time.get_or_insert_default();
            if let Some(start) = &self.quiet_start {
                quiet.start = start.clone();
            }
            if let Some(end) = &self.quiet_end {
                quiet.end = end.clone();
            }
            if quiet.start.is_empty() && quiet.end.is_empty() {
                schedule.quiet_time = None;
            }
        }
        match &self.frequency {
            Some(frequency) => {
                schedule.frequency = frequency.clone();
                // An event filter is refused on a schedule that is not EVENT.
                if frequency != "EVENT" && self.event_types.is_empty() {
                    write.event_filter = None;
                }
            }
            None if !self.event_types.is_empty() => schedule.frequency = "EVENT".to_string(),
            None => {}
        }
        if !self.event_types.is_empty() {
            write.event_filter.get_or_insert_default().event_types = self.event_types.clone();
        }
    }

    /// The base of a write: the file's campaign, checked against the flags.
    fn file_base(&self, campaign_id: Option<&str>) -> anyhow::Result<Option<proto::WriteCampaign>> {
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let file = read_campaign_file(path)?;
        if let Some(project) = &file.project_id
            && project != &self.project
        {
            anyhow::bail!(
                "the file's project_id {project:?} is not --project {:?}",
                self.project
            );
        }
        match (&file.campaign_id, campaign_id) {
            (Some(id), None) => {
                anyhow::bail!("the file names campaign_id {id:?}; use `herald campaign update`")
            }
            (Some(id), Some(flag)) if id != flag => {
                anyhow::bail!("the file's campaign_id {id:?} is not --campaign {flag:?}")
            }
            _ => {}
        }
        Ok(Some(file.campaign.into_proto()))
    }

    /// The create request of these flags and file.
    fn create_request(&self) -> anyhow::Result<proto::CreateCampaignRequest> {
        let mut write = self.file_base(None)?.unwrap_or_default();
        self.apply(&mut write)?;
        Ok(proto::CreateCampaignRequest {
            project_id: self.project.clone(),
            campaign: Some(write),
        })
    }
}

/// Runs a campaign command.
pub async fn run(channel: Channel, command: CampaignCommand, json: bool) -> anyhow::Result<()> {
    let mut client = CampaignsClient::new(channel);
    match command {
        CampaignCommand::Create(args) => {
            let answer = client
                .create_campaign(args.create_request()?)
                .await
                .map_err(status_error)?
                .into_inner();
            show(&answer, json);
        }
        CampaignCommand::Update(args) => {
            let mut write = match args.write.file_base(Some(&args.campaign))? {
                Some(write) => write,
                None => write_from_campaign(
                    latest(&mut client, &args.write.project, &args.campaign).await?,
                ),
            };
            args.write.apply(&mut write)?;
            let answer = update(&mut client, &args.write.project, &args.campaign, write).await?;
            show(&answer, json);
        }
        CampaignCommand::Get(args) => {
            let answer = client
                .get_campaign(proto::GetCampaignRequest {
                    project_id: args.project,
                    campaign_id: args.campaign,
                    version: args.version.unwrap_or(0),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show(&answer, json);
        }
        CampaignCommand::List { project } => {
            let list = client
                .get_campaigns(proto::GetCampaignsRequest {
                    project_id: project,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show_list(&list.campaigns, json);
        }
        CampaignCommand::Versions(args) => {
            let list = client
                .get_campaign_versions(proto::GetCampaignVersionsRequest {
                    project_id: args.project,
                    campaign_id: args.campaign,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show_list(&list.campaigns, json);
        }
        CampaignCommand::Delete(args) => {
            let deleted = client
                .delete_campaign(proto::DeleteCampaignRequest {
                    project_id: args.project,
                    campaign_id: args.campaign,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(&campaign_json(&deleted));
            } else {
                println!(
                    "deleted campaign {} ({:?}, {} version(s))",
                    deleted.campaign_id, deleted.name, deleted.version
                );
            }
        }
        CampaignCommand::Pause(args) => {
            let answer = set_paused(&mut client, &args, true).await?;
            show(&answer, json);
        }
        CampaignCommand::Resume(args) => {
            let answer = set_paused(&mut client, &args, false).await?;
            show(&answer, json);
        }
        CampaignCommand::Activities(args) => {
            let activities = client
                .get_campaign_activities(proto::GetCampaignActivitiesRequest {
                    project_id: args.project,
                    campaign_id: args.campaign,
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .activities;
            show_activities(&activities, json);
        }
    }
    Ok(())
}

/// The latest version of a campaign.
async fn latest(
    client: &mut CampaignsClient<Channel>,
    project: &str,
    campaign: &str,
) -> anyhow::Result<proto::Campaign> {
    Ok(client
        .get_campaign(proto::GetCampaignRequest {
            project_id: project.to_string(),
            campaign_id: campaign.to_string(),
            version: 0,
        })
        .await
        .map_err(status_error)?
        .into_inner())
}

/// Writes the next version of a campaign.
async fn update(
    client: &mut CampaignsClient<Channel>,
    project: &str,
    campaign: &str,
    write: proto::WriteCampaign,
) -> anyhow::Result<proto::Campaign> {
    Ok(client
        .update_campaign(proto::UpdateCampaignRequest {
            project_id: project.to_string(),
            campaign_id: campaign.to_string(),
            campaign: Some(write),
        })
        .await
        .map_err(status_error)?
        .into_inner())
}

/// Writes the next version with `is_paused` set to `paused`.
async fn set_paused(
    client: &mut CampaignsClient<Channel>,
    args: &CampaignIdArgs,
    paused: bool,
) -> anyhow::Result<proto::Campaign> {
    let mut write = write_from_campaign(latest(client, &args.project, &args.campaign).await?);
    write.is_paused = paused;
    update(client, &args.project, &args.campaign, write).await
}

/// Runs a KPI command.
pub async fn run_kpi(channel: Channel, command: KpiCommand, json: bool) -> anyhow::Result<()> {
    let mut client = AnalyticsClient::new(channel);
    match command {
        KpiCommand::Campaign(args) => {
            let answer = client
                .get_campaign_date_range_kpi(proto::GetCampaignDateRangeKpiRequest {
                    project_id: args.project,
                    campaign_id: args.campaign,
                    kpi_name: args.kpi,
                    start_date: args.start,
                    end_date: args.end,
                    by_treatment: args.by_treatment,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(&to_json(KpiJson::from_proto(answer)));
                return Ok(());
            }
            let mut table = if args.by_treatment {
                Table::new(&["DATE", "TREATMENT", "VALUE"])
            } else {
                Table::new(&["DATE", "VALUE"])
            };
            for row in &answer.rows {
                let mut cells = vec![row.date.clone()];
                if args.by_treatment {
                    cells.push(row.treatment_id.map(|t| t.to_string()).unwrap_or_default());
                }
                cells.push(row.value.to_string());
                table.push(cells);
            }
            print!("{}", table.render());
        }
    }
    Ok(())
}

/// A serializable value as JSON; the mirrors hold only strings, numbers and maps.
fn to_json(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A campaign as JSON, with the proto's field names.
pub fn campaign_json(campaign: &proto::Campaign) -> Value {
    to_json(CampaignJson::from_proto(campaign.clone()))
}

/// "IMMEDIATE → 2026-05-01T00:00:00Z, WEEKLY, local time, America/Sao_Paulo".
fn schedule_text(schedule: &proto::Schedule) -> String {
    let mut text = if schedule.start_time.is_empty() {
        "no start".to_string()
    } else {
        schedule.start_time.clone()
    };
    if !schedule.end_time.is_empty() {
        text.push_str(&format!(" → {}", schedule.end_time));
    }
    text.push_str(&format!(", {}", schedule.frequency));
    if schedule.is_local_time {
        text.push_str(", local time");
    }
    if !schedule.timezone.is_empty() {
        text.push_str(&format!(", {}", schedule.timezone));
    }
    if let Some(quiet) = &schedule.quiet_time {
        text.push_str(&format!(", quiet {}–{}", quiet.start, quiet.end));
    }
    text
}

/// "email template welcome, sms inline": what a treatment sends, per channel kind.
fn message_text(treatment: &proto::Treatment) -> String {
    let mut parts = Vec::new();
    if let Some(templates) = &treatment.template_configuration {
        for (kind, reference) in [
            ("email", &templates.email),
            ("sms", &templates.sms),
            ("push", &templates.push),
            ("voice", &templates.voice),
            ("in-app", &templates.in_app),
        ] {
            if let Some(reference) = reference {
                let version = match reference.version {
                    0 => String::new(),
                    version => format!(" v{version}"),
                };
                parts.push(format!("{kind} template {}{version}", reference.name));
            }
        }
    }
    if let Some(inline) = &treatment.message {
        for (kind, present) in [
            ("email", inline.email.is_some()),
            ("sms", inline.sms.is_some()),
            ("push", inline.push.is_some()),
            ("voice", inline.voice.is_some()),
            ("in-app", inline.in_app.is_some()),
        ] {
            if present {
                parts.push(format!("{kind} inline"));
            }
        }
    }
    parts.join(", ")
}

/// "daily 1, total 3": the limits the campaign sets itself.
fn limits_text(limits: &proto::CampaignLimitOverrides) -> String {
    [
        ("daily", limits.daily),
        ("total", limits.total),
        ("session", limits.session),
        ("per second", limits.messages_per_second),
        ("max duration s", limits.maximum_duration_secs),
    ]
    .iter()
    .filter_map(|(name, limit)| limit.map(|limit| format!("{name} {limit}")))
    .collect::<Vec<_>>()
    .join(", ")
}

fn event_filter_text(filter: &proto::EventFilter) -> String {
    let types = if filter.event_types.is_empty() {
        "any event".to_string()
    } else {
        filter.event_types.join(" or ")
    };
    format!(
        "{types}; {} attribute and {} metric condition(s)",
        filter.attributes.len(),
        filter.metrics.len()
    )
}

fn show(campaign: &proto::Campaign, json: bool) {
    if json {
        print_json(&campaign_json(campaign));
        return;
    }
    let segment = match campaign.segment_version {
        0 => format!("{} (latest)", campaign.segment_id),
        version => format!("{} v{version}", campaign.segment_id),
    };
    let mut rows = vec![
        ("campaign_id".to_string(), campaign.campaign_id.clone()),
        ("name".to_string(), campaign.name.clone()),
        ("description".to_string(), campaign.description.clone()),
        ("version".to_string(), campaign.version.to_string()),
        ("state".to_string(), campaign.state.clone()),
        ("paused".to_string(), campaign.is_paused.to_string()),
        ("segment".to_string(), segment),
        (
            "schedule".to_string(),
            campaign
                .schedule
                .as_ref()
                .map(schedule_text)
                .unwrap_or_default(),
        ),
        (
            "holdout".to_string(),
            format!("{}%", campaign.holdout_percent),
        ),
    ];
    for (index, treatment) in campaign.treatments.iter().enumerate() {
        let mut text = format!("{}% {}", treatment.size_percent, message_text(treatment));
        if !treatment.name.is_empty() {
            text = format!("{:?} {text}", treatment.name);
        }
        if let Some(schedule) = &treatment.schedule {
            text.push_str(&format!("; own schedule {}", schedule_text(schedule)));
        }
        rows.push((format!("treatment {index}"), text));
    }
    rows.extend([
        (
            "event_filter".to_string(),
            campaign
                .event_filter
                .as_ref()
                .map(event_filter_text)
                .unwrap_or_default(),
        ),
        (
            "limits".to_string(),
            campaign
                .limits
                .as_ref()
                .map(limits_text)
                .unwrap_or_default(),
        ),
        ("creation_date".to_string(), campaign.creation_date.clone()),
        (
            "last_modified_date".to_string(),
            campaign.last_modified_date.clone(),
        ),
    ]);
    let mut table = Table::new(&["FIELD", "VALUE"]);
    for (name, value) in rows {
        if !value.is_empty() {
            table.push(vec![name, value]);
        }
    }
    print!("{}", table.render());
}

fn show_list(campaigns: &[proto::Campaign], json: bool) {
    if json {
        print_json(&Value::Array(campaigns.iter().map(campaign_json).collect()));
        return;
    }
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "VERSION",
        "STATE",
        "SEGMENT",
        "FREQUENCY",
        "START",
        "MODIFIED",
    ]);
    for campaign in campaigns {
        let schedule = campaign.schedule.clone().unwrap_or_default();
        table.push(vec![
            campaign.campaign_id.clone(),
            campaign.name.clone(),
            campaign.version.to_string(),
            campaign.state.clone(),
            campaign.segment_id.clone(),
            schedule.frequency,
            schedule.start_time,
            campaign.last_modified_date.clone(),
        ]);
    }
    print!("{}", table.render());
}

fn show_activities(activities: &[proto::CampaignActivity], json: bool) {
    if json {
        let values = activities
            .iter()
            .map(|activity| to_json(ActivityJson::from_proto(activity.clone())))
            .collect();
        print_json(&Value::Array(values));
        return;
    }
    let mut table = Table::new(&[
        "RUN",
        "STATE",
        "NOMINAL",
        "TARGETED",
        "SENT",
        "DELIVERED",
        "FAILED",
        "HOLDOUT",
        "QUIET_TIME",
        "CAPPED",
        "OPTED_OUT",
        "START",
        "END",
    ]);
    for activity in activities {
        let counts = activity.counts.unwrap_or_default();
        table.push(vec![
            activity.run_id.clone(),
            activity.state.clone(),
            activity.nominal.clone(),
            counts.targeted.to_string(),
            counts.sent.to_string(),
            counts.delivered.to_string(),
            counts.failed.to_string(),
            counts.holdout.to_string(),
            counts.quiet_time.to_string(),
            counts.capped.to_string(),
            counts.opted_out.to_string(),
            activity.start_time.clone(),
            activity.end_time.clone(),
        ]);
    }
    print!("{}", table.render());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The campaign files of the help text parse into requests with the fields they show.
    #[test]
    fn help_examples_parse() {
        let examples: Vec<&str> = CAMPAIGN_FILE_HELP
            .split("\n\n  {")
            .skip(1)
            .map(|rest| rest.split("\n\n").next().unwrap_or(rest))
            .collect();
        assert_eq!(examples.len(), 2);
        let ab = parse_campaign_file(&format!("{{{}", examples[0])).unwrap();
        let write = ab.campaign.into_proto();
        assert_eq!(write.treatments.len(), 2);
        assert_eq!(write.holdout_percent, 10);
        assert_eq!(write.limits.unwrap().daily, Some(1));
        let event = parse_campaign_file(&format!("{{{}", examples[1])).unwrap();
        let write = event.campaign.into_proto();
        assert_eq!(write.message.unwrap().sms.unwrap().body, "Welcome to pro!");
        let filter = write.event_filter.unwrap();
        assert_eq!(filter.attributes["plan"].values, vec!["pro"]);
    }

    /// A misspelt field is refused rather than silently dropped.
    #[test]
    fn unknown_fields_are_refused() {
        let error = parse_campaign_file(r#"{"campaign": {"holdout": 10}}"#).unwrap_err();
        assert!(format!("{error:#}").contains("holdout"), "{error:#}");
    }

    /// A stored campaign prints as JSON and reads back as the same write.
    #[test]
    fn json_round_trips() {
        let campaign = proto::Campaign {
            campaign_id: "c1".into(),
            name: "spring".into(),
            treatments: vec![proto::Treatment {
                size_percent: 100,
                template_configuration: Some(proto::TemplateConfiguration {
                    email: Some(proto::TemplateReference {
                        name: "welcome".into(),
                        version: 2,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            limits: Some(proto::CampaignLimitOverrides {
                total: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = campaign_json(&campaign);
        assert_eq!(json["limits"]["total"], 3);
        let back: CampaignJson = serde_json::from_value(json).unwrap();
        assert_eq!(back.into_proto(), campaign);
    }

    fn flags() -> CampaignWriteArgs {
        CampaignWriteArgs {
            project: "p1".into(),
            ..Default::default()
        }
    }

    /// Flags fill a single-treatment campaign: the message at the top, the schedule, the
    /// limits and the holdout.
    #[test]
    fn flags_build_the_create_request() {
        let args = CampaignWriteArgs {
            name: Some("spring".into()),
            segment: Some("s1".into()),
            email_template: Some("welcome".into()),
            sms_body: Some("hi".into()),
            start: Some("IMMEDIATE".into()),
            end: Some("2026-05-01T00:00:00Z".into()),
            frequency: Some("DAILY".into()),
            local_time: Some(true),
            quiet_start: Some("22:00".into()),
            quiet_end: Some("08:00".into()),
            daily_cap: Some(1),
            holdout: Some(10),
            ..flags()
        };
        let request = args.create_request().unwrap();
        let write = request.campaign.unwrap();
        assert_eq!(request.project_id, "p1");
        assert_eq!(write.segment_id, "s1");
        assert_eq!(
            write.template_configuration.unwrap().email.unwrap().name,
            "welcome"
        );
        assert_eq!(write.message.unwrap().sms.unwrap().body, "hi");
        let schedule = write.schedule.unwrap();
        assert_eq!(schedule.frequency, "DAILY");
        assert!(schedule.is_local_time);
        assert_eq!(schedule.quiet_time.unwrap().start, "22:00");
        assert_eq!(write.limits.unwrap().daily, Some(1));
        assert_eq!(write.holdout_percent, 10);
    }

    /// On a stored version, flags change its one treatment, keep the rest, and an event type
    /// makes the schedule EVENT.
    #[test]
    fn flags_change_a_stored_version() {
        let stored = proto::Campaign {
            name: "spring".into(),
            treatments: vec![proto::Treatment {
                size_percent: 100,
                template_configuration: Some(proto::TemplateConfiguration {
                    email: Some(proto::TemplateReference {
                        name: "welcome".into(),
                        version: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            schedule: Some(proto::Schedule {
                start_time: "IMMEDIATE".into(),
                frequency: "ONCE".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut write = write_from_campaign(stored);
        let args = CampaignWriteArgs {
            sms_template: Some("promo".into()),
            holdout: Some(20),
            event_types: vec!["signup".into()],
            ..flags()
        };
        args.apply(&mut write).unwrap();
        assert_eq!(write.name, "spring");
        assert_eq!(write.message, None);
        let treatment = &write.treatments[0];
        assert_eq!(treatment.size_percent, 80);
        let templates = treatment.template_configuration.as_ref().unwrap();
        assert_eq!(templates.email.as_ref().unwrap().name, "welcome");
        assert_eq!(templates.sms.as_ref().unwrap().name, "promo");
        assert_eq!(write.schedule.as_ref().unwrap().frequency, "EVENT");
        assert_eq!(write.event_filter.as_ref().unwrap().event_types, ["signup"]);

        let two = proto::WriteCampaign {
            treatments: vec![proto::Treatment::default(); 2],
            ..Default::default()
        };
        let mut changed = two.clone();
        let error = args.apply(&mut changed).unwrap_err();
        assert!(error.to_string().contains("2 treatments"), "{error}");
    }

    /// Bad flag values are refused before connecting, naming the value.
    #[test]
    fn flag_values_are_checked() {
        assert_eq!(parse_start("immediate").unwrap(), "IMMEDIATE");
        assert!(
            parse_start("tomorrow")
                .unwrap_err()
                .contains("\"tomorrow\"")
        );
        assert_eq!(parse_frequency("weekly").unwrap(), "WEEKLY");
        assert!(parse_frequency("fortnightly").is_err());
        assert_eq!(parse_date("2026-04-01").unwrap(), "2026-04-01");
        assert!(parse_date("2026-13-01").is_err());
    }
}
