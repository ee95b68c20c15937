//! What a user writes about endpoints and events (flags, CSV cells, JSONL objects) and its
//! conversion to the `herald.v1` messages. Every conversion is a pure function.

use std::collections::{BTreeMap, HashMap};

use herald_proto::v1 as proto;
use serde::Deserialize;

use crate::domain::endpoint::ChannelType;

/// Why a written record cannot become a request: the field at fault, named as the server
/// names fields of a batch item (`endpoint.channel_type`, `endpoint.metrics["score"]`,
/// `endpoint_id`), empty when none can be named (broken JSON); and what was wrong. Shown, it
/// is the message alone, which names the value already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The bad field relative to the row; empty when none is named.
    pub field: String,
    /// What was wrong.
    pub message: String,
}

impl RecordError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error about the whole row, no field named.
    pub fn row(message: impl Into<String>) -> Self {
        Self::new("", message)
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

/// The channel names a user may write, for error messages.
const CHANNEL_NAMES: &str = "EMAIL, SMS, VOICE, APNS, APNS_SANDBOX, GCM, FCM, IN_APP, CUSTOM";

/// Converts a channel name (`EMAIL`, `sms`, `FCM` as an alias of `GCM`) to the proto enum value.
pub fn channel_type_from_name(name: &str) -> Result<i32, String> {
    let Some(channel) = ChannelType::parse(name.trim()) else {
        return Err(format!(
            "unknown channel type {name:?} (expected one of {CHANNEL_NAMES})"
        ));
    };
    let proto_channel = match channel {
        ChannelType::Email => proto::ChannelType::Email,
        ChannelType::Sms => proto::ChannelType::Sms,
        ChannelType::Voice => proto::ChannelType::Voice,
        ChannelType::Apns => proto::ChannelType::Apns,
        ChannelType::ApnsSandbox => proto::ChannelType::ApnsSandbox,
        ChannelType::Gcm => proto::ChannelType::Gcm,
        ChannelType::InApp => proto::ChannelType::InApp,
        ChannelType::Custom => proto::ChannelType::Custom,
    };
    Ok(proto_channel as i32)
}

/// Converts an opt-out name (`ALL` or `NONE`, any case) to the proto enum value.
pub fn opt_out_from_name(name: &str) -> Result<i32, String> {
    match name.trim().to_ascii_uppercase().as_str() {
        "ALL" => Ok(proto::OptOut::All as i32),
        "NONE" => Ok(proto::OptOut::None as i32),
        _ => Err(format!("unknown opt-out {name:?} (expected ALL or NONE)")),
    }
}

/// Converts an endpoint status name (`ACTIVE` or `INACTIVE`, any case) to the proto enum value.
pub fn endpoint_status_from_name(name: &str) -> Result<i32, String> {
    match name.trim().to_ascii_uppercase().as_str() {
        "ACTIVE" => Ok(proto::EndpointStatus::Active as i32),
        "INACTIVE" => Ok(proto::EndpointStatus::Inactive as i32),
        _ => Err(format!(
            "unknown endpoint status {name:?} (expected ACTIVE or INACTIVE)"
        )),
    }
}

/// The name users write for a proto channel value (`EMAIL`), empty when unspecified.
pub fn channel_type_name(value: i32) -> String {
    match proto::ChannelType::try_from(value) {
        Ok(proto::ChannelType::Unspecified) => String::new(),
        Ok(channel) => channel
            .as_str_name()
            .trim_start_matches("CHANNEL_TYPE_")
            .to_string(),
        Err(_) => format!("UNKNOWN({value})"),
    }
}

/// The name users write for a proto opt-out value (`ALL`), empty when unspecified.
pub fn opt_out_name(value: i32) -> String {
    match proto::OptOut::try_from(value) {
        Ok(proto::OptOut::Unspecified) => String::new(),
        Ok(opt_out) => opt_out
            .as_str_name()
            .trim_start_matches("OPT_OUT_")
            .to_string(),
        Err(_) => format!("UNKNOWN({value})"),
    }
}

/// The name users write for a proto endpoint status value (`ACTIVE`), empty when unspecified.
pub fn endpoint_status_name(value: i32) -> String {
    match proto::EndpointStatus::try_from(value) {
        Ok(proto::EndpointStatus::Unspecified) => String::new(),
        Ok(status) => status
            .as_str_name()
            .trim_start_matches("ENDPOINT_STATUS_")
            .to_string(),
        Err(_) => format!("UNKNOWN({value})"),
    }
}

/// Splits a `NAME=VALUE` flag; the value may be empty, the name may not.
pub fn parse_name_value(text: &str) -> Result<(String, String), String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(format!("expected NAME=VALUE, got {text:?}"));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!(
            "expected NAME=VALUE with a non-empty name, got {text:?}"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Splits a `NAME=NUMBER` flag (a metric).
pub fn parse_name_number(text: &str) -> Result<(String, f64), String> {
    let (name, value) = parse_name_value(text)?;
    let number = parse_metric(&name, &value)?;
    Ok((name, number))
}

/// Parses a metric value: a finite number.
pub fn parse_metric(name: &str, text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(number) if number.is_finite() => Ok(number),
        _ => Err(format!(
            "metric {name:?} has value {text:?}, which is not a finite number"
        )),
    }
}

/// Gathers repeated `NAME=VALUE` pairs; the same name twice gives a list of values.
pub fn attributes_from_pairs(pairs: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in pairs {
        attributes
            .entry(name.clone())
            .or_default()
            .push(value.clone());
    }
    attributes
}

/// Attribute values as written in JSON: one string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrManyValues {
    One(String),
    Many(Vec<String>),
}

