//! `herald endpoint put|get|delete|user|delete-user`: one endpoint or one user's endpoints.
//! The bulk `endpoint import` lives in [`super::import`].

use herald_proto::v1 as proto;
use herald_proto::v1::endpoints_client::EndpointsClient;
use tonic::transport::Channel;

use super::output::{
    endpoint_json, endpoint_table, endpoints_list_json, endpoints_table, print_json, status_error,
    update_endpoint_response_json,
};
use super::records::{
    DemographicRecord, EndpointRecord, LocationRecord, UserRecord, attributes_from_pairs,
};
use super::{EndpointCommand, EndpointPutArgs};

/// The record the `put` flags describe; flags not given stay empty ("not given").
pub fn record_from_flags(arguments: EndpointPutArgs) -> EndpointRecord {
    EndpointRecord {
        id: arguments.id,
        address: arguments.address.unwrap_or_default(),
        attributes: attributes_from_pairs(&arguments.attributes),
        channel_type: arguments.channel.unwrap_or_default(),
        demographic: DemographicRecord {
            app_version: arguments.app_version.unwrap_or_default(),
            locale: arguments.locale.unwrap_or_default(),
            make: arguments.make.unwrap_or_default(),
            model: arguments.model.unwrap_or_default(),
            model_version: arguments.model_version.unwrap_or_default(),
            platform: arguments.platform.unwrap_or_default(),
            platform_version: arguments.platform_version.unwrap_or_default(),
            timezone: arguments.timezone.unwrap_or_default(),
        },
        effective_date: arguments.effective_date.unwrap_or_default(),
        endpoint_status: arguments.status.unwrap_or_default(),
        location: LocationRecord {
            city: arguments.city.unwrap_or_default(),
            country: arguments.country.unwrap_or_default(),
            latitude: arguments.latitude,
            longitude: arguments.longitude,
            postal_code: arguments.postal_code.unwrap_or_default(),
            region: arguments.region.unwrap_or_default(),
        },
        metrics: arguments.metrics.into_iter().collect(),
        opt_out: arguments.opt_out.unwrap_or_default(),
        request_id: arguments.request_id.unwrap_or_default(),
        user: UserRecord {
            user_id: arguments.user.unwrap_or_default(),
            user_attributes: attributes_from_pairs(&arguments.user_attributes),
        },
    }
}

fn print_endpoint(endpoint: &proto::Endpoint, json: bool) {
    if json {
        print_json(&endpoint_json(endpoint));
    } else {
        print!("{}", endpoint_table(endpoint).render());
    }
}

fn print_endpoints(list: &proto::EndpointsList, json: bool) {
    if json {
        print_json(&endpoints_list_json(list));
    } else {
        print!("{}", endpoints_table(&list.items).render());
    }
}

/// Runs one `herald endpoint` command (`import` is handed to [`super::import::run`]).
pub async fn run(channel: Channel, command: EndpointCommand, json: bool) -> anyhow::Result<()> {
    let mut client = EndpointsClient::new(channel.clone());
    match command {
        EndpointCommand::Put(arguments) => {
            let project_id = arguments.project.clone();
            let endpoint_id = arguments.id.clone();
            let endpoint = record_from_flags(*arguments)
                .into_request()
                .map_err(anyhow::Error::msg)?;
            let response = client
                .update_endpoint(proto::UpdateEndpointRequest {
                    project_id,
                    endpoint_id,
                    endpoint: Some(endpoint),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(&update_endpoint_response_json(&response));
                return Ok(());
            }
            if !response.message.is_empty() {
                println!("{}", response.message);
            }
            if let Some(endpoint) = &response.endpoint {
                print_endpoint(endpoint, false);
            }
        }
        EndpointCommand::Get(arguments) => {
            let endpoint = client
                .get_endpoint(proto::GetEndpointRequest {
                    project_id: arguments.project,
                    endpoint_id: arguments.id,
                })
                .await
                .map_err(status_error)?;
            print_endpoint(endpoint.get_ref(), json);
        }
        EndpointCommand::Delete(arguments) => {
            let endpoint = client
                .delete_endpoint(proto::DeleteEndpointRequest {
                    project_id: arguments.project,
                    endpoint_id: arguments.id,
                })
                .await
                .map_err(status_error)?;
            print_endpoint(endpoint.get_ref(), json);
        }
        EndpointCommand::User(arguments) => {
            let list = client
                .get_user_endpoints(proto::GetUserEndpointsRequest {
                    project_id: arguments.project,
                    user_id: arguments.user,
                })
                .await
                .map_err(status_error)?;
            print_endpoints(list.get_ref(), json);
        }
        EndpointCommand::DeleteUser(arguments) => {
            let list = client
                .delete_user_endpoints(proto::DeleteUserEndpointsRequest {
                    project_id: arguments.project,
                    user_id: arguments.user,
                })
                .await
                .map_err(status_error)?;
            print_endpoints(list.get_ref(), json);
        }
        EndpointCommand::Import(arguments) => {
            return super::import::run(channel, arguments, json).await;
        }
    }
    Ok(())
}
