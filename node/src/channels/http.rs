//! What HTTP provider APIs (webhook, SMS, voice, FCM) share: one client setup and one
//! mapping from an HTTP answer to a delivery status (SPEC CHN-3).

use std::time::Duration;

use super::{DeliveryOutcome, DeliveryStatus};

/// How long one provider request may take before the send counts as a temporary failure.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Words in a 4xx answer saying the address or token no longer exists, lowercase: the
/// endpoint becomes inactive rather than failing again on every send.
const INVALID_ADDRESS_PHRASES: [&str; 8] = [
    "unregistered",
    "baddevicetoken",
    "invalid token",
    "invalid registration",
    "registration token is not a valid",
    "invalid number",
    "invalid phone number",
    "not a valid phone number",
];

/// The client of a provider: rustls with ring, HTTP/2 when the server offers it, a timeout.
pub fn provider_client() -> Result<reqwest::Client, reqwest::Error> {
    provider_client_builder().build()
}

/// [`provider_client`]'s settings, for a provider that adds its own.
pub fn provider_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(HTTP_TIMEOUT)
}

/// What an HTTP answer means for the message: 2xx accepted (the provider's id from the JSON
/// `id`, or FCM's `name`); 429 and 5xx worth retrying; 404, 410 or a body saying the number
/// or token is invalid final, with the endpoint made inactive; other 4xx final.
pub fn classify_answer(status: u16, body: &str) -> DeliveryOutcome {
    let text = format!("{status} {}", body.trim()).trim().to_string();
    match status {
        200..=299 => DeliveryOutcome {
            provider_message_id: provider_message_id(body),
            ..DeliveryOutcome::new(DeliveryStatus::Successful, text)
        },
        429 | 500..=599 => DeliveryOutcome::new(DeliveryStatus::TemporaryFailure, text),
        400..=499 => {
            let lower = body.to_ascii_lowercase();
            let invalid_address = matches!(status, 404 | 410)
                || INVALID_ADDRESS_PHRASES
                    .iter()
                    .any(|phrase| lower.contains(phrase));
            DeliveryOutcome {
                mark_inactive: invalid_address,
                ..DeliveryOutcome::new(DeliveryStatus::PermanentFailure, text)
            }
        }
        _ => DeliveryOutcome::new(DeliveryStatus::UnknownFailure, text),
    }
}

/// The provider's id for an accepted message: the JSON `id`, or `name` (FCM).
fn provider_message_id(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    ["id", "name"].iter().find_map(|key| match value.get(key)? {
        serde_json::Value::String(id) => Some(id.clone()),
        serde_json::Value::Number(id) => Some(id.to_string()),
        _ => None,
    })
}

/// The outcome of a sent request: its answer classified, or, when no answer came
/// (connection refused, TLS, timeout), a temporary failure, since the provider may come back.
pub async fn outcome_of(
    provider: &str,
    result: Result<reqwest::Response, reqwest::Error>,
) -> DeliveryOutcome {
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            classify_answer(status, &body)
        }
        Err(error) => DeliveryOutcome::new(
            DeliveryStatus::TemporaryFailure,
            format!("{provider} unreachable or failing: {error}"),
        ),
    }
}

