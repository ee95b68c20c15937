//! The channel actors (DESIGN): for each channel, a ractor factory with a pool of
//! [`ChannelWorker`]s on this node. A worker sends one message at a time through its
//! provider, retries temporary failures with backoff and answers the final outcome on the
//! job's reply port.
//!
//! Ractor mailboxes and factory queues are unbounded, so each pool has permits: a send takes
//! one before its job is queued and gives it back once answered. A pool therefore holds at
//! most `workers + queued` sends; further callers wait for a permit (back-pressure) instead of
//! growing a queue. The [`ChannelSupervisor`] starts a pool on the first send of its channel
//! and forgets a pool that stopped, so the next send starts it again; the factory replaces a
//! worker that panicked, and the send it was making answers UNKNOWN_FAILURE. Every wait for an
//! answer has a deadline, and a provider call has one too, so no worker is held forever.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::factory::queues::DefaultQueue;
use ractor::factory::routing::QueuerRouting;
use ractor::factory::{
    Factory, FactoryArguments, FactoryMessage, FactoryRef, Job, Worker, WorkerId, worker_builder,
};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent};
use tokio::sync::Semaphore;

use crate::channels::pipeline::RetryPolicy;
use crate::channels::{DeliveryOutcome, DeliveryStatus, OutboundMessage, SharedProvider};
use crate::domain::endpoint::ChannelType;

/// Workers of one channel's pool on this node: the sends of a channel in flight at its
/// providers from this node, all projects together.
pub const WORKERS_PER_CHANNEL: usize = 64;

/// Sends of one channel that may wait in its pool's queue for a free worker; callers beyond
/// the workers and this queue wait for a permit before anything is queued.
pub const QUEUED_PER_CHANNEL: usize = 64;

/// Longest one provider call may take before it counts as a temporary failure. Providers have
/// their own timeouts (30 s per request or SMTP command); this only keeps a provider that never
/// answers from holding a worker forever.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the supervisor may take to start a pool.
const POOL_START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long stopping lets in-flight sends finish before the workers are killed (their callers
/// then answer UNKNOWN_FAILURE).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Work for a channel worker.
// A single send carries its message inline: boxing it would cost an allocation per send.
#[allow(clippy::large_enum_variant)]
pub enum ChannelJob {
    /// Deliver `message` through `provider`, retrying temporary failures, and answer the final
    /// outcome on `reply`.
    Send {
        /// The channel's provider for the message's project.
        provider: SharedProvider,
        /// The rendered message; its id is the provider's idempotency key on every attempt.
        message: OutboundMessage,
        /// Where the final outcome goes.
        reply: RpcReplyPort<DeliveryOutcome>,
    },
    /// Send messages through one provider, all at once, retrying temporary failures of each;
    /// answer their final outcomes in order (a campaign page's recipients on one channel).
    SendMany {
        /// The provider, built once for the batch.
        provider: SharedProvider,
        /// The messages.
        messages: Vec<OutboundMessage>,
        /// Where the outcomes go, one per message.
        reply: RpcReplyPort<Vec<DeliveryOutcome>>,
    },
}

impl fmt::Debug for ChannelJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send { message, .. } => f
                .debug_struct("Send")
                .field("message_id", &message.message_id)
                .field("channel", &message.channel)
                .finish_non_exhaustive(),
            Self::SendMany { messages, .. } => f
                .debug_struct("SendMany")
                .field("messages", &messages.len())
                .finish_non_exhaustive(),
        }
    }
}

/// Messages to the node's [`ChannelSupervisor`].
pub enum ChannelSupervisorMessage {
    /// Answers the running pool of the channel, starting it first when there is none or it
    /// stopped; an error says why it could not start.
    Pool(ChannelType, RpcReplyPort<Result<ChannelPool, String>>),
}

/// How a channel's pool is sized and how its workers retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPoolSettings {
    /// Workers per pool: sends of the channel in flight at the providers at once.
    pub workers: usize,
    /// Jobs per pool that may wait in the factory's queue for a free worker.
    pub queued: usize,
    /// Retries of temporary failures.
    pub retry: RetryPolicy,
    /// Longest one provider call may take; then it is a temporary failure.
    pub attempt_timeout: Duration,
}

