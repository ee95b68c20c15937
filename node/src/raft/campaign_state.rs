//! Applying campaign commands: campaign versions and runs in the meta group; send intents,
//! caps, run parts and KPIs in shard groups (SPEC CMP, DESIGN "A send").
//!
//! The exactly-once rule lives here: an endpoint has at most one intent per run (or per
//! trigger of an event campaign), and the caps move in the same atomic batch that stores the
//! intent, so concurrent campaigns and triggers on one shard can never exceed a cap.

use std::io;

use super::command::{
    CampaignCommand, CampaignHead, IntentAnswer, IntentOutcome, IntentRequest, MetaResponse,
    ShardOpResult,
};
use super::state_machine::{Activity, Space, Writer};
use super::{GroupId, META_GROUP};
use crate::domain::campaign::{
    Campaign, CampaignRun, CampaignState, EffectiveLimits, EndpointCaps, IntentStatus, KpiCounts,
    RunCounts, RunState, SendIntent, day_of,
};
use crate::domain::event::Event;
use crate::domain::segment::parse_instant;
use crate::storage::keys::{self, tag};

/// Key of a campaign version.
pub fn campaign_key(project_id: &str, campaign_id: &str, version: u32) -> Vec<u8> {
    keys::data_key(
        META_GROUP,
        tag::CAMPAIGN,
        &[project_id, campaign_id, &format!("{version:010}")],
    )
}

/// Key of a campaign's head.
pub fn campaign_head_key(project_id: &str, campaign_id: &str) -> Vec<u8> {
    keys::data_key(META_GROUP, tag::CAMPAIGN_HEAD, &[project_id, campaign_id])
}

/// Key of a run.
pub fn run_key(project_id: &str, campaign_id: &str, run_id: &str) -> Vec<u8> {
    keys::data_key(
        META_GROUP,
        tag::CAMPAIGN_RUN,
        &[project_id, campaign_id, run_id],
    )
}

/// A run, by its ids.
#[derive(Debug, Clone, Copy)]
pub struct RunRef<'a> {
    /// The project.
    pub project_id: &'a str,
    /// The campaign.
    pub campaign_id: &'a str,
    /// The run.
    pub run_id: &'a str,
}

/// Key of an endpoint's intent in a run (tag [`tag::SEND_INTENT`] or [`tag::PENDING_INTENT`]).
pub fn intent_key(
    group: GroupId,
    record: u8,
    run: RunRef<'_>,
    endpoint_id: &str,
    trigger: &str,
) -> Vec<u8> {
    keys::data_key(
        group,
        record,
        &[
            run.project_id,
            run.campaign_id,
            run.run_id,
            endpoint_id,
            trigger,
        ],
    )
}

/// Key of an endpoint's cap counters.
pub fn caps_key(group: GroupId, project_id: &str, endpoint_id: &str) -> Vec<u8> {
    keys::data_key(group, tag::ENDPOINT_CAPS, &[project_id, endpoint_id])
}

/// Key of a shard's part of a run.
pub fn part_key(group: GroupId, run: RunRef<'_>) -> Vec<u8> {
    keys::data_key(
        group,
        tag::RUN_PART,
        &[run.project_id, run.campaign_id, run.run_id],
    )
}

/// Key of KPI counts of a campaign, day and treatment.
pub fn kpi_key(
    group: GroupId,
    project_id: &str,
    campaign_id: &str,
    day: i64,
    treatment: u32,
) -> Vec<u8> {
    keys::data_key(
        group,
        tag::CAMPAIGN_KPI,
        &[
            project_id,
            campaign_id,
            &format!("{:010}", day.max(0)),
            &format!("{treatment:010}"),
        ],
    )
}

/// A shard's part of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunPart {
    /// Counts so far.
    pub counts: RunCounts,
    /// Whether the shard finished its part.
    pub done: bool,
}

/// A pending intent: the key under [`tag::PENDING_INTENT`] (the intent's key with the other
/// tag) says which, and the intent itself is read from its [`tag::SEND_INTENT`] record. The
/// marker's value is empty (records written by earlier builds carry a copy of the intent, which
/// is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingIntent {
    /// The project.
    pub project_id: String,
    /// The campaign.
    pub campaign_id: String,
    /// The run.
    pub run_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// As in the intent key.
    pub trigger: String,
}

