//! Second factors and passkeys: `second_factor` (the second step of a login, TOTP
//! enrolment and removal, recovery codes) and `passkeys` (registration, sign-in, the
//! passkey as a second factor) hold the use cases; `api` and `passkey_api` the JSON
//! endpoints, `pages` the HTML ones (templates `second_factor.html`, `totp.html`,
//! `recovery_codes.html`).

pub mod api;
pub mod pages;
pub mod passkey_api;
pub mod passkeys;
pub mod second_factor;
