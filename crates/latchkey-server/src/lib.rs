//! The `latchkey` server as a library: its router, handlers, configuration and CLI
//! commands, so that tests and fuzz targets can drive them in process. The binary
//! (`src/main.rs`) only parses the command line and runs them.

pub mod api;
pub mod app;
pub mod backend;
pub mod config;
pub mod connections;
pub mod credentials;
pub mod data_api;
pub mod factor_api;
pub mod factor_pages;
pub mod for_people;
pub mod forwarded;
pub mod headers;
pub mod import;
pub mod json;
pub mod mail_api;
pub mod mail_cli;
pub mod mail_flows;
pub mod mail_pages;
pub mod openapi;
pub mod pages;
pub mod passkey_api;
pub mod passkeys;
pub mod routes;
pub mod second_factor;
pub mod session_cli;
pub mod state;
pub mod submission;
pub mod templates;
pub mod throttling;
pub mod usecases;
pub mod user_cli;