impl PendingIntent {
    /// The pending intent a [`tag::PENDING_INTENT`] key names.
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let mut fields = keys::data_fields(key).into_iter();
        Some(Self {
            project_id: fields.next()?,
            campaign_id: fields.next()?,
            run_id: fields.next()?,
            endpoint_id: fields.next()?,
            trigger: fields.next().unwrap_or_default(),
        })
    }

    /// The run it belongs to.
    pub fn run(&self) -> RunRef<'_> {
        RunRef {
            project_id: &self.project_id,
            campaign_id: &self.campaign_id,
            run_id: &self.run_id,
        }
    }
}

pub(super) fn apply_campaign(
    writer: &mut Writer<'_>,
    command: &CampaignCommand,
) -> io::Result<MetaResponse> {
    Ok(match command {
        CampaignCommand::Put { campaign, create } => {
            let head_key = campaign_head_key(&campaign.project_id, &campaign.campaign_id);
            let head: Option<CampaignHead> = writer.get(&head_key)?;
            let mut head = match (create, head) {
                (true, None) => CampaignHead::default(),
                (false, Some(head)) if head.state != Some(CampaignState::Deleted) => head,
                _ => return Ok(MetaResponse::CampaignNotFound),
            };
            let mut stored = campaign.clone();
            stored.version = head.latest + 1;
            if head.latest > 0
                && let Some(first) = writer.get::<Campaign>(&campaign_key(
                    &campaign.project_id,
                    &campaign.campaign_id,
                    1,
                ))?
            {
                stored.creation_date = first.creation_date;
            }
            head.latest = stored.version;
            head.state = Some(match (stored.is_paused, head.state) {
                (true, _) => CampaignState::Paused,
                // A new version of a finished campaign schedules again.
                (
                    false,
                    None
                    | Some(CampaignState::Paused | CampaignState::Completed | CampaignState::Invalid),
                ) => CampaignState::Scheduled,
                (false, Some(state)) => state,
            });
            writer.put(
                campaign_key(&stored.project_id, &stored.campaign_id, stored.version),
                &stored,
                Space::Data,
            );
            let state = head.state.unwrap_or(CampaignState::Draft);
            writer.put(head_key, &head, Space::Data);
            MetaResponse::Campaign {
                campaign: stored,
                state,
            }
        }
        CampaignCommand::Delete {
            project_id,
            campaign_id,
        } => {
            let head_key = campaign_head_key(project_id, campaign_id);
            let Some(head) = writer.get::<CampaignHead>(&head_key)? else {
                return Ok(MetaResponse::CampaignNotFound);
            };
            let latest: Option<Campaign> =
                writer.get(&campaign_key(project_id, campaign_id, head.latest))?;
            writer.delete(head_key);
            for record in [tag::CAMPAIGN, tag::CAMPAIGN_RUN] {
                writer.delete_prefix(&keys::data_key(
                    META_GROUP,
                    record,
                    &[project_id, campaign_id],
                ))?;
            }
            match latest {
                Some(campaign) => MetaResponse::Campaign {
                    campaign,
                    state: CampaignState::Deleted,
                },
                None => MetaResponse::CampaignNotFound,
            }
        }
        CampaignCommand::StartRun { run, next } => {
            let head_key = campaign_head_key(&run.project_id, &run.campaign_id);
            let Some(mut head) = writer.get::<CampaignHead>(&head_key)? else {
                return Ok(MetaResponse::CampaignNotFound);
            };
            let key = run_key(&run.project_id, &run.campaign_id, &run.run_id);
            if let Some(existing) = writer.get::<CampaignRun>(&key)? {
                return Ok(MetaResponse::Run(existing));
            }
            if let Some((schedule, next_run)) = next {
                head.next_run.insert(*schedule, *next_run);
            }
            if head.state != Some(CampaignState::Paused) {
                head.state = Some(CampaignState::Executing);
            }
            writer.put(head_key, &head, Space::Data);
            writer.put(key, run, Space::Data);
            MetaResponse::Run(run.clone())
        }
        CampaignCommand::ReportPart {
            project_id,
            campaign_id,
            run_id,
            shard,
            counts,
            done,
        } => {
            let key = run_key(project_id, campaign_id, run_id);
            let Some(mut run) = writer.get::<CampaignRun>(&key)? else {
                return Ok(MetaResponse::RunNotFound);
            };
            // Reports only move forward: a late report never undoes a finished part.
            let finished = run.parts.get(shard).is_some_and(|(_, done)| *done);
            if !finished {
                run.parts.insert(*shard, (*counts, *done));
                writer.put(key, &run, Space::Data);
            }
            MetaResponse::Run(run)
        }
        CampaignCommand::EndRun {
            project_id,
            campaign_id,
            run_id,
            state,
            at,
        } => {
            let key = run_key(project_id, campaign_id, run_id);
            let Some(mut run) = writer.get::<CampaignRun>(&key)? else {
                return Ok(MetaResponse::RunNotFound);
            };
            if run.state == RunState::Executing {
                run.state = *state;
                run.end_time = at.clone();
                writer.put(key, &run, Space::Data);
            }
            MetaResponse::Run(run)
        }
        CampaignCommand::SetState {
            project_id,
            campaign_id,
            state,
        } => {
            let head_key = campaign_head_key(project_id, campaign_id);
            let Some(mut head) = writer.get::<CampaignHead>(&head_key)? else {
                return Ok(MetaResponse::CampaignNotFound);
            };
            // The user's pause wins over the scheduler.
            if head.state != Some(CampaignState::Paused) {
                head.state = Some(*state);
                writer.put(head_key, &head, Space::Data);
            }
            MetaResponse::Done
        }
    })
}

