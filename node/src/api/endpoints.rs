//! `herald.v1.Endpoints`.

use herald_proto::v1 as pb;
use herald_proto::v1::endpoints_server::Endpoints;
use tonic::{Request, Response, Status};

use super::convert::{endpoint_input, endpoint_to_proto};
use super::status::{
    invalid_argument, item_accepted, item_failed, item_rejected, to_status, under,
};
use super::{ClusterHandle, check_batch_len, check_ids, observed};
use crate::domain::FieldViolation;
use crate::domain::endpoint::validate_id;

/// The Endpoints service over a cluster.
pub struct EndpointsApi {
    cluster: ClusterHandle,
}

impl EndpointsApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

#[tonic::async_trait]
impl Endpoints for EndpointsApi {
    async fn update_endpoint(
        &self,
        request: Request<pb::UpdateEndpointRequest>,
    ) -> Result<Response<pb::UpdateEndpointResponse>, Status> {
        observed("UpdateEndpoint", async {
            let request = request.into_inner();
            let limits = self.cluster.get()?.limits();
            let mut violations = Vec::new();
            validate_id("project_id", &request.project_id, limits, &mut violations);
            validate_id("endpoint_id", &request.endpoint_id, limits, &mut violations);
            let input = endpoint_input("endpoint", request.endpoint, limits);
            let input = match input {
                Ok(input) if violations.is_empty() => input,
                Ok(_) => return Err(invalid_argument(&violations)),
                Err(more) => {
                    violations.extend(more);
                    return Err(invalid_argument(&violations));
                }
            };
            let request_id = input.request_id.clone();
            let mut outcomes = self
                .cluster
                .get()?
                .upsert_endpoints(&request.project_id, vec![(request.endpoint_id, input)])
                .await
                .map_err(to_status)?;
            let endpoint = outcomes
                .pop()
                .expect("one outcome per item")
                .map_err(|error| to_status(under("endpoint", error)))?;
            Ok(pb::UpdateEndpointResponse {
                message: "Accepted".to_string(),
                request_id,
                endpoint: Some(endpoint_to_proto(&endpoint)),
            })
        })
        .await
    }