impl ChannelPoolSettings {
    /// The node's default pools with this retry policy.
    pub fn new(retry: RetryPolicy) -> Self {
        Self {
            workers: WORKERS_PER_CHANNEL,
            queued: QUEUED_PER_CHANNEL,
            retry,
            attempt_timeout: ATTEMPT_TIMEOUT,
        }
    }

    /// Sends a pool holds at once, in flight or queued: its permits.
    fn capacity(&self) -> usize {
        self.workers.max(1) + self.queued
    }

    /// Longest one job keeps a worker: every attempt at its deadline and every backoff.
    fn job_bound(&self) -> Duration {
        let attempts = self.retry.backoffs.len() as u32 + 1;
        self.attempt_timeout * attempts + self.retry.backoffs.iter().sum::<Duration>()
    }

    /// Longest a caller waits for its answer once its job is queued: the queue is first in,
    /// first out and holds at most `queued` jobs, so a job waits for at most
    /// `ceil(queued / workers)` rounds of jobs ahead of it, then runs its own, plus a second
    /// for the messages between the actors.
    fn answer_timeout(&self) -> Duration {
        let rounds = self.queued.div_ceil(self.workers.max(1)) as u32 + 1;
        self.job_bound() * rounds + Duration::from_secs(1)
    }
}

/// One worker of a channel's pool: it sends one message at a time, with retries.
pub struct ChannelWorker {
    /// Retries of temporary failures.
    retry: RetryPolicy,
    /// Deadline of one provider call.
    attempt_timeout: Duration,
}

impl ChannelWorker {
    /// The provider's final answer for `message`: temporary failures are retried after each
    /// backoff of the policy; anything else is final at once.
    async fn send_with_retries(
        &self,
        provider: &SharedProvider,
        message: &OutboundMessage,
    ) -> DeliveryOutcome {
        let mut outcome = self.attempt(provider, message).await;
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
            outcome = self.attempt(provider, message).await;
        }
        outcome
    }

    /// One provider call within its deadline.
    async fn attempt(
        &self,
        provider: &SharedProvider,
        message: &OutboundMessage,
    ) -> DeliveryOutcome {
        match tokio::time::timeout(self.attempt_timeout, provider.send(message)).await {
            Ok(outcome) => outcome,
            Err(_) => DeliveryOutcome::new(
                DeliveryStatus::TemporaryFailure,
                format!(
                    "the provider did not answer within {} s",
                    self.attempt_timeout.as_secs()
                ),
            ),
        }
    }
}

impl Worker for ChannelWorker {
    type Key = ();
    type Message = ChannelJob;
    type Arguments = ();
    type State = ();

    async fn pre_start(
        &self,
        _worker_id: WorkerId,
        _factory: &ActorRef<FactoryMessage<(), ChannelJob>>,
        _arguments: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _worker_id: WorkerId,
        _factory: &ActorRef<FactoryMessage<(), ChannelJob>>,
        Job { key, msg, .. }: Job<(), ChannelJob>,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ChannelJob::Send {
                provider,
                message,
                reply,
            } => {
                let outcome = self.send_with_retries(&provider, &message).await;
                if reply.send(outcome).is_err() {
                    tracing::debug!(
                        message_id = message.message_id,
                        "the caller stopped waiting before the send was answered"
                    );
                }
            }
            ChannelJob::SendMany {
                provider,
                messages,
                reply,
            } => {
                let outcomes = futures::future::join_all(
                    messages
                        .iter()
                        .map(|message| self.send_with_retries(&provider, message)),
                )
                .await;
                if reply.send(outcomes).is_err() {
                    tracing::debug!(
                        messages = messages.len(),
                        "the caller stopped waiting before the sends were answered"
                    );
                }
            }
        }
        Ok(key)
    }
}

/// A channel's pool as ractor builds it: jobs go to the first free worker, the rest wait in
/// the factory's queue in arrival order.
type ChannelFactory = Factory<
    (),
    ChannelJob,
    (),
    ChannelWorker,
    QueuerRouting<(), ChannelJob>,
    DefaultQueue<(), ChannelJob>,