/// Reads a JSON object of attributes whose values are a string or a list of strings.
fn deserialize_attributes<'de, D>(
    deserializer: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let written: BTreeMap<String, OneOrManyValues> = BTreeMap::deserialize(deserializer)?;
    Ok(written
        .into_iter()
        .map(|(name, values)| match values {
            OneOrManyValues::One(value) => (name, vec![value]),
            OneOrManyValues::Many(values) => (name, values),
        })
        .collect())
}

/// Device and app facts of an endpoint, as written in JSONL, CSV or flags.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct DemographicRecord {
    pub app_version: String,
    pub locale: String,
    pub make: String,
    pub model: String,
    pub model_version: String,
    pub platform: String,
    pub platform_version: String,
    pub timezone: String,
}

/// Where an endpoint is, as written in JSONL, CSV or flags.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct LocationRecord {
    pub city: String,
    pub country: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub postal_code: String,
    pub region: String,
}

/// The user of an endpoint, as written in JSONL, CSV or flags.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserRecord {
    /// Empty when the endpoint has no user.
    pub user_id: String,
    /// Name → values.
    #[serde(deserialize_with = "deserialize_attributes")]
    pub user_attributes: BTreeMap<String, Vec<String>>,
}

/// One endpoint as a user writes it: the proto `EndpointRequest` in snake_case plus its `id`,
/// with enum values as names (`EMAIL`, `ALL`, `ACTIVE`); empty strings mean "not given".
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct EndpointRecord {
    /// The endpoint id; required in files, given by `--id` on the command line.
    pub id: String,
    pub address: String,
    #[serde(deserialize_with = "deserialize_attributes")]
    pub attributes: BTreeMap<String, Vec<String>>,
    pub channel_type: String,
    pub demographic: DemographicRecord,
    pub effective_date: String,
    pub endpoint_status: String,
    pub location: LocationRecord,
    pub metrics: BTreeMap<String, f64>,
    pub opt_out: String,
    pub request_id: String,
    pub user: UserRecord,
}