    async fn update_endpoints_batch(
        &self,
        request: Request<pb::UpdateEndpointsBatchRequest>,
    ) -> Result<Response<pb::UpdateEndpointsBatchResponse>, Status> {
        observed("UpdateEndpointsBatch", async {
            let request = request.into_inner();
            let limits = self.cluster.get()?.limits();
            check_ids(&[("project_id", &request.project_id)], limits)?;
            check_batch_len("items", request.items.len(), limits)?;
            // Each item gets its own result; only the valid ones are written.
            let mut results: Vec<Option<pb::ItemResult>> = vec![None; request.items.len()];
            let mut endpoint_ids = Vec::with_capacity(request.items.len());
            let mut valid = Vec::new();
            let mut valid_positions = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (position, item) in request.items.into_iter().enumerate() {
                let path = format!("items[{position}]");
                let mut violations = Vec::new();
                validate_id(
                    &format!("{path}.endpoint_id"),
                    &item.endpoint_id,
                    limits,
                    &mut violations,
                );
                if !seen.insert(item.endpoint_id.clone()) {
                    violations.push(FieldViolation::new(
                        format!("{path}.endpoint_id"),
                        format!("{:?} appears more than once in the batch", item.endpoint_id),
                    ));
                }
                endpoint_ids.push(item.endpoint_id.clone());
                match endpoint_input(&format!("{path}.endpoint"), item.endpoint, limits) {
                    Ok(input) if violations.is_empty() => {
                        valid.push((item.endpoint_id, input));
                        valid_positions.push(position);
                    }
                    Ok(_) => results[position] = Some(item_rejected(&violations)),
                    Err(more) => {
                        violations.extend(more);
                        results[position] = Some(item_rejected(&violations));
                    }
                }
            }
            let outcomes = if valid.is_empty() {
                self.cluster
                    .get()?
                    .get_project(&request.project_id)
                    .await
                    .map_err(to_status)?;
                Vec::new()
            } else {
                self.cluster
                    .get()?
                    .upsert_endpoints(&request.project_id, valid)
                    .await
                    .map_err(to_status)?
            };
            for (position, outcome) in valid_positions.into_iter().zip(outcomes) {
                results[position] = Some(match outcome {
                    Ok(_) => item_accepted(),
                    Err(error) => item_failed(&format!("items[{position}].endpoint"), &error),
                });
            }
            Ok(pb::UpdateEndpointsBatchResponse {
                results: endpoint_ids
                    .into_iter()
                    .zip(results)
                    .map(|(endpoint_id, result)| pb::EndpointBatchResult {
                        endpoint_id,
                        result,
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn get_endpoint(
        &self,
        request: Request<pb::GetEndpointRequest>,
    ) -> Result<Response<pb::Endpoint>, Status> {
        observed("GetEndpoint", async {
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("endpoint_id", &request.endpoint_id),
                ],
                self.cluster.get()?.limits(),
            )?;
            let endpoint = self
                .cluster
                .get()?
                .get_endpoint(&request.project_id, &request.endpoint_id)
                .await
                .map_err(to_status)?;
            Ok(endpoint_to_proto(&endpoint))
        })
        .await
    }

    async fn delete_endpoint(
        &self,
        request: Request<pb::DeleteEndpointRequest>,
    ) -> Result<Response<pb::Endpoint>, Status> {
        observed("DeleteEndpoint", async {
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("endpoint_id", &request.endpoint_id),
                ],
                self.cluster.get()?.limits(),
            )?;
            let endpoint = self
                .cluster
                .get()?
                .delete_endpoint(&request.project_id, &request.endpoint_id)
                .await
                .map_err(to_status)?;
            Ok(endpoint_to_proto(&endpoint))
        })
        .await
    }

    async fn get_user_endpoints(
        &self,
        request: Request<pb::GetUserEndpointsRequest>,
    ) -> Result<Response<pb::EndpointsList>, Status> {
        observed("GetUserEndpoints", async {
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("user_id", &request.user_id),
                ],
                self.cluster.get()?.limits(),
            )?;
            let endpoints = self
                .cluster
                .get()?
                .user_endpoints(&request.project_id, &request.user_id)
                .await
                .map_err(to_status)?;
            Ok(pb::EndpointsList {
                items: endpoints.iter().map(endpoint_to_proto).collect(),
            })
        })
        .await
    }

    async fn delete_user_endpoints(
        &self,
        request: Request<pb::DeleteUserEndpointsRequest>,
    ) -> Result<Response<pb::EndpointsList>, Status> {
        observed("DeleteUserEndpoints", async {
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("user_id", &request.user_id),
                ],
                self.cluster.get()?.limits(),
            )?;
            let endpoints = self
                .cluster
                .get()?
                .delete_user_endpoints(&request.project_id, &request.user_id)
                .await
                .map_err(to_status)?;
            Ok(pb::EndpointsList {
                items: endpoints.iter().map(endpoint_to_proto).collect(),
            })
        })
        .await
    }

    async fn get_in_app_messages(
        &self,
        request: Request<pb::GetInAppMessagesRequest>,
    ) -> Result<Response<pb::InAppMessagesList>, Status> {
        observed("GetInAppMessages", async {
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("endpoint_id", &request.endpoint_id),
                ],
                self.cluster.get()?.limits(),
            )?;
            let messages = self
                .cluster
                .get()?
                .in_app_messages(&request.project_id, &request.endpoint_id)
                .await
                .map_err(to_status)?;
            Ok(pb::InAppMessagesList {
                items: messages
                    .into_iter()
                    .map(|message| pb::InAppMessage {
                        message_id: message.message_id,
                        sent_at: message.sent_at,
                        layout: message.content.layout,
                        header: message.content.header,
                        body: message.content.body,
                        image_url: message.content.image_url,
                        button_text: message.content.button_text,
                        button_url: message.content.button_url,
                    })
                    .collect(),
            })
        })
        .await
    }
}
