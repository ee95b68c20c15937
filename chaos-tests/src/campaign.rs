//! A paced campaign run as a chaos workload, and the exactly-once check over what it sent.
//!
//! [`PacedCampaign::create`] writes, in a project of its own, an audience of email endpoints
//! (attribute `audience = campaign`), a segment of them, an email template and an IMMEDIATE,
//! ONCE campaign with a messages-per-second limit, so that the run lasts long enough to kill
//! leaders in the middle of it. With no channel configured, each
//! node writes what it sends to `<data dir>/outbox/email.jsonl`; a re-dispatch after a
//! failover may happen on another node than the first attempt, so [`read_outboxes`] reads the
//! outboxes of every node together, and [`exactly_once_violations`] checks the issue's
//! guarantee over them: every endpoint of the segment has at least one line, and all the
//! lines of one endpoint carry the same message id (a repeat of that id is allowed: a crash
//! fell between the provider's acceptance and the outcome's commit). [`unexplained_repeats`]
//! says which repeats no crash of their first sender explains.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_proto::v1 as pb;
use herald_proto::v1::campaigns_client::CampaignsClient;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::segment_definition::Rule;
use herald_proto::v1::segments_client::SegmentsClient;
use herald_proto::v1::templates_client::TemplatesClient;
use tonic::transport::{Channel, Endpoint};

use crate::workload::Targets;

/// Endpoints per `UpdateEndpointsBatch` (the node's default batch limit).
const BATCH: usize = 100;

/// Deadline of one request; a dead or frozen node is skipped after it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest time to write the audience, segment and template while leaders settle.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Between two polls of the outboxes or the campaign state.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The campaign state once every shard finished the run.
const COMPLETED: &str = "COMPLETED";

/// The attribute (and value) that puts an endpoint in the campaign's segment.
const AUDIENCE_ATTRIBUTE: (&str, &str) = ("audience", "campaign");

/// How big and how slow the run is.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    /// Endpoints in the segment.
    pub audience: usize,
    /// The campaign's messages-per-second limit (shared by the nodes that send).
    pub messages_per_second: u32,
}

impl Default for CampaignOptions {
    fn default() -> Self {
        Self {
            audience: 3_000,
            messages_per_second: 150,
        }
    }
}

/// A campaign created by [`PacedCampaign::create`], running or done.
#[derive(Debug, Clone)]
pub struct PacedCampaign {
    /// The project it is in (its own).
    pub project_id: String,
    /// Its id.
    pub campaign_id: String,
    /// Every endpoint of its segment: exactly those must get the message.
    pub audience: BTreeSet<String>,
}

/// One line of a node's email outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxLine {
    /// The data directory whose outbox holds the line (names the node that sent it).
    pub node: String,
    /// The project the message was sent in.
    pub project_id: String,
    /// The endpoint it was sent to.
    pub endpoint_id: String,
    /// The message id the receiver sees.
    pub message_id: String,
    /// Its place in that outbox, from 0: lines before a node's crash come first.
    pub position: usize,
}

/// A node's crash as the outboxes saw it: the node (its data directory's name, as in
/// [`OutboxLine::node`]) and how many lines its outbox held when it died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxAtCrash {
    /// The node that was killed.
    pub node: String,
    /// Lines in its outbox when it was killed: those at smaller positions went out before.
    pub lines: usize,
}

impl OutboxAtCrash {
    /// Records a crash of the node whose data directory is `data_dir`, once it is dead.
    pub fn of(data_dir: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            node: node_name(data_dir),
            lines: read_outboxes(&[data_dir.to_path_buf()])?.len(),
        })
    }
}

