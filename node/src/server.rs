//! Starting and stopping a node: the library takes a config, binds its listeners and runs
//! until told to stop; only `main` reads flags and signals.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use herald_proto::internal::v1::peer_server::PeerServer;
use herald_proto::v1::analytics_server::AnalyticsServer;
use herald_proto::v1::campaigns_server::CampaignsServer;
use herald_proto::v1::channels_server::ChannelsServer;
use herald_proto::v1::cluster_server::ClusterServer;
use herald_proto::v1::endpoints_server::EndpointsServer;
use herald_proto::v1::events_server::EventsServer;
use herald_proto::v1::imports_server::ImportsServer;
use herald_proto::v1::messages_server::MessagesServer;
use herald_proto::v1::projects_server::ProjectsServer;
use herald_proto::v1::segments_server::SegmentsServer;
use herald_proto::v1::templates_server::TemplatesServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::api::ClusterHandle;
use crate::api::campaigns::{AnalyticsApi, CampaignsApi};
use crate::api::channels::ChannelsApi;
use crate::api::cluster::ClusterApi;
use crate::api::endpoints::EndpointsApi;
use crate::api::events::EventsApi;
use crate::api::imports::ImportsApi;
use crate::api::messages::MessagesApi;
use crate::api::peer::PeerApi;
use crate::api::projects::ProjectsApi;
use crate::api::segments::SegmentsApi;
use crate::api::templates::TemplatesApi;
use crate::cluster::Cluster;
use crate::config::Config;

/// Largest peer message: Raft batches and snapshot chunks.
const PEER_MESSAGE_BYTES: usize = 64 << 20;

type Serving = JoinHandle<Result<(), tonic::transport::Error>>;

/// A node serving on its listeners.
pub struct RunningNode {
    /// The gRPC address clients connect to.
    pub client_addr: SocketAddr,
    /// The address peers dial.
    pub peer_addr: String,
    /// The Prometheus address, when this node installed the process's exporter.
    pub metrics_addr: Option<SocketAddr>,
    /// This node's id in the cluster.
    pub node_id: u64,
    cluster: Arc<Cluster>,
    stops: Vec<oneshot::Sender<()>>,
    serving: Vec<Serving>,
}

fn serve(
    router: tonic::transport::server::Router,
    listener: TcpListener,
) -> (oneshot::Sender<()>, Serving) {
    // Small responses must not wait for Nagle's algorithm.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stopped.await;
    }));
    (stop, serving)
}

impl RunningNode {
    /// Binds the node's listeners, serves, and starts (or joins) its cluster; returns once the
    /// meta group has a leader. Port 0 picks a free port (see [`Self::client_addr`]).
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let client_addr = listener.local_addr()?;
        let peer_listener = match config.server.peer_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for peers on {addr}"))?,
            ),
            None => None,
        };
        let peer_addr = match (&config.server.advertise_peer, &peer_listener) {
            (Some(addr), _) => addr.clone(),
            (None, Some(listener)) => listener.local_addr()?.to_string(),
            (None, None) => client_addr.to_string(),
        };
        let metrics_addr = crate::metrics::install(config.server.metrics_listen)
            .with_context(|| format!("cannot serve metrics on {}", config.server.metrics_listen))?;
        let request_bytes = config.limits.request_bytes;

        let handle = ClusterHandle::default();
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(herald_proto::DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building the reflection service")?;
        let peer_service = || {
            PeerServer::new(PeerApi::new(handle.clone()))
                .max_decoding_message_size(PEER_MESSAGE_BYTES)
                .max_encoding_message_size(PEER_MESSAGE_BYTES)
        };
        let client_router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                ProjectsServer::new(ProjectsApi::new(handle.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(
                EndpointsServer::new(EndpointsApi::new(handle.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(
                EventsServer::new(EventsApi::new(handle.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(
                MessagesServer::new(MessagesApi::new(handle.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(
                TemplatesServer::new(TemplatesApi::new(handle.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(
                SegmentsServer::new(SegmentsApi::new(handle.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(
                CampaignsServer::new(CampaignsApi::new(handle.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(
                AnalyticsServer::new(AnalyticsApi::new(handle.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(
                ImportsServer::new(ImportsApi::new(handle.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(
                ChannelsServer::new(ChannelsApi::new(handle.clone()))
                    .max_decoding_message_size(request_bytes),
            )
            .add_service(ClusterServer::new(ClusterApi::new(handle.clone())))
            .add_service(peer_service());
        let mut stops = Vec::new();
        let mut serving = Vec::new();
        let (stop, task) = serve(client_router, listener);
        stops.push(stop);
        serving.push(task);
        if let Some(peer_listener) = peer_listener {
            let (stop, task) = serve(
                tonic::transport::Server::builder().add_service(peer_service()),
                peer_listener,
            );
            stops.push(stop);
            serving.push(task);
        }

        let cluster = Cluster::start(config, client_addr.to_string(), peer_addr.clone()).await?;
        handle.set(cluster.clone());
        cluster.wait_ready().await;
        health_reporter
            .set_serving::<ProjectsServer<ProjectsApi>>()
            .await;
        health_reporter
            .set_serving::<EndpointsServer<EndpointsApi>>()
            .await;
        health_reporter
            .set_serving::<EventsServer<EventsApi>>()
            .await;
        let node_id = cluster.node_id();
        tracing::info!(%client_addr, %peer_addr, node_id, "herald node serving");
        Ok(Self {
            client_addr,
            peer_addr,
            metrics_addr,
            node_id,
            cluster,
            stops,
            serving,
        })
    }

    /// Stops accepting requests, finishes the ones in flight, stops the Raft groups and
    /// flushes storage.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        for stop in self.stops {
            let _ = stop.send(());
        }
        self.cluster.shutdown().await;
        for task in self.serving {
            // Peers may keep connections open; do not wait on them forever.
            match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
                Ok(joined) => joined.context("server task")??,
                Err(_) => tracing::warn!("connections still open after 5 s, closing"),
            }
        }
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
