//! What a control operation answers when it does not happen: one typed
//! error per component (firecracker's habit), each message one line for
//! the user, saying what and why. [`DaemonError`] is any of them.

use std::path::PathBuf;
use std::time::Duration;

use switchd_config::FieldError;

use super::addresses::AddressError;
use super::docker::DockerError;
use super::endpoints::EndpointError;
use super::gateway::{PublishError, RouteError};
use super::keys::KeysError;
use super::networks::NetworkError;

/// A control operation's result.
pub type OpResult<T> = Result<T, DaemonError>;

/// A request that does not validate: every field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&join(&self.0))
    }
}

impl std::error::Error for Invalid {}

impl From<Vec<FieldError>> for Invalid {
    fn from(errors: Vec<FieldError>) -> Self {
        Invalid(errors)
    }
}

/// Why a control operation did not happen (or did only in part).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Service(#[from] super::service::ServiceError),
    #[error(transparent)]
    Policy(#[from] super::policy::PolicyError),
    /// The journal (see `state`) could not be written, so nothing was done.
    #[error("cannot record the operation in {}: {source}", dir.display())]
    Journal { dir: PathBuf, source: std::io::Error },
    /// Several operations of one request failed (`network rm A B`).
    #[error("{}", join(.0))]
    Several(Vec<DaemonError>),
    #[error("gave up waiting for an address block to be confirmed by the cluster")]
    GaveUp,
    #[error("internal error: {0}")]
    Internal(String),
    /// A trace of something that does not exist, or cannot be built.
    #[error("{0}")]
    Trace(String),
    /// host.toml could not be read again, or does not validate: nothing changed.
    #[error("reload refused, nothing changed:\n{0}")]
    Reload(String),
}

impl DaemonError {
    /// How long to wait before asking again, if the operation cannot be
    /// done yet (an address block being claimed).
    pub fn wait(&self) -> Option<Duration> {
        match self {
            DaemonError::Address(AddressError::Unconfirmed(wait)) => Some(*wait),
            _ => None,
        }
    }
}

fn join<T: ToString>(errors: &[T]) -> String {
    errors.iter().map(T::to_string).collect::<Vec<_>>().join("; ")
}
