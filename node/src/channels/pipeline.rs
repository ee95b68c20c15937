//! The way every provider send goes out (SPEC CHN-2, CHN-3): a per-project, per-channel rate
//! limit, then the channel actors ([`crate::actors::channel`]): a bounded worker pool per
//! channel on this node whose workers send and retry temporary failures with backoff.
//!
//! The rate limit is held cluster-wide by sharing it: each node grants at most the limit
//! divided by the number of active nodes, so the cluster as a whole never exceeds the limit,
//! whichever nodes the sends arrive at. A send over this node's share answers THROTTLED
//! without reaching the channel actors. Only the first attempt of a send takes a grant: its
//! retries are the same message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{DeliveryOutcome, DeliveryStatus, OutboundMessage, SharedProvider};
use crate::actors::channel::{ChannelActors, ChannelPoolSettings};
use crate::domain::endpoint::ChannelType;
use crate::domain::rate::{RateLimiter, node_share};

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

/// The rate limit of one project's channel on this node.
struct ChannelGate {
    /// The node's share it was built for; a changed share (settings or node count) rebuilds it.
    share: Option<f64>,
    /// None: unlimited.
    limiter: Option<RateLimiter>,
}

/// Delivers messages to providers under the rate limits, through the channel actors (bounded
/// worker pools that retry temporary failures).
pub struct Delivery {
    /// Gates per (project, channel) that sent through this node: at most projects × channels.
    gates: Mutex<HashMap<(String, ChannelType), ChannelGate>>,
    /// The channel worker pools of this node, started on first use and stopped with it.
    actors: ChannelActors,
}

impl Default for Delivery {
    fn default() -> Self {
        Self::new(RetryPolicy::default())
    }
}

impl Delivery {
    /// A pipeline with no sends yet; its channel actors start on the first send.
    pub fn new(retry: RetryPolicy) -> Self {
        Self {
            gates: Mutex::new(HashMap::new()),
            actors: ChannelActors::new(ChannelPoolSettings::new(retry)),
        }
    }

    /// Sends `message` through `provider` when the channel's rate allows: `rate_per_second`
    /// is the cluster-wide limit (None: unlimited), shared among `active_nodes`. Answers
    /// THROTTLED without calling the provider when over this node's share, otherwise the
    /// provider's final answer after retries of temporary failures.
    pub async fn send(
        &self,
        provider: &SharedProvider,
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
        provider: &SharedProvider,
        message: &OutboundMessage,
        rate_per_second: Option<u32>,
        active_nodes: usize,
    ) -> DeliveryOutcome {
        self.send_with(provider, message, rate_per_second, active_nodes, true)
            .await
    }

    /// Like [`Self::send_waiting`] for messages of one channel through one provider. Without
    /// a rate they go to the channel actors as one batch; with one, each goes out on its own
    /// turn, so receivers see them spread at the rate. Answers one outcome per message, in
    /// order.
    pub async fn send_many_waiting(
        &self,
        provider: &SharedProvider,
        messages: Vec<OutboundMessage>,
        rate_per_second: Option<u32>,
        active_nodes: usize,
    ) -> Vec<DeliveryOutcome> {
        if rate_per_second.is_some() {
            return futures::future::join_all(messages.iter().map(|message| {
                self.send_waiting(provider, message, rate_per_second, active_nodes)
            }))
            .await;
        }
        self.actors
            .send_many(std::sync::Arc::clone(provider), messages)
            .await
    }

    /// Stops the channel actors: in-flight sends get a few seconds to finish, later sends
    /// answer UNKNOWN_FAILURE. Dropping the pipeline stops them too, without waiting.
    pub async fn stop(&self) {
        self.actors.stop().await;
    }

    /// Takes a grant of the channel's rate: `Err` with the instant the next grant is
    /// available.
    fn admit(
        &self,
        message: &OutboundMessage,
        share: Option<f64>,
    ) -> Result<(), tokio::time::Instant> {
        if share.is_none() {
            // No rate for the channel: nothing to take (and no gate to look up per message).
            return Ok(());
        }
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        let gate = gates
            .entry((message.project_id.clone(), message.channel))
            .or_insert_with(|| ChannelGate {
                share: None,
                limiter: None,
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
        Ok(())
    }

    async fn send_with(
        &self,
        provider: &SharedProvider,
        message: &OutboundMessage,
        rate_per_second: Option<u32>,
        active_nodes: usize,
        wait: bool,
    ) -> DeliveryOutcome {
        let share = rate_per_second.map(|rate| node_share(rate, active_nodes));
        loop {
            match self.admit(message, share) {
                Ok(()) => break,
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
        }
        self.actors
            .send(std::sync::Arc::clone(provider), message.clone())
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::actors::channel::WORKERS_PER_CHANNEL;
    use crate::channels::Provider;
    use crate::domain::template::{RenderedMessage, SmsTemplate};

    /// Answers the scripted statuses in order (the last one forever) and counts calls.
    struct ScriptedProvider {
        statuses: Vec<DeliveryStatus>,
        calls: AtomicUsize,
    }

    impl ScriptedProvider {
        fn new(statuses: &[DeliveryStatus]) -> Arc<Self> {
            Arc::new(Self {
                statuses: statuses.to_vec(),
                calls: AtomicUsize::new(0),
            })
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

    /// The provider as the pipeline takes it, keeping the test's handle for counting calls.
    fn shared<P: Provider + 'static>(provider: &Arc<P>) -> SharedProvider {
        Arc::clone(provider) as SharedProvider
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
            origination_number: String::new(),
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
            .send(&shared(&provider), &sms("p"), None, 1)
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
            .send(&shared(&provider), &sms("p"), None, 1)
            .await;
        assert_eq!(outcome.status, DeliveryStatus::TemporaryFailure);
        assert_eq!(provider.calls(), 4);
    }

    /// A permanent failure is answered at once, never retried.
    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let provider = ScriptedProvider::new(&[DeliveryStatus::PermanentFailure]);
        let outcome = Delivery::default()
            .send(&shared(&provider), &sms("p"), None, 1)
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
                    .send(&shared(&provider), &sms("p"), Some(20), 1)
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
        let other = delivery
            .send(&shared(&provider), &sms("q"), Some(20), 1)
            .await;
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
                .send(&shared(&provider), &sms("p"), Some(20), 2)
                .await
                .status
                == DeliveryStatus::Successful
            {
                sent += 1;
            }
        }
        assert_eq!(sent, 10);
    }

    /// Sends in flight never exceed the workers of the channel's pool; the rest wait.
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
        let provider = Arc::new(SlowProvider {
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let shared = shared(&provider);
        let delivery = Delivery::default();
        let messages: Vec<_> = (0..200).map(|_| sms("p")).collect();
        let outcomes = futures::future::join_all(
            messages
                .iter()
                .map(|message| delivery.send(&shared, message, None, 1)),
        )
        .await;
        assert!(
            outcomes
                .iter()
                .all(|o| o.status == DeliveryStatus::Successful)
        );
        assert_eq!(provider.peak.load(Ordering::SeqCst), WORKERS_PER_CHANNEL);
    }
}
