//! SMS and voice (SPEC CHN-1, CHN-4) through a provider's HTTP API: a text is
//! `POST {base_url}/messages`, a call `POST {base_url}/calls`, each from the origination
//! identity [`choose_origination`] picks, authenticated with the account's API key.

use serde::Serialize;

use super::http::{outcome_of, provider_client};
use super::{DeliveryOutcome, DeliveryStatus, OutboundMessage, Provider};
use crate::domain::channel::{OriginationUse, PhoneChannel, choose_origination};
use crate::domain::template::RenderedMessage;

/// The JSON a provider receives.
#[derive(Debug, Serialize)]
struct PhoneRequest<'a> {
    /// The chosen origination identity.
    from: &'a str,
    /// The recipient, E.164.
    to: &'a str,
    /// The text, or the script a call speaks.
    body: &'a str,
    /// Language of a call's script; absent for texts and when the template names none.
    #[serde(skip_serializing_if = "str::is_empty")]
    language_code: &'a str,
    /// The provider's voice for a call; absent for texts and when the template names none.
    #[serde(skip_serializing_if = "str::is_empty")]
    voice_id: &'a str,
}

/// The ISO country whose sending rules apply to `number`: `US` for the North American
/// numbering plan (`+1`), whose carriers' rules are the strictest of the plan; otherwise
/// unknown (empty), so only identities valid in any country are used.
pub fn rules_country_of(number: &str) -> &'static str {
    if number.starts_with("+1") { "US" } else { "" }
}

/// Sends a project's texts or calls through its provider.
pub struct PhoneProvider {
    /// Pooled connections.
    client: reqwest::Client,
    /// Base URL, API key and origination identities.
    channel: PhoneChannel,
    /// Texts or calls.
    usage: OriginationUse,
}

impl PhoneProvider {
    /// A provider for `channel` (validated settings) sending texts or calls.
    pub fn new(channel: &PhoneChannel, usage: OriginationUse) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: provider_client()?,
            channel: channel.clone(),
            usage,
        })
    }
}

#[tonic::async_trait]
impl Provider for PhoneProvider {
    async fn send(&self, message: &OutboundMessage) -> DeliveryOutcome {
        let (path, body, language_code, voice_id) = match (&message.content, self.usage) {
            (RenderedMessage::Sms(sms), OriginationUse::Sms) => ("messages", &sms.body, "", ""),
            (RenderedMessage::Voice(voice), OriginationUse::Voice) => (
                "calls",
                &voice.body,
                voice.language_code.as_str(),
                voice.voice_id.as_str(),
            ),
            _ => {
                return DeliveryOutcome::new(
                    DeliveryStatus::PermanentFailure,
                    format!(
                        "the {} provider cannot send a {:?} message",
                        path_name(self.usage),
                        message.content.template_type()
                    ),
                );
            }
        };
        let country = rules_country_of(&message.address);
        let Some(from) = choose_origination(
            &self.channel.origination_identities,
            Some(&message.origination_number),
            country,
            self.usage,
        ) else {
            return DeliveryOutcome::new(
                DeliveryStatus::PermanentFailure,
                format!(
                    "no origination identity can send {} to {:?}",
                    path_name(self.usage),
                    message.address
                ),
            );
        };
        let url = format!("{}/{path}", self.channel.base_url.trim_end_matches('/'));
        let request = self
            .client
            .post(url)
            .bearer_auth(&self.channel.api_key)
            .header("Idempotency-Key", &message.message_id)
            .json(&PhoneRequest {
                from: &from.value,
                to: &message.address,
                body,
                language_code,
                voice_id,
            });
        outcome_of(path_name(self.usage), request.send().await).await
    }
}

