//! Starting and stopping a node: the library takes a config, binds its listeners and runs
//! until told to stop; only `main` reads flags and signals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_proto::v1::endpoints_server::EndpointsServer;
use herald_proto::v1::events_server::EventsServer;
use herald_proto::v1::projects_server::ProjectsServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::api::endpoints::EndpointsApi;
use crate::api::events::EventsApi;
use crate::api::projects::ProjectsApi;
use crate::cluster::Cluster;
use crate::config::Config;

/// A node serving on its listeners.
pub struct RunningNode {
    /// The gRPC address clients connect to.
    pub client_addr: SocketAddr,
    /// The Prometheus address, when this node installed the process's exporter.
    pub metrics_addr: Option<SocketAddr>,
    cluster: Arc<Cluster>,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<Result<(), tonic::transport::Error>>,
    metrics_task: JoinHandle<()>,
}

impl RunningNode {
    /// Opens the node's storage, starts its Raft groups and serves gRPC on
    /// `config.server.listen` (port 0 picks a free port; see [`Self::client_addr`]).
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let client_addr = listener.local_addr()?;
        let metrics_addr = crate::metrics::install(config.server.metrics_listen)
            .with_context(|| format!("cannot serve metrics on {}", config.server.metrics_listen))?;
        let request_bytes = config.limits.request_bytes;
        let cluster = Cluster::start(config, client_addr.to_string()).await?;

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<ProjectsServer<ProjectsApi>>()
            .await;
        health_reporter
            .set_serving::<EndpointsServer<EndpointsApi>>()
            .await;
        health_reporter
            .set_serving::<EventsServer<EventsApi>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(herald_proto::DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building the reflection service")?;

        // Small responses must not wait for Nagle's algorithm.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop, stopped) = oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                ProjectsServer::new(ProjectsApi::new(cluster.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(
                EndpointsServer::new(EndpointsApi::new(cluster.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(
                EventsServer::new(EventsApi::new(cluster.clone()))
                    .max_decoding_message_size(request_bytes),
            );
        let serving = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        }));
        let metrics_cluster = cluster.clone();
        let metrics_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                metrics_cluster.record_metrics();
            }
        });
        tracing::info!(%client_addr, node_id = cluster.node_id(), "herald node serving");
        Ok(Self {
            client_addr,
            metrics_addr,
            cluster,
            stop,
            serving,
            metrics_task,
        })
    }

    /// Stops accepting requests, finishes the ones in flight, stops the Raft groups and
    /// flushes storage.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.serving.await.context("server task")??;
        self.metrics_task.abort();
        self.cluster.shutdown().await;
        Ok(())
    }
}

/// Runs a node until SIGTERM or Ctrl-C, then shuts it down gracefully.
pub async fn serve_until_signal(config: Config) -> anyhow::Result<()> {
    let node = RunningNode::start(config).await?;
    if let Some(metrics) = node.metrics_addr {
        tracing::info!(%metrics, "prometheus metrics at /metrics");
    }
    wait_for_signal().await?;
    tracing::info!("stopping: finishing requests in flight");
    node.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
