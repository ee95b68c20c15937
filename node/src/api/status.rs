//! The one place where errors become gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::cluster::ClusterError;
use crate::domain::FieldViolation;

/// INVALID_ARGUMENT with every violation as a field violation of the details.
pub fn invalid_argument(violations: &[FieldViolation]) -> Status {
    let mut details = ErrorDetails::new();
    for violation in violations {
        details.add_bad_request_violation(violation.field.clone(), violation.reason.clone());
    }
    let message = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// The status of a cluster error.
pub fn to_status(error: ClusterError) -> Status {
    match error {
        ClusterError::InvalidArgument(violations) => invalid_argument(&violations),
        ClusterError::NotFound(message) => Status::not_found(message),
        ClusterError::AlreadyExists(message) => Status::already_exists(message),
        ClusterError::FailedPrecondition(message) => Status::failed_precondition(message),
        ClusterError::ResourceExhausted(message) => Status::resource_exhausted(message),
        ClusterError::Unavailable(message) => Status::unavailable(message),
        ClusterError::Internal(message) => {
            tracing::error!(%message, "internal error");
            Status::internal(message)
        }
    }
}

/// An item result of a batch: 202 accepted, or 400 with the field and the reason.
pub fn item_accepted() -> herald_proto::v1::ItemResult {
    herald_proto::v1::ItemResult {
        status_code: 202,
        message: "Accepted".to_string(),
        field: String::new(),
    }
}

/// An item result for rejected violations.
pub fn item_rejected(violations: &[FieldViolation]) -> herald_proto::v1::ItemResult {
    herald_proto::v1::ItemResult {
        status_code: 400,
        message: violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        field: violations
            .first()
            .map(|v| v.field.clone())
            .unwrap_or_default(),
    }
}

/// Places the field violations of `error` (relative to an input) under `parent`.
pub fn under(parent: &str, error: ClusterError) -> ClusterError {
    match error {
        ClusterError::InvalidArgument(violations) => ClusterError::InvalidArgument(
            violations
                .into_iter()
                .map(|v| {
                    FieldViolation::new(crate::domain::violation::join(parent, &v.field), v.reason)
                })
                .collect(),
        ),
        other => other,
    }
}

/// An item result for a cluster error about the input at `field`.
pub fn item_failed(field: &str, error: &ClusterError) -> herald_proto::v1::ItemResult {
    match under(field, error.clone()) {
        ClusterError::InvalidArgument(violations) => item_rejected(&violations),
        other => {
            let status = to_status(other);
            let status_code = match status.code() {
                Code::NotFound => 404,
                Code::FailedPrecondition | Code::AlreadyExists => 409,
                Code::ResourceExhausted => 429,
                Code::Unavailable => 503,
                _ => 500,
            };
            herald_proto::v1::ItemResult {
                status_code,
                message: status.message().to_string(),
                field: field.to_string(),
            }
        }
    }
}
