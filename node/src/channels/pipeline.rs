//! The way every provider send goes out (SPEC CHN-2, CHN-3): a per-project, per-channel rate
//! limit, bounded concurrency per channel, and retries with backoff of temporary failures.
//!
//! The rate limit is held cluster-wide by sharing it: each node grants at most the limit
//! divided by the number of active nodes, so the cluster as a whole never exceeds the limit,
//! whichever nodes the sends arrive at. A send over this node's share answers THROTTLED
//! without reaching the provider. Only the first attempt of a send takes a grant: its retries
//! are the same message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{DeliveryOutcome, DeliveryStatus, OutboundMessage, Provider};
use crate::domain::endpoint::ChannelType;
use crate::domain::rate::{RateLimiter, node_share};

/// Sends one channel of one project may have in flight on this node: more wait for a permit
/// (back-pressure) instead of queueing without bound.
pub const IN_FLIGHT_PER_CHANNEL: usize = 64;

/// How temporary failures are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Waits before each retry; their number is the number of retries.
    pub backoffs: Vec<Duration>,
}

impl Default for RetryPolicy {
    /// Three retries after 200 ms, 800 ms and 3.2 s: at most four attempts, about 4.2 s.
    fn default() -> Self {
        Self {
            backoffs: vec![
                Duration::from_millis(200),
                Duration::from_millis(800),
                Duration::from_millis(3200),
            ],
        }
    }
}

/// The rate limit and concurrency of one project's channel on this node.
struct ChannelGate {
    /// The node's share it was built for; a changed share (settings or node count) rebuilds it.
    share: Option<f64>,
    /// None: unlimited.
    limiter: Option<RateLimiter>,
    /// Permits for sends in flight.
    in_flight: Arc<Semaphore>,
}

/// Delivers messages to providers under the rate limits, concurrency bound and retry policy.
pub struct Delivery {
    /// Gates per (project, channel) that sent through this node: at most projects × channels.
    gates: Mutex<HashMap<(String, ChannelType), ChannelGate>>,
    /// Retries of temporary failures.
    retry: RetryPolicy,
}

impl Default for Delivery {
    fn default() -> Self {
        Self::new(RetryPolicy::default())
    }
}

impl Delivery {
    /// A pipeline with no sends yet.
    pub fn new(retry: RetryPolicy) -> Self {
        Self {
            gates: Mutex::new(HashMap::new()),
            retry,
        }
    }

    /// Sends `message` through `provider` when the channel's rate allows: `rate_per_second`
    /// is the cluster-wide limit (None: unlimited), shared among `active_nodes`. Answers
    /// THROTTLED without calling the provider when over this node's share, otherwise the
    /// provider's final answer after retries of temporary failures.
    pub async fn send(
        &self,
        provider: &dyn Provider,
        message: &OutboundMessage,
        rate_per_second: Option<u32>,
        active_nodes: usize,
    ) -> DeliveryOutcome {
        self.send_with(provider, message, rate_per_second, active_nodes, false)
            .await
    }

    /// Like [`Self::send`], but a send over the rate waits for its turn instead of answering
    /// THROTTLED, so a burst goes out spread at the configured rate (campaigns).
    pub async fn send_waiting(
        &self,
        provider: &dyn Provider,
        message: &OutboundMessage,
        rate_per_second: Option<u32>,
        active_nodes: usize,
    ) -> DeliveryOutcome {
        self.send_with(provider, message, rate_per_second, active_nodes, true)
            .await
    }