>;

/// A running pool of one channel: its factory and the permits that bound what it holds.
#[derive(Clone)]
pub struct ChannelPool {
    /// The factory of the pool's workers.
    factory: FactoryRef<(), ChannelJob>,
    /// `workers + queued` permits: a send holds one from before its job is queued until it is
    /// answered, so the factory's mailbox and queue never grow beyond them.
    permits: Arc<Semaphore>,
}

impl ChannelPool {
    /// Whether the factory still takes jobs.
    fn is_running(&self) -> bool {
        matches!(
            self.factory.get_status(),
            ActorStatus::Starting | ActorStatus::Running | ActorStatus::Upgrading
        )
    }
}

/// Starts the node's channel pools and keeps them running: a pool that stopped is forgotten
/// and started again on its channel's next send.
pub struct ChannelSupervisor;

/// The pools the supervisor started, and how it starts them.
pub struct ChannelSupervisorState {
    /// Settings of every pool.
    settings: ChannelPoolSettings,
    /// The pools started, by channel.
    pools: HashMap<ChannelType, ChannelPool>,
}

impl ChannelSupervisorState {
    /// The running pool of `channel`, started (linked to the supervisor) when needed.
    async fn pool(
        &mut self,
        myself: &ActorRef<ChannelSupervisorMessage>,
        channel: ChannelType,
    ) -> Result<ChannelPool, String> {
        if let Some(pool) = self.pools.get(&channel).filter(|pool| pool.is_running()) {
            return Ok(pool.clone());
        }
        let settings = self.settings.clone();
        let arguments = FactoryArguments::builder()
            .worker_builder(Box::new(worker_builder(move |_worker_id| {
                let worker = ChannelWorker {
                    retry: settings.retry.clone(),
                    attempt_timeout: settings.attempt_timeout,
                };
                (worker, ())
            })))
            .queue(DefaultQueue::default())
            .router(QueuerRouting::default())
            .num_initial_workers(self.settings.workers.max(1))
            .build();
        let (factory, _handle) = Actor::spawn_linked(
            None,
            ChannelFactory::default(),
            arguments,
            myself.get_cell(),
        )
        .await
        .map_err(|error| {
            format!(
                "cannot start the worker pool of channel {}: {error}",
                channel.as_str()
            )
        })?;
        tracing::debug!(
            channel = channel.as_str(),
            workers = self.settings.workers,
            "channel worker pool started"
        );
        let pool = ChannelPool {
            factory,
            permits: Arc::new(Semaphore::new(self.settings.capacity())),
        };
        self.pools.insert(channel, pool.clone());
        Ok(pool)
    }
}

impl Actor for ChannelSupervisor {
    type Msg = ChannelSupervisorMessage;
    type State = ChannelSupervisorState;
    type Arguments = ChannelPoolSettings;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        settings: ChannelPoolSettings,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ChannelSupervisorState {
            settings,
            pools: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ChannelSupervisorMessage::Pool(channel, reply) => {
                // A caller that gave up is no reason to stop the supervisor.
                let _ = reply.send(state.pool(&myself, channel).await);
            }
        }
        Ok(())
    }

    /// A pool that stopped is forgotten, never a reason to stop the supervisor (ractor's
    /// default): the pools of the other channels go on, and the next send starts it again.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (stopped, reason) = match &event {
            SupervisionEvent::ActorTerminated(who, _, reason) => {
                (who.get_id(), reason.clone().unwrap_or_default())
            }
            SupervisionEvent::ActorFailed(who, error) => (who.get_id(), error.to_string()),
            _ => return Ok(()),
        };
        state.pools.retain(|channel, pool| {
            let is_stopped = pool.factory.get_id() == stopped;
            if is_stopped {
                tracing::warn!(
                    channel = channel.as_str(),
                    reason,
                    "channel worker pool stopped; it starts again on the next send"
                );
            }
            !is_stopped
        });
        Ok(())
    }

    /// Lets the pools finish their in-flight sends for a while; whatever is left is killed
    /// with the supervisor, and its callers answer UNKNOWN_FAILURE.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let stopping = state.pools.drain().map(|(_, pool)| async move {
            let _ = pool.factory.stop_and_wait(None, Some(STOP_GRACE)).await;
        });
        futures::future::join_all(stopping).await;
        Ok(())
    }
}

