//! What a cluster operation can fail with, in terms a client can act on.

use crate::domain::FieldViolation;

/// A failed operation.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ClusterError {
    /// The input is malformed; every bad field is named.
    #[error("invalid input: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidArgument(Vec<FieldViolation>),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The state does not allow the operation (e.g. a user at its endpoint limit).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// No leader could be reached in time; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a storage failure.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result of cluster operations.
pub type Result<T> = std::result::Result<T, ClusterError>;

impl ClusterError {
    /// An internal error from anything displayable.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    /// The project does not exist.
    pub fn project_not_found(project_id: &str) -> Self {
        Self::NotFound(format!("project {project_id:?} not found"))
    }
}
