//! Direct sends to addresses and users, in-app inboxes and one-time passwords (SPEC CHN-6).
//!
//! A send compiles its templates once, renders per recipient, hands the message to the
//! channel's provider (the outbox while nothing is configured) or to the endpoint's inbox for
//! in-app messages, and records a message event (EVT-2) in the endpoint's shard.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;

use super::{Cluster, ClusterError, EndpointEvents, Result, now_rfc3339};
use crate::channels::{DeliveryOutcome, DeliveryStatus, OutboundMessage, provider_for};
use crate::domain::channel::ChannelSettings;
use crate::domain::endpoint::{ChannelType, Endpoint, EndpointStatus, OptOut};
use crate::domain::event::Event;
use crate::domain::message::{InboxMessage, content_type_for, send_event_type};
use crate::domain::otp::{
    OtpRecord, OtpSpec, OtpVerdict, code_from, hash_code, otp_key, otp_message,
};
use crate::domain::placement::NodeState;
use crate::domain::rate::channel_rate;
use crate::domain::template::{
    CompiledTemplate, EmailTemplate, RenderContext, RenderedMessage, SmsTemplate, TemplateContent,
    TemplateType, VoiceTemplate,
};
use crate::raft::command::{ShardOp, ShardOpResult};
use crate::raft::shard_group;
use crate::storage::{codec, keys, keys::tag};

/// What a direct send says, validated by the caller.
#[derive(Debug, Clone, Default)]
pub struct SendContent {
    /// Inline content per kind.
    pub inline: BTreeMap<TemplateType, TemplateContent>,
    /// Stored templates per kind: name and version (None: the active one). A template wins
    /// over inline content of the same kind.
    pub templates: BTreeMap<TemplateType, (String, Option<u32>)>,
    /// Substitutions for every recipient.
    pub substitutions: BTreeMap<String, Vec<String>>,
    /// The origination identity SMS and voice messages go from (CHN-4); empty: chosen.
    pub origination_number: String,
}

/// One address of a send to addresses.
#[derive(Debug, Clone)]
pub struct AddressRecipient {
    /// Email address, phone number, device token…
    pub address: String,
    /// Its channel.
    pub channel: ChannelType,
    /// Its substitutions; they win over the request's.
    pub substitutions: BTreeMap<String, Vec<String>>,
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct SendResult {
    /// The delivery status.
    pub status: DeliveryStatus,
    /// The message id (also the id of the message event).
    pub message_id: String,
    /// HTTP-style code, see [`status_code`].
    pub status_code: i32,
    /// What happened, for people.
    pub status_message: String,
}

/// The HTTP-style code clients of the replaced service expect for a status.
pub fn status_code(status: DeliveryStatus) -> i32 {
    match status {
        DeliveryStatus::Successful | DeliveryStatus::Duplicate => 200,
        DeliveryStatus::Throttled => 429,
        DeliveryStatus::PermanentFailure
        | DeliveryStatus::OptOut
        | DeliveryStatus::QuietTime
        | DeliveryStatus::Capped => 400,
        DeliveryStatus::TemporaryFailure | DeliveryStatus::UnknownFailure => 500,
    }
}

impl SendResult {
    fn new(message_id: &str, outcome: DeliveryOutcome) -> Self {
        Self {
            status: outcome.status,
            message_id: message_id.to_string(),
            status_code: status_code(outcome.status),
            status_message: outcome.status_message,
        }
    }
}

/// How one message is sent: its id, the origination identity the sender named (empty: none),
/// and whether a send over the rate waits for its turn (campaigns) or answers THROTTLED.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendAs<'a> {
    pub message_id: &'a str,
    pub origination_number: &'a str,
    pub wait: bool,
}

/// The request's content compiled once, per kind.
pub(crate) type Compiled = BTreeMap<TemplateType, Arc<CompiledTemplate>>;

/// A message rendered for one recipient: for the inbox, or for a provider.
enum Rendered {
    InApp(crate::domain::template::InAppTemplate),
    Outbound(OutboundMessage),
}

