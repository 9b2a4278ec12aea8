//! The mail flows: password reset, email verification, sign-in by mailed code or link,
//! email change and security notices. `flows` holds the use cases, `api` the JSON
//! endpoints, `pages` the HTML ones (templates `forgot.html`, `reset.html`,
//! `email_code.html`, `confirm.html`, `account.html`, and `mail/*`).

pub mod api;
pub mod flows;
pub mod pages;
