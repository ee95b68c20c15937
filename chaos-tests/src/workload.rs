//! The clients: concurrent tasks that write and read endpoint registers and put events through
//! different nodes, recording every operation in the [`History`]; and the final reads that
//! look for every write once the faults have healed.
//!
//! Each client starts on its own node (client `c` on node `c mod N`) and moves to the next node
//! when an operation's outcome is unknown (the node is dead, paused or cut off), as an
//! application with a list of nodes would. Every request has a deadline, sent to the server
//! as `grpc-timeout` and enforced locally, so a client never waits on a frozen node for long.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_proto::v1 as pb;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::events_client::EventsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::history::{History, Op, OpKind, Outcome, Phase};
use crate::seed::SplitMix64;

/// The client id recorded for the final reads.
pub const FINAL_READER: usize = usize::MAX;

/// Events per `PutEvents` request.
const EVENTS_PER_PUT: usize = 3;

/// What the clients do.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// Concurrent clients.
    pub clients: usize,
    /// Shared registers `r0..rN`, written and read by every client.
    pub registers: usize,
    /// Percent of register operations that are reads.
    pub read_percent: u32,
    /// Percent of operations that put events.
    pub event_percent: u32,
    /// Percent of operations that create a new endpoint written once (`o<client>-<n>`).
    pub create_percent: u32,
    /// Deadline of one request.
    pub op_timeout: Duration,
    /// Pause between two operations of a client, leaving CPU to the nodes on small machines.
    pub think_time: Duration,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        Self {
            clients: 4,
            registers: 8,
            read_percent: 50,
            event_percent: 15,
            create_percent: 15,
            op_timeout: Duration::from_millis(1_000),
            think_time: Duration::from_millis(10),
        }
    }
}

/// Node addresses the clients may use: (node index, client address). Shared so that the
/// scenario can add a node or drop a removed one while the clients run.
#[derive(Clone, Default)]
pub struct Targets(Arc<RwLock<Vec<(usize, SocketAddr)>>>);

impl Targets {
    /// Targets from a list.
    pub fn new(nodes: Vec<(usize, SocketAddr)>) -> Self {
        Self(Arc::new(RwLock::new(nodes)))
    }

    /// Replaces the list.
    pub fn set(&self, nodes: Vec<(usize, SocketAddr)>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = nodes;
    }

    /// The current list.
    pub fn get(&self) -> Vec<(usize, SocketAddr)> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Running clients.
pub struct Workload {
    /// Set to stop every client after its current operation.
    stop: Arc<AtomicBool>,
    /// The clients.
    tasks: Vec<JoinHandle<()>>,
    /// Longest a client may take to notice `stop`.
    stop_grace: Duration,
}

impl Workload {
    /// Starts `options.clients` clients on `project`.
    pub fn start(
        history: Arc<History>,
        project_id: String,
        targets: Targets,
        options: WorkloadOptions,
        rng: &mut SplitMix64,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        // Every written value is unique in the run: a read names the write it saw.
        let values = Arc::new(AtomicU64::new(1));
        let tasks = (0..options.clients)
            .map(|client| {
                let client_loop = ClientLoop {
                    client,
                    project_id: project_id.clone(),
                    history: history.clone(),
                    targets: targets.clone(),
                    options: options.clone(),
                    rng: rng.fork(),
                    values: values.clone(),
                    stop: stop.clone(),
                };
                tokio::spawn(client_loop.run())
            })
            .collect();
        Self {
            stop,
            tasks,
            stop_grace: options.op_timeout * 2 + options.think_time + Duration::from_secs(5),
        }
    }

