//! What the client prints: aligned tables for people, JSON for scripts (one conversion
//! function per message, since prost messages do not implement `Serialize`), and server
//! errors with their field violations.

use std::collections::HashMap;

use herald_proto::v1 as proto;
use serde_json::{Value, json};
use tonic_types::StatusExt;

use super::records::{channel_type_name, endpoint_status_name, opt_out_name};

/// Rows of text printed in aligned columns, the header first.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|title| title.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table as text: columns padded to their widest cell and separated by two spaces,
    /// no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .header
            .iter()
            .map(|title| title.chars().count())
            .collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate() {
                let width = cell.chars().count();
                match widths.get_mut(index) {
                    Some(widest) => *widest = (*widest).max(width),
                    None => widths.push(width),
                }
            }
        }
        let mut text = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (index, width) in widths.iter().enumerate() {
                let cell = row.get(index).map_or("", String::as_str);
                if index > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// Prints pretty JSON on stdout.
pub fn print_json(value: &Value) {
    println!("{value:#}");
}

/// Builds a two-column FIELD/VALUE table from pairs, leaving out empty values.
fn fields_table(fields: Vec<(String, String)>) -> Table {
    let mut table = Table::new(&["FIELD", "VALUE"]);
    for (name, value) in fields {
        if !value.is_empty() {
            table.push(vec![name, value]);
        }
    }
    table
}

/// Name → values, sorted, as a JSON object of arrays.
fn attributes_json(attributes: &HashMap<String, proto::AttributeValues>) -> Value {
    let object: serde_json::Map<String, Value> = attributes
        .iter()
        .map(|(name, values)| (name.clone(), json!(values.values)))
        .collect();
    Value::Object(object)
}

/// A string map as a JSON object.
fn string_map_json(map: &HashMap<String, String>) -> Value {
    let object: serde_json::Map<String, Value> = map
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    Value::Object(object)
}

/// A metric map as a JSON object.
fn metrics_json(metrics: &HashMap<String, f64>) -> Value {
    let object: serde_json::Map<String, Value> = metrics
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    Value::Object(object)
}

/// Map entries sorted by name, for stable human output.
fn sorted<V>(map: &HashMap<String, V>) -> Vec<(&String, &V)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|left, right| left.0.cmp(right.0));
    entries
}

