//! Endpoints and users (SPEC END-1..4): the record, and the rules an input must pass.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::limits::Limits;
use super::violation::{FieldViolation, join};

/// Channel an endpoint receives messages on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ChannelType {
    /// Email over SMTP.
    Email,
    /// SMS to an E.164 number.
    Sms,
    /// Voice call to an E.164 number.
    Voice,
    /// Apple push (production).
    Apns,
    /// Apple push (sandbox).
    ApnsSandbox,
    /// Firebase Cloud Messaging.
    Gcm,
    /// In-app inbox of the endpoint.
    InApp,
    /// A custom webhook.
    Custom,
}

impl ChannelType {
    /// The name clients use, e.g. `EMAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Sms => "SMS",
            Self::Voice => "VOICE",
            Self::Apns => "APNS",
            Self::ApnsSandbox => "APNS_SANDBOX",
            Self::Gcm => "GCM",
            Self::InApp => "IN_APP",
            Self::Custom => "CUSTOM",
        }
    }

    /// Parses a client name (`EMAIL`, `sms`, `FCM` as an alias of `GCM`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "EMAIL" => Self::Email,
            "SMS" => Self::Sms,
            "VOICE" => Self::Voice,
            "APNS" => Self::Apns,
            "APNS_SANDBOX" => Self::ApnsSandbox,
            "GCM" | "FCM" => Self::Gcm,
            "IN_APP" => Self::InApp,
            "CUSTOM" => Self::Custom,
            _ => return None,
        })
    }
}

/// Whether an endpoint may receive messages at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EndpointStatus {
    /// Receives messages.
    #[default]
    Active,
    /// Never sent to; set by providers answering "unknown address" too.
    Inactive,
}

/// Whether the endpoint's owner refused messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OptOut {
    /// Receives messages.
    #[default]
    None,
    /// Refuses every message.
    All,
}

/// Device and app facts that segments filter on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Demographic {
    pub app_version: String,
    pub locale: String,
    pub make: String,
    pub model: String,
    pub model_version: String,
    pub platform: String,
    pub platform_version: String,
    /// IANA zone name; empty when unknown.
    pub timezone: String,
}

/// Where the endpoint is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Location {
    pub city: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub postal_code: String,
    pub region: String,
}

/// The user an endpoint belongs to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Empty when the endpoint has no user.
    pub user_id: String,
    /// Name → values.
    pub user_attributes: BTreeMap<String, Vec<String>>,
}

/// What a client writes about an endpoint (an upsert replaces these fields whole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct EndpointInput {
    pub address: String,
    /// None when the client did not say; required for a new endpoint.
    pub channel_type: Option<ChannelType>,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub metrics: BTreeMap<String, f64>,
    pub demographic: Demographic,
    pub location: Location,
    pub opt_out: OptOut,
    pub status: EndpointStatus,
    pub user: User,
    /// RFC 3339; empty means "now".
    pub effective_date: String,
    pub request_id: String,
}

/// An endpoint as stored in its shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Endpoint {
    pub project_id: String,
    pub endpoint_id: String,
    pub address: String,
    pub channel_type: ChannelType,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub metrics: BTreeMap<String, f64>,
    pub demographic: Demographic,
    pub location: Location,
    pub opt_out: OptOut,
    pub status: EndpointStatus,
    pub user: User,
    pub effective_date: String,
    pub creation_date: String,
    pub request_id: String,
    /// 0–99, see [`super::hashing::cohort_of`].
    pub cohort_id: u8,
}

impl Endpoint {
    /// The endpoint after an upsert of `input` at `now` (RFC 3339) over `existing`.
    ///
    /// The caller has validated `input`; a new endpoint without a channel type is refused
    /// before this point.
    pub fn upserted(
        existing: Option<&Endpoint>,
        project_id: &str,
        endpoint_id: &str,
        input: EndpointInput,
        now: &str,
        cohort_id: u8,
    ) -> Endpoint {
        let channel_type = input
            .channel_type
            .or(existing.map(|e| e.channel_type))
            .unwrap_or(ChannelType::Custom);
        let effective_date = if input.effective_date.is_empty() {
            now.to_string()
        } else {
            input.effective_date
        };
        Endpoint {
            project_id: project_id.to_string(),
            endpoint_id: endpoint_id.to_string(),
            address: input.address,
            channel_type,
            attributes: input.attributes,
            metrics: input.metrics,
            demographic: input.demographic,
            location: input.location,
            opt_out: input.opt_out,
            status: input.status,
            user: input.user,
            effective_date,
            creation_date: existing.map_or_else(|| now.to_string(), |e| e.creation_date.clone()),
            request_id: input.request_id,
            cohort_id,
        }
    }
}