/// The channel actors of one node as the delivery pipeline uses them: started on the first
/// send, stopped by [`Self::stop`] or when dropped.
pub struct ChannelActors {
    /// Settings of every pool.
    settings: ChannelPoolSettings,
    /// The supervisor, once started. Locked only on the slow path (a channel's first send, or
    /// after its pool stopped), so starting it or a pool happens once.
    supervisor: tokio::sync::Mutex<Option<ActorRef<ChannelSupervisorMessage>>>,
    /// The running pools by channel, so a send reaches its pool without asking the supervisor.
    pools: Mutex<HashMap<ChannelType, ChannelPool>>,
    /// Set by [`Self::stop`]: nothing starts again, sends answer at once.
    stopped: AtomicBool,
}

impl ChannelActors {
    /// Channel actors not started yet.
    pub fn new(settings: ChannelPoolSettings) -> Self {
        Self {
            settings,
            supervisor: tokio::sync::Mutex::new(None),
            pools: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
        }
    }

    /// Sends `message` through `provider` on a worker of the message's channel: waits for a
    /// permit of the pool (back-pressure), then for the worker's final answer. Answers
    /// UNKNOWN_FAILURE when the channel actors are stopped, the worker died during the send or
    /// no answer came in time.
    pub async fn send(
        &self,
        provider: SharedProvider,
        message: OutboundMessage,
    ) -> DeliveryOutcome {
        let channel = message.channel;
        let pool = match self.pool(channel).await {
            Ok(pool) => pool,
            Err(error) => return DeliveryOutcome::new(DeliveryStatus::UnknownFailure, error),
        };
        let Ok(_permit) = pool.permits.acquire().await else {
            return DeliveryOutcome::new(DeliveryStatus::UnknownFailure, "delivery is closed");
        };
        let answer_timeout = self.settings.answer_timeout();
        let answer = pool
            .factory
            .call_job(
                (),
                |reply| ChannelJob::Send {
                    provider,
                    message,
                    reply,
                },
                Some(answer_timeout),
            )
            .await;
        match answer {
            Ok(CallResult::Success(outcome)) => outcome,
            Ok(CallResult::Timeout) => DeliveryOutcome::new(
                DeliveryStatus::UnknownFailure,
                format!(
                    "no answer from the {} channel worker within {} s",
                    channel.as_str(),
                    answer_timeout.as_secs()
                ),
            ),
            Ok(CallResult::SenderError) => DeliveryOutcome::new(
                DeliveryStatus::UnknownFailure,
                format!(
                    "the {} channel worker stopped before answering",
                    channel.as_str()
                ),
            ),
            Err(_) => {
                self.forget(channel, &pool);
                DeliveryOutcome::new(
                    DeliveryStatus::UnknownFailure,
                    format!(
                        "the {} channel worker pool is not running",
                        channel.as_str()
                    ),
                )
            }
        }
    }