/// Renders the content of `endpoint`'s channel; a failure is the send's outcome.
fn render_for(
    compiled: &Compiled,
    endpoint: &Endpoint,
    substitutions: &BTreeMap<String, Vec<String>>,
    how: &SendAs<'_>,
) -> std::result::Result<Rendered, DeliveryOutcome> {
    let channel = endpoint.channel_type;
    let kind = content_type_for(channel);
    let Some(template) = compiled.get(&kind) else {
        return Err(DeliveryOutcome::new(
            DeliveryStatus::PermanentFailure,
            format!(
                "the message has no {} content for channel {}",
                kind.as_str(),
                channel.as_str()
            ),
        ));
    };
    let context = RenderContext::for_endpoint_with(
        endpoint,
        substitutions,
        &BTreeMap::new(),
        template.context_roots(),
    );
    let content = template.render(&context).map_err(|error| {
        DeliveryOutcome::new(DeliveryStatus::PermanentFailure, error.to_string())
    })?;
    Ok(match (channel, content) {
        (ChannelType::InApp, RenderedMessage::InApp(in_app)) => Rendered::InApp(in_app),
        (_, content) => Rendered::Outbound(OutboundMessage {
            message_id: how.message_id.to_string(),
            project_id: endpoint.project_id.clone(),
            endpoint_id: (!endpoint.endpoint_id.is_empty()).then(|| endpoint.endpoint_id.clone()),
            channel,
            address: endpoint.address.clone(),
            content,
            origination_number: how.origination_number.to_string(),
        }),
    })
}

pub(crate) fn new_message_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A recipient given by address only: an endpoint with just the address and channel, so
/// templates see `{{Address}}` and `{{ChannelType}}` and the rest empty.
fn address_endpoint(project_id: &str, recipient: &AddressRecipient, now: &str) -> Endpoint {
    Endpoint {
        project_id: project_id.to_string(),
        endpoint_id: String::new(),
        address: recipient.address.clone(),
        channel_type: recipient.channel,
        attributes: BTreeMap::new(),
        metrics: BTreeMap::new(),
        demographic: Default::default(),
        location: Default::default(),
        opt_out: OptOut::None,
        status: EndpointStatus::Active,
        user: Default::default(),
        effective_date: now.to_string(),
        creation_date: now.to_string(),
        request_id: String::new(),
        cohort_id: 0,
    }
}