/// Checks an id (endpoint, user, event, session): non-empty, bounded, printable.
pub fn validate_id(field: &str, id: &str, limits: &Limits, violations: &mut Vec<FieldViolation>) {
    if id.is_empty() {
        violations.push(FieldViolation::new(field, "must not be empty"));
    } else if id.len() > limits.id_bytes {
        violations.push(FieldViolation::new(
            field,
            format!("is {} bytes, more than the limit of {}", id.len(), limits.id_bytes),
        ));
    } else if id.chars().any(char::is_control) {
        violations.push(FieldViolation::new(field, "must not contain control characters"));
    }
}

/// Whether `address` is a plausible email address: `local@domain.tld`, no spaces.
pub fn is_email(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && address.len() <= 254
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
}

/// Whether `number` is an E.164 phone number: `+`, a non-zero digit, at most 15 digits in all.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Checks the address for the channel (END-4).
fn validate_address(
    field: &str,
    channel: ChannelType,
    address: &str,
    limits: &Limits,
    violations: &mut Vec<FieldViolation>,
) {
    if address.len() > limits.address_bytes {
        violations.push(FieldViolation::new(
            field,
            format!(
                "is {} bytes, more than the limit of {}",
                address.len(),
                limits.address_bytes
            ),
        ));
        return;
    }
    let problem = match channel {
        ChannelType::Email if !is_email(address) => {
            Some(format!("{address:?} is not an email address"))
        }
        ChannelType::Sms | ChannelType::Voice if !is_e164(address) => Some(format!(
            "{address:?} is not an E.164 phone number (e.g. +5511987654321)"
        )),
        ChannelType::Apns | ChannelType::ApnsSandbox | ChannelType::Gcm | ChannelType::Custom
            if address.trim().is_empty() =>
        {
            Some(format!("must not be empty for channel {}", channel.as_str()))
        }
        _ => None,
    };
    if let Some(reason) = problem {
        violations.push(FieldViolation::new(field, reason));
    }
}

/// Checks a map of attributes: count of names, values per name, lengths.
pub fn validate_attributes(
    field: &str,
    attributes: &BTreeMap<String, Vec<String>>,
    limits: &Limits,
    violations: &mut Vec<FieldViolation>,
) {
    if attributes.len() > limits.attributes_per_endpoint {
        violations.push(FieldViolation::new(
            field,
            format!(
                "has {} attributes, more than the limit of {}",
                attributes.len(),
                limits.attributes_per_endpoint
            ),
        ));
    }
    for (name, values) in attributes {
        let path = format!("{field}[{name:?}]");
        validate_name(&path, name, limits, violations);
        if values.len() > limits.values_per_attribute {
            violations.push(FieldViolation::new(
                &path,
                format!(
                    "has {} values, more than the limit of {}",
                    values.len(),
                    limits.values_per_attribute
                ),
            ));
        }
        for (i, value) in values.iter().enumerate() {
            if value.chars().count() > limits.attribute_value_chars {
                violations.push(FieldViolation::new(
                    format!("{path}[{i}]"),
                    format!(
                        "is longer than {} characters",
                        limits.attribute_value_chars
                    ),
                ));
            }
        }
    }
}

/// Checks an attribute or metric name.
pub fn validate_name(field: &str, name: &str, limits: &Limits, violations: &mut Vec<FieldViolation>) {
    if name.trim().is_empty() {
        violations.push(FieldViolation::new(field, "name must not be empty"));
    } else if name.chars().count() > limits.attribute_name_chars {
        violations.push(FieldViolation::new(
            field,
            format!("name is longer than {} characters", limits.attribute_name_chars),
        ));
    } else if name.chars().any(char::is_control) {
        violations.push(FieldViolation::new(field, "name must not contain control characters"));
    }
}

