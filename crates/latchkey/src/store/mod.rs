//! Session stores. Each implements [`crate::SessionStore`] and passes the
//! [`conformance`] suite.

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{open_postgres, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{open_sqlite, SqliteStore};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::session::{BoxError, SessionRecord, StoreError};

/// A record as the SQL stores keep it: JSON text.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn encode_record(record: &SessionRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|error| StoreError::Corrupt(Box::new(error)))
}

/// A record from its JSON text; `Corrupt` if it does not decode.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn decode_record(text: &str) -> Result<SessionRecord, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(Box::new(error) as BoxError))
}
