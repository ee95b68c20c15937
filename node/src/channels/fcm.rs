//! Android and web push (SPEC CHN-1) through the FCM HTTP v1 API:
//! `POST {base_url}/v1/projects/{project_id}/messages:send`, authorised with an OAuth access
//! token obtained by signing a service-account JWT (RS256) and exchanging it at the service
//! account's `token_uri`; the token is kept until shortly before it expires.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::http::{classify_answer, outcome_of, provider_client};
use super::{DeliveryOutcome, DeliveryStatus, OutboundMessage, Provider};
use crate::domain::channel::FcmChannel;
use crate::domain::template::RenderedMessage;

/// Google's FCM API, used when the channel names no base URL.
const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";
/// Google's token endpoint, used when the service account names none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The OAuth scope sending needs.
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// How long a signed assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// A token is renewed this long before it expires, so no request carries an expired one.
const TOKEN_RENEWAL_MARGIN: Duration = Duration::from_secs(60);

/// Why an FCM channel's settings cannot make a provider.
#[derive(Debug, thiserror::Error)]
pub enum FcmSetupError {
    /// The service account JSON lacks a field or is not JSON.
    #[error("service account json is unusable: {0}")]
    ServiceAccount(String),
    /// The service account's private key is not an RSA PEM key.
    #[error("service account private key is unusable: {0}")]
    PrivateKey(String),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
}

/// The fields of a service account key file that signing needs.
#[derive(Debug, Deserialize)]
struct ServiceAccount {
    /// The account's email, the assertion's issuer.
    client_email: String,
    /// The RSA key, PEM.
    private_key: String,
    /// The key's id, named in the JWT header.
    #[serde(default)]
    private_key_id: String,
    /// Where assertions are exchanged for access tokens.
    #[serde(default)]
    token_uri: String,
}

/// The claims of a service-account assertion (RFC 7523).
#[derive(Debug, Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "default_expires_in")]
    expires_in: u64,
}

fn default_expires_in() -> u64 {
    ASSERTION_LIFETIME.as_secs()
}

/// An access token and when it stops being used.
#[derive(Debug, Clone)]
struct AccessToken {
    value: String,
    renew_at: Instant,
}

/// Sends a project's push notifications through FCM.
pub struct FcmProvider {
    /// Pooled connections to FCM and the token endpoint.
    client: reqwest::Client,
    /// `{base_url}/v1/projects/{project_id}/messages:send`.
    send_url: String,
    /// The assertion's issuer.
    client_email: String,
    /// The service account's key id.
    key_id: String,
    /// Where assertions are exchanged.
    token_uri: String,
    /// The signing key.
    signing_key: EncodingKey,
    /// The current access token; one exchange at a time.
    token: tokio::sync::Mutex<Option<AccessToken>>,
}