/// Applies `CommitIntents`.
#[allow(clippy::too_many_arguments)]
pub(super) fn commit_intents(
    group: GroupId,
    writer: &mut Writer<'_>,
    run: RunRef<'_>,
    campaign_version: u32,
    limits: &EffectiveLimits,
    now_ms: i64,
    intents: &[IntentRequest],
) -> io::Result<ShardOpResult> {
    let part_key = part_key(group, run);
    let mut part: RunPart = writer.get(&part_key)?.unwrap_or_default();
    let high_water_key = keys::data_key(
        group,
        tag::RUN_HIGH_WATER,
        &[run.project_id, run.campaign_id, run.run_id],
    );
    let mut high_water: Option<String> = writer.get(&high_water_key)?;
    let high_water_before = high_water.clone();
    let day = day_of(now_ms);
    let mut answers = Vec::with_capacity(intents.len());
    for request in intents {
        let key = intent_key(
            group,
            tag::SEND_INTENT,
            run,
            &request.endpoint_id,
            &request.trigger,
        );
        // Passes go through a run's members in order, so most intents are beyond every one
        // committed so far and cannot exist yet.
        let scheduled = request.trigger.is_empty();
        let beyond = scheduled
            && high_water
                .as_deref()
                .is_none_or(|high| request.endpoint_id.as_str() > high);
        if !beyond && let Some(existing) = writer.get::<SendIntent>(&key)? {
            answers.push(IntentAnswer::Existing(existing));
            continue;
        }
        if beyond {
            high_water = Some(request.endpoint_id.clone());
        }
        let mut intent = SendIntent {
            message_id: request.message_id.clone(),
            campaign_version,
            treatment: request.treatment,
            status: request.status,
            reason: request.reason.clone(),
            created_ms: now_ms,
            event_ms: request.event_ms,
        };
        if request.status == IntentStatus::Pending {
            let caps_key = caps_key(group, run.project_id, &request.endpoint_id);
            let mut caps: EndpointCaps = writer.get(&caps_key)?.unwrap_or_default();
            // The session only matters to a session cap; reading it costs a lookup per send.
            let session = if limits.session > 0 {
                writer
                    .get::<Activity>(&keys::data_key(
                        group,
                        tag::ACTIVITY,
                        &[run.project_id, &request.endpoint_id],
                    ))?
                    .map_or(0, |activity| activity.sessions)
            } else {
                0
            };
            match caps.admit(run.campaign_id, limits, day, session) {
                Ok(()) => {
                    writer.put(caps_key, &caps, Space::Data);
                    writer.put(
                        intent_key(
                            group,
                            tag::PENDING_INTENT,
                            run,
                            &request.endpoint_id,
                            &request.trigger,
                        ),
                        &(),
                        Space::Data,
                    );
                }
                Err(reason) => {
                    intent.status = IntentStatus::Capped;
                    intent.reason = reason.as_str().to_string();
                }
            }
        }
        part.counts.count_new(intent.status);
        writer.put(key, &intent, Space::Data);
        answers.push(IntentAnswer::New(intent));
    }
    if high_water != high_water_before
        && let Some(high_water) = &high_water
    {
        writer.put(high_water_key, high_water, Space::Data);
    }
    writer.put(part_key, &part, Space::Data);
    Ok(ShardOpResult::Intents(answers))
}