impl EndpointRecord {
    /// Parses one JSONL line; an error names the key at fault when the line is JSON.
    pub fn from_json(line: &str) -> Result<Self, RecordError> {
        let invalid = |error: serde_json::Error| format!("invalid endpoint JSON: {error}");
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|error| RecordError::row(invalid(error)))?;
        match serde_json::from_value(value.clone()) {
            Ok(record) => Ok(record),
            Err(error) => Err(RecordError::new(json_error_field(&value), invalid(error))),
        }
    }

    /// The batch item for this record; the id must be present.
    pub fn into_batch_item(self) -> Result<proto::EndpointBatchItem, RecordError> {
        if self.id.trim().is_empty() {
            return Err(RecordError::new(
                "endpoint_id",
                "missing endpoint id (field \"id\")",
            ));
        }
        let endpoint_id = self.id.clone();
        let endpoint = self.into_request()?;
        Ok(proto::EndpointBatchItem {
            endpoint_id,
            endpoint: Some(endpoint),
        })
    }

    /// The proto request for this record; enum names must be known.
    pub fn into_request(self) -> Result<proto::EndpointRequest, RecordError> {
        let at = |field: &'static str| move |message| RecordError::new(field, message);
        let channel_type = match self.channel_type.trim() {
            "" => proto::ChannelType::Unspecified as i32,
            name => channel_type_from_name(name).map_err(at("endpoint.channel_type"))?,
        };
        let opt_out = match self.opt_out.trim() {
            "" => proto::OptOut::Unspecified as i32,
            name => opt_out_from_name(name).map_err(at("endpoint.opt_out"))?,
        };
        let endpoint_status = match self.endpoint_status.trim() {
            "" => proto::EndpointStatus::Unspecified as i32,
            name => endpoint_status_from_name(name).map_err(at("endpoint.endpoint_status"))?,
        };
        let demographic = self.demographic;
        let location = self.location;
        Ok(proto::EndpointRequest {
            address: self.address,
            attributes: proto_attributes(self.attributes),
            channel_type,
            demographic: Some(proto::EndpointDemographic {
                app_version: demographic.app_version,
                locale: demographic.locale,
                make: demographic.make,
                model: demographic.model,
                model_version: demographic.model_version,
                platform: demographic.platform,
                platform_version: demographic.platform_version,
                timezone: demographic.timezone,
            }),
            effective_date: self.effective_date,
            endpoint_status,
            location: Some(proto::EndpointLocation {
                city: location.city,
                country: location.country,
                latitude: location.latitude,
                longitude: location.longitude,
                postal_code: location.postal_code,
                region: location.region,
            }),
            metrics: self.metrics.into_iter().collect(),
            opt_out,
            request_id: self.request_id,
            user: Some(proto::EndpointUser {
                user_id: self.user.user_id,
                user_attributes: proto_attributes(self.user.user_attributes),
            }),
        })
    }
}

/// The field of an endpoint object that does not read as an [`EndpointRecord`]: each key is
/// tried alone, then each entry of a section (`demographic`, `metrics`, …), so the answer is
/// as precise as `endpoint.demographic.plataform` or `endpoint.metrics["score"]`. Only
/// called on the error path.
fn json_error_field(value: &serde_json::Value) -> String {
    let Some(object) = value.as_object() else {
        return String::new();
    };
    let one = |key: &str, value: serde_json::Value| {
        serde_json::Value::Object(serde_json::Map::from_iter([(key.to_string(), value)]))
    };
    let reads = |value: serde_json::Value| serde_json::from_value::<EndpointRecord>(value).is_ok();
    for (key, section) in object {
        if reads(one(key, section.clone())) {
            continue;
        }
        let path = if key == "id" {
            "endpoint_id".to_string()
        } else {
            format!("endpoint.{key}")
        };
        let bad_entry = section.as_object().and_then(|entries| {
            entries
                .iter()
                .find(|(name, entry)| !reads(one(key, one(name, (*entry).clone()))))
        });
        return match bad_entry {
            Some((name, _)) if key == "attributes" || key == "metrics" => {
                format!("{path}[{name:?}]")
            }
            Some((name, _)) => format!("{path}.{name}"),
            None => path,
        };
    }
    String::new()
}

/// Converts name → values to the proto map.
fn proto_attributes(
    attributes: BTreeMap<String, Vec<String>>,
) -> HashMap<String, proto::AttributeValues> {
    attributes
        .into_iter()
        .map(|(name, values)| (name, proto::AttributeValues { values }))
        .collect()
}

/// One event as a user writes it in a JSONL line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct EventRecord {
    /// The endpoint the event belongs to.
    pub endpoint_id: String,
    /// Unique per endpoint; generated when absent.
    #[serde(default)]
    pub event_id: Option<String>,
    pub event_type: String,
    /// RFC 3339; the time of reading when absent.
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub app_package_name: String,
    #[serde(default)]
    pub app_title: String,
    #[serde(default)]
    pub app_version_code: String,
    #[serde(default)]
    pub client_sdk_version: String,
    #[serde(default)]
    pub sdk_name: String,
}

/// An event ready to be grouped into a `PutEvents` request.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedEvent {
    /// The endpoint the event belongs to.
    pub endpoint_id: String,
    /// The event id, as written or generated.
    pub event_id: String,
    /// The event itself.
    pub event: proto::Event,
}