impl PacedCampaign {
    /// Writes a project of its own (the run's `_email.send` events must not mix with the
    /// register workload's events, which the checker accounts for), the audience, the
    /// segment, the template and the campaign, through any node of `targets`. The campaign is
    /// created with a single request: a retry after an unknown outcome could create a second
    /// campaign, and with it a second message for every endpoint.
    pub async fn create(targets: &Targets, options: &CampaignOptions) -> anyhow::Result<Self> {
        let project_id = &crate::workload::create_project(targets, SETUP_TIMEOUT).await?;
        let audience: BTreeSet<String> = (0..options.audience)
            .map(|i| format!("camp-{i:05}"))
            .collect();
        let ids: Vec<&String> = audience.iter().collect();
        for chunk in ids.chunks(BATCH) {
            let request = pb::UpdateEndpointsBatchRequest {
                project_id: project_id.to_string(),
                items: chunk
                    .iter()
                    .map(|id| pb::EndpointBatchItem {
                        endpoint_id: id.to_string(),
                        endpoint: Some(audience_endpoint(id)),
                    })
                    .collect(),
            };
            // Writing an endpoint again with the same content is harmless: retries are safe.
            let results = ask_any(targets, SETUP_TIMEOUT, "writing the audience", |channel| {
                let request = request.clone();
                async move {
                    EndpointsClient::new(channel)
                        .update_endpoints_batch(request)
                        .await
                        .map(|response| response.into_inner().results)
                }
            })
            .await?;
            for result in results {
                let code = result.result.as_ref().map(|r| r.status_code);
                anyhow::ensure!(code == Some(202), "audience endpoint refused: {result:?}");
            }
        }
        let segment_request = pb::CreateSegmentRequest {
            project_id: project_id.to_string(),
            segment: Some(pb::SegmentDefinition {
                name: "campaign audience".into(),
                rule: Some(Rule::Dimensions(pb::SegmentDimensions {
                    attributes: HashMap::from([(
                        AUDIENCE_ATTRIBUTE.0.to_string(),
                        pb::AttributeDimension {
                            kind: "INCLUSIVE".into(),
                            values: vec![AUDIENCE_ATTRIBUTE.1.into()],
                        },
                    )]),
                    ..Default::default()
                })),
            }),
        };
        // A second segment left behind by a retry is never used: retries are safe.
        let segment_id = ask_any(targets, SETUP_TIMEOUT, "creating the segment", |channel| {
            let request = segment_request.clone();
            async move {
                SegmentsClient::new(channel)
                    .create_segment(request)
                    .await
                    .map(|response| response.into_inner().segment_id)
            }
        })
        .await?;
        let template_request = pb::CreateEmailTemplateRequest {
            fields: Some(pb::TemplateFields {
                project_id: project_id.to_string(),
                template_name: "chaos-notice".into(),
                ..Default::default()
            }),
            template: Some(pb::EmailTemplate {
                subject: "A notice".into(),
                html_part: "<p>For {{Attributes.audience}}</p>".into(),
                text_part: "For {{Attributes.audience}}".into(),
            }),
        };
        ask_any(targets, SETUP_TIMEOUT, "creating the template", |channel| {
            let request = template_request.clone();
            async move {
                match TemplatesClient::new(channel)
                    .create_email_template(request)
                    .await
                {
                    // A retry finds the template written by the attempt that timed out.
                    Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(()),
                    result => result.map(|_| ()),
                }
            }
        })
        .await?;
        let campaign_request = pb::CreateCampaignRequest {
            project_id: project_id.to_string(),
            campaign: Some(pb::WriteCampaign {
                name: "paced under chaos".into(),
                segment_id,
                template_configuration: Some(pb::TemplateConfiguration {
                    email: Some(pb::TemplateReference {
                        name: "chaos-notice".into(),
                        version: 0,
                    }),
                    ..Default::default()
                }),
                schedule: Some(pb::Schedule {
                    start_time: "IMMEDIATE".into(),
                    frequency: "ONCE".into(),
                    ..Default::default()
                }),
                limits: Some(pb::CampaignLimitOverrides {
                    messages_per_second: Some(options.messages_per_second),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let (_, addr) = *targets
            .get()
            .first()
            .context("no node to create the campaign on")?;
        let mut request = tonic::Request::new(campaign_request);
        request.set_timeout(Duration::from_secs(15));
        let campaign_id = CampaignsClient::new(channel_to(addr)?)
            .create_campaign(request)
            .await
            .with_context(|| format!("creating the campaign through {addr}"))?
            .into_inner()
            .campaign_id;
        Ok(Self {
            project_id: project_id.to_string(),
            campaign_id,
            audience,
        })
    }

    /// The campaign's state (SCHEDULED, EXECUTING, COMPLETED, ...), from any node.
    pub async fn state(&self, targets: &Targets, timeout: Duration) -> anyhow::Result<String> {
        let request = pb::GetCampaignRequest {
            project_id: self.project_id.clone(),
            campaign_id: self.campaign_id.clone(),
            version: 0,
        };
        ask_any(targets, timeout, "reading the campaign", |channel| {
            let request = request.clone();
            async move {
                CampaignsClient::new(channel)
                    .get_campaign(request)
                    .await
                    .map(|response| response.into_inner().state)
            }
        })
        .await
    }

    /// The campaign's runs with their counts, from any node.
    pub async fn runs(
        &self,
        targets: &Targets,
        timeout: Duration,
    ) -> anyhow::Result<Vec<pb::CampaignActivity>> {
        let request = pb::GetCampaignActivitiesRequest {
            project_id: self.project_id.clone(),
            campaign_id: self.campaign_id.clone(),
        };
        ask_any(targets, timeout, "reading the campaign's runs", |channel| {
            let request = request.clone();
            async move {
                CampaignsClient::new(channel)
                    .get_campaign_activities(request)
                    .await
                    .map(|response| response.into_inner().activities)
            }
        })
        .await
    }

    /// Waits (at most `timeout`) until the campaign is COMPLETED.
    pub async fn wait_completed(&self, targets: &Targets, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let state = self.state(targets, remaining.max(REQUEST_TIMEOUT)).await?;
            if state == COMPLETED {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "campaign {} still {state} after {timeout:?}",
                self.campaign_id
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Lines in the outboxes under `data_dirs` sent to this campaign's audience.
    pub fn sent(&self, data_dirs: &[PathBuf]) -> anyhow::Result<Vec<OutboxLine>> {
        Ok(read_outboxes(data_dirs)?
            .into_iter()
            .filter(|line| {
                line.project_id == self.project_id && self.audience.contains(&line.endpoint_id)
            })
            .collect())
    }

    /// Waits (at most `timeout`) until the outboxes under `data_dirs` hold at least `lines`
    /// messages to the audience; returns how many they hold.
    pub async fn wait_sent(
        &self,
        data_dirs: &[PathBuf],
        lines: usize,
        timeout: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let sent = self.sent(data_dirs)?.len();
            if sent >= lines {
                return Ok(sent);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the run sent {sent} messages, not {lines}, within {timeout:?}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Everything that breaks the guarantee for this campaign: the exactly-once check
    /// over `lines` (every node's outbox), and the one run's counts, which must say that every
    /// endpoint was targeted and delivered once.
    pub fn violations(&self, lines: &[OutboxLine], runs: &[pb::CampaignActivity]) -> Vec<String> {
        let mut violations = exactly_once_violations(&self.project_id, &self.audience, lines);
        if runs.len() != 1 {
            violations.push(format!(
                "a ONCE campaign has {} runs instead of one: {runs:?}",
                runs.len()
            ));
        }
        let expected = self.audience.len() as u64;
        for run in runs {
            let counts = run.counts.unwrap_or_default();
            if run.state != COMPLETED || counts.targeted != expected || counts.delivered != expected
            {
                violations.push(format!(
                    "run {} is {} with {} targeted and {} delivered, not {expected} and {expected}: {counts:?}",
                    run.run_id, run.state, counts.targeted, counts.delivered
                ));
            }
        }
        violations
    }
}

/// An endpoint of the audience: email, in the segment by its attribute.
fn audience_endpoint(id: &str) -> pb::EndpointRequest {
    pb::EndpointRequest {
        address: format!("{id}@example.com"),
        channel_type: pb::ChannelType::Email.into(),
        attributes: HashMap::from([(
            AUDIENCE_ATTRIBUTE.0.to_string(),
            pb::AttributeValues {
                values: vec![AUDIENCE_ATTRIBUTE.1.into()],
            },
        )]),
        ..Default::default()
    }
}

/// Every line of the email outboxes under `data_dirs` (nodes that never sent have none). A
/// line that is not JSON is an error: the outbox writes each line with one `write`.
pub fn read_outboxes(data_dirs: &[PathBuf]) -> anyhow::Result<Vec<OutboxLine>> {
    let mut lines = Vec::new();
    for dir in data_dirs {
        let path = dir.join("outbox").join("email.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let node = node_name(dir);
        for (number, line) in text.lines().enumerate() {
            let value: serde_json::Value = serde_json::from_str(line).with_context(|| {
                format!(
                    "{} line {} is not JSON: {line:?}",
                    path.display(),
                    number + 1
                )
            })?;
            let field = |name: &str| value[name].as_str().unwrap_or_default().to_string();
            lines.push(OutboxLine {
                node: node.clone(),
                project_id: field("project_id"),
                endpoint_id: field("endpoint_id"),
                message_id: field("message_id"),
                position: number,
            });
        }
    }
    Ok(lines)
}

fn node_name(data_dir: &Path) -> String {
    data_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| data_dir.display().to_string())
}

/// The guarantee over the lines of every node's outbox, for one run whose audience is
/// `audience` in `project_id`: every endpoint of the audience has at least one line, no line
/// goes to anyone else, and all the lines of one endpoint carry the same message id (repeats
/// of it are allowed). Returns one message per broken endpoint (at most 20, then a count).
pub fn exactly_once_violations(
    project_id: &str,
    audience: &BTreeSet<String>,
    lines: &[OutboxLine],
) -> Vec<String> {
    let mut by_endpoint: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for line in lines.iter().filter(|line| line.project_id == project_id) {
        by_endpoint
            .entry(&line.endpoint_id)
            .or_default()
            .entry(&line.message_id)
            .or_default()
            .push(&line.node);
    }
    let mut violations = Vec::new();
    let missing: Vec<&String> = audience
        .iter()
        .filter(|endpoint| !by_endpoint.contains_key(endpoint.as_str()))
        .collect();
    if !missing.is_empty() {
        violations.push(format!(
            "{} endpoints of the segment never got the message, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    let mut shown = 0;
    let mut more = 0;
    for (endpoint, ids) in &by_endpoint {
        let problem = if !audience.contains(*endpoint) {
            format!("{endpoint} is not in the segment and got {ids:?}")
        } else if ids.len() > 1 {
            format!(
                "{endpoint} got {} different message ids for one run (id → nodes that sent it): {ids:?}",
                ids.len()
            )
        } else {
            continue;
        };
        if shown < 20 {
            violations.push(problem);
            shown += 1;
        } else {
            more += 1;
        }
    }
    if more > 0 {
        violations.push(format!("... and {more} more endpoints like these"));
    }
    violations
}

/// Endpoints sent the same message more than once where no crash explains it: a line is
/// explained when the node that wrote it was killed afterwards (its outcome may not have been
/// committed, and the next leader sends it again); at most one line per endpoint may be
/// unexplained, the last send. Two unexplained lines mean a message was sent again although
/// its sender lived on (a leadership move without a crash, or two senders at once): the same
/// id reaches the receiver twice without the crash the issue allows it for.
pub fn unexplained_repeats(lines: &[OutboxLine], crashes: &[OutboxAtCrash]) -> Vec<String> {
    let crashed_after = |line: &OutboxLine| {
        crashes
            .iter()
            .any(|crash| crash.node == line.node && line.position < crash.lines)
    };
    let mut survivors: BTreeMap<(&str, &str), Vec<&OutboxLine>> = BTreeMap::new();
    for line in lines.iter().filter(|line| !crashed_after(line)) {
        survivors
            .entry((&line.project_id, &line.endpoint_id))
            .or_default()
            .push(line);
    }
    survivors
        .into_iter()
        .filter(|(_, lines)| lines.len() > 1)
        .map(|((_, endpoint), lines)| {
            let sends: Vec<String> = lines
                .iter()
                .map(|line| {
                    format!(
                        "{} by {} (line {})",
                        line.message_id, line.node, line.position
                    )
                })
                .collect();
            format!("{endpoint} was sent {sends:?} with no crash of the sender in between")
        })
        .collect()
}

/// A lazily connected channel to a node's client port.
fn channel_to(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Sends a request built by `send` to the nodes of `targets` in turn until one answers, for
/// at most `timeout`. Only for requests that are safe to repeat.
async fn ask_any<T, F, Fut>(
    targets: &Targets,
    timeout: Duration,
    what: &str,
    mut send: F,
) -> anyhow::Result<T>
where
    F: FnMut(Channel) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + timeout;
    let mut attempt = 0usize;
    loop {
        let nodes = targets.get();
        anyhow::ensure!(!nodes.is_empty(), "no node for {what}");
        let (_, addr) = nodes[attempt % nodes.len()];
        attempt += 1;
        let failure = match tokio::time::timeout(REQUEST_TIMEOUT, send(channel_to(addr)?)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(status)) if !worth_retrying(&status) => {
                anyhow::bail!("{what} refused by {addr}: {status}")
            }
            Ok(Err(status)) => format!("{addr}: {status}"),
            Err(_) => format!("{addr}: no answer within {REQUEST_TIMEOUT:?}"),
        };
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} failed for {timeout:?}; last: {failure}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether another node (or the same one later) may answer: the node is down, frozen,
/// electing, or not the leader; anything else is the answer.
fn worth_retrying(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Internal
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(node: &str, endpoint: &str, message: &str) -> OutboxLine {
        OutboxLine {
            node: node.into(),
            project_id: "p".into(),
            endpoint_id: endpoint.into(),
            message_id: message.into(),
            position: 0,
        }
    }

    /// A repeat after the first sender's crash is explained; a repeat while both senders
    /// lived on is not.
    #[test]
    fn only_a_crash_of_the_first_sender_explains_a_repeat() {
        let at = |node: &str, position: usize, endpoint: &str| OutboxLine {
            position,
            ..line(node, endpoint, "m")
        };
        let lines = vec![
            at("node-0", 0, "a"),
            at("node-1", 0, "a"),
            at("node-0", 1, "b"),
            at("node-2", 0, "b"),
        ];
        let crash = OutboxAtCrash {
            node: "node-0".into(),
            lines: 1,
        };
        let unexplained = unexplained_repeats(&lines, &[crash]);
        assert_eq!(unexplained.len(), 1, "{unexplained:?}");
        assert!(unexplained[0].starts_with("b was sent"), "{unexplained:?}");
    }

    fn audience(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    /// A repeat of the same message id, even from another node (a re-dispatch by a new
    /// leader), is allowed; lines of other projects are ignored.
    #[test]
    fn repeats_of_one_message_id_are_allowed() {
        let mut lines = vec![
            line("node-0", "a", "m1"),
            line("node-1", "a", "m1"),
            line("node-2", "b", "m2"),
        ];
        lines.push(OutboxLine {
            project_id: "other".into(),
            ..line("node-0", "a", "m9")
        });
        assert!(exactly_once_violations("p", &audience(&["a", "b"]), &lines).is_empty());
    }

    /// Two message ids for one endpoint, an endpoint without a message and a message outside
    /// the segment are each reported.
    #[test]
    fn two_ids_a_missing_endpoint_and_a_stranger_are_violations() {
        let lines = vec![
            line("node-0", "a", "m1"),
            line("node-1", "a", "m2"),
            line("node-0", "x", "m3"),
        ];
        let violations = exactly_once_violations("p", &audience(&["a", "b"]), &lines);
        assert_eq!(violations.len(), 3, "{violations:?}");
        assert!(violations[0].contains("never got"), "{violations:?}");
        assert!(
            violations[1].contains("2 different message ids"),
            "{violations:?}"
        );
        assert!(
            violations[2].contains("not in the segment"),
            "{violations:?}"
        );
    }
}