/// `overrides` on top of `base`.
fn merged(
    base: &BTreeMap<String, Vec<String>>,
    overrides: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Vec<String>> {
    let mut all = base.clone();
    all.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Cluster {
    /// Compiles the request's templates and inline content, each once.
    pub(crate) async fn compile_content(
        &self,
        project_id: &str,
        content: &SendContent,
    ) -> Result<Compiled> {
        let mut compiled = Compiled::new();
        for (kind, inline) in &content.inline {
            let template = CompiledTemplate::compile(inline, &BTreeMap::new()).map_err(|v| {
                ClusterError::InvalidArgument(
                    v.into_iter()
                        .map(|mut violation| {
                            violation.field = format!("message.{}", violation.field);
                            violation
                        })
                        .collect(),
                )
            })?;
            compiled.insert(*kind, Arc::new(template));
        }
        for (kind, (name, version)) in &content.templates {
            let (template, _) = self.get_template(project_id, *kind, name, *version).await?;
            let template =
                CompiledTemplate::compile(&template.content, &template.default_substitutions)
                    .map_err(|violations| {
                        ClusterError::Internal(format!(
                            "stored template {name:?} does not compile: {violations:?}"
                        ))
                    })?;
            compiled.insert(*kind, Arc::new(template));
        }
        Ok(compiled)
    }

    /// Renders and delivers one message to `endpoint` (stored when `endpoint_id` is set).
    async fn deliver(
        &self,
        settings: &ChannelSettings,
        compiled: &Compiled,
        endpoint: &Endpoint,
        substitutions: &BTreeMap<String, Vec<String>>,
        origination_number: &str,
    ) -> SendResult {
        let message_id = new_message_id();
        if endpoint.opt_out == OptOut::All || endpoint.status == EndpointStatus::Inactive {
            return SendResult::new(
                &message_id,
                DeliveryOutcome::new(
                    DeliveryStatus::OptOut,
                    "the endpoint opted out or is inactive",
                ),
            );
        }
        let outcome = self
            .render_and_send(
                settings,
                compiled,
                endpoint,
                substitutions,
                SendAs {
                    message_id: &message_id,
                    origination_number,
                    wait: false,
                },
            )
            .await;
        SendResult::new(&message_id, outcome)
    }

    /// Renders the message for `endpoint` and hands it to its channel (the inbox for in-app
    /// messages): over the rate limit it answers THROTTLED, or waits for its turn when `wait`.
    /// A stored endpoint whose provider says its address does not exist is marked INACTIVE.
    pub(crate) async fn render_and_send(
        &self,
        settings: &ChannelSettings,
        compiled: &Compiled,
        endpoint: &Endpoint,
        substitutions: &BTreeMap<String, Vec<String>>,
        how: SendAs<'_>,
    ) -> DeliveryOutcome {
        let outcome = match render_for(compiled, endpoint, substitutions, &how) {
            Err(failed) => failed,
            Ok(Rendered::InApp(in_app)) => {
                self.put_inbox_message(endpoint, how.message_id, in_app)
                    .await
            }
            Ok(Rendered::Outbound(message)) => {
                let provider = provider_for(message.channel, settings, &self.outbox);
                let rate = channel_rate(settings, message.channel);
                let nodes = self.active_node_count();
                if how.wait {
                    self.delivery
                        .send_waiting(&provider, &message, rate, nodes)
                        .await
                } else {
                    self.delivery.send(&provider, &message, rate, nodes).await
                }
            }
        };
        self.after_send(endpoint, &outcome).await;
        outcome
    }

    /// [`Self::render_and_send`] for many recipients, waiting for the rate: the messages of
    /// each channel go to its workers as one batch. Answers one outcome per recipient, in
    /// order.
    pub(crate) async fn render_and_send_many(
        &self,
        settings: &ChannelSettings,
        recipients: &[(&Compiled, &Endpoint, SendAs<'_>)],
    ) -> Vec<DeliveryOutcome> {
        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; recipients.len()];
        let mut by_channel: BTreeMap<ChannelType, (Vec<usize>, Vec<OutboundMessage>)> =
            BTreeMap::new();
        for (index, (compiled, endpoint, how)) in recipients.iter().enumerate() {
            match render_for(compiled, endpoint, &BTreeMap::new(), how) {
                Err(failed) => outcomes[index] = Some(failed),
                Ok(Rendered::InApp(in_app)) => {
                    outcomes[index] = Some(
                        self.put_inbox_message(endpoint, how.message_id, in_app)
                            .await,
                    );
                }
                Ok(Rendered::Outbound(message)) => {
                    let (indexes, messages) = by_channel.entry(message.channel).or_default();
                    indexes.push(index);
                    messages.push(message);
                }
            }
        }
        let nodes = self.active_node_count();
        for (channel, (indexes, messages)) in by_channel {
            let provider = provider_for(channel, settings, &self.outbox);
            let rate = channel_rate(settings, channel);
            let answered = self
                .delivery
                .send_many_waiting(&provider, messages, rate, nodes)
                .await;
            for (index, outcome) in indexes.into_iter().zip(answered) {
                outcomes[index] = Some(outcome);
            }
        }
        let mut answered = Vec::with_capacity(recipients.len());
        for ((_, endpoint, _), outcome) in recipients.iter().zip(outcomes) {
            let outcome = outcome.unwrap_or_else(|| {
                DeliveryOutcome::new(DeliveryStatus::UnknownFailure, "the send was not answered")
            });
            self.after_send(endpoint, &outcome).await;
            answered.push(outcome);
        }
        answered
    }

    /// A stored endpoint whose provider says its address does not exist is marked INACTIVE.
    async fn after_send(&self, endpoint: &Endpoint, outcome: &DeliveryOutcome) {
        if outcome.mark_inactive && !endpoint.endpoint_id.is_empty() {
            self.mark_endpoint_inactive(&endpoint.project_id, &endpoint.endpoint_id)
                .await;
        }
    }

    /// Hands a message to its channel's provider through the delivery pipeline: the project's
    /// rate limit for the channel (this node's share of it), bounded concurrency and retries.
    async fn send_through_provider(
        &self,
        settings: &ChannelSettings,
        message: &OutboundMessage,
    ) -> DeliveryOutcome {
        let provider = provider_for(message.channel, settings, &self.outbox);
        let rate = channel_rate(settings, message.channel);
        self.delivery
            .send(&provider, message, rate, self.active_node_count())
            .await
    }

    /// Active nodes as this node's meta copy knows them (at least one: this node), among
    /// which channel rate limits are shared; counted at most once a second.
    pub(crate) fn active_node_count(&self) -> usize {
        let mut cached = self.active_nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, count)) = *cached
            && at.elapsed() < std::time::Duration::from_secs(1)
        {
            return count;
        }
        let count = self.count_active_nodes();
        *cached = Some((std::time::Instant::now(), count));
        count
    }

    fn count_active_nodes(&self) -> usize {
        self.local_nodes()
            .map(|nodes| {
                nodes
                    .iter()
                    .filter(|node| node.state == NodeState::Active)
                    .count()
            })
            .unwrap_or(1)
            .max(1)
    }

    /// Sets a stored endpoint INACTIVE after its provider said the address or token does not
    /// exist, so it is never sent to again (SPEC CHN-3). The message is out already, so a
    /// failure is logged rather than failing the send.
    async fn mark_endpoint_inactive(&self, project_id: &str, endpoint_id: &str) {
        let index = self.shard_index(project_id, endpoint_id);
        let op = ShardOp::SetEndpointStatus {
            project_id: project_id.to_string(),
            endpoint_id: endpoint_id.to_string(),
            status: EndpointStatus::Inactive,
        };
        if let Err(error) = self.propose(index, op).await {
            tracing::warn!(%error, project_id, endpoint_id, "endpoint not marked inactive");
        }
    }

    /// Keeps an in-app message in a stored endpoint's inbox.
    async fn put_inbox_message(
        &self,
        endpoint: &Endpoint,
        message_id: &str,
        content: crate::domain::template::InAppTemplate,
    ) -> DeliveryOutcome {
        if endpoint.endpoint_id.is_empty() {
            return DeliveryOutcome::new(
                DeliveryStatus::PermanentFailure,
                "in-app messages go to stored endpoints: send to a user",
            );
        }
        let index = self.shard_index(&endpoint.project_id, &endpoint.endpoint_id);
        let op = ShardOp::PutInboxMessage {
            project_id: endpoint.project_id.clone(),
            endpoint_id: endpoint.endpoint_id.clone(),
            message: InboxMessage {
                message_id: message_id.to_string(),
                sent_at: now_rfc3339(),
                content,
            },
        };
        match self.propose(index, op).await {
            Ok(_) => DeliveryOutcome::new(DeliveryStatus::Successful, "kept in the inbox"),
            Err(error) => DeliveryOutcome::new(
                DeliveryStatus::TemporaryFailure,
                format!("inbox write failed: {error}"),
            ),
        }
    }

    /// Records the message event of each send in its endpoint's shard. The messages are out
    /// already, so a failure here is logged rather than failing the request (a retry would
    /// send them twice).
    async fn record_send_events(&self, project_id: &str, sends: Vec<(&Endpoint, &SendResult)>) {
        let timestamp = now_rfc3339();
        let batches = sends
            .into_iter()
            .map(|(endpoint, result)| EndpointEvents {
                endpoint_id: endpoint.endpoint_id.clone(),
                endpoint: None,
                events: vec![(
                    result.message_id.clone(),
                    Event {
                        event_type: send_event_type(endpoint.channel_type).to_string(),
                        timestamp: timestamp.clone(),
                        attributes: BTreeMap::from([
                            ("message_id".to_string(), result.message_id.clone()),
                            (
                                "delivery_status".to_string(),
                                result.status.as_str().to_string(),
                            ),
                        ]),
                        metrics: BTreeMap::new(),
                        session: None,
                        app_package_name: String::new(),
                        app_title: String::new(),
                        app_version_code: String::new(),
                        client_sdk_version: String::new(),
                        sdk_name: String::new(),
                    },
                )],
            })
            .collect();
        match self.put_events(project_id, batches).await {
            Ok(outcomes) => {
                for outcome in outcomes {
                    for (event_id, stored) in outcome.events {
                        if let Err(error) = stored {
                            tracing::warn!(%error, event_id, "message event not stored");
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "message events not stored"),
        }
    }

    /// Sends to addresses (validated by the caller); answers a result per address, in order.
    pub async fn send_to_addresses(
        &self,
        project_id: &str,
        content: &SendContent,
        recipients: &[AddressRecipient],
    ) -> Result<Vec<SendResult>> {
        self.project(project_id).await?;
        let compiled = self.compile_content(project_id, content).await?;
        let settings = self.get_channel_settings(project_id).await?;
        let now = now_rfc3339();
        let sends = recipients.iter().map(|recipient| {
            let endpoint = address_endpoint(project_id, recipient, &now);
            let substitutions = merged(&content.substitutions, &recipient.substitutions);
            let compiled = &compiled;
            let settings = &settings;
            async move {
                self.deliver(
                    settings,
                    compiled,
                    &endpoint,
                    &substitutions,
                    &content.origination_number,
                )
                .await
            }
        });
        Ok(join_all(sends).await)
    }

    /// Sends to every endpoint of each user; answers, per user in order, the result of each
    /// of its endpoints by endpoint id.
    pub async fn send_to_users(
        &self,
        project_id: &str,
        content: &SendContent,
        users: &[(String, BTreeMap<String, Vec<String>>)],
    ) -> Result<Vec<Vec<(String, SendResult)>>> {
        self.project(project_id).await?;
        let compiled = self.compile_content(project_id, content).await?;
        let settings = self.get_channel_settings(project_id).await?;
        let per_user = users.iter().map(|(user_id, user_substitutions)| {
            let compiled = &compiled;
            let settings = &settings;
            async move {
                let endpoints = self.user_endpoints(project_id, user_id).await?;
                let substitutions = merged(&content.substitutions, user_substitutions);
                let results = join_all(endpoints.iter().map(|endpoint| {
                    self.deliver(
                        settings,
                        compiled,
                        endpoint,
                        &substitutions,
                        &content.origination_number,
                    )
                }))
                .await;
                self.record_send_events(project_id, endpoints.iter().zip(&results).collect())
                    .await;
                Ok::<_, ClusterError>(
                    endpoints
                        .iter()
                        .map(|endpoint| endpoint.endpoint_id.clone())
                        .zip(results)
                        .collect(),
                )
            }
        });
        join_all(per_user).await.into_iter().collect()
    }

    /// The in-app messages of an endpoint, oldest first.
    pub async fn in_app_messages(
        &self,
        project_id: &str,
        endpoint_id: &str,
    ) -> Result<Vec<InboxMessage>> {
        self.project(project_id).await?;
        let group = shard_group(self.shard_index(project_id, endpoint_id) as u32);
        let prefix = keys::data_key(group, tag::INBOX, &[project_id, endpoint_id]);
        let mut messages = self
            .read_records(group, prefix)
            .await?
            .into_iter()
            .map(|(_, value)| codec::decode::<InboxMessage>(&value).map_err(ClusterError::internal))
            .collect::<Result<Vec<_>>>()?;
        messages.sort_by(|a, b| {
            (a.sent_at.as_str(), a.message_id.as_str())
                .cmp(&(b.sent_at.as_str(), b.message_id.as_str()))
        });
        Ok(messages)
    }

    /// Stores a new one-time password (hashed) and sends it.
    pub async fn send_otp(&self, project_id: &str, spec: &OtpSpec) -> Result<SendResult> {
        self.project(project_id).await?;
        let random = uuid::Uuid::new_v4().as_u64_pair().0 ^ uuid::Uuid::new_v4().as_u64_pair().1;
        let code = code_from(random, spec.code_length);
        let salt = uuid::Uuid::new_v4().simple().to_string();
        let record = OtpRecord {
            code_hash: hash_code(&salt, &code),
            salt,
            expires_at_ms: chrono::Utc::now().timestamp_millis()
                + i64::from(spec.validity_minutes) * 60_000,
            attempts_left: spec.allowed_attempts,
        };
        let key = otp_key(project_id, &spec.destination, &spec.reference_id);
        let index = self.shard_index(project_id, &key);
        self.propose(
            index,
            ShardOp::PutOtp {
                project_id: project_id.to_string(),
                otp_key: key,
                record,
            },
        )
        .await?;
        let text = otp_message(&spec.brand_name, &code);
        let content = match spec.channel {
            ChannelType::Email => RenderedMessage::Email(EmailTemplate {
                subject: text.clone(),
                html_part: format!("<p>{}</p>", escape_html(&text)),
                text_part: text,
            }),
            ChannelType::Voice => RenderedMessage::Voice(VoiceTemplate {
                body: text,
                ..Default::default()
            }),
            _ => RenderedMessage::Sms(SmsTemplate { body: text }),
        };
        let message_id = new_message_id();
        let message = OutboundMessage {
            message_id: message_id.clone(),
            project_id: project_id.to_string(),
            endpoint_id: None,
            channel: spec.channel,
            address: spec.destination.clone(),
            content,
            origination_number: String::new(),
        };
        let settings = self.get_channel_settings(project_id).await?;
        let outcome = self.send_through_provider(&settings, &message).await;
        Ok(SendResult::new(&message_id, outcome))
    }

    /// Checks a one-time password: valid once, before it expires and while attempts remain;
    /// a wrong code consumes an attempt.
    pub async fn verify_otp(
        &self,
        project_id: &str,
        destination: &str,
        reference_id: &str,
        otp: &str,
    ) -> Result<bool> {
        self.project(project_id).await?;
        let key = otp_key(project_id, destination, reference_id);
        let index = self.shard_index(project_id, &key);
        let group = shard_group(index as u32);
        let Some(record) = self
            .read_value::<OtpRecord>(group, keys::data_key(group, tag::OTP, &[project_id, &key]))
            .await?
        else {
            return Ok(false);
        };
        let answer = self
            .propose(
                index,
                ShardOp::VerifyOtp {
                    project_id: project_id.to_string(),
                    otp_key: key,
                    candidate_hash: hash_code(&record.salt, otp),
                    salt: record.salt,
                    now_ms: chrono::Utc::now().timestamp_millis(),
                },
            )
            .await?;
        match answer {
            ShardOpResult::Otp(verdict) => Ok(verdict == OtpVerdict::Valid),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }
}
