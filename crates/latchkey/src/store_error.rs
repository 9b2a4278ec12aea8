//! The errors of the stores that hold no sessions, one type per store family (throttle
//! counters, remember-me tokens, second factors, passkeys, mailed tokens, the mail
//! outbox), all made by the one definition here: each says which store failed, and
//! none of them is a session error. The session stores keep
//! [`crate::session::StoreError`], which also says what a session write can run into (a
//! version conflict, a record too large).

use std::error::Error;

/// A store's underlying error (a driver's, a decoder's).
pub type BoxError = Box<dyn Error + Send + Sync>;

/// What the error of every store family can say; how code shared by several families (a
/// driver error read by cause) makes one, and how auth tells a store that is down (503)
/// from one that holds something broken.
pub trait StoreFailure: Error + Send + Sync + 'static {
    /// The backend could not be reached or failed.
    fn unavailable(source: BoxError) -> Self
    where
        Self: Sized;
    /// What the backend holds does not decode.
    fn corrupt(source: BoxError) -> Self
    where
        Self: Sized;
    /// Whether this is the backend being unreachable, not a fault in what it holds.
    fn is_unavailable(&self) -> bool;
}

/// Defines a store family's error type: `store_error!(/// docs NameError, "the store");`.
macro_rules! store_error {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        pub enum $name {
            /// The backend could not be reached or failed.
            #[error("{what} unavailable: {0}", what = $what)]
            Unavailable(#[source] $crate::store_error::BoxError),
            /// What the backend holds does not decode.
            #[error("corrupt {what} record: {0}", what = $what)]
            Corrupt(#[source] $crate::store_error::BoxError),
            /// A new record's key is already taken.
            #[error("{what} record already exists", what = $what)]
            AlreadyExists,
        }

        impl $crate::store_error::StoreFailure for $name {
            fn unavailable(source: $crate::store_error::BoxError) -> Self {
                $name::Unavailable(source)
            }

            fn corrupt(source: $crate::store_error::BoxError) -> Self {
                $name::Corrupt(source)
            }

            fn is_unavailable(&self) -> bool {
                matches!(self, $name::Unavailable(_))
            }
        }

        /// What a connection shared with the session stores (a SQL pool, a Redis
        /// client) reported, as this store's failure.
        impl From<$crate::session::StoreError> for $name {
            fn from(error: $crate::session::StoreError) -> Self {
                use $crate::session::StoreError;
                match error {
                    StoreError::Unavailable(source) => $name::Unavailable(source),
                    StoreError::Corrupt(source) => $name::Corrupt(source),
                    StoreError::AlreadyExists => $name::AlreadyExists,
                    other => $name::Unavailable(Box::new(other)),
                }
            }
        }
    };
}

pub(crate) use store_error;