/// Applies `CommitOutcomes`.
pub(super) fn commit_outcomes(
    group: GroupId,
    writer: &mut Writer<'_>,
    run: RunRef<'_>,
    now_ms: i64,
    outcomes: &[IntentOutcome],
) -> io::Result<ShardOpResult> {
    let part_key = part_key(group, run);
    let mut part: RunPart = writer.get(&part_key)?.unwrap_or_default();
    let day = day_of(now_ms);
    let mut kpis: std::collections::BTreeMap<u32, KpiCounts> = std::collections::BTreeMap::new();
    let timestamp = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for outcome in outcomes {
        let key = intent_key(
            group,
            tag::SEND_INTENT,
            run,
            &outcome.endpoint_id,
            &outcome.trigger,
        );
        let Some(mut intent) = writer.get::<SendIntent>(&key)? else {
            continue;
        };
        if intent.status != IntentStatus::Pending {
            continue;
        }
        intent.status = outcome.status;
        intent.reason = outcome.reason.clone();
        writer.put(key, &intent, Space::Data);
        writer.delete(intent_key(
            group,
            tag::PENDING_INTENT,
            run,
            &outcome.endpoint_id,
            &outcome.trigger,
        ));
        part.counts.count_new(outcome.status);
        // KPI counts of the entry are gathered and written once per treatment.
        let kpi = kpis.entry(intent.treatment).or_default();
        kpi.attempted += 1;
        if outcome.status == IntentStatus::Delivered {
            kpi.delivered += 1;
            let caps_key = caps_key(group, run.project_id, &outcome.endpoint_id);
            let mut caps: EndpointCaps = writer.get(&caps_key)?.unwrap_or_default();
            if let Some(count) = caps.campaigns.get_mut(run.campaign_id)
                && count.last_delivered_day != day
            {
                count.last_delivered_day = day;
                kpi.unique_delivered += 1;
                writer.put(caps_key, &caps, Space::Data);
            }
        }
        if let Some(sent) = &outcome.event {
            let treatment = intent.treatment.to_string();
            let event = MessageEvent::new(
                &sent.event_type,
                &timestamp,
                [
                    ("message_id", intent.message_id.as_str()),
                    ("delivery_status", sent.delivery_status.as_str()),
                    ("campaign_id", run.campaign_id),
                    ("treatment_id", treatment.as_str()),
                    ("campaign_activity_id", run.run_id),
                ],
            );
            writer.put_blind(
                keys::data_key(
                    group,
                    tag::EVENT,
                    &[run.project_id, &outcome.endpoint_id, &intent.message_id],
                ),
                &event,
            );
        }
    }
    for (treatment, counts) in kpis {
        let key = kpi_key(group, run.project_id, run.campaign_id, day, treatment);
        let mut kpi: KpiCounts = writer.get(&key)?.unwrap_or_default();
        kpi.add(&counts);
        writer.put(key, &kpi, Space::Data);
    }
    writer.put(part_key, &part, Space::Data);
    Ok(ShardOpResult::Done)
}

/// A campaign message's event as stored: it encodes to the same bytes as the [`Event`] it is
/// read back as (same fields in the same order, borrowed), without building one per message.
#[derive(serde::Serialize)]
struct MessageEvent<'a> {
    event_type: &'a str,
    timestamp: &'a str,
    attributes: std::collections::BTreeMap<&'a str, &'a str>,
    metrics: std::collections::BTreeMap<&'a str, f64>,
    session: Option<crate::domain::event::Session>,
    app_package_name: &'a str,
    app_title: &'a str,
    app_version_code: &'a str,
    client_sdk_version: &'a str,
    sdk_name: &'a str,
}

impl<'a> MessageEvent<'a> {
    /// An event of `event_type` at `timestamp` with `attributes` and nothing else.
    fn new(event_type: &'a str, timestamp: &'a str, attributes: [(&'a str, &'a str); 5]) -> Self {
        Self {
            event_type,
            timestamp,
            attributes: std::collections::BTreeMap::from(attributes),
            metrics: std::collections::BTreeMap::new(),
            session: None,
            app_package_name: "",
            app_title: "",
            app_version_code: "",
            client_sdk_version: "",
            sdk_name: "",
        }
    }
}

/// Applies `FinishRunPart`.
pub(super) fn finish_part(
    group: GroupId,
    writer: &mut Writer<'_>,
    run: RunRef<'_>,
) -> io::Result<ShardOpResult> {
    let key = part_key(group, run);
    let mut part: RunPart = writer.get(&key)?.unwrap_or_default();
    part.done = true;
    writer.put(key, &part, Space::Data);
    Ok(ShardOpResult::Done)
}