/// Checks metrics: names, and values that are finite numbers.
pub fn validate_metrics(
    field: &str,
    metrics: &BTreeMap<String, f64>,
    max: usize,
    limits: &Limits,
    violations: &mut Vec<FieldViolation>,
) {
    if metrics.len() > max {
        violations.push(FieldViolation::new(
            field,
            format!("has {} metrics, more than the limit of {max}", metrics.len()),
        ));
    }
    for (name, value) in metrics {
        let path = format!("{field}[{name:?}]");
        validate_name(&path, name, limits, violations);
        if !value.is_finite() {
            violations.push(FieldViolation::new(path, format!("{value} is not a finite number")));
        }
    }
}

/// Checks an RFC 3339 timestamp; empty is allowed when `required` is false.
pub fn validate_timestamp(
    field: &str,
    value: &str,
    required: bool,
    violations: &mut Vec<FieldViolation>,
) {
    if value.is_empty() {
        if required {
            violations.push(FieldViolation::new(field, "must not be empty"));
        }
        return;
    }
    if chrono::DateTime::parse_from_rfc3339(value).is_err() {
        violations.push(FieldViolation::new(
            field,
            format!("{value:?} is not an RFC 3339 timestamp (e.g. 2026-11-25T12:00:00Z)"),
        ));
    }
}

/// Checks an endpoint input (END-1, END-4) and returns every problem at once.
///
/// `field` is the path of the input in the request (e.g. `items[2].endpoint`); `is_new` says
/// whether the endpoint does not exist yet, so its channel type is required.
pub fn validate_endpoint(
    field: &str,
    input: &EndpointInput,
    is_new: bool,
    limits: &Limits,
) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    match input.channel_type {
        Some(channel) => validate_address(
            &join(field, "address"),
            channel,
            &input.address,
            limits,
            &mut violations,
        ),
        None if is_new => violations.push(FieldViolation::new(
            join(field, "channel_type"),
            "is required for a new endpoint",
        )),
        None => {}
    }
    validate_attributes(&join(field, "attributes"), &input.attributes, limits, &mut violations);
    validate_metrics(
        &join(field, "metrics"),
        &input.metrics,
        limits.attributes_per_endpoint,
        limits,
        &mut violations,
    );
    let demographic = &input.demographic;
    if !demographic.timezone.is_empty()
        && demographic.timezone.parse::<chrono_tz::Tz>().is_err()
    {
        violations.push(FieldViolation::new(
            join(field, "demographic.timezone"),
            format!("{:?} is not an IANA time zone (e.g. America/Sao_Paulo)", demographic.timezone),
        ));
    }
    let location = &input.location;
    if !location.country.is_empty()
        && !(location.country.len() == 2 && location.country.chars().all(|c| c.is_ascii_uppercase()))
    {
        violations.push(FieldViolation::new(
            join(field, "location.country"),
            format!("{:?} is not an ISO 3166-1 alpha-2 code (e.g. BR)", location.country),
        ));
    }
    match (location.latitude, location.longitude) {
        (Some(lat), _) if !(-90.0..=90.0).contains(&lat) => violations.push(FieldViolation::new(
            join(field, "location.latitude"),
            format!("{lat} is outside -90..90"),
        )),
        (_, Some(lon)) if !(-180.0..=180.0).contains(&lon) => violations.push(FieldViolation::new(
            join(field, "location.longitude"),
            format!("{lon} is outside -180..180"),
        )),
        (Some(_), None) | (None, Some(_)) => violations.push(FieldViolation::new(
            join(field, "location"),
            "latitude and longitude must be given together",
        )),
        _ => {}
    }
    if !input.user.user_id.is_empty() {
        validate_id(&join(field, "user.user_id"), &input.user.user_id, limits, &mut violations);
    }
    validate_attributes(
        &join(field, "user.user_attributes"),
        &input.user.user_attributes,
        limits,
        &mut violations,
    );
    validate_timestamp(
        &join(field, "effective_date"),
        &input.effective_date,
        false,
        &mut violations,
    );
    if input.request_id.len() > limits.id_bytes {
        violations.push(FieldViolation::new(
            join(field, "request_id"),
            format!("is longer than {} bytes", limits.id_bytes),
        ));
    }
    violations
}