    /// Takes a grant of the channel's rate: `Ok` with the channel's in-flight permits, or
    /// `Err` with the instant the next grant is available.
    fn admit(
        &self,
        message: &OutboundMessage,
        share: Option<f64>,
    ) -> Result<Arc<Semaphore>, tokio::time::Instant> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        let gate = gates
            .entry((message.project_id.clone(), message.channel))
            .or_insert_with(|| ChannelGate {
                share: None,
                limiter: None,
                in_flight: Arc::new(Semaphore::new(IN_FLIGHT_PER_CHANNEL)),
            });
        if gate.share != share {
            gate.share = share;
            // One second of the share at once, and always at least one send.
            gate.limiter = share.map(|share| RateLimiter::new(share, share.ceil().max(1.0) as u32));
        }
        let now = tokio::time::Instant::now();
        if let Some(limiter) = gate.limiter.as_mut()
            && !limiter.try_take(now.into_std())
        {
            return Err(tokio::time::Instant::from_std(
                limiter.next_available(now.into_std()),
            ));
        }
        Ok(Arc::clone(&gate.in_flight))
    }

    async fn send_with(
        &self,
        provider: &dyn Provider,
        message: &OutboundMessage,
        rate_per_second: Option<u32>,
        active_nodes: usize,
        wait: bool,
    ) -> DeliveryOutcome {
        let share = rate_per_second.map(|rate| node_share(rate, active_nodes));
        let in_flight = loop {
            match self.admit(message, share) {
                Ok(in_flight) => break in_flight,
                Err(next) if wait => tokio::time::sleep_until(next).await,
                Err(_) => {
                    return DeliveryOutcome::new(
                        DeliveryStatus::Throttled,
                        format!(
                            "over the rate limit of {} messages per second for channel {}",
                            rate_per_second.unwrap_or_default(),
                            message.channel.as_str()
                        ),
                    );
                }
            }
        };
        let Ok(_permit) = in_flight.acquire_owned().await else {
            return DeliveryOutcome::new(DeliveryStatus::UnknownFailure, "delivery is closed");
        };
        let mut outcome = provider.send(message).await;
        for backoff in &self.retry.backoffs {
            if outcome.status != DeliveryStatus::TemporaryFailure {
                break;
            }
            tracing::debug!(
                message_id = message.message_id,
                status_message = outcome.status_message,
                ?backoff,
                "temporary failure; retrying"
            );
            tokio::time::sleep(*backoff).await;
            outcome = provider.send(message).await;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::domain::template::{RenderedMessage, SmsTemplate};

    /// Answers the scripted statuses in order (the last one forever) and counts calls.
    struct ScriptedProvider {
        statuses: Vec<DeliveryStatus>,
        calls: AtomicUsize,
    }

    impl ScriptedProvider {
        fn new(statuses: &[DeliveryStatus]) -> Self {
            Self {
                statuses: statuses.to_vec(),
                calls: AtomicUsize::new(0),
            }
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[tonic::async_trait]
    impl Provider for ScriptedProvider {
        async fn send(&self, _message: &OutboundMessage) -> DeliveryOutcome {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let status = self.statuses[call.min(self.statuses.len() - 1)];
            DeliveryOutcome::new(status, "scripted")
        }
    }

    fn sms(project_id: &str) -> OutboundMessage {
        OutboundMessage {
            message_id: uuid::Uuid::new_v4().simple().to_string(),
            project_id: project_id.to_string(),
            endpoint_id: None,
            channel: ChannelType::Sms,
            address: "+15550100".to_string(),
            content: RenderedMessage::Sms(SmsTemplate {
                body: "hi".to_string(),
            }),
        }
    }

    /// A provider failing twice temporarily and then accepting is called three times and the
    /// send is SUCCESSFUL.
    #[tokio::test(start_paused = true)]
    async fn temporary_failures_are_retried() {
        let provider = ScriptedProvider::new(&[
            DeliveryStatus::TemporaryFailure,
            DeliveryStatus::TemporaryFailure,
            DeliveryStatus::Successful,
        ]);
        let outcome = Delivery::default()
            .send(&provider, &sms("p"), None, 1)
            .await;
        assert_eq!(outcome.status, DeliveryStatus::Successful);
        assert_eq!(provider.calls(), 3);
    }

    /// Retries are bounded: a provider that always fails temporarily is called four times and
    /// the final status is TEMPORARY_FAILURE.
    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded() {
        let provider = ScriptedProvider::new(&[DeliveryStatus::TemporaryFailure]);
        let outcome = Delivery::default()
            .send(&provider, &sms("p"), None, 1)
            .await;
        assert_eq!(outcome.status, DeliveryStatus::TemporaryFailure);
        assert_eq!(provider.calls(), 4);
    }

    /// A permanent failure is answered at once, never retried.
    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let provider = ScriptedProvider::new(&[DeliveryStatus::PermanentFailure]);
        let outcome = Delivery::default()
            .send(&provider, &sms("p"), None, 1)
            .await;
        assert_eq!(outcome.status, DeliveryStatus::PermanentFailure);
        assert_eq!(provider.calls(), 1);
    }

    /// A burst of 30 sends over an SMS limit of 20/s: 20 go out, 10 are THROTTLED without
    /// reaching the provider; another project has its own limit.
    #[tokio::test(start_paused = true)]
    async fn a_burst_over_the_limit_is_throttled() {
        let provider = ScriptedProvider::new(&[DeliveryStatus::Successful]);
        let delivery = Delivery::default();
        let mut statuses = Vec::new();
        for _ in 0..30 {
            statuses.push(
                delivery
                    .send(&provider, &sms("p"), Some(20), 1)
                    .await
                    .status,
            );
        }
        let throttled = statuses
            .iter()
            .filter(|s| **s == DeliveryStatus::Throttled)
            .count();
        assert_eq!(throttled, 10);
        assert_eq!(provider.calls(), 20);
        let other = delivery.send(&provider, &sms("q"), Some(20), 1).await;
        assert_eq!(other.status, DeliveryStatus::Successful);
    }

    /// With two active nodes each node grants half the cluster-wide limit.
    #[tokio::test(start_paused = true)]
    async fn each_node_grants_its_share() {
        let provider = ScriptedProvider::new(&[DeliveryStatus::Successful]);
        let delivery = Delivery::default();
        let mut sent = 0;
        for _ in 0..30 {
            if delivery
                .send(&provider, &sms("p"), Some(20), 2)
                .await
                .status
                == DeliveryStatus::Successful
            {
                sent += 1;
            }
        }
        assert_eq!(sent, 10);
    }

    /// Sends in flight never exceed the per-channel bound; the rest wait.
    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        struct SlowProvider {
            in_flight: AtomicUsize,
            peak: AtomicUsize,
        }
        #[tonic::async_trait]
        impl Provider for SlowProvider {
            async fn send(&self, _message: &OutboundMessage) -> DeliveryOutcome {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                DeliveryOutcome::new(DeliveryStatus::Successful, "slow")
            }
        }
        let provider = SlowProvider {
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        };
        let delivery = Delivery::default();
        let messages: Vec<_> = (0..200).map(|_| sms("p")).collect();
        let outcomes = futures::future::join_all(
            messages
                .iter()
                .map(|message| delivery.send(&provider, message, None, 1)),
        )
        .await;
        assert!(
            outcomes
                .iter()
                .all(|o| o.status == DeliveryStatus::Successful)
        );
        assert_eq!(provider.peak.load(Ordering::SeqCst), IN_FLIGHT_PER_CHANNEL);
    }
}
