//! Events (SPEC EVT-1..3): the record and its rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::endpoint::{validate_id, validate_metrics, validate_name, validate_timestamp};
use super::limits::Limits;
use super::violation::{FieldViolation, join};

/// The session an event happened in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Session {
    pub id: String,
    pub start_timestamp: String,
    pub stop_timestamp: String,
    /// Milliseconds.
    pub duration_ms: i64,
}

/// One event as sent by a client and as stored in the endpoint's shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Event {
    pub event_type: String,
    /// RFC 3339.
    pub timestamp: String,
    pub attributes: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    pub session: Option<Session>,
    pub app_package_name: String,
    pub app_title: String,
    pub app_version_code: String,
    pub client_sdk_version: String,
    pub sdk_name: String,
}

/// Event types Herald emits itself or that the SDKs send with a fixed meaning (EVT-2).
pub const RESERVED_PREFIX: char = '_';

/// Checks one event (EVT-1) and returns every problem at once.
pub fn validate_event(field: &str, event: &Event, limits: &Limits) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    let type_field = join(field, "event_type");
    validate_name(&type_field, &event.event_type, limits, &mut violations);
    validate_timestamp(
        &join(field, "timestamp"),
        &event.timestamp,
        true,
        &mut violations,
    );
    let fields = event.attributes.len() + event.metrics.len();
    if fields > limits.attributes_per_event {
        violations.push(FieldViolation::new(
            field,
            format!(
                "has {fields} attributes and metrics, more than the limit of {}",
                limits.attributes_per_event
            ),
        ));
    }
    for (name, value) in &event.attributes {
        let path = format!("{}[{name:?}]", join(field, "attributes"));
        validate_name(&path, name, limits, &mut violations);
        if value.chars().count() > limits.attribute_value_chars {
            violations.push(FieldViolation::new(
                path,
                format!("is longer than {} characters", limits.attribute_value_chars),
            ));
        }
    }
    validate_metrics(
        &join(field, "metrics"),
        &event.metrics,
        limits.attributes_per_event,
        limits,
        &mut violations,
    );
    if let Some(session) = &event.session {
        validate_id(
            &join(field, "session.id"),
            &session.id,
            limits,
            &mut violations,
        );
        validate_timestamp(
            &join(field, "session.start_timestamp"),
            &session.start_timestamp,
            false,
            &mut violations,
        );
        validate_timestamp(
            &join(field, "session.stop_timestamp"),
            &session.stop_timestamp,
            false,
            &mut violations,
        );
        if session.duration_ms < 0 {
            violations.push(FieldViolation::new(
                join(field, "session.duration"),
                format!("{} is negative", session.duration_ms),
            ));
        }
    }
    violations
}
