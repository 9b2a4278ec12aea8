//! Session stores. Each implements [`crate::SessionStore`] and passes the
//! [`conformance`] suite.

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{open_sqlite, SqliteStore};