impl FcmProvider {
    /// A provider for `channel` (validated settings); fetches a token on the first send.
    pub fn new(channel: &FcmChannel) -> Result<Self, FcmSetupError> {
        let account: ServiceAccount = serde_json::from_str(&channel.service_account_json)
            .map_err(|e| FcmSetupError::ServiceAccount(e.to_string()))?;
        let signing_key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| FcmSetupError::PrivateKey(e.to_string()))?;
        let base_url = match channel.base_url.trim_end_matches('/') {
            "" => DEFAULT_BASE_URL,
            url => url,
        };
        let token_uri = if account.token_uri.is_empty() {
            DEFAULT_TOKEN_URI.to_string()
        } else {
            account.token_uri
        };
        Ok(Self {
            client: provider_client().map_err(|e| FcmSetupError::Client(e.to_string()))?,
            send_url: format!(
                "{base_url}/v1/projects/{}/messages:send",
                channel.project_id
            ),
            client_email: account.client_email,
            key_id: account.private_key_id,
            token_uri,
            signing_key,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// A signed assertion for the token endpoint, issued at `now` (seconds since the epoch).
    fn assertion(&self, now: u64) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = (!self.key_id.is_empty()).then(|| self.key_id.clone());
        let claims = AssertionClaims {
            iss: &self.client_email,
            scope: FCM_SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + ASSERTION_LIFETIME.as_secs(),
        };
        jsonwebtoken::encode(&header, &claims, &self.signing_key)
    }

    /// The current access token, exchanging a new assertion when there is none or it is
    /// about to expire; a failure is the outcome of the send.
    async fn access_token(&self) -> Result<String, DeliveryOutcome> {
        let mut token = self.token.lock().await;
        if let Some(current) = token.as_ref().filter(|t| t.renew_at > Instant::now()) {
            return Ok(current.value.clone());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let assertion = self.assertion(now).map_err(|e| {
            DeliveryOutcome::new(
                DeliveryStatus::PermanentFailure,
                format!("cannot sign the fcm assertion: {e}"),
            )
        })?;
        // The assertion is base64url with dots: nothing in it needs form encoding.
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let sent = self
            .client
            .post(&self.token_uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await;
        let refused = |outcome: DeliveryOutcome| DeliveryOutcome {
            // A refused token says nothing about the device token.
            mark_inactive: false,
            status_message: format!("fcm token exchange: {}", outcome.status_message),
            ..outcome
        };
        let response = match sent {
            Ok(response) => response,
            Err(error) => return Err(refused(outcome_of("token endpoint", Err(error)).await)),
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(refused(classify_answer(status, &body)));
        }
        let answer: TokenAnswer = serde_json::from_str(&body).map_err(|e| {
            DeliveryOutcome::new(
                DeliveryStatus::TemporaryFailure,
                format!("fcm token exchange answered no token: {e}"),
            )
        })?;
        let lifetime = Duration::from_secs(answer.expires_in).saturating_sub(TOKEN_RENEWAL_MARGIN);
        *token = Some(AccessToken {
            value: answer.access_token.clone(),
            renew_at: Instant::now() + lifetime,
        });
        Ok(answer.access_token)
    }
}

/// The FCM v1 request for `token` and `message`: a notification unless silent, and the
/// template's data with Herald's message id.
fn fcm_body(token: &str, message_id: &str, content: &RenderedMessage) -> Option<serde_json::Value> {
    let RenderedMessage::Push(push) = content else {
        return None;
    };
    let mut data: BTreeMap<&str, &str> = push
        .raw_data
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    data.insert("message_id", message_id);
    // What a tap does (OPEN_APP, DEEP_LINK, URL) and its link, for the app to act on.
    if !push.action.is_empty() {
        data.insert("action", &push.action);
    }
    if !push.url.is_empty() {
        data.insert("url", &push.url);
    }
    let mut fcm_message = serde_json::json!({ "token": token, "data": data });
    if !push.silent {
        let mut notification = serde_json::json!({ "title": push.title, "body": push.body });
        if !push.image_url.is_empty() {
            notification["image"] = serde_json::Value::from(push.image_url.as_str());
        }
        fcm_message["notification"] = notification;
    }
    Some(serde_json::json!({ "message": fcm_message }))
}

#[tonic::async_trait]
impl Provider for FcmProvider {
    async fn send(&self, message: &OutboundMessage) -> DeliveryOutcome {
        let Some(body) = fcm_body(&message.address, &message.message_id, &message.content) else {
            return DeliveryOutcome::new(
                DeliveryStatus::PermanentFailure,
                "the fcm provider sends push messages only",
            );
        };
        let token = match self.access_token().await {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        let sent = self
            .client
            .post(&self.send_url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        if let Ok(response) = &sent
            && response.status() == reqwest::StatusCode::UNAUTHORIZED
        {
            // The token was revoked or expired early: fetch a new one, and send again later.
            *self.token.lock().await = None;
            return DeliveryOutcome::new(
                DeliveryStatus::TemporaryFailure,
                "fcm refused the access token (401); a new one is fetched for the next send",
            );
        }
        outcome_of("fcm", sent).await
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;
    use crate::channels::http::test_server::FakeProvider;
    use crate::domain::endpoint::ChannelType;
    use crate::domain::template::PushTemplate;

    /// A 2048-bit RSA key generated for these tests only.
    const TEST_KEY: &str = include_str!("fcm/test_only_key.pem");
    /// Its public half.
    const TEST_PUBLIC_KEY: &str = include_str!("fcm/test_only_key.pub.pem");
    const SEND_PATH: &str = "/v1/projects/shop-app/messages:send";

    fn provider(server: &FakeProvider) -> FcmProvider {
        let account = serde_json::json!({
            "type": "service_account",
            "client_email": "herald@shop-app.iam.gserviceaccount.com",
            "private_key": TEST_KEY,
            "private_key_id": "key-1",
            "token_uri": format!("{}/token", server.base_url),
        });
        server.answer_at(
            "/token",
            200,
            r#"{"access_token":"ya29.test","expires_in":3600,"token_type":"Bearer"}"#,
        );
        server.answer_at(
            SEND_PATH,
            200,
            r#"{"name":"projects/shop-app/messages/0:1"}"#,
        );
        FcmProvider::new(&FcmChannel {
            enabled: true,
            base_url: server.base_url.clone(),
            project_id: "shop-app".into(),
            service_account_json: account.to_string(),
        })
        .unwrap()
    }

    fn push(silent: bool) -> OutboundMessage {
        OutboundMessage {
            message_id: "msg-9".into(),
            project_id: "shop".into(),
            endpoint_id: Some("ep-9".into()),
            channel: ChannelType::Gcm,
            address: "device-token-1".into(),
            content: RenderedMessage::Push(PushTemplate {
                title: "Sale".into(),
                body: "50% off".into(),
                image_url: "https://shop.example/sale.png".into(),
                action: "DEEP_LINK".into(),
                url: "shop://sale".into(),
                silent,
                raw_data: [("screen".to_string(), "sale".to_string())].into(),
            }),
            origination_number: String::new(),
        }
    }

    /// The provider exchanges a service-account assertion, signed with the account's key
    /// and addressed to the token endpoint, for a token, then sends the notification with
    /// it; a second send reuses the token.
    #[tokio::test]
    async fn signs_an_assertion_then_sends_with_the_access_token() {
        let server = FakeProvider::start().await;
        let fcm = provider(&server);
        let outcome = fcm.send(&push(false)).await;
        assert_eq!(outcome.status, DeliveryStatus::Successful, "{outcome:?}");
        assert_eq!(
            outcome.provider_message_id.as_deref(),
            Some("projects/shop-app/messages/0:1")
        );
        let requests = server.requests();
        let (exchange, send) = (&requests[0], &requests[1]);
        assert_eq!(
            (exchange.method.as_str(), exchange.path.as_str()),
            ("POST", "/token")
        );
        let form = String::from_utf8(exchange.body.to_vec()).unwrap();
        let assertion = form
            .strip_prefix(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
            )
            .unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[format!("{}/token", server.base_url)]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            assertion,
            &DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).unwrap(),
            &validation,
        )
        .expect("the assertion verifies with the account's public key")
        .claims;
        assert_eq!(claims["iss"], "herald@shop-app.iam.gserviceaccount.com");
        assert_eq!(claims["scope"], FCM_SCOPE);
        assert_eq!(
            (send.method.as_str(), send.path.as_str()),
            ("POST", SEND_PATH)
        );
        assert_eq!(send.header("authorization"), "Bearer ya29.test");
        assert_eq!(
            send.json(),
            serde_json::json!({"message": {
                "token": "device-token-1",
                "notification": {"title": "Sale", "body": "50% off", "image": "https://shop.example/sale.png"},
                "data": {"screen": "sale", "message_id": "msg-9", "action": "DEEP_LINK", "url": "shop://sale"},
            }})
        );
        fcm.send(&push(true)).await;
        let requests = server.requests();
        assert_eq!(requests.len(), 3, "the token is reused");
        assert!(requests[2].json()["message"].get("notification").is_none());
    }

    /// An unregistered or invalid device token makes the endpoint inactive; throttling and
    /// outages are retried; other refusals are final; a rejected access token is retried
    /// with a new one.
    #[tokio::test]
    async fn fcm_errors_are_classified() {
        let server = FakeProvider::start().await;
        let fcm = provider(&server);
        let unregistered = r#"{"error":{"code":404,"status":"NOT_FOUND","details":[{"errorCode":"UNREGISTERED"}]}}"#;
        let invalid = r#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT"}}"#;
        for (status, body, expected, inactive) in [
            (404, unregistered, DeliveryStatus::PermanentFailure, true),
            (400, invalid, DeliveryStatus::PermanentFailure, true),
            (
                400,
                r#"{"error":{"status":"INVALID_ARGUMENT"}}"#,
                DeliveryStatus::PermanentFailure,
                false,
            ),
            (429, "", DeliveryStatus::TemporaryFailure, false),
            (503, "", DeliveryStatus::TemporaryFailure, false),
            (401, "", DeliveryStatus::TemporaryFailure, false),
        ] {
            server.answer_at(SEND_PATH, status, body);
            let outcome = fcm.send(&push(false)).await;
            assert_eq!(outcome.status, expected, "{status} {body}");
            assert_eq!(outcome.mark_inactive, inactive, "{status} {body}");
        }
        // After the 401 the next send exchanges a new token first.
        server.answer_at(SEND_PATH, 200, "{}");
        fcm.send(&push(false)).await;
        let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths[paths.len() - 2], "/token");
    }

    /// A token endpoint refusing the service account fails the send without blaming the
    /// device, and nothing reaches FCM.
    #[tokio::test]
    async fn a_refused_service_account_does_not_mark_devices_inactive() {
        let server = FakeProvider::start().await;
        let fcm = provider(&server);
        server.answer_at("/token", 400, r#"{"error":"invalid_grant"}"#);
        let outcome = fcm.send(&push(false)).await;
        assert_eq!(outcome.status, DeliveryStatus::PermanentFailure);
        assert!(!outcome.mark_inactive);
        assert_eq!(server.requests().len(), 1);
        let bad = FcmProvider::new(&FcmChannel {
            service_account_json: r#"{"client_email":"a","private_key":"nope"}"#.into(),
            ..FcmChannel::default()
        });
        assert!(matches!(bad, Err(FcmSetupError::PrivateKey(_))));
    }
}
