//! proto ⇄ domain conversions. Inputs are converted and validated together, so every
//! violation carries the path of the field in the request.

use std::collections::BTreeMap;

use herald_proto::v1 as pb;

use crate::domain::FieldViolation;
use crate::domain::endpoint::{
    self, ChannelType, Demographic, Endpoint, EndpointInput, EndpointStatus, Location, OptOut, User,
};
use crate::domain::event::{self, Event, Session};
use crate::domain::limits::Limits;
use crate::domain::project::{CampaignHook, CampaignLimits, Project, ProjectSettings, QuietTime};
use crate::domain::violation::join;

/// A channel type of a request; unspecified is None, an unknown value a violation.
pub fn channel_from_proto(
    value: i32,
    field: &str,
    violations: &mut Vec<FieldViolation>,
) -> Option<ChannelType> {
    match pb::ChannelType::try_from(value) {
        Ok(pb::ChannelType::Unspecified) => None,
        Ok(pb::ChannelType::Email) => Some(ChannelType::Email),
        Ok(pb::ChannelType::Sms) => Some(ChannelType::Sms),
        Ok(pb::ChannelType::Voice) => Some(ChannelType::Voice),
        Ok(pb::ChannelType::Apns) => Some(ChannelType::Apns),
        Ok(pb::ChannelType::ApnsSandbox) => Some(ChannelType::ApnsSandbox),
        Ok(pb::ChannelType::Gcm) => Some(ChannelType::Gcm),
        Ok(pb::ChannelType::InApp) => Some(ChannelType::InApp),
        Ok(pb::ChannelType::Custom) => Some(ChannelType::Custom),
        Err(_) => {
            violations.push(FieldViolation::new(
                field,
                format!("{value} is not a known channel type"),
            ));
            None
        }
    }
}

fn channel_to_proto(channel: ChannelType) -> pb::ChannelType {
    match channel {
        ChannelType::Email => pb::ChannelType::Email,
        ChannelType::Sms => pb::ChannelType::Sms,
        ChannelType::Voice => pb::ChannelType::Voice,
        ChannelType::Apns => pb::ChannelType::Apns,
        ChannelType::ApnsSandbox => pb::ChannelType::ApnsSandbox,
        ChannelType::Gcm => pb::ChannelType::Gcm,
        ChannelType::InApp => pb::ChannelType::InApp,
        ChannelType::Custom => pb::ChannelType::Custom,
    }
}

fn attributes_from_proto(
    map: BTreeMap<String, pb::AttributeValues>,
) -> BTreeMap<String, Vec<String>> {
    map.into_iter()
        .map(|(name, values)| (name, values.values))
        .collect()
}