/// `key=value, key=value`, sorted by key.
fn tags_text(tags: &HashMap<String, String>) -> String {
    sorted(tags)
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Project settings as JSON.
pub fn project_settings_json(settings: &proto::ProjectSettings) -> Value {
    let limits = settings.limits.unwrap_or_default();
    let quiet_time = settings.quiet_time.clone().unwrap_or_default();
    let hook = settings.campaign_hook.clone().unwrap_or_default();
    json!({
        "limits": {
            "daily": limits.daily,
            "total": limits.total,
            "messages_per_second": limits.messages_per_second,
            "maximum_duration": limits.maximum_duration,
            "session": limits.session,
        },
        "quiet_time": { "start": quiet_time.start, "end": quiet_time.end },
        "campaign_hook": { "web_url": hook.web_url, "mode": hook.mode },
        "last_modified_date": settings.last_modified_date,
    })
}

/// A project as JSON.
pub fn project_json(project: &proto::Project) -> Value {
    json!({
        "project_id": project.project_id,
        "name": project.name,
        "creation_date": project.creation_date,
        "settings": project_settings_json(&project.settings.clone().unwrap_or_default()),
        "tags": string_map_json(&project.tags),
    })
}

/// A limit for people: 0 means none.
fn limit_text(limit: u32) -> String {
    if limit == 0 {
        "none".to_string()
    } else {
        limit.to_string()
    }
}

/// A project as a FIELD/VALUE table.
pub fn project_table(project: &proto::Project) -> Table {
    let settings = project.settings.clone().unwrap_or_default();
    let limits = settings.limits.unwrap_or_default();
    let quiet_time = settings.quiet_time.unwrap_or_default();
    let hook = settings.campaign_hook.unwrap_or_default();
    let quiet_time_text = if quiet_time.start.is_empty() && quiet_time.end.is_empty() {
        "none".to_string()
    } else {
        format!("{}-{}", quiet_time.start, quiet_time.end)
    };
    let mut fields = vec![
        ("project_id".to_string(), project.project_id.clone()),
        ("name".to_string(), project.name.clone()),
        ("creation_date".to_string(), project.creation_date.clone()),
        ("tags".to_string(), tags_text(&project.tags)),
        ("limits.daily".to_string(), limit_text(limits.daily)),
        ("limits.total".to_string(), limit_text(limits.total)),
        (
            "limits.messages_per_second".to_string(),
            limit_text(limits.messages_per_second),
        ),
        (
            "limits.maximum_duration".to_string(),
            limit_text(limits.maximum_duration),
        ),
        ("limits.session".to_string(), limit_text(limits.session)),
        ("quiet_time".to_string(), quiet_time_text),
    ];
    fields.push(("campaign_hook.web_url".to_string(), hook.web_url));
    fields.push(("campaign_hook.mode".to_string(), hook.mode));
    fields.push((
        "settings.last_modified_date".to_string(),
        settings.last_modified_date,
    ));
    fields_table(fields)
}

/// Projects as one row each.
pub fn projects_table(projects: &[proto::Project]) -> Table {
    let mut table = Table::new(&["PROJECT_ID", "NAME", "CREATED", "TAGS"]);
    for project in projects {
        table.push(vec![
            project.project_id.clone(),
            project.name.clone(),
            project.creation_date.clone(),
            tags_text(&project.tags),
        ]);
    }
    table
}

/// Demographic facts as JSON.
fn demographic_json(demographic: &proto::EndpointDemographic) -> Value {
    json!({
        "app_version": demographic.app_version,
        "locale": demographic.locale,
        "make": demographic.make,
        "model": demographic.model,
        "model_version": demographic.model_version,
        "platform": demographic.platform,
        "platform_version": demographic.platform_version,
        "timezone": demographic.timezone,
    })
}

/// A location as JSON; absent coordinates are `null`.
fn location_json(location: &proto::EndpointLocation) -> Value {
    json!({
        "city": location.city,
        "country": location.country,
        "latitude": location.latitude,
        "longitude": location.longitude,
        "postal_code": location.postal_code,
        "region": location.region,
    })
}

/// A user as JSON.
fn user_json(user: &proto::EndpointUser) -> Value {
    json!({
        "user_id": user.user_id,
        "user_attributes": attributes_json(&user.user_attributes),
    })
}

/// An endpoint as JSON, enum values as names (`EMAIL`).
pub fn endpoint_json(endpoint: &proto::Endpoint) -> Value {
    json!({
        "project_id": endpoint.project_id,
        "endpoint_id": endpoint.endpoint_id,
        "address": endpoint.address,
        "attributes": attributes_json(&endpoint.attributes),
        "channel_type": channel_type_name(endpoint.channel_type),
        "cohort_id": endpoint.cohort_id,
        "creation_date": endpoint.creation_date,
        "demographic": demographic_json(&endpoint.demographic.clone().unwrap_or_default()),
        "effective_date": endpoint.effective_date,
        "endpoint_status": endpoint_status_name(endpoint.endpoint_status),
        "location": location_json(&endpoint.location.clone().unwrap_or_default()),
        "metrics": metrics_json(&endpoint.metrics),
        "opt_out": opt_out_name(endpoint.opt_out),
        "request_id": endpoint.request_id,
        "user": user_json(&endpoint.user.clone().unwrap_or_default()),
    })
}

/// An update answer as JSON.
pub fn update_endpoint_response_json(response: &proto::UpdateEndpointResponse) -> Value {
    json!({
        "message": response.message,
        "request_id": response.request_id,
        "endpoint": response.endpoint.as_ref().map(endpoint_json),
    })
}

/// A list of endpoints as JSON.
pub fn endpoints_list_json(list: &proto::EndpointsList) -> Value {
    json!({ "items": list.items.iter().map(endpoint_json).collect::<Vec<_>>() })
}

/// An endpoint as a FIELD/VALUE table, leaving out what is empty.
pub fn endpoint_table(endpoint: &proto::Endpoint) -> Table {
    let mut fields = vec![
        ("project_id".to_string(), endpoint.project_id.clone()),
        ("endpoint_id".to_string(), endpoint.endpoint_id.clone()),
        (
            "channel_type".to_string(),
            channel_type_name(endpoint.channel_type),
        ),
        ("address".to_string(), endpoint.address.clone()),
        (
            "endpoint_status".to_string(),
            endpoint_status_name(endpoint.endpoint_status),
        ),
        ("opt_out".to_string(), opt_out_name(endpoint.opt_out)),
        ("cohort_id".to_string(), endpoint.cohort_id.to_string()),
        ("creation_date".to_string(), endpoint.creation_date.clone()),
        (
            "effective_date".to_string(),
            endpoint.effective_date.clone(),
        ),
        ("request_id".to_string(), endpoint.request_id.clone()),
    ];
    for (name, values) in sorted(&endpoint.attributes) {
        fields.push((format!("attributes.{name}"), values.values.join("; ")));
    }
    for (name, value) in sorted(&endpoint.metrics) {
        fields.push((format!("metrics.{name}"), value.to_string()));
    }
    let user = endpoint.user.clone().unwrap_or_default();
    fields.push(("user.user_id".to_string(), user.user_id.clone()));
    for (name, values) in sorted(&user.user_attributes) {
        fields.push((
            format!("user.user_attributes.{name}"),
            values.values.join("; "),
        ));
    }
    let demographic = endpoint.demographic.clone().unwrap_or_default();
    let demographic_fields = [
        ("app_version", demographic.app_version),
        ("locale", demographic.locale),
        ("make", demographic.make),
        ("model", demographic.model),
        ("model_version", demographic.model_version),
        ("platform", demographic.platform),
        ("platform_version", demographic.platform_version),
        ("timezone", demographic.timezone),
    ];
    for (name, value) in demographic_fields {
        fields.push((format!("demographic.{name}"), value));
    }
    let location = endpoint.location.clone().unwrap_or_default();
    let coordinate =
        |value: Option<f64>| value.map(|number| number.to_string()).unwrap_or_default();
    let location_fields = [
        ("city", location.city),
        ("country", location.country),
        ("region", location.region),
        ("postal_code", location.postal_code),
        ("latitude", coordinate(location.latitude)),
        ("longitude", coordinate(location.longitude)),
    ];
    for (name, value) in location_fields {
        fields.push((format!("location.{name}"), value));
    }
    fields_table(fields)
}

/// Endpoints as one row each.
pub fn endpoints_table(endpoints: &[proto::Endpoint]) -> Table {
    let mut table = Table::new(&[
        "ENDPOINT_ID",
        "CHANNEL",
        "ADDRESS",
        "STATUS",
        "OPT_OUT",
        "USER_ID",
    ]);
    for endpoint in endpoints {
        table.push(vec![
            endpoint.endpoint_id.clone(),
            channel_type_name(endpoint.channel_type),
            endpoint.address.clone(),
            endpoint_status_name(endpoint.endpoint_status),
            opt_out_name(endpoint.opt_out),
            endpoint
                .user
                .as_ref()
                .map(|user| user.user_id.clone())
                .unwrap_or_default(),
        ]);
    }
    table
}

/// A server error for people: the gRPC code, the message, then each field violation on
/// its own line as `field: reason`; a message that only repeats the violations is left out.
pub fn status_text(status: &tonic::Status) -> String {
    let violations: Vec<String> = status
        .get_details_bad_request()
        .map(|bad_request| bad_request.field_violations)
        .unwrap_or_default()
        .into_iter()
        .map(|violation| format!("{}: {}", violation.field, violation.description))
        .collect();
    let code = status.code();
    let message = status.message();
    let message_repeats_violations = message == violations.join("; ");
    match violations.len() {
        0 => format!("server answered {code:?}: {message}"),
        1 if message_repeats_violations => format!("server answered {code:?}: {message}"),
        count => {
            let mut text = if message_repeats_violations {
                format!("server answered {code:?} with {count} problems:")
            } else {
                format!("server answered {code:?}: {message}")
            };
            for violation in violations {
                text.push_str(&format!("\n  {violation}"));
            }
            text
        }
    }
}

/// The error a command returns when the server refuses a call.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::Error::msg(status_text(&status))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns line up on the widest cell and lines have no trailing spaces.
    #[test]
    fn table_aligns_columns() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.push(vec!["p1".to_string(), "shop".to_string()]);
        table.push(vec!["project-22".to_string(), String::new()]);
        assert_eq!(
            table.render(),
            "ID          NAME\np1          shop\nproject-22\n"
        );
    }

    fn invalid_argument(message: &str, violations: &[(&str, &str)]) -> tonic::Status {
        let violations = violations
            .iter()
            .map(|(field, reason)| tonic_types::FieldViolation::new(*field, *reason))
            .collect::<Vec<_>>();
        let details = tonic_types::ErrorDetails::with_bad_request(violations);
        tonic::Status::with_error_details(tonic::Code::InvalidArgument, message, details)
    }

    /// Field violations are listed one per line, and a message that only joins them is not
    /// printed twice.
    #[test]
    fn status_text_lists_field_violations_once() {
        let own_message = invalid_argument("invalid endpoint", &[("endpoint.address", "is empty")]);
        assert_eq!(
            status_text(&own_message),
            "server answered InvalidArgument: invalid endpoint\n  endpoint.address: is empty"
        );
        let repeated = invalid_argument("address: is empty", &[("address", "is empty")]);
        assert_eq!(
            status_text(&repeated),
            "server answered InvalidArgument: address: is empty"
        );
        let joined = invalid_argument(
            "address: is empty; country: \"B\" is not a code",
            &[("address", "is empty"), ("country", "\"B\" is not a code")],
        );
        assert_eq!(
            status_text(&joined),
            "server answered InvalidArgument with 2 problems:\n  address: is empty\n  country: \"B\" is not a code"
        );
        let plain = tonic::Status::not_found("project \"p9\" not found");
        assert_eq!(
            status_text(&plain),
            "server answered NotFound: project \"p9\" not found"
        );
    }

    /// Enum values print as the names users write.
    #[test]
    fn endpoint_json_names_enums() {
        let endpoint = proto::Endpoint {
            endpoint_id: "e1".to_string(),
            channel_type: proto::ChannelType::Email as i32,
            opt_out: proto::OptOut::All as i32,
            ..Default::default()
        };
        let value = endpoint_json(&endpoint);
        assert_eq!(value["channel_type"], "EMAIL");
        assert_eq!(value["opt_out"], "ALL");
        assert_eq!(value["endpoint_status"], "");
        assert_eq!(value["location"]["latitude"], Value::Null);
    }
}
