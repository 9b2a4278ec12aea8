//! The `latchkey` server as a library: its router, handlers, configuration and CLI
//! commands, so that tests and fuzz targets can drive them in process. The binary
//! (`src/main.rs`) only parses the command line and runs them.

pub mod account;
pub mod app;
pub mod backend;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod data_api;
pub mod factors;
pub mod forward;
pub mod login;
pub mod mail;
pub mod notices;
pub mod openapi;
pub mod password;
pub mod providers;
pub mod sessions;
pub mod tokens;
pub mod web;