/// How logs and outcomes name what is sent.
fn path_name(usage: OriginationUse) -> &'static str {
    match usage {
        OriginationUse::Sms => "sms",
        OriginationUse::Voice => "voice",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::http::test_server::{FakeProvider, closed_url};
    use crate::domain::channel::{OriginationIdentity, OriginationKind};
    use crate::domain::endpoint::ChannelType;
    use crate::domain::template::{SmsTemplate, VoiceTemplate};

    fn channel(base_url: &str) -> PhoneChannel {
        PhoneChannel {
            enabled: true,
            base_url: base_url.to_string(),
            account: "acct".into(),
            api_key: "key-123".into(),
            origination_identities: vec![
                OriginationIdentity {
                    kind: OriginationKind::LongCode,
                    value: "+15550000001".into(),
                    country: "US".into(),
                },
                OriginationIdentity {
                    kind: OriginationKind::TollFree,
                    value: "+18005550100".into(),
                    country: "US".into(),
                },
            ],
            ..PhoneChannel::default()
        }
    }

    fn text(to: &str) -> OutboundMessage {
        OutboundMessage {
            message_id: "msg-7".into(),
            project_id: "shop".into(),
            endpoint_id: None,
            channel: ChannelType::Sms,
            address: to.to_string(),
            content: RenderedMessage::Sms(SmsTemplate {
                body: "Code 1234".into(),
            }),
            origination_number: String::new(),
        }
    }

    /// A US text goes out from the toll-free number (a US long code may not send SMS), with
    /// the API key as bearer token, and the provider's id is kept.
    #[tokio::test]
    async fn texts_post_from_the_chosen_identity_with_the_api_key() {
        let server = FakeProvider::start().await;
        let provider = PhoneProvider::new(&channel(&server.base_url), OriginationUse::Sms).unwrap();
        let outcome = provider.send(&text("+14155550123")).await;
        assert_eq!(outcome.status, DeliveryStatus::Successful, "{outcome:?}");
        assert_eq!(outcome.provider_message_id.as_deref(), Some("provider-1"));
        let request = &server.requests()[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/messages");
        assert_eq!(request.header("authorization"), "Bearer key-123");
        assert_eq!(request.header("idempotency-key"), "msg-7");
        assert_eq!(
            request.json(),
            serde_json::json!({"from": "+18005550100", "to": "+14155550123", "body": "Code 1234"})
        );
    }

    /// CHN-4: a sender may name the identity: a call from the toll-free number goes from it
    /// instead of the preferred long code; a named identity that cannot send (a US long code
    /// for SMS) or is not configured is refused, never silently replaced.
    #[tokio::test]
    async fn a_named_origination_identity_is_used_or_refused() {
        let server = FakeProvider::start().await;
        let voice = PhoneProvider::new(&channel(&server.base_url), OriginationUse::Voice).unwrap();
        let call = OutboundMessage {
            channel: ChannelType::Voice,
            content: RenderedMessage::Voice(VoiceTemplate {
                body: "Hello".into(),
                ..VoiceTemplate::default()
            }),
            origination_number: "+18005550100".into(),
            ..text("+14155550123")
        };
        let outcome = voice.send(&call).await;
        assert_eq!(outcome.status, DeliveryStatus::Successful, "{outcome:?}");
        assert_eq!(server.requests()[0].json()["from"], "+18005550100");

        let sms = PhoneProvider::new(&channel(&server.base_url), OriginationUse::Sms).unwrap();
        for named in ["+15550000001", "+19990000000"] {
            let outcome = sms
                .send(&OutboundMessage {
                    origination_number: named.into(),
                    ..text("+14155550123")
                })
                .await;
            assert_eq!(outcome.status, DeliveryStatus::PermanentFailure, "{named}");
        }
        assert_eq!(
            server.requests().len(),
            1,
            "nothing else reached the provider"
        );
    }

    /// A call goes to `/calls` from the long code, with the script's language and voice.
    #[tokio::test]
    async fn calls_post_to_calls_from_a_long_code() {
        let server = FakeProvider::start().await;
        let provider =
            PhoneProvider::new(&channel(&server.base_url), OriginationUse::Voice).unwrap();
        let call = OutboundMessage {
            channel: ChannelType::Voice,
            content: RenderedMessage::Voice(VoiceTemplate {
                body: "Your code is 1 2 3 4".into(),
                language_code: "en-US".into(),
                voice_id: "Joanna".into(),
            }),
            ..text("+14155550123")
        };
        let outcome = provider.send(&call).await;
        assert_eq!(outcome.status, DeliveryStatus::Successful, "{outcome:?}");
        let request = &server.requests()[0];
        assert_eq!(request.path, "/calls");
        assert_eq!(
            request.json(),
            serde_json::json!({
                "from": "+15550000001", "to": "+14155550123", "body": "Your code is 1 2 3 4",
                "language_code": "en-US", "voice_id": "Joanna",
            })
        );
    }

    /// An invalid number makes the endpoint inactive; throttling and outages are retried;
    /// other refusals are final; an unreachable provider is retried.
    #[tokio::test]
    async fn provider_errors_are_classified() {
        let server = FakeProvider::start().await;
        let provider = PhoneProvider::new(&channel(&server.base_url), OriginationUse::Sms).unwrap();
        for (status, body, expected, inactive) in [
            (
                400,
                r#"{"message":"Invalid phone number"}"#,
                DeliveryStatus::PermanentFailure,
                true,
            ),
            (404, "", DeliveryStatus::PermanentFailure, true),
            (429, "", DeliveryStatus::TemporaryFailure, false),
            (500, "", DeliveryStatus::TemporaryFailure, false),
            (401, "bad key", DeliveryStatus::PermanentFailure, false),
        ] {
            server.answer_with(status, body);
            let outcome = provider.send(&text("+14155550123")).await;
            assert_eq!(outcome.status, expected, "{status}");
            assert_eq!(outcome.mark_inactive, inactive, "{status}");
        }
        let unreachable = PhoneProvider::new(&channel(&closed_url().await), OriginationUse::Sms)
            .unwrap()
            .send(&text("+14155550123"))
            .await;
        assert_eq!(unreachable.status, DeliveryStatus::TemporaryFailure);
    }

    /// With no identity able to reach the number, nothing is sent and the failure is final.
    #[tokio::test]
    async fn no_usable_identity_sends_nothing() {
        let server = FakeProvider::start().await;
        let mut only_long_code = channel(&server.base_url);
        only_long_code.origination_identities.truncate(1);
        let provider = PhoneProvider::new(&only_long_code, OriginationUse::Sms).unwrap();
        let outcome = provider.send(&text("+14155550123")).await;
        assert_eq!(outcome.status, DeliveryStatus::PermanentFailure);
        assert!(server.requests().is_empty());
        assert_eq!(rules_country_of("+447700900123"), "");
    }
}