/// A local HTTP server standing in for a provider API in tests: it records every request
/// and answers each with the status and body currently set.
#[cfg(test)]
pub(crate) mod test_server {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri, Version};

    /// One request as the server received it.
    #[derive(Debug, Clone)]
    pub struct RecordedRequest {
        /// The method.
        pub method: Method,
        /// Path and query (HTTP/2 requests carry the full URI; only this part is kept).
        pub path: String,
        /// HTTP/1.1 or HTTP/2.
        pub version: Version,
        /// The headers.
        pub headers: HeaderMap,
        /// The exact body bytes.
        pub body: Bytes,
    }

    impl RecordedRequest {
        /// A header's value, or empty.
        pub fn header(&self, name: &str) -> String {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        }

        /// The body as JSON.
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("the body is JSON")
        }
    }

    /// A running fake provider.
    pub struct FakeProvider {
        /// `http://127.0.0.1:<port>`.
        pub base_url: String,
        /// Requests received so far.
        requests: Arc<Mutex<Vec<RecordedRequest>>>,
        /// The next answers' status and body.
        answer: Arc<Mutex<(u16, String)>>,
        /// Answers for particular paths, ahead of `answer`.
        answers_by_path: Arc<Mutex<HashMap<String, (u16, String)>>>,
    }

    impl FakeProvider {
        /// Starts a server on `127.0.0.1:0` answering `200 {"id":"provider-1"}`.
        pub async fn start() -> Self {
            let requests = Arc::new(Mutex::new(Vec::new()));
            let answer = Arc::new(Mutex::new((200, r#"{"id":"provider-1"}"#.to_string())));
            let answers_by_path = Arc::new(Mutex::new(HashMap::new()));
            let (recorded, answering, by_path) = (
                Arc::clone(&requests),
                Arc::clone(&answer),
                Arc::clone(&answers_by_path),
            );
            let app = axum::Router::new().fallback(
                move |method: Method,
                      version: Version,
                      uri: Uri,
                      headers: HeaderMap,
                      body: Bytes| {
                    let (recorded, answering, by_path) = (
                        Arc::clone(&recorded),
                        Arc::clone(&answering),
                        Arc::clone(&by_path),
                    );
                    async move {
                        let for_path = by_path.lock().unwrap().get(uri.path()).cloned();
                        recorded.lock().unwrap().push(RecordedRequest {
                            method,
                            path: uri
                                .path_and_query()
                                .map(ToString::to_string)
                                .unwrap_or_default(),
                            version,
                            headers,
                            body,
                        });
                        let (status, body) =
                            for_path.unwrap_or_else(|| answering.lock().unwrap().clone());
                        (StatusCode::from_u16(status).unwrap(), body)
                    }
                },
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base_url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self {
                base_url,
                requests,
                answer,
                answers_by_path,
            }
        }

        /// Makes the server answer requests to `path` with `status` and `body` from now on.
        pub fn answer_at(&self, path: &str, status: u16, body: &str) {
            self.answers_by_path
                .lock()
                .unwrap()
                .insert(path.to_string(), (status, body.to_string()));
        }

        /// Makes the server answer `status` with `body` from now on.
        pub fn answer_with(&self, status: u16, body: &str) {
            *self.answer.lock().unwrap() = (status, body.to_string());
        }

        /// Every request received so far.
        pub fn requests(&self) -> Vec<RecordedRequest> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// A URL where nothing listens: a port bound and released.
    pub async fn closed_url() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{address}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each answer class maps to the status SPEC CHN-3 names, and only a vanished address or
    /// token makes the endpoint inactive.
    #[test]
    fn answers_map_to_statuses_and_invalid_addresses_mark_endpoints_inactive() {
        let accepted = classify_answer(202, r#"{"id":"SM123"}"#);
        assert_eq!(accepted.status, DeliveryStatus::Successful);
        assert_eq!(accepted.provider_message_id.as_deref(), Some("SM123"));
        for status in [429, 500, 503] {
            let outcome = classify_answer(status, "busy");
            assert_eq!(outcome.status, DeliveryStatus::TemporaryFailure, "{status}");
            assert!(!outcome.mark_inactive);
        }
        for (status, body) in [
            (404, ""),
            (410, ""),
            (400, r#"{"error":"Invalid phone number"}"#),
            (400, r#"{"status":"UNREGISTERED"}"#),
        ] {
            let outcome = classify_answer(status, body);
            assert_eq!(outcome.status, DeliveryStatus::PermanentFailure, "{status}");
            assert!(outcome.mark_inactive, "{status} {body}");
        }
        let refused = classify_answer(401, "bad api key");
        assert_eq!(refused.status, DeliveryStatus::PermanentFailure);
        assert!(!refused.mark_inactive);
    }
}
