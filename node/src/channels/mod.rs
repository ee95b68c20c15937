//! Delivery of rendered messages to providers: one file per provider.
//!
//! # Layout
//! - this file: what a provider is given ([`OutboundMessage`]) and answers
//!   ([`DeliveryOutcome`]), and the [`Provider`] trait every channel implements.
//! - [`smtp`]: email over SMTP with lettre (rustls), replies classified into statuses.
//! - [`apns`]: Apple push over HTTP/2 with ES256 provider tokens.
//! - [`fcm`]: Android and web push through FCM HTTP v1, with service-account tokens.
//! - [`http`]: the client and answer classification HTTP providers share.
//! - [`sms`]: SMS and voice through a provider's HTTP API, from the chosen origination identity.
//! - [`webhook`]: the custom channel, a signed JSON POST to the customer's URL.
//! - [`pipeline`]: rate limits, bounded concurrency and retries around every provider send.
//! - [`outbox`]: JSON lines under the data dir, for channels a project has not configured,
//!   or nothing at all when the node runs with `channels.null_sink`.

pub mod apns;
pub mod fcm;
pub mod http;
pub mod outbox;
pub mod pipeline;
pub mod sms;
pub mod smtp;
pub mod webhook;

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
    /// The origination identity the sender named (SMS and voice, SPEC CHN-4); empty: chosen
    /// by the selection order.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origination_number: String,
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

/// The provider a message on `channel` goes to: the project's configured and enabled provider
/// for the channel, or the outbox (a null sink with `channels.null_sink`) when it has none (or
/// its settings are unusable). In-app messages never come here: they go to the endpoint's
/// inbox.
pub fn provider_for(
    channel: ChannelType,
    settings: &crate::domain::channel::ChannelSettings,
    outbox: &Arc<OutboxProvider>,
) -> SharedProvider {
    match configured_provider(channel, settings) {
        Some(Ok(provider)) => provider,
        Some(Err(error)) => {
            tracing::warn!(channel = channel.as_str(), %error, "channel unusable; using the outbox");
            Arc::clone(outbox) as SharedProvider
        }
        None => Arc::clone(outbox) as SharedProvider,
    }
}

/// The provider of `channel` when the project configured and enabled it.
fn configured_provider(
    channel: ChannelType,
    settings: &crate::domain::channel::ChannelSettings,
) -> Option<Result<SharedProvider, String>> {
    use crate::domain::channel::OriginationUse;
    fn shared<P: Provider + 'static>(provider: P) -> SharedProvider {
        Arc::new(provider)
    }
    Some(match channel {
        ChannelType::Email => smtp::SmtpProvider::new(settings.enabled_email()?)
            .map(shared)
            .map_err(|e| e.to_string()),
        ChannelType::Sms => {
            let sms = settings.sms.as_ref().filter(|c| c.enabled)?;
            sms::PhoneProvider::new(sms, OriginationUse::Sms)
                .map(shared)
                .map_err(|e| e.to_string())
        }
        ChannelType::Voice => {
            let voice = settings.voice.as_ref().filter(|c| c.enabled)?;
            sms::PhoneProvider::new(voice, OriginationUse::Voice)
                .map(shared)
                .map_err(|e| e.to_string())
        }
        ChannelType::Custom => {
            let custom = settings.custom.as_ref().filter(|c| c.enabled)?;
            webhook::WebhookProvider::new(custom)
                .map(shared)
                .map_err(|e| e.to_string())
        }
        ChannelType::Apns | ChannelType::ApnsSandbox => {
            let apns = settings.apns.as_ref().filter(|c| c.enabled)?;
            apns::ApnsProvider::new(apns, channel == ChannelType::ApnsSandbox)
                .map(shared)
                .map_err(|e| e.to_string())
        }
        ChannelType::Gcm => {
            let fcm = settings.fcm.as_ref().filter(|c| c.enabled)?;
            fcm::FcmProvider::new(fcm)
                .map(shared)
                .map_err(|e| e.to_string())
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::channel::{ChannelSettings, CustomChannel, PhoneChannel};

    /// Only a configured and enabled channel gets its provider; anything else, including a
    /// channel whose settings cannot make a provider, goes to the outbox.
    #[test]
    fn configured_enabled_channels_get_their_provider_and_others_the_outbox() {
        let data_dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(OutboxProvider::new(data_dir.path()));
        let is_outbox = |provider: &SharedProvider| {
            std::ptr::addr_eq(Arc::as_ptr(provider), Arc::as_ptr(&outbox))
        };
        let mut settings = ChannelSettings::default();
        assert!(is_outbox(&provider_for(
            ChannelType::Custom,
            &settings,
            &outbox
        )));
        settings.custom = Some(CustomChannel {
            enabled: false,
            url: "http://127.0.0.1:9/hook".into(),
            hmac_secret: "s".into(),
        });
        assert!(is_outbox(&provider_for(
            ChannelType::Custom,
            &settings,
            &outbox
        )));
        settings.custom.as_mut().unwrap().enabled = true;
        assert!(!is_outbox(&provider_for(
            ChannelType::Custom,
            &settings,
            &outbox
        )));
        settings.sms = Some(PhoneChannel {
            enabled: true,
            base_url: "http://127.0.0.1:9".into(),
            ..PhoneChannel::default()
        });
        assert!(!is_outbox(&provider_for(
            ChannelType::Sms,
            &settings,
            &outbox
        )));
        assert!(is_outbox(&provider_for(
            ChannelType::Voice,
            &settings,
            &outbox
        )));
        settings.fcm = Some(crate::domain::channel::FcmChannel {
            enabled: true,
            service_account_json: "{}".into(),
            ..Default::default()
        });
        assert!(is_outbox(&provider_for(
            ChannelType::Gcm,
            &settings,
            &outbox
        )));
    }
}