    /// Stops the clients and waits for them (bounded: stragglers are aborted).
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + self.stop_grace;
        for task in self.tasks {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let abort = task.abort_handle();
            if tokio::time::timeout(remaining, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// One client's state.
struct ClientLoop {
    /// Its id, recorded in every operation.
    client: usize,
    /// The project every operation is in.
    project_id: String,
    /// Where operations are recorded.
    history: Arc<History>,
    /// The nodes it may use.
    targets: Targets,
    /// What it does.
    options: WorkloadOptions,
    /// Its choices.
    rng: SplitMix64,
    /// The run's value counter.
    values: Arc<AtomicU64>,
    /// Set when the run ends.
    stop: Arc<AtomicBool>,
}

impl ClientLoop {
    async fn run(mut self) {
        let mut channels = Channels::default();
        let mut offset = 0usize;
        let mut created = 0u64;
        let mut puts = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            let targets = self.targets.get();
            if targets.is_empty() {
                tokio::time::sleep(self.options.think_time.max(Duration::from_millis(10))).await;
                continue;
            }
            let (node, addr) = targets[(self.client + offset) % targets.len()];
            let Ok(channel) = channels.get(addr) else {
                offset += 1;
                continue;
            };
            let roll = self.rng.below(100) as u32;
            let outcomes = if roll < self.options.event_percent {
                puts += 1;
                let endpoint_id = format!("ev-{}", self.client);
                let event_ids = (0..EVENTS_PER_PUT)
                    .map(|k| format!("c{}-{puts}-{k}", self.client))
                    .collect();
                put_events(
                    &self.history,
                    &channel,
                    self.client,
                    node,
                    &self.project_id,
                    &endpoint_id,
                    event_ids,
                    self.options.op_timeout,
                )
                .await
            } else if roll < self.options.event_percent + self.options.create_percent {
                created += 1;
                let key = format!("o{}-{created}", self.client);
                vec![self.write(&channel, node, &key).await]
            } else {
                let key = format!("r{}", self.rng.below(self.options.registers.max(1)));
                if self.rng.percent(self.options.read_percent) {
                    let op = read_register(
                        &self.history,
                        &channel,
                        self.client,
                        node,
                        &self.project_id,
                        &key,
                        self.options.op_timeout,
                        Phase::Workload,
                    )
                    .await;
                    vec![op.outcome]
                } else {
                    vec![self.write(&channel, node, &key).await]
                }
            };
            if outcomes
                .iter()
                .any(|outcome| matches!(outcome, Outcome::Unknown { .. }))
            {
                offset += 1;
            }
            tokio::time::sleep(self.options.think_time).await;
        }
    }

    async fn write(&mut self, channel: &Channel, node: usize, key: &str) -> Outcome {
        let value = format!(
            "v{}@example.com",
            self.values.fetch_add(1, Ordering::SeqCst)
        );
        let mut client = EndpointsClient::new(channel.clone());
        let request = pb::UpdateEndpointRequest {
            project_id: self.project_id.clone(),
            endpoint_id: key.to_string(),
            endpoint: Some(pb::EndpointRequest {
                address: value.clone(),
                channel_type: pb::ChannelType::Email as i32,
                ..Default::default()
            }),
        };
        let invoked_us = self.history.now_us();
        let result = call(
            self.options.op_timeout,
            |request| client.update_endpoint(request),
            request,
        )
        .await;
        let outcome = match result {
            Ok(_) => Outcome::Ok,
            Err(status) => classify(&status),
        };
        self.history.record(Op {
            client: self.client,
            node,
            kind: OpKind::Write,
            key: key.to_string(),
            value: Some(value),
            invoked_us,
            completed_us: self.history.now_us(),
            outcome: outcome.clone(),
            phase: Phase::Workload,
        });
        outcome
    }
}

/// Lazily connected channels by node address, reused for the whole run.
#[derive(Default)]
struct Channels(HashMap<SocketAddr, Channel>);

impl Channels {
    fn get(&mut self, addr: SocketAddr) -> anyhow::Result<Channel> {
        if let Some(channel) = self.0.get(&addr) {
            return Ok(channel.clone());
        }
        let channel = channel_to(addr)?;
        self.0.insert(addr, channel.clone());
        Ok(channel)
    }
}

/// A lazily connected channel to a node's client port.
fn channel_to(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Sends `request` with a deadline: `grpc-timeout` for the server, a local timeout for a
/// frozen one.
async fn call<Req, Resp, F, Fut>(
    timeout: Duration,
    send: F,
    request: Req,
) -> Result<Resp, tonic::Status>
where
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    let mut request = tonic::Request::new(request);
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, send(request)).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

/// Whether an error means the operation was certainly not applied (`Err`) or may have been
/// (`Unknown`): UNAVAILABLE, deadlines and transport errors may hide a committed write.
pub fn classify(status: &tonic::Status) -> Outcome {
    use tonic::Code;
    let definite = matches!(
        status.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Unauthenticated
            | Code::ResourceExhausted
    );
    if definite {
        Outcome::Err {
            code: format!("{:?}", status.code()),
            message: status.message().to_string(),
        }
    } else {
        Outcome::Unknown {
            reason: format!("{:?}: {}", status.code(), status.message()),
        }
    }
}

/// The outcome of one item of a batch: 202 accepted, 4xx refused, anything else unknown.
fn classify_item(result: Option<&pb::ItemResult>) -> Outcome {
    match result {
        Some(item) if item.status_code == 202 => Outcome::Ok,
        Some(item) if (400..500).contains(&item.status_code) => Outcome::Err {
            code: item.status_code.to_string(),
            message: item.message.clone(),
        },
        Some(item) => Outcome::Unknown {
            reason: format!("{}: {}", item.status_code, item.message),
        },
        None => Outcome::Unknown {
            reason: "no item result".to_string(),
        },
    }
}

/// Reads register `key` through `node` and records it.
#[allow(clippy::too_many_arguments)]
async fn read_register(
    history: &History,
    channel: &Channel,
    client: usize,
    node: usize,
    project_id: &str,
    key: &str,
    timeout: Duration,
    phase: Phase,
) -> Op {
    let mut endpoints = EndpointsClient::new(channel.clone());
    let request = pb::GetEndpointRequest {
        project_id: project_id.to_string(),
        endpoint_id: key.to_string(),
    };
    let invoked_us = history.now_us();
    let result = call(timeout, |request| endpoints.get_endpoint(request), request).await;
    let (value, outcome) = match result {
        Ok(endpoint) => (Some(endpoint.address), Outcome::Ok),
        // The endpoint does not exist: an answer. (The project exists from the start, so a
        // node that says it does not is answering from stale state: judged like any read.)
        Err(status) if status.code() == tonic::Code::NotFound => (None, Outcome::Ok),
        Err(status) => (None, classify(&status)),
    };
    let op = Op {
        client,
        node,
        kind: OpKind::Read,
        key: key.to_string(),
        value,
        invoked_us,
        completed_us: history.now_us(),
        outcome,
        phase,
    };
    history.record(op.clone());
    op
}

/// Puts `event_ids` for `endpoint_id` in one request and records one operation per event.
#[allow(clippy::too_many_arguments)]
async fn put_events(
    history: &History,
    channel: &Channel,
    client: usize,
    node: usize,
    project_id: &str,
    endpoint_id: &str,
    event_ids: Vec<String>,
    timeout: Duration,
) -> Vec<Outcome> {
    let mut events = EventsClient::new(channel.clone());
    let batch = pb::EventsBatch {
        endpoint: None,
        events: event_ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    pb::Event {
                        event_type: "chaos.tick".into(),
                        timestamp: "2026-11-25T10:00:00Z".into(),
                        ..Default::default()
                    },
                )
            })
            .collect(),
    };
    let request = pb::PutEventsRequest {
        project_id: project_id.to_string(),
        batch_item: HashMap::from([(endpoint_id.to_string(), batch)]),
    };
    let invoked_us = history.now_us();
    let result = call(timeout, |request| events.put_events(request), request).await;
    let completed_us = history.now_us();
    event_ids
        .into_iter()
        .map(|event_id| {
            let outcome = match &result {
                Ok(response) => classify_item(
                    response
                        .results
                        .get(endpoint_id)
                        .and_then(|item| item.events_item_response.get(&event_id)),
                ),
                Err(status) => classify(status),
            };
            history.record(Op {
                client,
                node,
                kind: OpKind::PutEvent,
                key: endpoint_id.to_string(),
                value: Some(event_id),
                invoked_us,
                completed_us,
                outcome: outcome.clone(),
                phase: Phase::Workload,
            });
            outcome
        })
        .collect()
}