    /// Sends `messages` through `provider` on workers of their channel (all of one channel),
    /// a job per part of at most the pool's capacity: each part waits for a permit per
    /// message, so as many messages are in flight as with single sends. Answers one outcome
    /// per message, in order; UNKNOWN_FAILURE for a part whose worker failed as in
    /// [`Self::send`].
    pub async fn send_many(
        &self,
        provider: SharedProvider,
        mut messages: Vec<OutboundMessage>,
    ) -> Vec<DeliveryOutcome> {
        let Some(channel) = messages.first().map(|message| message.channel) else {
            return Vec::new();
        };
        let failed = |count: usize, reason: String| {
            vec![DeliveryOutcome::new(DeliveryStatus::UnknownFailure, reason); count]
        };
        let pool = match self.pool(channel).await {
            Ok(pool) => pool,
            Err(error) => return failed(messages.len(), error),
        };
        let mut outcomes = Vec::with_capacity(messages.len());
        while !messages.is_empty() {
            let rest = messages.split_off(messages.len().min(self.settings.capacity()));
            let part = std::mem::replace(&mut messages, rest);
            let count = part.len();
            let Ok(_permits) = pool.permits.acquire_many(count as u32).await else {
                outcomes.extend(failed(count, "delivery is closed".to_string()));
                continue;
            };
            let answer = pool
                .factory
                .call_job(
                    (),
                    |reply| ChannelJob::SendMany {
                        provider: Arc::clone(&provider),
                        messages: part,
                        reply,
                    },
                    Some(self.settings.answer_timeout()),
                )
                .await;
            match answer {
                Ok(CallResult::Success(answered)) if answered.len() == count => {
                    outcomes.extend(answered);
                }
                Ok(CallResult::Success(_)) | Ok(CallResult::SenderError) => {
                    outcomes.extend(failed(
                        count,
                        format!(
                            "the {} channel worker stopped before answering",
                            channel.as_str()
                        ),
                    ));
                }
                Ok(CallResult::Timeout) => outcomes.extend(failed(
                    count,
                    format!(
                        "no answer from the {} channel worker within {} s",
                        channel.as_str(),
                        self.settings.answer_timeout().as_secs()
                    ),
                )),
                Err(_) => {
                    self.forget(channel, &pool);
                    outcomes.extend(failed(
                        count,
                        format!(
                            "the {} channel worker pool is not running",
                            channel.as_str()
                        ),
                    ));
                }
            }
        }
        outcomes
    }

    /// Stops every pool: in-flight sends get a few seconds to finish, queued ones and later
    /// sends answer UNKNOWN_FAILURE.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let supervisor = self.supervisor.lock().await.take();
        self.pools.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if let Some(supervisor) = supervisor
            && let Err(error) = supervisor
                .stop_and_wait(None, Some(STOP_GRACE + POOL_START_TIMEOUT))
                .await
        {
            tracing::warn!(%error, "channel actors did not stop in time");
        }
    }

    /// The running pool of `channel`: the known one, or the supervisor's (started first when
    /// needed).
    async fn pool(&self, channel: ChannelType) -> Result<ChannelPool, String> {
        if let Some(pool) = self.running_pool(channel) {
            return Ok(pool);
        }
        let mut supervisor = self.supervisor.lock().await;
        if self.stopped.load(Ordering::SeqCst) {
            return Err("the node's channel actors are stopped".to_string());
        }
        if let Some(pool) = self.running_pool(channel) {
            return Ok(pool);
        }
        let running = supervisor
            .as_ref()
            .filter(|s| s.get_status() == ActorStatus::Running)
            .cloned();
        let supervisor_ref = match running {
            Some(supervisor_ref) => supervisor_ref,
            None => {
                let (supervisor_ref, _handle) =
                    Actor::spawn(None, ChannelSupervisor, self.settings.clone())
                        .await
                        .map_err(|error| format!("cannot start the channel actors: {error}"))?;
                *supervisor = Some(supervisor_ref.clone());
                supervisor_ref
            }
        };
        let answer = supervisor_ref
            .call(
                |reply| ChannelSupervisorMessage::Pool(channel, reply),
                Some(POOL_START_TIMEOUT),
            )
            .await;
        let pool = match answer {
            Ok(CallResult::Success(pool)) => pool?,
            _ => {
                return Err(format!(
                    "the channel supervisor did not start the pool of channel {} within {} s",
                    channel.as_str(),
                    POOL_START_TIMEOUT.as_secs()
                ));
            }
        };
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel, pool.clone());
        Ok(pool)
    }

    /// The known pool of `channel` when it still runs.
    fn running_pool(&self, channel: ChannelType) -> Option<ChannelPool> {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&channel)
            .filter(|pool| pool.is_running())
            .cloned()
    }

    /// Drops `pool` from the known pools, so the next send asks the supervisor.
    fn forget(&self, channel: ChannelType, pool: &ChannelPool) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if pools
            .get(&channel)
            .is_some_and(|known| known.factory.get_id() == pool.factory.get_id())
        {
            pools.remove(&channel);
        }
    }
}

