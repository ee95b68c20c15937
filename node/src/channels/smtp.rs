//! Email over SMTP (SPEC CHN-1) with lettre: STARTTLS or implicit TLS through rustls, login
//! when configured, pooled connections; the SMTP reply decides the delivery status.

use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{AsyncTransport, Message, Tokio1Executor};

use super::{DeliveryOutcome, DeliveryStatus, OutboundMessage, Provider};
use crate::domain::channel::{EmailChannel, SmtpTls};
use crate::domain::template::RenderedMessage;

/// How long one SMTP command may take before the send counts as a temporary failure.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Header carrying Herald's message id, so receivers and relays can drop duplicates.
pub const MESSAGE_ID_HEADER: &str = "X-Herald-Message-Id";

/// Why an email channel's settings cannot make a provider.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    /// The sender address or name does not parse as a mailbox.
    #[error("from address {address:?} is not a mailbox: {reason}")]
    From {
        /// The configured address.
        address: String,
        /// What the parser said.
        reason: String,
    },
    /// The TLS settings (server name, trusted root) are unusable.
    #[error("tls settings for {host:?} are unusable: {reason}")]
    Tls {
        /// The configured host.
        host: String,
        /// What rustls said.
        reason: String,
    },
}

/// Sends a project's email through its SMTP server.
pub struct SmtpProvider {
    /// Pooled connections to the server.
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// The `From` of every message.
    from: Mailbox,
}

impl SmtpProvider {
    /// A provider for `channel` (validated settings); connects lazily, on the first send.
    pub fn new(channel: &EmailChannel) -> Result<Self, SmtpSetupError> {
        let from_name = (!channel.from_name.is_empty()).then(|| channel.from_name.clone());
        let from = Mailbox::new(
            from_name,
            channel
                .from_address
                .parse()
                .map_err(|e: lettre::address::AddressError| SmtpSetupError::From {
                    address: channel.from_address.clone(),
                    reason: e.to_string(),
                })?,
        );
        let tls_error = |reason: String| SmtpSetupError::Tls {
            host: channel.host.clone(),
            reason,
        };
        let tls = match channel.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let mut parameters = TlsParameters::builder(channel.host.clone());
                if let Some(pem) = &channel.test_only_trusted_root_pem {
                    let root = Certificate::from_pem(pem.as_bytes())
                        .map_err(|e| tls_error(e.to_string()))?;
                    parameters = parameters.add_root_certificate(root);
                }
                let parameters = parameters
                    .build_rustls()
                    .map_err(|e| tls_error(e.to_string()))?;
                if mode == SmtpTls::Implicit {
                    Tls::Wrapper(parameters)
                } else {
                    // Required, not opportunistic: a server that stops offering STARTTLS
                    // must not receive the password and the mail in clear.
                    Tls::Required(parameters)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&channel.host)
            .port(channel.port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT))
            .pool_config(PoolConfig::new().max_size(4));
        if !channel.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                channel.username.clone(),
                channel.password.clone(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// The MIME message for `message`: a text part and its HTML alternative (or only the one
    /// given), with the message id as `Message-ID` and [`MESSAGE_ID_HEADER`].
    pub fn build_message(&self, message: &OutboundMessage) -> Result<Message, DeliveryOutcome> {
        let RenderedMessage::Email(email) = &message.content else {
            return Err(DeliveryOutcome::new(
                DeliveryStatus::PermanentFailure,
                "the smtp provider sends email messages only",
            ));
        };
        let to: Mailbox = message.address.parse().map_err(|e| {
            DeliveryOutcome::new(
                DeliveryStatus::PermanentFailure,
                format!("{:?} is not an email address: {e}", message.address),
            )
        })?;
        // Ids are validated to exclude control characters; keep only what a header allows.
        let id: String = message
            .message_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let domain = self.from.email.domain().to_string();
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(format!("<{id}@{domain}>")))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(MESSAGE_ID_HEADER),
                id,
            ));
        let built = match (email.text_part.is_empty(), email.html_part.is_empty()) {
            (false, false) => builder.multipart(MultiPart::alternative_plain_html(
                email.text_part.clone(),
                email.html_part.clone(),
            )),
            (true, false) => builder
                .header(lettre::message::header::ContentType::TEXT_HTML)
                .body(email.html_part.clone()),
            _ => builder
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(email.text_part.clone()),
        };
        built.map_err(|e| {
            DeliveryOutcome::new(
                DeliveryStatus::PermanentFailure,
                format!("cannot build the message: {e}"),
            )
        })
    }
}

/// What an SMTP reply code means for the message (RFC 5321 §4.2): 4xx is worth retrying;
/// 5xx is final; 550, 551 and 553 about the recipient say the address does not exist, so the
/// endpoint becomes inactive, unless the text says the refusal is about policy or the sender.
pub fn classify_reply(code: u16, text: &str) -> DeliveryOutcome {
    let message = format!("{code} {text}").trim().to_string();
    match code {
        200..=399 => DeliveryOutcome::new(DeliveryStatus::Successful, message),
        400..=499 => DeliveryOutcome::new(DeliveryStatus::TemporaryFailure, message),
        500..=599 => {
            let lower = text.to_ascii_lowercase();
            let about_policy = ["block", "spam", "policy", "relay", "sender", "reputation"]
                .iter()
                .any(|word| lower.contains(word));
            DeliveryOutcome {
                mark_inactive: matches!(code, 550 | 551 | 553) && !about_policy,
                ..DeliveryOutcome::new(DeliveryStatus::PermanentFailure, message)
            }
        }
        _ => DeliveryOutcome::new(DeliveryStatus::UnknownFailure, message),
    }
}

/// Classifies a failed send: a reply by its code; a connection, TLS or timeout failure as
/// temporary (the server or its settings may come back).
fn classify_error(error: &lettre::transport::smtp::Error) -> DeliveryOutcome {
    match error.status() {
        Some(code) => {
            let text = error.to_string();
            classify_reply(u16::from(code), &text)
        }
        None => DeliveryOutcome::new(
            DeliveryStatus::TemporaryFailure,
            format!("smtp server unreachable or failing: {error}"),
        ),
    }
}

#[tonic::async_trait]
impl Provider for SmtpProvider {
    async fn send(&self, message: &OutboundMessage) -> DeliveryOutcome {
        let email = match self.build_message(message) {
            Ok(email) => email,
            Err(outcome) => return outcome,
        };
        match self.transport.send(email).await {
            Ok(response) => {
                let text = response.message().collect::<Vec<_>>().join(" ");
                let mut outcome = classify_reply(u16::from(response.code()), &text);
                // Servers answer "250 2.0.0 Ok: queued as ABC123": the id is the last word.
                outcome.provider_message_id = response
                    .message()
                    .last()
                    .and_then(|line| line.split_whitespace().last())
                    .map(ToString::to_string);
                outcome
            }
            Err(error) => {
                tracing::debug!(message_id = %message.message_id, %error, "smtp send failed");
                classify_error(&error)
            }
        }
    }
}

#[cfg(test)]
mod tests;
