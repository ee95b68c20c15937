//! Delivery of rendered messages to providers: one file per provider.
//!
//! # Layout
//! - this file: what a provider is given ([`OutboundMessage`]) and answers
//!   ([`DeliveryOutcome`]), and the [`Provider`] trait every channel implements.
//! - [`smtp`]: email over SMTP with lettre (rustls), replies classified into statuses.
//! - [`outbox`]: JSON lines under the data dir, for channels a project has not configured.

pub mod outbox;
pub mod smtp;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::endpoint::ChannelType;
use crate::domain::template::RenderedMessage;
use outbox::OutboxProvider;

/// A message ready to hand to a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// Unique per message; providers receive it as the idempotency key.
    pub message_id: String,
    /// The project.
    pub project_id: String,
    /// The endpoint, when the message goes to a stored endpoint.
    pub endpoint_id: Option<String>,
    /// The channel.
    pub channel: ChannelType,
    /// Email address, phone number, device token or URL.
    pub address: String,
    /// The personalised content.
    pub content: RenderedMessage,
}

/// Delivery status of a send (SPEC CHN-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    /// The provider accepted the message.
    Successful,
    /// Over a rate limit; not sent.
    Throttled,
    /// The provider failed in a way worth retrying (retried with backoff).
    TemporaryFailure,
    /// The provider refused the message for good.
    PermanentFailure,
    /// The endpoint opted out or is inactive; not sent.
    OptOut,
    /// Already sent with this message id.
    Duplicate,
    /// Inside the endpoint's quiet time; not sent.
    QuietTime,
    /// Over a cap; not sent.
    Capped,
    /// Anything else.
    UnknownFailure,
}

impl DeliveryStatus {
    /// The name clients see, e.g. `SUCCESSFUL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Successful => "SUCCESSFUL",
            Self::Throttled => "THROTTLED",
            Self::TemporaryFailure => "TEMPORARY_FAILURE",
            Self::PermanentFailure => "PERMANENT_FAILURE",
            Self::OptOut => "OPT_OUT",
            Self::Duplicate => "DUPLICATE",
            Self::QuietTime => "QUIET_TIME",
            Self::Capped => "CAPPED",
            Self::UnknownFailure => "UNKNOWN_FAILURE",
        }
    }
}

/// What a provider answered for one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryOutcome {
    /// The status.
    pub status: DeliveryStatus,
    /// The provider's words, for operators.
    pub status_message: String,
    /// The provider's id for the message, when it gave one.
    pub provider_message_id: Option<String>,
    /// The provider said the address or token does not exist: the endpoint becomes INACTIVE.
    pub mark_inactive: bool,
}

impl DeliveryOutcome {
    /// An outcome with only a status and a message.
    pub fn new(status: DeliveryStatus, status_message: impl Into<String>) -> Self {
        Self {
            status,
            status_message: status_message.into(),
            provider_message_id: None,
            mark_inactive: false,
        }
    }
}

/// A channel's way out: SMTP, an HTTP API, the outbox file, an endpoint's inbox.
#[tonic::async_trait]
pub trait Provider: Send + Sync {
    /// Delivers one message; never panics on a provider's answer, only classifies it.
    async fn send(&self, message: &OutboundMessage) -> DeliveryOutcome;
}

/// A shared provider.
pub type SharedProvider = Arc<dyn Provider>;

/// The provider a message on `channel` goes to: the project's configured provider for the
/// channel, or the outbox when it has none. In-app messages never come here: they go to the
/// endpoint's inbox.
pub fn provider_for(
    channel: ChannelType,
    settings: &crate::domain::channel::ChannelSettings,
    outbox: &Arc<OutboxProvider>,
) -> SharedProvider {
    if channel == ChannelType::Email
        && let Some(email) = settings.enabled_email()
    {
        match smtp::SmtpProvider::new(email) {
            Ok(provider) => return Arc::new(provider),
            Err(error) => tracing::warn!(%error, "email channel unusable; using the outbox"),
        }
    }
    Arc::clone(outbox) as SharedProvider
}
