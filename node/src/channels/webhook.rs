//! The custom channel (SPEC CHN-1): each message is POSTed as JSON to the customer's URL,
//! signed with HMAC-SHA256 so the receiver can tell it came from Herald, with the message id
//! as the idempotency key so the receiver can drop retried duplicates.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::http::{outcome_of, provider_client};
use super::{DeliveryOutcome, DeliveryStatus, OutboundMessage, Provider};
use crate::domain::channel::CustomChannel;
use crate::domain::template::RenderedMessage;

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Herald-Signature";
/// Header carrying the message id, the same on every retry of one message.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The JSON posted to the webhook.
#[derive(Debug, Serialize)]
struct WebhookBody<'a> {
    /// Unique per message.
    message_id: &'a str,
    /// The project.
    project_id: &'a str,
    /// The endpoint, when the message goes to a stored endpoint.
    endpoint_id: Option<&'a str>,
    /// The endpoint's address.
    address: &'a str,
    /// The personalised content.
    content: &'a RenderedMessage,
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` with `secret`, the value of [`SIGNATURE_HEADER`].
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac accepts any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

/// Posts a project's messages to its webhook.
pub struct WebhookProvider {
    /// Pooled connections.
    client: reqwest::Client,
    /// Where messages go.
    url: String,
    /// The signing key.
    hmac_secret: String,
}

impl WebhookProvider {
    /// A provider for `channel` (validated settings).
    pub fn new(channel: &CustomChannel) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: provider_client()?,
            url: channel.url.clone(),
            hmac_secret: channel.hmac_secret.clone(),
        })
    }
}

#[tonic::async_trait]
impl Provider for WebhookProvider {
    async fn send(&self, message: &OutboundMessage) -> DeliveryOutcome {
        let body = WebhookBody {
            message_id: &message.message_id,
            project_id: &message.project_id,
            endpoint_id: message.endpoint_id.as_deref(),
            address: &message.address,
            content: &message.content,
        };
        // Signed and sent as the same bytes: a re-serialisation could differ from what was signed.
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(error) => {
                return DeliveryOutcome::new(
                    DeliveryStatus::PermanentFailure,
                    format!("cannot encode the webhook body: {error}"),
                );
            }
        };
        let request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                signature(self.hmac_secret.as_bytes(), &body),
            )
            .header(IDEMPOTENCY_HEADER, &message.message_id)
            .body(body);
        outcome_of("webhook", request.send().await).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::http::test_server::{FakeProvider, closed_url};
    use crate::domain::endpoint::ChannelType;
    use crate::domain::template::SmsTemplate;

    fn message() -> OutboundMessage {
        OutboundMessage {
            message_id: "msg-1".into(),
            project_id: "shop".into(),
            endpoint_id: Some("ep-1".into()),
            channel: ChannelType::Custom,
            address: "user-42".into(),
            content: RenderedMessage::Sms(SmsTemplate {
                body: "Your order shipped".into(),
            }),
            origination_number: String::new(),
        }
    }

    fn provider(url: &str) -> WebhookProvider {
        WebhookProvider::new(&CustomChannel {
            enabled: true,
            url: url.to_string(),
            hmac_secret: "s3cret".into(),
        })
        .unwrap()
    }

    /// The receiver gets one POST with the message as JSON, a signature it can verify by
    /// recomputing the HMAC of the exact body, and the message id as idempotency key.
    #[tokio::test]
    async fn posts_the_message_signed_with_the_idempotency_key() {
        let server = FakeProvider::start().await;
        let url = format!("{}/hooks/herald", server.base_url);
        let outcome = provider(&url).send(&message()).await;
        assert_eq!(outcome.status, DeliveryStatus::Successful, "{outcome:?}");
        assert_eq!(outcome.provider_message_id.as_deref(), Some("provider-1"));
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hooks/herald");
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("idempotency-key"), "msg-1");
        assert_eq!(
            request.header("x-herald-signature"),
            signature(b"s3cret", &request.body)
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(&request.body);
        let expected = mac.finalize().into_bytes();
        let hex = request.header("x-herald-signature");
        let hex = hex.strip_prefix("sha256=").unwrap();
        assert_eq!(hex.len(), 64);
        let given: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert_eq!(given, expected.to_vec());
        assert_eq!(
            request.json(),
            serde_json::json!({
                "message_id": "msg-1",
                "project_id": "shop",
                "endpoint_id": "ep-1",
                "address": "user-42",
                "content": {"Sms": {"body": "Your order shipped"}},
            })
        );
    }

    /// Busy or failing receivers are retried later; refusals are final; a vanished address
    /// makes the endpoint inactive; an unreachable receiver is retried.
    #[tokio::test]
    async fn receiver_errors_are_classified() {
        let server = FakeProvider::start().await;
        let webhook = provider(&server.base_url);
        for (status, body, expected, inactive) in [
            (429, "slow down", DeliveryStatus::TemporaryFailure, false),
            (503, "", DeliveryStatus::TemporaryFailure, false),
            (400, "bad request", DeliveryStatus::PermanentFailure, false),
            (410, "gone", DeliveryStatus::PermanentFailure, true),
        ] {
            server.answer_with(status, body);
            let outcome = webhook.send(&message()).await;
            assert_eq!(outcome.status, expected, "{status}");
            assert_eq!(outcome.mark_inactive, inactive, "{status}");
        }
        let unreachable = provider(&closed_url().await).send(&message()).await;
        assert_eq!(unreachable.status, DeliveryStatus::TemporaryFailure);
    }
}