impl Drop for ChannelActors {
    /// Stopping is asynchronous: the supervisor stops its pools on its own task.
    fn drop(&mut self) {
        if let Some(supervisor) = self.supervisor.get_mut().take() {
            supervisor.stop(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::channels::Provider;
    use crate::domain::template::{RenderedMessage, SmsTemplate};

    fn sms(address: &str) -> OutboundMessage {
        OutboundMessage {
            message_id: uuid::Uuid::new_v4().simple().to_string(),
            project_id: "p".to_string(),
            endpoint_id: None,
            channel: ChannelType::Sms,
            address: address.to_string(),
            content: RenderedMessage::Sms(SmsTemplate {
                body: "hi".to_string(),
            }),
            origination_number: String::new(),
        }
    }

    fn settings(workers: usize, queued: usize) -> ChannelPoolSettings {
        ChannelPoolSettings {
            workers,
            queued,
            ..ChannelPoolSettings::new(RetryPolicy::default())
        }
    }

    /// Counts the sends in flight at the provider and the most ever seen at once. A send to
    /// "panic" panics; a send waits for a permit of `gate` when there is one.
    #[derive(Default)]
    struct CountingProvider {
        in_flight: AtomicUsize,
        peak: AtomicUsize,
        started: AtomicUsize,
        gate: Option<Semaphore>,
    }

    impl CountingProvider {
        fn gated() -> Self {
            Self {
                gate: Some(Semaphore::new(0)),
                ..Self::default()
            }
        }
    }

    #[tonic::async_trait]
    impl Provider for CountingProvider {
        async fn send(&self, message: &OutboundMessage) -> DeliveryOutcome {
            self.started.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            if message.address == "panic" {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                panic!("provider bug (expected by the test)");
            }
            match &self.gate {
                Some(gate) => gate.acquire().await.expect("gate open").forget(),
                None => tokio::time::sleep(Duration::from_millis(10)).await,
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            DeliveryOutcome::new(DeliveryStatus::Successful, "counted")
        }
    }

    /// Polls `condition` as time passes (paused in these tests) until it holds; fails after a
    /// simulated minute.
    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A pool sends concurrently on all its workers and never on more: 40 sends through 4
    /// workers all succeed with exactly 4 at the provider at the busiest moment.
    #[tokio::test(start_paused = true)]
    async fn a_pool_sends_concurrently_up_to_its_workers() {
        let provider = Arc::new(CountingProvider::default());
        let actors = ChannelActors::new(settings(4, 4));
        let shared: SharedProvider = provider.clone();
        let outcomes = futures::future::join_all(
            (0..40).map(|_| actors.send(Arc::clone(&shared), sms("+15550100"))),
        )
        .await;
        assert!(
            outcomes
                .iter()
                .all(|o| o.status == DeliveryStatus::Successful)
        );
        assert_eq!(provider.started.load(Ordering::SeqCst), 40);
        assert_eq!(provider.peak.load(Ordering::SeqCst), 4);
        actors.stop().await;
    }

    /// A provider that panics kills only the worker making that send: its caller is answered
    /// UNKNOWN_FAILURE, the pool (the same factory) goes on and later sends succeed.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_provider_does_not_take_the_pool_down() {
        let provider: SharedProvider = Arc::new(CountingProvider::default());
        let actors = ChannelActors::new(settings(2, 2));
        let before = actors.pool(ChannelType::Sms).await.unwrap();

        let outcome = actors.send(Arc::clone(&provider), sms("panic")).await;
        assert_eq!(outcome.status, DeliveryStatus::UnknownFailure);

        let outcomes = futures::future::join_all(
            (0..6).map(|_| actors.send(Arc::clone(&provider), sms("+15550100"))),
        )
        .await;
        assert!(
            outcomes
                .iter()
                .all(|o| o.status == DeliveryStatus::Successful)
        );
        let after = actors.pool(ChannelType::Sms).await.unwrap();
        assert_eq!(before.factory.get_id(), after.factory.get_id());
        actors.stop().await;
    }

    /// Back-pressure: with 2 workers and a queue of 2, 10 sends against a provider that does
    /// not answer yet put 2 at the provider and 2 in the factory's queue; the other 6 wait
    /// for a permit outside the actors. Once the provider answers, all 10 succeed and the
    /// provider never had more than 2 at once.
    #[tokio::test(start_paused = true)]
    async fn sends_beyond_the_bound_wait_instead_of_queueing() {
        let provider = Arc::new(CountingProvider::gated());
        let actors = Arc::new(ChannelActors::new(settings(2, 2)));
        let pool = actors.pool(ChannelType::Sms).await.unwrap();
        let shared: SharedProvider = provider.clone();
        let sends: Vec<_> = (0..10)
            .map(|_| {
                let actors = Arc::clone(&actors);
                let provider = Arc::clone(&shared);
                tokio::spawn(async move { actors.send(provider, sms("+15550100")).await })
            })
            .collect();

        eventually("two sends at the provider", || {
            provider.in_flight.load(Ordering::SeqCst) == 2
        })
        .await;
        eventually("every permit taken", || {
            pool.permits.available_permits() == 0
        })
        .await;
        let queued = pool
            .factory
            .queue_depth(Some(Duration::from_secs(5)))
            .await
            .unwrap();
        let CallResult::Success(queued) = queued else {
            panic!("no queue depth: {queued:?}");
        };
        assert_eq!(
            queued, 2,
            "only the permits' worth is queued in the factory"
        );
        assert_eq!(provider.started.load(Ordering::SeqCst), 2);

        provider.gate.as_ref().unwrap().add_permits(10);
        for send in sends {
            assert_eq!(send.await.unwrap().status, DeliveryStatus::Successful);
        }
        assert_eq!(provider.started.load(Ordering::SeqCst), 10);
        assert_eq!(provider.peak.load(Ordering::SeqCst), 2);
        actors.stop().await;
    }

    /// A provider that never answers holds a worker only until the attempt deadline: the send
    /// is retried by the policy and answered TEMPORARY_FAILURE.
    #[tokio::test(start_paused = true)]
    async fn a_provider_that_never_answers_is_a_temporary_failure() {
        struct SilentProvider(AtomicUsize);
        #[tonic::async_trait]
        impl Provider for SilentProvider {
            async fn send(&self, _message: &OutboundMessage) -> DeliveryOutcome {
                self.0.fetch_add(1, Ordering::SeqCst);
                std::future::pending().await
            }
        }
        let provider = Arc::new(SilentProvider(AtomicUsize::new(0)));
        let actors = ChannelActors::new(ChannelPoolSettings {
            retry: RetryPolicy {
                backoffs: vec![Duration::from_secs(1)],
            },
            attempt_timeout: Duration::from_secs(5),
            ..settings(1, 1)
        });
        let outcome = actors.send(provider.clone(), sms("+15550100")).await;
        assert_eq!(outcome.status, DeliveryStatus::TemporaryFailure);
        assert_eq!(provider.0.load(Ordering::SeqCst), 2);
        actors.stop().await;
    }

    /// Stopping answers every caller: a send stuck at the provider is answered UNKNOWN_FAILURE
    /// after the grace period, and sends after the stop are answered at once.
    #[tokio::test(start_paused = true)]
    async fn stopping_answers_every_caller() {
        let provider = Arc::new(CountingProvider::gated());
        let actors = Arc::new(ChannelActors::new(settings(1, 1)));
        let shared: SharedProvider = provider.clone();
        let stuck = tokio::spawn({
            let actors = Arc::clone(&actors);
            let provider = Arc::clone(&shared);
            async move { actors.send(provider, sms("+15550100")).await }
        });
        eventually("the send at the provider", || {
            provider.in_flight.load(Ordering::SeqCst) == 1
        })
        .await;

        actors.stop().await;
        assert_eq!(stuck.await.unwrap().status, DeliveryStatus::UnknownFailure);
        let after = actors.send(shared, sms("+15550100")).await;
        assert_eq!(after.status, DeliveryStatus::UnknownFailure);
        assert_eq!(provider.started.load(Ordering::SeqCst), 1);
    }
}