/// Counts an `_email.open` or `_email.click` event of a campaign message (it carries the
/// `campaign_id` and `treatment_id` attributes of the message) into the campaign's KPIs, once
/// per event id.
pub(super) fn count_engagement(
    group: GroupId,
    writer: &mut Writer<'_>,
    project_id: &str,
    endpoint_id: &str,
    event_id: &str,
    event: &Event,
) -> io::Result<()> {
    let open = match event.event_type.as_str() {
        "_email.open" => true,
        "_email.click" => false,
        _ => return Ok(()),
    };
    let Some(campaign_id) = event.attributes.get("campaign_id") else {
        return Ok(());
    };
    let event_key = keys::data_key(group, tag::EVENT, &[project_id, endpoint_id, event_id]);
    if writer
        .store
        .data
        .contains_key(&event_key)
        .map_err(io::Error::other)?
    {
        // A retried request: counted the first time.
        return Ok(());
    }
    let treatment: u32 = event
        .attributes
        .get("treatment_id")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let Some(at) = parse_instant(&event.timestamp) else {
        return Ok(());
    };
    let day = day_of(at.timestamp_millis());
    let key = kpi_key(group, project_id, campaign_id, day, treatment);
    let mut kpi: KpiCounts = writer.get(&key)?.unwrap_or_default();
    if !open {
        kpi.email_clicks += 1;
        writer.put(key, &kpi, Space::Data);
        return Ok(());
    }
    kpi.email_opens += 1;
    let caps_key = caps_key(group, project_id, endpoint_id);
    let mut caps: EndpointCaps = writer.get(&caps_key)?.unwrap_or_default();
    if let Some(count) = caps.campaigns.get_mut(campaign_id.as_str())
        && count.last_open_day != day
    {
        count.last_open_day = day;
        kpi.unique_email_opens += 1;
        writer.put(caps_key, &caps, Space::Data);
    }
    writer.put(key, &kpi, Space::Data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::codec;

    fn request(endpoint_id: &str) -> IntentRequest {
        IntentRequest {
            endpoint_id: endpoint_id.to_string(),
            trigger: String::new(),
            message_id: format!("m-{endpoint_id}"),
            treatment: 0,
            status: IntentStatus::Pending,
            reason: String::new(),
            event_ms: 0,
        }
    }

    /// Commits the intents of `endpoints` in one entry; answers which were new.
    fn commit(store: &crate::storage::Store, endpoints: &[&str]) -> Vec<bool> {
        let run = RunRef {
            project_id: "p",
            campaign_id: "c",
            run_id: "s0-1",
        };
        let mut writer = Writer::new(store);
        let requests: Vec<_> = endpoints.iter().map(|e| request(e)).collect();
        let ShardOpResult::Intents(answers) = commit_intents(
            1,
            &mut writer,
            run,
            1,
            &EffectiveLimits::default(),
            0,
            &requests,
        )
        .unwrap() else {
            panic!("not intents")
        };
        writer.commit().unwrap();
        answers
            .iter()
            .map(|answer| matches!(answer, IntentAnswer::New(_)))
            .collect()
    }

    /// An endpoint gets one intent per run whatever order its pages come in: the shortcut
    /// for endpoints beyond every committed one never admits a second intent, in a later
    /// entry or twice in one entry.
    #[test]
    fn one_intent_per_endpoint_and_run_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::Store::open(dir.path()).unwrap();
        assert_eq!(commit(&store, &["b", "d"]), [true, true]);
        assert_eq!(
            commit(&store, &["a", "b", "c", "d", "e", "e"]),
            [true, false, true, false, true, false]
        );
        assert_eq!(
            commit(&store, &["a", "c", "e", "f"]),
            [false, false, false, true]
        );
    }

    /// A message event written without building an `Event` reads back as that event.
    #[test]
    fn message_events_decode_as_events() {
        let record = MessageEvent::new(
            "_email.send",
            "2026-12-08T09:00:00.000Z",
            [
                ("message_id", "m1"),
                ("delivery_status", "SUCCESSFUL"),
                ("campaign_id", "c1"),
                ("treatment_id", "2"),
                ("campaign_activity_id", "s0-1"),
            ],
        );
        let event: Event = codec::decode(&codec::encode(&record)).unwrap();
        let expected = Event {
            event_type: "_email.send".into(),
            timestamp: "2026-12-08T09:00:00.000Z".into(),
            attributes: record
                .attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            metrics: std::collections::BTreeMap::new(),
            session: None,
            app_package_name: String::new(),
            app_title: String::new(),
            app_version_code: String::new(),
            client_sdk_version: String::new(),
            sdk_name: String::new(),
        };
        assert_eq!(codec::encode(&record), codec::encode(&expected));
        assert_eq!(event, expected);
    }
}
