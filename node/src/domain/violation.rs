//! A bad field of a request: where it is and what is wrong with it.

use serde::{Deserialize, Serialize};

/// One reason an input was refused, e.g. `items[3].endpoint.address`: `not an email address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldViolation {
    /// Path of the field in the request, dotted, with `[i]` for list items and `["k"]` for map keys.
    pub field: String,
    /// Lowercase explanation naming the bad value or the limit.
    pub reason: String,
}

impl FieldViolation {
    /// A violation of `field` for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Joins a parent path and a child field name.
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}
