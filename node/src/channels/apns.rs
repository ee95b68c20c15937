//! Apple push (SPEC CHN-1) through the APNs HTTP/2 API: `POST {base_url}/3/device/{token}`,
//! authorised with a provider token (a JWT signed ES256 with the team's `.p8` key), which is
//! reused for most of the hour Apple accepts it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::http::{outcome_of, provider_client_builder};
use super::{DeliveryOutcome, DeliveryStatus, OutboundMessage, Provider};
use crate::domain::channel::ApnsChannel;
use crate::domain::template::RenderedMessage;

/// Apple's production API.
const PRODUCTION_URL: &str = "https://api.push.apple.com";
/// Apple's sandbox API, for development builds of apps.
const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
/// Apple refuses tokens older than an hour and renewals more often than every 20 minutes.
const PROVIDER_TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);

/// Why an APNs channel's settings cannot make a provider.
#[derive(Debug, thiserror::Error)]
pub enum ApnsSetupError {
    /// The signing key is not a PEM P-256 private key.
    #[error("apns private key is unusable: {0}")]
    PrivateKey(String),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
}

/// The claims of a provider token.
#[derive(Debug, Serialize)]
struct ProviderTokenClaims<'a> {
    iss: &'a str,
    iat: u64,
}

/// A provider token and when it is renewed.
#[derive(Debug, Clone)]
struct ProviderToken {
    value: String,
    renew_at: Instant,
}

/// Sends a project's notifications to Apple devices.
pub struct ApnsProvider {
    /// HTTP/2 connections to APNs.
    client: reqwest::Client,
    /// Production, sandbox, or a test server.
    base_url: String,
    /// The token's issuer.
    team_id: String,
    /// The token's `kid`.
    key_id: String,
    /// The `apns-topic`.
    bundle_id: String,
    /// The `.p8` key.
    signing_key: EncodingKey,
    /// The current provider token.
    token: std::sync::Mutex<Option<ProviderToken>>,
}

impl ApnsProvider {
    /// A provider for `channel` (validated settings); `sandbox` picks Apple's sandbox when
    /// the channel names no base URL.
    pub fn new(channel: &ApnsChannel, sandbox: bool) -> Result<Self, ApnsSetupError> {
        let signing_key = EncodingKey::from_ec_pem(channel.private_key.as_bytes())
            .map_err(|e| ApnsSetupError::PrivateKey(e.to_string()))?;
        let base_url = match channel.base_url.trim_end_matches('/') {
            "" if sandbox || channel.sandbox => SANDBOX_URL,
            "" => PRODUCTION_URL,
            url => url,
        };
        // APNs speaks HTTP/2 only: over TLS it is negotiated, in clear (test servers) assumed.
        let mut builder = provider_client_builder();
        if base_url.starts_with("http://") {
            builder = builder.http2_prior_knowledge();
        }
        Ok(Self {
            client: builder
                .build()
                .map_err(|e| ApnsSetupError::Client(e.to_string()))?,
            base_url: base_url.to_string(),
            team_id: channel.team_id.clone(),
            key_id: channel.key_id.clone(),
            bundle_id: channel.bundle_id.clone(),
            signing_key,
            token: std::sync::Mutex::new(None),
        })
    }