fn attributes_to_proto(
    map: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, pb::AttributeValues> {
    map.iter()
        .map(|(name, values)| {
            (
                name.clone(),
                pb::AttributeValues {
                    values: values.clone(),
                },
            )
        })
        .collect()
}

/// Converts and validates an endpoint input found at `field` of the request.
pub fn endpoint_input(
    field: &str,
    input: Option<pb::EndpointRequest>,
    limits: &Limits,
) -> Result<EndpointInput, Vec<FieldViolation>> {
    let Some(input) = input else {
        return Err(vec![FieldViolation::new(field, "is required")]);
    };
    let mut violations = Vec::new();
    let channel_type = channel_from_proto(
        input.channel_type,
        &join(field, "channel_type"),
        &mut violations,
    );
    let status = match pb::EndpointStatus::try_from(input.endpoint_status) {
        Ok(pb::EndpointStatus::Unspecified | pb::EndpointStatus::Active) => EndpointStatus::Active,
        Ok(pb::EndpointStatus::Inactive) => EndpointStatus::Inactive,
        Err(_) => {
            violations.push(FieldViolation::new(
                join(field, "endpoint_status"),
                format!("{} is not a known status", input.endpoint_status),
            ));
            EndpointStatus::Active
        }
    };
    let opt_out = match pb::OptOut::try_from(input.opt_out) {
        Ok(pb::OptOut::Unspecified | pb::OptOut::None) => OptOut::None,
        Ok(pb::OptOut::All) => OptOut::All,
        Err(_) => {
            violations.push(FieldViolation::new(
                join(field, "opt_out"),
                format!("{} is not ALL or NONE", input.opt_out),
            ));
            OptOut::None
        }
    };
    let demographic = input.demographic.unwrap_or_default();
    let location = input.location.unwrap_or_default();
    let user = input.user.unwrap_or_default();
    let converted = EndpointInput {
        address: input.address,
        channel_type,
        attributes: attributes_from_proto(input.attributes.into_iter().collect()),
        metrics: input.metrics.into_iter().collect(),
        demographic: Demographic {
            app_version: demographic.app_version,
            locale: demographic.locale,
            make: demographic.make,
            model: demographic.model,
            model_version: demographic.model_version,
            platform: demographic.platform,
            platform_version: demographic.platform_version,
            timezone: demographic.timezone,
        },
        location: Location {
            city: location.city,
            country: location.country,
            latitude: location.latitude,
            longitude: location.longitude,
            postal_code: location.postal_code,
            region: location.region,
        },
        opt_out,
        status,
        user: User {
            user_id: user.user_id,
            user_attributes: attributes_from_proto(user.user_attributes.into_iter().collect()),
        },
        effective_date: input.effective_date,
        request_id: input.request_id,
    };
    // A new endpoint without a channel type is refused by the shard, which knows whether the
    // endpoint exists; here only the static rules apply.
    violations.extend(endpoint::validate_endpoint(
        field, &converted, false, limits,
    ));
    if violations.is_empty() {
        Ok(converted)
    } else {
        Err(violations)
    }
}

/// An endpoint as the API answers it.
pub fn endpoint_to_proto(endpoint: &Endpoint) -> pb::Endpoint {
    pb::Endpoint {
        project_id: endpoint.project_id.clone(),
        endpoint_id: endpoint.endpoint_id.clone(),
        address: endpoint.address.clone(),
        attributes: attributes_to_proto(&endpoint.attributes)
            .into_iter()
            .collect(),
        channel_type: channel_to_proto(endpoint.channel_type) as i32,
        cohort_id: u32::from(endpoint.cohort_id),
        creation_date: endpoint.creation_date.clone(),
        demographic: Some(pb::EndpointDemographic {
            app_version: endpoint.demographic.app_version.clone(),
            locale: endpoint.demographic.locale.clone(),
            make: endpoint.demographic.make.clone(),
            model: endpoint.demographic.model.clone(),
            model_version: endpoint.demographic.model_version.clone(),
            platform: endpoint.demographic.platform.clone(),
            platform_version: endpoint.demographic.platform_version.clone(),
            timezone: endpoint.demographic.timezone.clone(),
        }),
        effective_date: endpoint.effective_date.clone(),
        endpoint_status: match endpoint.status {
            EndpointStatus::Active => pb::EndpointStatus::Active,
            EndpointStatus::Inactive => pb::EndpointStatus::Inactive,
        } as i32,
        location: Some(pb::EndpointLocation {
            city: endpoint.location.city.clone(),
            country: endpoint.location.country.clone(),
            latitude: endpoint.location.latitude,
            longitude: endpoint.location.longitude,
            postal_code: endpoint.location.postal_code.clone(),
            region: endpoint.location.region.clone(),
        }),
        metrics: endpoint.metrics.clone().into_iter().collect(),
        opt_out: match endpoint.opt_out {
            OptOut::None => pb::OptOut::None,
            OptOut::All => pb::OptOut::All,
        } as i32,
        request_id: endpoint.request_id.clone(),
        user: Some(pb::EndpointUser {
            user_id: endpoint.user.user_id.clone(),
            user_attributes: attributes_to_proto(&endpoint.user.user_attributes)
                .into_iter()
                .collect(),
        }),
    }
}

/// Converts and validates an event found at `field` of the request.
pub fn event_from_proto(
    field: &str,
    event: pb::Event,
    limits: &Limits,
) -> Result<Event, Vec<FieldViolation>> {
    let converted = Event {
        event_type: event.event_type,
        timestamp: event.timestamp,
        attributes: event.attributes.into_iter().collect(),
        metrics: event.metrics.into_iter().collect(),
        session: event.session.map(|s| Session {
            id: s.id,
            start_timestamp: s.start_timestamp,
            stop_timestamp: s.stop_timestamp,
            duration_ms: s.duration,
        }),
        app_package_name: event.app_package_name,
        app_title: event.app_title,
        app_version_code: event.app_version_code,
        client_sdk_version: event.client_sdk_version,
        sdk_name: event.sdk_name,
    };
    let violations = event::validate_event(field, &converted, limits);
    if violations.is_empty() {
        Ok(converted)
    } else {
        Err(violations)
    }
}

/// A project as the API answers it.
pub fn project_to_proto(project: &Project) -> pb::Project {
    let settings = &project.settings;
    pb::Project {
        project_id: project.project_id.clone(),
        name: project.name.clone(),
        creation_date: project.creation_date.clone(),
        settings: Some(pb::ProjectSettings {
            limits: Some(pb::CampaignLimits {
                daily: settings.limits.daily,
                total: settings.limits.total,
                messages_per_second: settings.limits.messages_per_second,
                maximum_duration: settings.limits.maximum_duration_secs,
                session: settings.limits.session,
            }),
            quiet_time: Some(pb::QuietTime {
                start: settings.quiet_time.start.clone(),
                end: settings.quiet_time.end.clone(),
            }),
            campaign_hook: Some(pb::CampaignHook {
                web_url: settings.campaign_hook.web_url.clone(),
                mode: settings.campaign_hook.mode.clone(),
            }),
            last_modified_date: settings.last_modified_date.clone(),
        }),
        tags: project.tags.clone().into_iter().collect(),
    }
}

/// Converts project settings.
pub fn settings_from_proto(settings: pb::ProjectSettings) -> ProjectSettings {
    let limits = settings.limits.unwrap_or_default();
    let quiet = settings.quiet_time.unwrap_or_default();
    let hook = settings.campaign_hook.unwrap_or_default();
    ProjectSettings {
        limits: CampaignLimits {
            daily: limits.daily,
            total: limits.total,
            messages_per_second: limits.messages_per_second,
            maximum_duration_secs: limits.maximum_duration,
            session: limits.session,
        },
        quiet_time: QuietTime {
            start: quiet.start,
            end: quiet.end,
        },
        campaign_hook: CampaignHook {
            web_url: hook.web_url,
            mode: hook.mode,
        },
        last_modified_date: String::new(),
    }
}
