//! The baseline: a gRPC server with Herald's API that decodes every request and answers
//! without doing anything, so what the bench reaches against it is the ceiling that tonic,
//! HTTP/2 and loopback TCP set on this machine.

use std::net::SocketAddr;
use std::time::Duration;

use herald_proto::v1::events_server::{Events, EventsServer};
use herald_proto::v1::projects_server::{Projects, ProjectsServer};
use herald_proto::v1::{
    CreateProjectRequest, DeleteProjectRequest, EventsItemResponse, GetProjectRequest, ItemResult,
    ListProjectsRequest, ListProjectsResponse, Project, PutEventsRequest, PutEventsResponse,
    UpdateProjectSettingsRequest,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::wire::ACCEPTED;

/// How long the baseline's connections get to close before it is stopped regardless.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The project every `CreateProject` returns.
const BASELINE_PROJECT_ID: &str = "baseline";

/// A running baseline server on loopback.
#[derive(Debug)]
pub struct BaselineServer {
    /// Where it listens, on 127.0.0.1.
    pub addr: SocketAddr,
    /// Asks the server to stop accepting and drain.
    stop: oneshot::Sender<()>,
    /// The serving task, awaited on shutdown so that its errors surface.
    serving: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl BaselineServer {
    /// Starts the server on a port of 127.0.0.1 chosen by the OS.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        // The builder's `tcp_nodelay` only reaches listeners it binds itself; without
        // TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms to every response.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let serving = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(EventsServer::new(NoOpEvents))
                .add_service(ProjectsServer::new(NoOpProjects))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        Ok(Self {
            addr,
            stop,
            serving,
        })
    }

    /// Stops the server, waiting a little for open connections to close.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let mut serving = self.serving;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut serving).await {
            Ok(joined) => Ok(joined??),
            Err(_elapsed) => {
                serving.abort();
                Ok(())
            }
        }
    }
}

/// Runs the baseline until SIGTERM or Ctrl-C, announcing its address on stderr for the bench
/// that started this process.
pub async fn serve_until_signal() -> anyhow::Result<()> {
    let server = BaselineServer::start().await?;
    eprintln!(
        "baseline serving {}{}",
        super::process::ADDRESS_MARKER,
        server.addr
    );
    crate::server::wait_for_signal().await?;
    server.shutdown().await
}

/// `Events` answering 202 for every event, storing nothing.
#[derive(Debug, Clone, Copy)]
struct NoOpEvents;

#[tonic::async_trait]
impl Events for NoOpEvents {
    async fn put_events(
        &self,
        request: Request<PutEventsRequest>,
    ) -> Result<Response<PutEventsResponse>, Status> {
        Ok(Response::new(accept_all(request.into_inner())))
    }
}

/// The response Herald gives when it accepts every event of `request`.
fn accept_all(request: PutEventsRequest) -> PutEventsResponse {
    let accepted = || ItemResult {
        status_code: ACCEPTED,
        message: "Accepted".to_owned(),
        field: String::new(),
    };
    let results = request
        .batch_item
        .into_iter()
        .map(|(endpoint_id, batch)| {
            let events_item_response = batch
                .events
                .into_keys()
                .map(|event_id| (event_id, accepted()))
                .collect();
            let item = EventsItemResponse {
                endpoint_item_response: Some(accepted()),
                events_item_response,
            };
            (endpoint_id, item)
        })
        .collect();
    PutEventsResponse { results }
}

/// `Projects` whose `CreateProject` returns a fixed project; nothing else is needed.
#[derive(Debug, Clone, Copy)]
struct NoOpProjects;

#[tonic::async_trait]
impl Projects for NoOpProjects {
    async fn create_project(
        &self,
        request: Request<CreateProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        let request = request.into_inner();
        Ok(Response::new(Project {
            project_id: BASELINE_PROJECT_ID.to_owned(),
            name: request.name,
            creation_date: chrono::Utc::now().to_rfc3339(),
            settings: None,
            tags: request.tags,
        }))
    }

    async fn get_project(
        &self,
        _request: Request<GetProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        Err(Status::unimplemented("the baseline only creates projects"))
    }

    async fn list_projects(
        &self,
        _request: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        Err(Status::unimplemented("the baseline only creates projects"))
    }

    async fn update_project_settings(
        &self,
        _request: Request<UpdateProjectSettingsRequest>,
    ) -> Result<Response<Project>, Status> {
        Err(Status::unimplemented("the baseline only creates projects"))
    }

    async fn delete_project(
        &self,
        _request: Request<DeleteProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        Err(Status::unimplemented("the baseline only creates projects"))
    }
}
