//! The limits table of SPEC: every one configurable, every excess a clear error.

use serde::{Deserialize, Serialize};

/// Limits enforced on requests. Defaults are SPEC's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Endpoints one user id may have.
    pub endpoints_per_user: usize,
    /// Attribute names per endpoint (and per user).
    pub attributes_per_endpoint: usize,
    /// Values per attribute.
    pub values_per_attribute: usize,
    /// Distinct event types per project.
    pub event_types_per_project: usize,
    /// Attributes plus metrics per event.
    pub attributes_per_event: usize,
    /// Items per batch call: endpoints in a batch, endpoints in a PutEvents, events per endpoint.
    pub items_per_batch: usize,
    /// Largest request, in bytes.
    pub request_bytes: usize,
    /// Longest id (project, endpoint, user, event, session), in bytes.
    pub id_bytes: usize,
    /// Longest attribute or metric name, in characters.
    pub attribute_name_chars: usize,
    /// Longest attribute value, in characters.
    pub attribute_value_chars: usize,
    /// Longest address, in bytes.
    pub address_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            endpoints_per_user: 10,
            attributes_per_endpoint: 40,
            values_per_attribute: 50,
            event_types_per_project: 1_500,
            attributes_per_event: 40,
            items_per_batch: 100,
            request_bytes: 4 * 1024 * 1024,
            id_bytes: 128,
            attribute_name_chars: 50,
            attribute_value_chars: 200,
            address_bytes: 1_024,
        }
    }
}
