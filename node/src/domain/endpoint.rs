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
            format!(
                "is {} bytes, more than the limit of {}",
                id.len(),
                limits.id_bytes
            ),
        ));
    } else if id.chars().any(char::is_control) {
        violations.push(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
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

/// Whether `code` is an upper-case ISO 3166-1 alpha-2 code, e.g. `BR`.
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && code.chars().all(|c| c.is_ascii_uppercase())
}

/// Checks the address for the channel (END-4).
pub fn validate_address(
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
            Some(format!(
                "must not be empty for channel {}",
                channel.as_str()
            ))
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
                    format!("is longer than {} characters", limits.attribute_value_chars),
                ));
            }
        }
    }
}

/// Checks an attribute or metric name.
pub fn validate_name(
    field: &str,
    name: &str,
    limits: &Limits,
    violations: &mut Vec<FieldViolation>,
) {
    if name.trim().is_empty() {
        violations.push(FieldViolation::new(field, "name must not be empty"));
    } else if name.chars().count() > limits.attribute_name_chars {
        violations.push(FieldViolation::new(
            field,
            format!(
                "name is longer than {} characters",
                limits.attribute_name_chars
            ),
        ));
    } else if name.chars().any(char::is_control) {
        violations.push(FieldViolation::new(
            field,
            "name must not contain control characters",
        ));
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
            format!(
                "has {} metrics, more than the limit of {max}",
                metrics.len()
            ),
        ));
    }
    for (name, value) in metrics {
        let path = format!("{field}[{name:?}]");
        validate_name(&path, name, limits, violations);
        if !value.is_finite() {
            violations.push(FieldViolation::new(
                path,
                format!("{value} is not a finite number"),
            ));
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
    validate_attributes(
        &join(field, "attributes"),
        &input.attributes,
        limits,
        &mut violations,
    );
    validate_metrics(
        &join(field, "metrics"),
        &input.metrics,
        limits.attributes_per_endpoint,
        limits,
        &mut violations,
    );
    let demographic = &input.demographic;
    if !demographic.timezone.is_empty() && demographic.timezone.parse::<chrono_tz::Tz>().is_err() {
        violations.push(FieldViolation::new(
            join(field, "demographic.timezone"),
            format!(
                "{:?} is not an IANA time zone (e.g. America/Sao_Paulo)",
                demographic.timezone
            ),
        ));
    }
    let location = &input.location;
    if !location.country.is_empty() && !is_country_code(&location.country) {
        violations.push(FieldViolation::new(
            join(field, "location.country"),
            format!(
                "{:?} is not an ISO 3166-1 alpha-2 code (e.g. BR)",
                location.country
            ),
        ));
    }
    // Each coordinate rule is checked on its own so that one answer lists every problem.
    if let Some(lat) = location
        .latitude
        .filter(|lat| !(-90.0..=90.0).contains(lat))
    {
        violations.push(FieldViolation::new(
            join(field, "location.latitude"),
            format!("{lat} is outside -90..90"),
        ));
    }
    if let Some(lon) = location
        .longitude
        .filter(|lon| !(-180.0..=180.0).contains(lon))
    {
        violations.push(FieldViolation::new(
            join(field, "location.longitude"),
            format!("{lon} is outside -180..180"),
        ));
    }
    if location.latitude.is_some() != location.longitude.is_some() {
        violations.push(FieldViolation::new(
            join(field, "location"),
            "latitude and longitude must be given together",
        ));
    }
    if !input.user.user_id.is_empty() {
        validate_id(
            &join(field, "user.user_id"),
            &input.user.user_id,
            limits,
            &mut violations,
        );
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

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Fields named by `violations`, for assertion messages and membership checks.
    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    /// Asserts that some violation names exactly `field`.
    fn assert_names(violations: &[FieldViolation], field: &str) {
        assert!(
            violations.iter().any(|v| v.field == field),
            "expected a violation of {field:?}, got {violations:?}"
        );
    }

    /// Paths the API puts an endpoint under: a lone endpoint, a batch item, or the root.
    fn endpoint_prefix() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("endpoint".to_string()),
            (0..100usize).prop_map(|i| format!("items[{i}].endpoint")),
        ]
    }

    /// Email addresses within RFC 5321's sizes: a 1..=64 byte local part, a dotted domain.
    fn email() -> impl Strategy<Value = String> {
        (
            "[a-zA-Z0-9_%+-][a-zA-Z0-9._%+-]{0,63}",
            prop::collection::vec("[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", 1..=3),
            "[a-z]{2,6}",
        )
            .prop_map(|(local, labels, tld)| format!("{local}@{}.{tld}", labels.join(".")))
    }

    /// E.164 numbers: '+', a non-zero digit, 2..=15 digits in all.
    fn e164() -> impl Strategy<Value = String> {
        "\\+[1-9][0-9]{1,14}"
    }

    /// Strings that look like an email address but are not one.
    fn bad_email() -> impl Strategy<Value = String> {
        prop_oneof![
            // No '@' at all.
            email().prop_map(|a| a.replace('@', "")),
            // Whitespace anywhere.
            (
                email(),
                any::<prop::sample::Index>(),
                prop::sample::select(vec![' ', '\t', '\n'])
            )
                .prop_map(|(a, at, space)| insert_at(&a, at.index(a.len() + 1), space)),
            // No dot in the domain.
            ("[a-z]{1,10}", "[a-z]{1,10}").prop_map(|(l, d)| format!("{l}@{d}")),
            // Empty local part.
            email().prop_map(|a| format!("@{}", a.split_once('@').expect("has @").1)),
            // Local part longer than 64 bytes.
            ("[a-z]{65,80}", "[a-z]{1,10}").prop_map(|(l, d)| format!("{l}@{d}.com")),
            // Two '@'.
            email().prop_map(|a| format!("x@{a}")),
        ]
    }

    /// Strings that look like an E.164 number but are not one.
    fn bad_e164() -> impl Strategy<Value = String> {
        prop_oneof![
            // Missing '+'.
            e164().prop_map(|n| n[1..].to_string()),
            // Leading zero after '+'.
            "\\+0[0-9]{1,14}",
            // More than 15 digits.
            "\\+[1-9][0-9]{15,20}",
            // A single digit.
            "\\+[1-9]",
            // A letter, space or separator somewhere after the '+'.
            (
                e164(),
                any::<prop::sample::Index>(),
                prop::sample::select(vec!['a', 'X', ' ', '-', '('])
            )
                .prop_map(|(n, at, c)| insert_at(&n, 1 + at.index(n.len()), c)),
        ]
    }

    /// `text` with `c` inserted at byte `at` (an ASCII char boundary in these tests).
    fn insert_at(text: &str, at: usize, c: char) -> String {
        let mut changed = text.to_string();
        changed.insert(at, c);
        changed
    }

    /// Attribute and metric names within the default 50-character limit: mostly short,
    /// sometimes exactly 50 characters of which most are multi-byte, since the limit counts
    /// characters, not bytes.
    pub(crate) fn attribute_name() -> impl Strategy<Value = String> {
        prop_oneof![
            9 => "[a-zA-Z_][a-zA-Z0-9_ .-]{0,11}",
            1 => "[a-z]{4}".prop_map(|start| format!("{start}{}", "é".repeat(46))),
        ]
    }

    /// Attribute values within the default 200-character limit: mostly short, sometimes
    /// exactly 200 characters, multi-byte ones included.
    pub(crate) fn attribute_value() -> impl Strategy<Value = String> {
        prop_oneof![
            9 => "[a-zA-Z0-9 ._-]{0,8}",
            1 => prop::sample::select(vec!["a", "é", "✓"]).prop_map(|c| c.repeat(200)),
        ]
    }

    /// Finite metric values of any magnitude.
    pub(crate) fn finite_metric() -> impl Strategy<Value = f64> {
        any::<f64>().prop_filter("finite", |v| v.is_finite())
    }

    /// RFC 3339 timestamps between 1970 and 2100, in UTC ("Z") or at a whole-minute offset.
    pub(crate) fn rfc3339_timestamp() -> impl Strategy<Value = String> {
        (0i64..4_102_444_800, -12 * 60..=14 * 60i32, any::<bool>()).prop_map(
            |(secs, minutes, utc)| {
                let instant = chrono::DateTime::from_timestamp(secs, 0).expect("in range");
                if utc {
                    instant.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                } else {
                    let offset = chrono::FixedOffset::east_opt(minutes * 60).expect("within a day");
                    instant.with_timezone(&offset).to_rfc3339()
                }
            },
        )
    }

    /// Attribute maps within the default limits (40 names, 50 values); sizes are mostly
    /// small but often exactly at the limit, where off-by-one mistakes would show.
    fn attributes() -> impl Strategy<Value = BTreeMap<String, Vec<String>>> {
        let values = prop_oneof![
            7 => prop::collection::vec(attribute_value(), 0..=3),
            1 => prop::collection::vec(attribute_value(), 50),
        ];
        prop_oneof![
            7 => prop::collection::btree_map(attribute_name(), values.clone(), 0..=4),
            1 => prop::collection::btree_map(attribute_name(), values, 40),
        ]
    }

    /// Metric maps within the default limit of 40 names.
    fn metrics() -> impl Strategy<Value = BTreeMap<String, f64>> {
        prop_oneof![
            7 => prop::collection::btree_map(attribute_name(), finite_metric(), 0..=4),
            1 => prop::collection::btree_map(attribute_name(), finite_metric(), 40),
        ]
    }

    /// A channel with an address valid for it.
    fn channel_and_address() -> impl Strategy<Value = (ChannelType, String)> {
        let token_channel = prop::sample::select(vec![
            ChannelType::Apns,
            ChannelType::ApnsSandbox,
            ChannelType::Gcm,
        ]);
        prop_oneof![
            email().prop_map(|a| (ChannelType::Email, a)),
            e164().prop_map(|n| (ChannelType::Sms, n)),
            e164().prop_map(|n| (ChannelType::Voice, n)),
            (token_channel, "[0-9a-f]{64}|[A-Za-z0-9:_-]{20,200}"),
            "https://[a-z]{1,20}\\.example/[a-z0-9/]{0,40}".prop_map(|a| (ChannelType::Custom, a)),
            ".{0,40}".prop_map(|a| (ChannelType::InApp, a)),
        ]
    }

    fn demographic() -> impl Strategy<Value = Demographic> {
        let timezone = prop_oneof![
            Just(String::new()),
            prop::sample::select(&chrono_tz::TZ_VARIANTS[..]).prop_map(|tz| tz.name().to_string()),
        ];
        (
            ".{0,20}",
            "[a-z]{2}(_[A-Z]{2})?",
            ".{0,20}",
            ".{0,20}",
            timezone,
        )
            .prop_map(|(app_version, locale, make, model, timezone)| Demographic {
                app_version,
                locale,
                make,
                model,
                model_version: "1".to_string(),
                platform: "android".to_string(),
                platform_version: "15".to_string(),
                timezone,
            })
    }

    fn location() -> impl Strategy<Value = Location> {
        let country = prop_oneof![Just(String::new()), "[A-Z]{2}"];
        let coordinates = prop::option::of((-90.0..=90.0f64, -180.0..=180.0f64));
        (".{0,20}", country, coordinates, "[0-9-]{0,9}", ".{0,20}").prop_map(
            |(city, country, coordinates, postal_code, region)| Location {
                city,
                country,
                latitude: coordinates.map(|(lat, _)| lat),
                longitude: coordinates.map(|(_, lon)| lon),
                postal_code,
                region,
            },
        )
    }

    fn user() -> impl Strategy<Value = User> {
        let user_id = prop_oneof![Just(String::new()), "[a-zA-Z0-9_@.-]{1,128}"];
        (user_id, attributes()).prop_map(|(user_id, user_attributes)| User {
            user_id,
            user_attributes,
        })
    }

    /// Endpoint inputs that respect every limit of `Limits::default()` and every rule.
    fn valid_input() -> impl Strategy<Value = EndpointInput> {
        let effective_date = prop_oneof![Just(String::new()), rfc3339_timestamp()];
        let opt_out = prop::sample::select(vec![OptOut::None, OptOut::All]);
        let status = prop::sample::select(vec![EndpointStatus::Active, EndpointStatus::Inactive]);
        (
            channel_and_address(),
            attributes(),
            metrics(),
            demographic(),
            location(),
            (opt_out, status),
            user(),
            effective_date,
            "[a-zA-Z0-9-]{0,128}",
        )
            .prop_map(
                |(
                    (channel, address),
                    attributes,
                    metrics,
                    demographic,
                    location,
                    (opt_out, status),
                    user,
                    effective_date,
                    request_id,
                )| EndpointInput {
                    address,
                    channel_type: Some(channel),
                    attributes,
                    metrics,
                    demographic,
                    location,
                    opt_out,
                    status,
                    user,
                    effective_date,
                    request_id,
                },
            )
    }

    /// One way to break an otherwise valid endpoint input.
    #[derive(Debug, Clone)]
    enum Mutation {
        /// More than 40 attribute names.
        TooManyAttributes(usize),
        /// More than 40 user attribute names.
        TooManyUserAttributes(usize),
        /// More than 50 values for the attribute "plan".
        TooManyValues(usize),
        /// A value of attribute "bio", at the index given, longer than 200 characters.
        OverlongAttributeValue { index: usize, chars: usize },
        /// More than 40 metrics.
        TooManyMetrics(usize),
        /// Metric "score" is NaN or infinite.
        NonFiniteMetric(f64),
        /// A time zone that is not in the IANA database.
        BadTimezone(String),
        /// A country that is not two upper-case letters.
        BadCountry(String),
        /// A latitude outside -90..=90 (NaN included).
        LatitudeOutOfRange(f64),
        /// A longitude outside -180..=180.
        LongitudeOutOfRange(f64),
        /// A latitude with no longitude.
        LatitudeWithoutLongitude(f64),
        /// An effective date that is not RFC 3339.
        BadEffectiveDate(String),
        /// A user id longer than 128 bytes.
        OverlongUserId(String),
        /// An SMS endpoint whose address is not E.164.
        SmsWithBadAddress(String),
        /// An email endpoint whose address is not an email address.
        EmailWithBadAddress(String),
        /// An APNs endpoint with an empty or blank token.
        EmptyApnsToken(String),
    }

    impl Mutation {
        /// Breaks `input` and returns the path, under `prefix`, that must be named.
        fn apply(&self, prefix: &str, input: &mut EndpointInput) -> String {
            match self {
                Self::TooManyAttributes(count) => {
                    for i in 0..*count {
                        input.attributes.insert(format!("extra_{i}"), vec![]);
                    }
                    join(prefix, "attributes")
                }
                Self::TooManyUserAttributes(count) => {
                    for i in 0..*count {
                        input
                            .user
                            .user_attributes
                            .insert(format!("extra_{i}"), vec![]);
                    }
                    join(prefix, "user.user_attributes")
                }
                Self::TooManyValues(count) => {
                    input
                        .attributes
                        .insert("plan".to_string(), vec!["gold".to_string(); *count]);
                    format!("{}[\"plan\"]", join(prefix, "attributes"))
                }
                Self::OverlongAttributeValue { index, chars } => {
                    let mut values = vec!["short".to_string(); *index];
                    values.push("é".repeat(*chars));
                    input.attributes.insert("bio".to_string(), values);
                    format!("{}[\"bio\"][{index}]", join(prefix, "attributes"))
                }
                Self::TooManyMetrics(count) => {
                    for i in 0..*count {
                        input.metrics.insert(format!("extra_{i}"), 1.0);
                    }
                    join(prefix, "metrics")
                }
                Self::NonFiniteMetric(value) => {
                    input.metrics.insert("score".to_string(), *value);
                    format!("{}[\"score\"]", join(prefix, "metrics"))
                }
                Self::BadTimezone(zone) => {
                    input.demographic.timezone = zone.clone();
                    join(prefix, "demographic.timezone")
                }
                Self::BadCountry(country) => {
                    input.location.country = country.clone();
                    join(prefix, "location.country")
                }
                Self::LatitudeOutOfRange(latitude) => {
                    input.location.latitude = Some(*latitude);
                    input.location.longitude = Some(0.0);
                    join(prefix, "location.latitude")
                }
                Self::LongitudeOutOfRange(longitude) => {
                    input.location.latitude = Some(0.0);
                    input.location.longitude = Some(*longitude);
                    join(prefix, "location.longitude")
                }
                Self::LatitudeWithoutLongitude(latitude) => {
                    input.location.latitude = Some(*latitude);
                    input.location.longitude = None;
                    join(prefix, "location")
                }
                Self::BadEffectiveDate(date) => {
                    input.effective_date = date.clone();
                    join(prefix, "effective_date")
                }
                Self::OverlongUserId(user_id) => {
                    input.user.user_id = user_id.clone();
                    join(prefix, "user.user_id")
                }
                Self::SmsWithBadAddress(address) => {
                    input.channel_type = Some(ChannelType::Sms);
                    input.address = address.clone();
                    join(prefix, "address")
                }
                Self::EmailWithBadAddress(address) => {
                    input.channel_type = Some(ChannelType::Email);
                    input.address = address.clone();
                    join(prefix, "address")
                }
                Self::EmptyApnsToken(token) => {
                    input.channel_type = Some(ChannelType::Apns);
                    input.address = token.clone();
                    join(prefix, "address")
                }
            }
        }

        /// Mutations of the same group overwrite one another's field, so at most one of a
        /// group is applied to an input.
        fn group(&self) -> &'static str {
            match self {
                Self::SmsWithBadAddress(_)
                | Self::EmailWithBadAddress(_)
                | Self::EmptyApnsToken(_) => "address",
                Self::LatitudeOutOfRange(_)
                | Self::LongitudeOutOfRange(_)
                | Self::LatitudeWithoutLongitude(_) => "coordinates",
                Self::TooManyAttributes(_) => "attributes",
                Self::TooManyUserAttributes(_) => "user_attributes",
                Self::TooManyValues(_) => "plan",
                Self::OverlongAttributeValue { .. } => "bio",
                Self::TooManyMetrics(_) => "metrics",
                Self::NonFiniteMetric(_) => "score",
                Self::BadTimezone(_) => "timezone",
                Self::BadCountry(_) => "country",
                Self::BadEffectiveDate(_) => "effective_date",
                Self::OverlongUserId(_) => "user_id",
            }
        }
    }

    /// Time zone names that are not in the IANA database.
    fn bad_timezone() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("Mars/Olympus_Mons".to_string()),
            Just("America/Sao Paulo".to_string()),
            Just("+03:00".to_string()),
            Just("GMT+25".to_string()),
            "[A-Za-z/_+0-9]{1,30}"
                .prop_filter("not a zone", |z| z.parse::<chrono_tz::Tz>().is_err()),
        ]
    }

    /// Strings that are not an ISO 3166-1 alpha-2 code.
    fn bad_country() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{2}",
            "[A-Z]",
            "[A-Z]{3,10}",
            "[0-9]{2}",
            Just("Brazil".to_string())
        ]
    }

    /// Strings that are not RFC 3339 timestamps.
    fn bad_timestamp() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "yesterday",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2026-11-25T25:00:00Z",
            "2026-11-25T12:00:00",
            "1764072000",
            "25/11/2026 12:00",
        ])
        .prop_map(str::to_string)
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let outside_latitude = prop_oneof![
            90.000_001..1e6f64,
            -1e6..-90.000_001f64,
            Just(f64::NAN),
            Just(f64::INFINITY),
        ];
        let outside_longitude = prop_oneof![180.000_001..1e6f64, -1e6..-180.000_001f64];
        let non_finite = prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
        prop_oneof![
            (1..=20usize).prop_map(|n| Mutation::TooManyAttributes(40 + n)),
            (1..=20usize).prop_map(|n| Mutation::TooManyUserAttributes(40 + n)),
            (51..=80usize).prop_map(Mutation::TooManyValues),
            (0..5usize, 201..=260usize)
                .prop_map(|(index, chars)| Mutation::OverlongAttributeValue { index, chars }),
            (41..=60usize).prop_map(Mutation::TooManyMetrics),
            non_finite.prop_map(Mutation::NonFiniteMetric),
            bad_timezone().prop_map(Mutation::BadTimezone),
            bad_country().prop_map(Mutation::BadCountry),
            outside_latitude.prop_map(Mutation::LatitudeOutOfRange),
            outside_longitude.prop_map(Mutation::LongitudeOutOfRange),
            (-90.0..=90.0f64).prop_map(Mutation::LatitudeWithoutLongitude),
            bad_timestamp().prop_map(Mutation::BadEffectiveDate),
            "[a-z0-9]{129,200}".prop_map(Mutation::OverlongUserId),
            bad_e164().prop_map(Mutation::SmsWithBadAddress),
            bad_email().prop_map(Mutation::EmailWithBadAddress),
            "[ \t]{0,3}".prop_map(Mutation::EmptyApnsToken),
        ]
    }

    /// Concrete addresses a user would type, and whether Herald takes them as email.
    #[test]
    fn email_examples() {
        let cases = [
            ("ana@example.com", true),
            ("ana.souza+promo@mail.example.com.br", true),
            ("a@b.co", true),
            ("josé@exemplo.com.br", true),
            ("ana@exämple.de", true),
            ("anaexample.com", false),
            ("ana@example", false),
            ("ana @example.com", false),
            ("ana@exa mple.com", false),
            ("ana@example.com ", false),
            ("@example.com", false),
            ("ana@", false),
            ("ana@.example.com", false),
            ("ana@example.com.", false),
            ("ana@example..com", false),
            ("ana@@example.com", false),
            ("ana@x@example.com", false),
            ("ana@exa_mple.com", false),
            ("", false),
        ];
        for (address, expected) in cases {
            assert_eq!(is_email(address), expected, "{address:?}");
        }
        let longest_local = format!("{}@example.com", "a".repeat(64));
        assert!(is_email(&longest_local));
        assert!(!is_email(&format!("a{longest_local}")));
    }

    /// Concrete phone numbers, and whether Herald takes them as E.164.
    #[test]
    fn e164_examples() {
        let cases = [
            ("+5511987654321", true),
            ("+14155550123", true),
            ("+12", true),
            ("+123456789012345", true),
            ("+1234567890123456", false),
            ("+1", false),
            ("+", false),
            ("", false),
            ("5511987654321", false),
            ("+0511987654321", false),
            ("+55 11 98765-4321", false),
            ("+1 (415) 555-0123", false),
            ("+1415555O123", false),
            ("++14155550123", false),
            ("+١٤١٥٥٥٥٠١٢٣", false),
            ("+１４１５５５５０１２３", false),
            ("+14155550123\n", false),
        ];
        for (number, expected) in cases {
            assert_eq!(is_e164(number), expected, "{number:?}");
        }
    }

    proptest! {
        /// Every well-formed email address is accepted, so no real user is turned away.
        #[test]
        fn valid_emails_are_accepted(address in email()) {
            prop_assert!(is_email(&address), "{address:?}");
        }

        /// Addresses without '@', with whitespace, with an empty or over-long local part,
        /// with two '@' or an undotted domain are refused before anything is sent to them.
        #[test]
        fn broken_emails_are_refused(address in bad_email()) {
            prop_assert!(!is_email(&address), "{address:?}");
        }

        /// Every E.164 number, 2 to 15 digits long, is accepted.
        #[test]
        fn valid_e164_numbers_are_accepted(number in e164()) {
            prop_assert!(is_e164(&number), "{number:?}");
        }

        /// Numbers missing '+', starting with 0, too long, too short, or with letters,
        /// spaces or punctuation are refused, so SMS never goes to a malformed number.
        #[test]
        fn broken_e164_numbers_are_refused(number in bad_e164()) {
            prop_assert!(!is_e164(&number), "{number:?}");
        }

        /// An endpoint that respects every rule and default limit (including inputs exactly
        /// at the limits) is accepted, as a new endpoint or an update.
        #[test]
        fn valid_endpoints_pass(prefix in endpoint_prefix(), input in valid_input(), is_new in any::<bool>()) {
            let violations = validate_endpoint(&prefix, &input, is_new, &Limits::default());
            prop_assert!(violations.is_empty(), "{violations:?}");
        }

        /// An update of an existing endpoint may omit the channel type (it keeps its own), but
        /// a new endpoint without one is refused, naming `<prefix>.channel_type`.
        #[test]
        fn channel_type_is_required_only_for_new_endpoints(
            prefix in endpoint_prefix(),
            mut input in valid_input(),
        ) {
            input.channel_type = None;
            let limits = Limits::default();
            let violations = validate_endpoint(&prefix, &input, false, &limits);
            prop_assert!(violations.is_empty(), "{violations:?}");
            let violations = validate_endpoint(&prefix, &input, true, &limits);
            let expected = join(&prefix, "channel_type");
            prop_assert_eq!(fields(&violations), vec![expected.as_str()]);
        }

        /// Each way of breaking an endpoint is reported on exactly the field the client must
        /// fix, e.g. `items[3].endpoint.attributes["plan"]`, so a client can point at it.
        #[test]
        fn each_mutation_names_its_field(
            prefix in endpoint_prefix(),
            mut input in valid_input(),
            mutation in mutation(),
        ) {
            let expected = mutation.apply(&prefix, &mut input);
            let violations = validate_endpoint(&prefix, &input, false, &Limits::default());
            assert_names(&violations, &expected);
            for violation in &violations {
                prop_assert!(violation.field.starts_with(prefix.as_str()), "{violation}");
                prop_assert!(!violation.reason.is_empty(), "{violation}");
            }
        }

        /// Several problems in one endpoint are all reported in one answer, so a client fixes
        /// them in one round trip instead of discovering them one by one.
        #[test]
        fn every_problem_is_reported_at_once(
            prefix in endpoint_prefix(),
            mut input in valid_input(),
            mutations in prop::collection::vec(mutation(), 2..=6),
        ) {
            let mut groups = std::collections::BTreeSet::new();
            let applied: Vec<Mutation> =
                mutations.into_iter().filter(|m| groups.insert(m.group())).collect();
            prop_assume!(applied.len() >= 2);
            let expected: Vec<String> = applied.iter().map(|m| m.apply(&prefix, &mut input)).collect();
            let violations = validate_endpoint(&prefix, &input, false, &Limits::default());
            for field in &expected {
                assert_names(&violations, field);
            }
        }

        /// An upsert keeps the endpoint's creation date, defaults the effective date to the
        /// time of the write, keeps the channel type when the client omits it, and replaces
        /// every other field whole.
        #[test]
        fn upsert_over_an_existing_endpoint(
            old in valid_input(),
            mut new in valid_input(),
            omit_channel in any::<bool>(),
            cohort in 0..100u8,
        ) {
            let created = "2026-01-01T00:00:00Z";
            let now = "2026-11-25T12:00:00Z";
            let existing = Endpoint::upserted(None, "p1", "e1", old.clone(), created, cohort);
            if omit_channel {
                new.channel_type = None;
            }
            let updated = Endpoint::upserted(Some(&existing), "p1", "e1", new.clone(), now, cohort);
            prop_assert_eq!(&updated.creation_date, created);
            let expected_effective = if new.effective_date.is_empty() { now } else { new.effective_date.as_str() };
            prop_assert_eq!(&updated.effective_date, expected_effective);
            let expected_channel = new.channel_type.or(old.channel_type).expect("old has a channel");
            prop_assert_eq!(updated.channel_type, expected_channel);
            prop_assert_eq!(&updated.address, &new.address);
            prop_assert_eq!(&updated.attributes, &new.attributes);
            prop_assert_eq!(&updated.user, &new.user);
            prop_assert_eq!(&updated.location, &new.location);
            prop_assert_eq!(updated.cohort_id, cohort);
        }
    }

    /// The concrete paths of SPEC's "Bad input": what a client of a batch call sees.
    #[test]
    fn violations_name_batch_paths() {
        let mut input = EndpointInput {
            address: "+5511987654321".to_string(),
            channel_type: Some(ChannelType::Sms),
            attributes: BTreeMap::from([
                ("plan".to_string(), vec!["gold".to_string(); 51]),
                ("bio".to_string(), vec!["ok".to_string(), "x".repeat(201)]),
            ]),
            metrics: BTreeMap::from([("score".to_string(), f64::NAN)]),
            demographic: Demographic {
                timezone: "Asia/Calcutta_".to_string(),
                ..Demographic::default()
            },
            location: Location {
                country: "br".to_string(),
                latitude: Some(-23.5),
                ..Location::default()
            },
            opt_out: OptOut::None,
            status: EndpointStatus::Active,
            user: User {
                user_id: "u".repeat(129),
                user_attributes: BTreeMap::new(),
            },
            effective_date: "tomorrow".to_string(),
            request_id: String::new(),
        };
        let violations = validate_endpoint("items[3].endpoint", &input, false, &Limits::default());
        let mut named = fields(&violations);
        named.sort_unstable();
        assert_eq!(
            named,
            vec![
                "items[3].endpoint.attributes[\"bio\"][1]",
                "items[3].endpoint.attributes[\"plan\"]",
                "items[3].endpoint.demographic.timezone",
                "items[3].endpoint.effective_date",
                "items[3].endpoint.location",
                "items[3].endpoint.location.country",
                "items[3].endpoint.metrics[\"score\"]",
                "items[3].endpoint.user.user_id",
            ]
        );

        input = EndpointInput {
            address: "ana.example.com".to_string(),
            channel_type: Some(ChannelType::Email),
            ..input
        };
        let violations = validate_endpoint("items[3].endpoint", &input, false, &Limits::default());
        assert_names(&violations, "items[3].endpoint.address");
    }

    /// A latitude and a longitude both out of range are both reported, with the pairing
    /// rule checked independently, so one answer lists every coordinate problem.
    #[test]
    fn every_coordinate_problem_is_reported() {
        let mut input = EndpointInput {
            address: String::new(),
            channel_type: Some(ChannelType::InApp),
            attributes: BTreeMap::new(),
            metrics: BTreeMap::new(),
            demographic: Demographic::default(),
            location: Location {
                latitude: Some(91.0),
                longitude: Some(-181.0),
                ..Location::default()
            },
            opt_out: OptOut::None,
            status: EndpointStatus::Active,
            user: User::default(),
            effective_date: String::new(),
            request_id: String::new(),
        };
        let limits = Limits::default();
        let violations = validate_endpoint("endpoint", &input, false, &limits);
        assert_eq!(
            fields(&violations),
            vec!["endpoint.location.latitude", "endpoint.location.longitude"]
        );

        input.location.longitude = None;
        let violations = validate_endpoint("endpoint", &input, false, &limits);
        assert_eq!(
            fields(&violations),
            vec!["endpoint.location.latitude", "endpoint.location"]
        );
    }

    /// A new endpoint is created at `now` with the input's channel, ids and cohort.
    #[test]
    fn upsert_creates_a_new_endpoint() {
        let input = EndpointInput {
            address: "ana@example.com".to_string(),
            channel_type: Some(ChannelType::Email),
            attributes: BTreeMap::new(),
            metrics: BTreeMap::new(),
            demographic: Demographic::default(),
            location: Location::default(),
            opt_out: OptOut::None,
            status: EndpointStatus::Active,
            user: User::default(),
            effective_date: String::new(),
            request_id: "r1".to_string(),
        };
        let now = "2026-11-25T12:00:00Z";
        let endpoint = Endpoint::upserted(None, "p1", "e1", input, now, 42);
        assert_eq!(endpoint.project_id, "p1");
        assert_eq!(endpoint.endpoint_id, "e1");
        assert_eq!(endpoint.channel_type, ChannelType::Email);
        assert_eq!(endpoint.creation_date, now);
        assert_eq!(endpoint.effective_date, now);
        assert_eq!(endpoint.request_id, "r1");
        assert_eq!(endpoint.cohort_id, 42);
    }
}
