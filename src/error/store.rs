//! The store's error, which the library's [`Error`](crate::Error) wraps.

/// A store error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("job store URL {0:?} is not supported: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// The URL names a database whose driver this build leaves out.
    #[error(
        "job store URL {url:?} needs pubsub-jobs' `{feature}` feature, which this build leaves out"
    )]
    FeatureDisabled {
        /// The URL as given.
        url: String,
        /// The cargo feature to turn on.
        feature: &'static str,
    },
    /// The database said no.
    #[error("job store ({operation}): {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// This store does not do what was asked (a store implementing only part of
    /// [`JobStore`](crate::store::JobStore)); names the operation.
    #[error("job store: {operation} is not supported by this store")]
    Unsupported {
        /// The operation, by its method's name.
        operation: &'static str,
    },
    /// A stored value could not be read back.
    #[error("job store: corrupt {what}: {detail}")]
    Corrupt {
        /// The column or value.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}