impl EventRecord {
    /// Parses one JSONL line.
    pub fn from_json(line: &str) -> Result<Self, String> {
        serde_json::from_str(line).map_err(|error| format!("invalid event JSON: {error}"))
    }

    /// The event to send; `generated_event_id` and `now` (RFC 3339) fill what was not written.
    pub fn prepare(self, generated_event_id: String, now: &str) -> Result<PreparedEvent, String> {
        if self.endpoint_id.trim().is_empty() {
            return Err("missing endpoint id (field \"endpoint_id\")".to_string());
        }
        let event_id = match self.event_id {
            Some(event_id) if !event_id.trim().is_empty() => event_id,
            _ => generated_event_id,
        };
        let timestamp = match self.timestamp {
            Some(timestamp) if !timestamp.trim().is_empty() => timestamp,
            _ => now.to_string(),
        };
        let session = self
            .session_id
            .filter(|session_id| !session_id.is_empty())
            .map(|session_id| proto::Session {
                id: session_id,
                ..Default::default()
            });
        Ok(PreparedEvent {
            endpoint_id: self.endpoint_id,
            event_id,
            event: proto::Event {
                event_type: self.event_type,
                timestamp,
                attributes: self.attributes.into_iter().collect(),
                metrics: self.metrics.into_iter().collect(),
                session,
                app_package_name: self.app_package_name,
                app_title: self.app_title,
                app_version_code: self.app_version_code,
                client_sdk_version: self.client_sdk_version,
                sdk_name: self.sdk_name,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example line of the CLI documentation imports as written.
    #[test]
    fn jsonl_endpoint_converts_every_section() {
        let line = r#"{"id":"e1","channel_type":"EMAIL","address":"a@b.c","attributes":{"plan":["pro"]},"metrics":{"score":1.5},"user":{"user_id":"u1","user_attributes":{"name":["Ana"]}},"demographic":{"timezone":"America/Sao_Paulo"},"location":{"country":"BR"},"opt_out":"NONE"}"#;
        let item = EndpointRecord::from_json(line)
            .and_then(EndpointRecord::into_batch_item)
            .expect("valid line");
        assert_eq!(item.endpoint_id, "e1");
        let endpoint = item.endpoint.expect("endpoint");
        assert_eq!(endpoint.channel_type, proto::ChannelType::Email as i32);
        assert_eq!(endpoint.address, "a@b.c");
        assert_eq!(endpoint.attributes["plan"].values, vec!["pro"]);
        assert_eq!(endpoint.metrics["score"], 1.5);
        let user = endpoint.user.expect("user");
        assert_eq!(user.user_id, "u1");
        assert_eq!(user.user_attributes["name"].values, vec!["Ana"]);
        assert_eq!(
            endpoint.demographic.expect("demographic").timezone,
            "America/Sao_Paulo"
        );
        assert_eq!(endpoint.location.expect("location").country, "BR");
        assert_eq!(endpoint.opt_out, proto::OptOut::None as i32);
    }

    /// A single string stands for a one-value attribute, so hand-written files stay short.
    #[test]
    fn jsonl_attribute_may_be_a_single_string() {
        let record = EndpointRecord::from_json(r#"{"id":"e1","attributes":{"plan":"pro"}}"#)
            .expect("valid line");
        assert_eq!(record.attributes["plan"], vec!["pro"]);
    }

    /// A misspelt key is an error naming it, not a silently dropped field.
    #[test]
    fn jsonl_unknown_key_is_an_error_naming_it() {
        let error =
            EndpointRecord::from_json(r#"{"id":"e1","adress":"a@b.c"}"#).expect_err("unknown key");
        assert!(error.message.contains("adress"), "{error}");
        assert_eq!(error.field, "endpoint.adress");
    }

    /// A value the parser refuses is reported on its field, down to the entry of a
    /// section; broken JSON names none.
    #[test]
    fn jsonl_errors_name_the_field() {
        let field = |line: &str| {
            EndpointRecord::from_json(line)
                .and_then(EndpointRecord::into_batch_item)
                .expect_err("refused")
                .field
        };
        assert_eq!(
            field(r#"{"id":"e1","channel_type":"PIGEON"}"#),
            "endpoint.channel_type"
        );
        assert_eq!(field(r#"{"id":"e1","opt_out":"SOME"}"#), "endpoint.opt_out");
        assert_eq!(
            field(r#"{"id":"e1","endpoint_status":"ASLEEP"}"#),
            "endpoint.endpoint_status"
        );
        assert_eq!(
            field(r#"{"id":"e1","metrics":{"visits":1,"score":"high"}}"#),
            "endpoint.metrics[\"score\"]"
        );
        assert_eq!(
            field(r#"{"id":"e1","demographic":{"plataform":"ios"}}"#),
            "endpoint.demographic.plataform"
        );
        assert_eq!(
            field(r#"{"id":"e1","location":{"latitude":"north"}}"#),
            "endpoint.location.latitude"
        );
        assert_eq!(field(r#"{"id":7}"#), "endpoint_id");
        assert_eq!(field(r#"{"address":"a@b.c"}"#), "endpoint_id");
        assert_eq!(field(r#"{"id":"e1","#), "");
    }

    /// Files must say which endpoint each row is about.
    #[test]
    fn missing_id_is_an_error() {
        let error = EndpointRecord::from_json(r#"{"address":"a@b.c"}"#)
            .and_then(EndpointRecord::into_batch_item)
            .expect_err("no id");
        assert!(error.message.contains("id"), "{error}");
    }

    /// FCM is accepted as the GCM channel, names are case-insensitive, unknown names fail.
    #[test]
    fn channel_names_map_to_the_proto_enum() {
        assert_eq!(
            channel_type_from_name("FCM"),
            Ok(proto::ChannelType::Gcm as i32)
        );
        assert_eq!(
            channel_type_from_name("sms"),
            Ok(proto::ChannelType::Sms as i32)
        );
        assert_eq!(
            channel_type_from_name("APNS_SANDBOX"),
            Ok(proto::ChannelType::ApnsSandbox as i32)
        );
        let error = channel_type_from_name("PIGEON").expect_err("unknown");
        assert!(error.contains("\"PIGEON\""), "{error}");
        assert_eq!(
            channel_type_name(proto::ChannelType::InApp as i32),
            "IN_APP"
        );
    }

    /// Repeating a name on the command line builds a list of values.
    #[test]
    fn repeated_attribute_flags_give_a_list() {
        let pairs = vec![
            parse_name_value("plan=pro").expect("pair"),
            parse_name_value("plan=max").expect("pair"),
            parse_name_value("team=a=b").expect("pair"),
        ];
        let attributes = attributes_from_pairs(&pairs);
        assert_eq!(attributes["plan"], vec!["pro", "max"]);
        assert_eq!(attributes["team"], vec!["a=b"]);
        assert!(parse_name_value("plan").is_err());
        assert!(parse_name_value("=pro").is_err());
    }

    /// Metrics must be finite numbers.
    #[test]
    fn metric_flags_need_numbers() {
        assert_eq!(
            parse_name_number("score=1.5"),
            Ok(("score".to_string(), 1.5))
        );
        let error = parse_name_number("score=high").expect_err("not a number");
        assert!(error.contains("\"high\""), "{error}");
        assert!(parse_name_number("score=NaN").is_err());
    }

    /// An event without id or timestamp gets the generated id and the current time.
    #[test]
    fn event_defaults_fill_id_and_timestamp() {
        let record = EventRecord::from_json(
            r#"{"endpoint_id":"e1","event_type":"_session.start","session_id":"s1","attributes":{"screen":"home"}}"#,
        )
        .expect("valid line");
        let prepared = record
            .prepare("generated-1".to_string(), "2026-01-01T00:00:00Z")
            .expect("valid event");
        assert_eq!(prepared.endpoint_id, "e1");
        assert_eq!(prepared.event_id, "generated-1");
        assert_eq!(prepared.event.timestamp, "2026-01-01T00:00:00Z");
        assert_eq!(prepared.event.session.expect("session").id, "s1");
        assert_eq!(prepared.event.attributes["screen"], "home");
    }

    /// An event names its endpoint and its type.
    #[test]
    fn event_without_type_is_an_error() {
        let error = EventRecord::from_json(r#"{"endpoint_id":"e1"}"#).expect_err("no type");
        assert!(error.contains("event_type"), "{error}");
    }
}
