//! `herald.v1.Projects`.

use herald_proto::v1 as pb;
use herald_proto::v1::projects_server::Projects;
use tonic::{Request, Response, Status};

use super::convert::{project_to_proto, settings_from_proto};
use super::status::{invalid_argument, to_status};
use super::{ClusterHandle, check_ids, observed};
use crate::domain::project;

/// Largest page of ListProjects.
const MAX_PAGE: usize = 1_000;

/// The Projects service over a cluster.
pub struct ProjectsApi {
    cluster: ClusterHandle,
}

impl ProjectsApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

#[tonic::async_trait]
impl Projects for ProjectsApi {
    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        observed("CreateProject", async {
            let request = request.into_inner();
            let violations = project::validate_name("name", &request.name);
            if !violations.is_empty() {
                return Err(invalid_argument(&violations));
            }
            let project = self
                .cluster
                .get()?
                .create_project(request.name, request.tags.into_iter().collect())
                .await
                .map_err(to_status)?;
            Ok(project_to_proto(&project))
        })
        .await
    }

    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        observed("GetProject", async {
            let request = request.into_inner();
            check_ids(
                &[("project_id", &request.project_id)],
                self.cluster.get()?.limits(),
            )?;
            let project = self
                .cluster
                .get()?
                .get_project(&request.project_id)
                .await
                .map_err(to_status)?;
            Ok(project_to_proto(&project))
        })
        .await
    }

    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        observed("ListProjects", async {
            let request = request.into_inner();
            let page_size = match request.page_size as usize {
                0 => MAX_PAGE,
                n => n.min(MAX_PAGE),
            };
            let projects = self
                .cluster
                .get()?
                .list_projects(&request.page_token, page_size)
                .await
                .map_err(to_status)?;
            let next_page_token = if projects.len() == page_size {
                projects
                    .last()
                    .map(|p| p.project_id.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            Ok(pb::ListProjectsResponse {
                projects: projects.iter().map(project_to_proto).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn update_project_settings(
        &self,
        request: Request<pb::UpdateProjectSettingsRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        observed("UpdateProjectSettings", async {
            let request = request.into_inner();
            check_ids(
                &[("project_id", &request.project_id)],
                self.cluster.get()?.limits(),
            )?;
            let Some(settings) = request.settings else {
                return Err(invalid_argument(&[crate::domain::FieldViolation::new(
                    "settings",
                    "is required",
                )]));
            };
            let settings = settings_from_proto(settings);
            let violations = project::validate_settings("settings", &settings);
            if !violations.is_empty() {
                return Err(invalid_argument(&violations));
            }
            let project = self
                .cluster
                .get()?
                .update_project_settings(&request.project_id, settings)
                .await
                .map_err(to_status)?;
            Ok(project_to_proto(&project))
        })
        .await
    }

    async fn delete_project(
        &self,
        request: Request<pb::DeleteProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        observed("DeleteProject", async {
            let request = request.into_inner();
            check_ids(
                &[("project_id", &request.project_id)],
                self.cluster.get()?.limits(),
            )?;
            let project = self
                .cluster
                .get()?
                .delete_project(&request.project_id)
                .await
                .map_err(to_status)?;
            Ok(project_to_proto(&project))
        })
        .await
    }
}
