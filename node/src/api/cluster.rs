//! `herald.v1.Cluster`: status and removal of nodes, for operators.

use herald_proto::v1 as pb;
use herald_proto::v1::cluster_server::Cluster;
use tonic::{Request, Response, Status};

use super::status::to_status;
use super::{ClusterHandle, observed};

/// The Cluster service.
pub struct ClusterApi {
    cluster: ClusterHandle,
}

impl ClusterApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterApi {
    async fn get_cluster_status(
        &self,
        _request: Request<pb::GetClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        observed("GetClusterStatus", async {
            self.cluster.get()?.status().await.map_err(to_status)
        })
        .await
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        observed("RemoveNode", async {
            let cluster = self.cluster.get()?;
            cluster
                .remove_node(request.into_inner().node_id)
                .await
                .map_err(to_status)?;
            cluster.status().await.map_err(to_status)
        })
        .await
    }
}