/// Creates the run's project through the first target that answers, retrying while the
/// cluster elects leaders (at most `timeout`).
pub async fn create_project(targets: &Targets, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut attempt = 0usize;
    loop {
        let nodes = targets.get();
        anyhow::ensure!(!nodes.is_empty(), "no node to create the project on");
        let (_, addr) = nodes[attempt % nodes.len()];
        attempt += 1;
        let mut projects = ProjectsClient::new(channel_to(addr)?);
        let request = pb::CreateProjectRequest {
            name: "chaos".into(),
            tags: HashMap::new(),
        };
        match call(
            Duration::from_secs(5),
            |request| projects.create_project(request),
            request,
        )
        .await
        {
            Ok(project) => return Ok(project.project_id),
            Err(status) => {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "could not create the project within {timeout:?}: {status}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// After the faults healed: reads every register that any client wrote, shared registers
/// through every target and write-once endpoints through one (rotating), retrying each read
/// that gets no answer until `timeout` runs out. Every read is recorded in the final phase.
/// Returns the reads that never got an answer: after healing, every member must answer.
pub async fn final_reads(
    history: &Arc<History>,
    project_id: &str,
    targets: &[(usize, SocketAddr)],
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(!targets.is_empty(), "no node for the final reads");
    let keys: BTreeSet<String> = history
        .ops()
        .into_iter()
        .filter(|op| op.kind == OpKind::Write)
        .map(|op| op.key)
        .collect();
    let mut reads: Vec<(String, (usize, SocketAddr))> = Vec::new();
    for (position, key) in keys.into_iter().enumerate() {
        if key.starts_with('r') {
            reads.extend(targets.iter().map(|&target| (key.clone(), target)));
        } else {
            reads.push((key, targets[position % targets.len()]));
        }
    }
    let deadline = Instant::now() + timeout;
    const READERS: usize = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for reader in 0..READERS {
        let mine: Vec<(String, (usize, SocketAddr))> = reads
            .iter()
            .skip(reader)
            .step_by(READERS)
            .cloned()
            .collect();
        let history = history.clone();
        let project_id = project_id.to_string();
        tasks.spawn(async move {
            let mut channels = Channels::default();
            let mut unanswered = HashSet::new();
            for (key, (node, addr)) in mine {
                let channel = channels.get(addr)?;
                loop {
                    let op = read_register(
                        &history,
                        &channel,
                        FINAL_READER,
                        node,
                        &project_id,
                        &key,
                        Duration::from_secs(2),
                        Phase::Final,
                    )
                    .await;
                    if op.outcome.is_ok() {
                        break;
                    }
                    if Instant::now() >= deadline {
                        unanswered.insert(format!("{key} via node {node}: {:?}", op.outcome));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            anyhow::Ok(unanswered)
        });
    }
    let mut unanswered = Vec::new();
    while let Some(result) = tasks.join_next().await {
        unanswered.extend(result.context("a final reader panicked")??);
    }
    unanswered.sort();
    Ok(unanswered)
}
