//! The web plumbing every capability stands on: serving connections, security headers
//! and prepared answers, templates, the shared state, the client address behind trusted
//! proxies and the throttled step, JSON answers and the cross-site check, the one way a
//! submission is read, the one choice between an endpoint's page and JSON handlers, and
//! times in words.

pub mod bearer_throttle;
pub mod connections;
pub mod fallback;
pub mod for_people;
pub mod forwarded;
pub mod headers;
pub mod json;
pub mod kinds;
pub mod page;
pub mod session_token;
pub mod state;
pub mod submission;
pub mod templates;
pub mod throttling;
