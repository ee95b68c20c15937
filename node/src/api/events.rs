//! `herald.v1.Events`.

use std::collections::{BTreeSet, HashMap};

use herald_proto::v1 as pb;
use herald_proto::v1::events_server::Events;
use tonic::{Request, Response, Status};

use super::convert::{endpoint_input, event_from_proto};
use super::status::{invalid_argument, item_accepted, item_failed, item_rejected, to_status};
use super::{ClusterHandle, check_batch_len, check_ids, observed};
use crate::cluster::EndpointEvents;
use crate::domain::FieldViolation;
use crate::domain::endpoint::validate_id;

/// The Events service over a cluster.
pub struct EventsApi {
    cluster: ClusterHandle,
}

impl EventsApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

#[tonic::async_trait]
impl Events for EventsApi {
    async fn put_events(
        &self,
        request: Request<pb::PutEventsRequest>,
    ) -> Result<Response<pb::PutEventsResponse>, Status> {
        observed("PutEvents", async {
            let request = request.into_inner();
            let limits = self.cluster.get()?.limits();
            check_ids(&[("project_id", &request.project_id)], limits)?;
            check_batch_len("batch_item", request.batch_item.len(), limits)?;
            let total_events: usize = request.batch_item.values().map(|b| b.events.len()).sum();
            if total_events > limits.items_per_batch {
                return Err(invalid_argument(&[FieldViolation::new(
                    "batch_item",
                    format!(
                        "has {total_events} events, more than the limit of {}",
                        limits.items_per_batch
                    ),
                )]));
            }

            let mut results: HashMap<String, pb::EventsItemResponse> = HashMap::new();
            let mut batches = Vec::new();
            for (endpoint_id, batch) in request.batch_item {
                let path = format!("batch_item[{endpoint_id:?}]");
                let mut response = pb::EventsItemResponse::default();
                let mut id_violations = Vec::new();
                validate_id(&path, &endpoint_id, limits, &mut id_violations);
                if !id_violations.is_empty() {
                    response.endpoint_item_response = Some(item_rejected(&id_violations));
                    for event_id in batch.events.keys() {
                        response
                            .events_item_response
                            .insert(event_id.clone(), item_rejected(&id_violations));
                    }
                    results.insert(endpoint_id, response);
                    continue;
                }
                let endpoint = match batch.endpoint {
                    None => None,
                    Some(input) => {
                        match endpoint_input(&format!("{path}.endpoint"), Some(input), limits) {
                            Ok(input) => Some(input),
                            Err(violations) => {
                                response.endpoint_item_response = Some(item_rejected(&violations));
                                None
                            }
                        }
                    }
                };
                let mut events = Vec::new();
                for (event_id, event) in batch.events {
                    let event_path = format!("{path}.events[{event_id:?}]");
                    let mut violations = Vec::new();
                    validate_id(&event_path, &event_id, limits, &mut violations);
                    match event_from_proto(&event_path, event, limits) {
                        Ok(event) if violations.is_empty() => events.push((event_id, event)),
                        Ok(_) => {
                            response
                                .events_item_response
                                .insert(event_id, item_rejected(&violations));
                        }
                        Err(more) => {
                            violations.extend(more);
                            response
                                .events_item_response
                                .insert(event_id, item_rejected(&violations));
                        }
                    }
                }
                results.insert(endpoint_id.clone(), response);
                batches.push(EndpointEvents {
                    endpoint_id,
                    endpoint,
                    events,
                });
            }

            // EVT-1: at most so many distinct event types per project; events of refused
            // types are reported, the others are kept.
            let types: BTreeSet<String> = batches
                .iter()
                .flat_map(|b| b.events.iter().map(|(_, e)| e.event_type.clone()))
                .collect();
            let refused = self
                .cluster
                .get()?
                .refused_event_types(&request.project_id, &types)
                .await
                .map_err(to_status)?;
            if !refused.is_empty() {
                for batch in &mut batches {
                    let response = results
                        .get_mut(&batch.endpoint_id)
                        .expect("result per endpoint");
                    batch.events.retain(|(event_id, event)| {
                        if !refused.contains(&event.event_type) {
                            return true;
                        }
                        response.events_item_response.insert(
                            event_id.clone(),
                            item_rejected(&[FieldViolation::new(
                                format!(
                                    "batch_item[{:?}].events[{event_id:?}].event_type",
                                    batch.endpoint_id
                                ),
                                format!(
                                    "{:?} would exceed the limit of {} event types per project",
                                    event.event_type, limits.event_types_per_project
                                ),
                            )]),
                        );
                        false
                    });
                }
            }

            let outcomes = self
                .cluster
                .get()?
                .put_events(&request.project_id, batches)
                .await
                .map_err(to_status)?;
            for outcome in outcomes {
                let endpoint_id = outcome.endpoint_id.clone();
                let response = results.get_mut(&endpoint_id).expect("result per endpoint");
                let path = format!("batch_item[{endpoint_id:?}]");
                if let Some(result) = outcome.endpoint {
                    response.endpoint_item_response = Some(match result {
                        Ok(()) => item_accepted(),
                        Err(error) => item_failed(&format!("{path}.endpoint"), &error),
                    });
                }
                for (event_id, result) in outcome.events {
                    let item = match result {
                        Ok(()) => item_accepted(),
                        Err(error) => item_failed(&format!("{path}.events[{event_id:?}]"), &error),
                    };
                    response.events_item_response.insert(event_id, item);
                }
            }
            Ok(pb::PutEventsResponse {
                results: results.into_iter().collect(),
            })
        })
        .await
    }
}
