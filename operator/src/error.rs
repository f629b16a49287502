//! The operator's one error type. Each variant has a metric label; `main` and the reconciler's error
//! policy are the only places that turn errors into log lines, metrics and requeues.

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// An object from the API server did not have the shape we need.
    #[error("{0}")]
    Invalid(String),
    /// Creating, reading or serving a certificate failed.
    #[error("certificate: {0}")]
    Cert(String),
    /// Serializing an object failed (a bug: our own types always serialize).
    #[error("serializing {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Wraps a kube error with what we were doing.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kube { action, source }
    }

    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { source, .. } => match source {
                kube::Error::Api(s) if s.code == 409 => "conflict",
                kube::Error::Api(s) if s.code == 404 => "not_found",
                kube::Error::Api(s) if s.code == 403 => "forbidden",
                kube::Error::Api(_) => "api",
                _ => "transport",
            },
            Self::Invalid(_) => "invalid_object",
            Self::Cert(_) => "certificate",
            Self::Serialize { .. } => "serialize",
        }
    }

    /// True for a 404 from the API server.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Kube { source: kube::Error::Api(s), .. } if s.code == 404)
    }

    /// True for a 409 (lost an optimistic-concurrency race, or the object already exists).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Kube { source: kube::Error::Api(s), .. } if s.code == 409)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