    /// The current provider token, signing a new one when it is due.
    fn provider_token(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let mut token = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(current) = token.as_ref().filter(|t| t.renew_at > Instant::now()) {
            return Ok(current.value.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = ProviderTokenClaims {
            iss: &self.team_id,
            iat,
        };
        let value = jsonwebtoken::encode(&header, &claims, &self.signing_key)?;
        *token = Some(ProviderToken {
            value: value.clone(),
            renew_at: Instant::now() + PROVIDER_TOKEN_LIFETIME,
        });
        Ok(value)
    }
}

/// The APNs payload, push type and priority for `content`: an alert, or for a silent
/// notification a background update; the template's data and Herald's message id beside `aps`.
fn apns_payload(
    message_id: &str,
    content: &RenderedMessage,
) -> Option<(serde_json::Value, &'static str, &'static str)> {
    let RenderedMessage::Push(push) = content else {
        return None;
    };
    let mut payload = serde_json::Map::new();
    for (key, value) in &push.raw_data {
        payload.insert(key.clone(), serde_json::Value::from(value.as_str()));
    }
    payload.insert("message_id".into(), serde_json::Value::from(message_id));
    // What a tap does (OPEN_APP, DEEP_LINK, URL) and its link, for the app to act on.
    for (key, value) in [("action", &push.action), ("url", &push.url)] {
        if !value.is_empty() {
            payload.insert(key.into(), serde_json::Value::from(value.as_str()));
        }
    }
    if push.silent {
        payload.insert("aps".into(), serde_json::json!({ "content-available": 1 }));
        // Background pushes must be sent at low priority.
        return Some((serde_json::Value::Object(payload), "background", "5"));
    }
    let mut aps = serde_json::json!({ "alert": { "title": push.title, "body": push.body } });
    if !push.image_url.is_empty() {
        // The app's notification service extension downloads the image.
        aps["mutable-content"] = serde_json::Value::from(1);
        payload.insert(
            "image_url".into(),
            serde_json::Value::from(push.image_url.as_str()),
        );
    }
    payload.insert("aps".into(), aps);
    Some((serde_json::Value::Object(payload), "alert", "10"))
}

#[tonic::async_trait]
impl Provider for ApnsProvider {
    async fn send(&self, message: &OutboundMessage) -> DeliveryOutcome {
        let Some((payload, push_type, priority)) =
            apns_payload(&message.message_id, &message.content)
        else {
            return DeliveryOutcome::new(
                DeliveryStatus::PermanentFailure,
                "the apns provider sends push messages only",
            );
        };
        let token = match self.provider_token() {
            Ok(token) => token,
            Err(error) => {
                return DeliveryOutcome::new(
                    DeliveryStatus::PermanentFailure,
                    format!("cannot sign the apns provider token: {error}"),
                );
            }
        };
        let mut request = self
            .client
            .post(format!("{}/3/device/{}", self.base_url, message.address))
            .bearer_auth(token)
            .header("apns-topic", &self.bundle_id)
            .header("apns-push-type", push_type)
            .header("apns-priority", priority)
            .json(&payload);
        // Apple takes only a UUID as apns-id; other ids still reach the app in the payload.
        if let Ok(id) = uuid::Uuid::parse_str(&message.message_id) {
            request = request.header("apns-id", id.hyphenated().to_string());
        }
        let sent = request.send().await;
        if let Ok(response) = &sent
            && response.status() == reqwest::StatusCode::FORBIDDEN
        {
            // ExpiredProviderToken or InvalidProviderToken: sign a new token, send again later.
            *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return DeliveryOutcome::new(
                DeliveryStatus::TemporaryFailure,
                "apns refused the provider token (403); a new one is signed for the next send",
            );
        }
        let mut outcome = outcome_of("apns", sent).await;
        if outcome.status == DeliveryStatus::Successful {
            // APNs answers an empty body; its id for the message is the apns-id.
            outcome.provider_message_id = uuid::Uuid::parse_str(&message.message_id)
                .ok()
                .map(|id| id.hyphenated().to_string());
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;
    use crate::channels::http::test_server::FakeProvider;
    use crate::domain::endpoint::ChannelType;
    use crate::domain::template::PushTemplate;

    /// A P-256 key generated for these tests only.
    const TEST_KEY: &str = include_str!("apns/test_only_key.p8");
    /// Its public half.
    const TEST_PUBLIC_KEY: &str = include_str!("apns/test_only_key.pub.pem");
    const MESSAGE_ID: &str = "7f0c8c1e-3b1a-4a51-9d0e-2f4b5c6d7e8f";

    fn provider(server: &FakeProvider) -> ApnsProvider {
        server.answer_with(200, "");
        ApnsProvider::new(
            &ApnsChannel {
                enabled: true,
                base_url: server.base_url.clone(),
                team_id: "TEAM123456".into(),
                key_id: "KEY1234567".into(),
                private_key: TEST_KEY.into(),
                bundle_id: "com.shop.app".into(),
                sandbox: false,
            },
            false,
        )
        .unwrap()
    }

    fn push(silent: bool) -> OutboundMessage {
        OutboundMessage {
            message_id: MESSAGE_ID.into(),
            project_id: "shop".into(),
            endpoint_id: None,
            channel: ChannelType::Apns,
            address: "a1b2c3".into(),
            content: RenderedMessage::Push(PushTemplate {
                title: "Sale".into(),
                body: "50% off".into(),
                action: "URL".into(),
                url: "https://shop.example/sale".into(),
                silent,
                raw_data: [("screen".to_string(), "sale".to_string())].into(),
                ..PushTemplate::default()
            }),
            origination_number: String::new(),
        }
    }

    /// An alert goes over HTTP/2 to the device's path with the topic, push type and message
    /// id headers, and a provider token signed with the team's key.
    #[tokio::test]
    async fn sends_an_alert_over_http2_with_a_signed_provider_token() {
        let server = FakeProvider::start().await;
        let apns = provider(&server);
        let outcome = apns.send(&push(false)).await;
        assert_eq!(outcome.status, DeliveryStatus::Successful, "{outcome:?}");
        assert_eq!(outcome.provider_message_id.as_deref(), Some(MESSAGE_ID));
        let request = &server.requests()[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.version, axum::http::Version::HTTP_2);
        assert_eq!(request.path, "/3/device/a1b2c3");
        assert_eq!(request.header("apns-topic"), "com.shop.app");
        assert_eq!(request.header("apns-push-type"), "alert");
        assert_eq!(request.header("apns-priority"), "10");
        assert_eq!(request.header("apns-id"), MESSAGE_ID);
        assert_eq!(
            request.json(),
            serde_json::json!({
                "aps": {"alert": {"title": "Sale", "body": "50% off"}},
                "screen": "sale",
                "message_id": MESSAGE_ID,
                "action": "URL",
                "url": "https://shop.example/sale",
            })
        );
        let bearer = request.header("authorization");
        let jwt = bearer
            .strip_prefix("bearer ")
            .or(bearer.strip_prefix("Bearer "))
            .unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_required_spec_claims(&["iss"]);
        validation.validate_exp = false;
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            jwt,
            &DecodingKey::from_ec_pem(TEST_PUBLIC_KEY.as_bytes()).unwrap(),
            &validation,
        )
        .expect("the token verifies with the team's public key");
        assert_eq!(decoded.header.kid.as_deref(), Some("KEY1234567"));
        assert_eq!(decoded.claims["iss"], "TEAM123456");
        apns.send(&push(true)).await;
        let silent = &server.requests()[1];
        assert_eq!(silent.header("apns-push-type"), "background");
        assert_eq!(silent.header("apns-priority"), "5");
        assert_eq!(
            silent.json()["aps"],
            serde_json::json!({"content-available": 1})
        );
    }

    /// A device token Apple no longer knows makes the endpoint inactive; throttling and
    /// outages are retried; other refusals are final; a refused provider token is retried.
    #[tokio::test]
    async fn apns_errors_are_classified() {
        let server = FakeProvider::start().await;
        let apns = provider(&server);
        for (status, body, expected, inactive) in [
            (
                410,
                r#"{"reason":"Unregistered"}"#,
                DeliveryStatus::PermanentFailure,
                true,
            ),
            (
                400,
                r#"{"reason":"BadDeviceToken"}"#,
                DeliveryStatus::PermanentFailure,
                true,
            ),
            (
                400,
                r#"{"reason":"PayloadTooLarge"}"#,
                DeliveryStatus::PermanentFailure,
                false,
            ),
            (
                429,
                r#"{"reason":"TooManyRequests"}"#,
                DeliveryStatus::TemporaryFailure,
                false,
            ),
            (503, "", DeliveryStatus::TemporaryFailure, false),
            (
                403,
                r#"{"reason":"ExpiredProviderToken"}"#,
                DeliveryStatus::TemporaryFailure,
                false,
            ),
        ] {
            server.answer_with(status, body);
            let outcome = apns.send(&push(false)).await;
            assert_eq!(outcome.status, expected, "{status} {body}");
            assert_eq!(outcome.mark_inactive, inactive, "{status} {body}");
        }
    }
}
