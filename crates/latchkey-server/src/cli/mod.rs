//! The command line beside `serve`: `latchkey user …` (accounts, credentials, second
//! factors), `latchkey session …`, `latchkey token …` (personal access tokens), `latchkey mail …` (the outbox) and the user import.

pub mod import;
pub mod mail;
pub mod session;
pub mod token;
pub mod user;
