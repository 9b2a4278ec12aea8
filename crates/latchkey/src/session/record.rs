//! What a store keeps for one session.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How the user of a session proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Entered their password in this session: the session is "fresh".
    Password,
    /// Restored from a remember-me cookie: logged in, but not fresh.
    RememberMe,
    /// A one-time code or link sent by mail: logged in, but not fresh (it proves the
    /// mailbox, not the password).
    EmailCode,
    /// A passkey alone (WebAuthn with user verification: something the user has and is
    /// or knows, so the login records [`SecondFactor::Passkey`] too); fresh.
    Passkey,
}

/// The second factor a login was completed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondFactor {
    /// A time-based one-time code (RFC 6238).
    Totp,
    /// One of the user's single-use recovery codes.
    RecoveryCode,
    /// A passkey (WebAuthn) with user verification.
    Passkey,
}

impl SecondFactor {
    /// Its name in an "amr" list (as [`AuthInfo::factors`] gives it).
    pub fn as_str(self) -> &'static str {
        match self {
            SecondFactor::Totp => "totp",
            SecondFactor::RecoveryCode => "recovery_code",
            SecondFactor::Passkey => "passkey",
        }
    }
}

impl AuthMethod {
    /// Its name in an "amr" list (as [`AuthInfo::factors`] gives it).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::RememberMe => "remember_me",
            AuthMethod::EmailCode => "email_code",
            AuthMethod::Passkey => "passkey",
        }
    }
}

/// When and how the session's user authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthInfo {
    /// The user's id, as [`crate::AuthUser::user_id`] gives it.
    pub user_id: String,
    /// When the login happened.
    pub authenticated_at: Timestamp,
    /// Password, remember-me or a code by mail.
    pub method: AuthMethod,
    /// The user's credential version at login; a password change or a disable bumps the
    /// user's version, which ends this session on its next use.
    pub credential_version: i64,
    /// The second factor the login was completed with (at `authenticated_at`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_factor: Option<SecondFactor>,
}

impl AuthInfo {
    /// Which factors the login used, like OIDC's `amr`: the method, then the second
    /// factor if there was one (`["password", "totp"]`).
    pub fn factors(&self) -> Vec<&'static str> {
        std::iter::once(self.method.as_str())
            .chain(self.second_factor.map(SecondFactor::as_str))
            .collect()
    }
}

/// Everything a store keeps for one session. Stores treat it as a value: they key it by
/// [`crate::SessionId`], compare-and-swap on [`SessionRecord::version`], and index
/// [`SessionRecord::user_id`] for per-user listing and revocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Bumped by every write; stores only accept a save that names the current version.
    pub version: u64,
    /// Who is logged in, if anyone.
    pub auth: Option<AuthInfo>,
    /// The application's key/value data.
    pub data: Map<String, Value>,
    /// When the session was created.
    pub created_at: Timestamp,
    /// Last time a request refreshed the idle expiry.
    pub last_active_at: Timestamp,
    /// The session ends if no request refreshes it before this time.
    pub idle_expires_at: Timestamp,
    /// The session ends at this time whatever the activity.
    pub absolute_expires_at: Timestamp,
    /// Client address when the session was created (for "your sessions" listings).
    pub client_ip: Option<String>,
    /// Client user agent when the session was created (truncated).
    pub user_agent: Option<String>,
}

impl SessionRecord {
    /// The logged-in user's id, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.auth.as_ref().map(|auth| auth.user_id.as_str())
    }

    /// The earlier of the idle and absolute expiry: after it the record is dead.
    pub fn expires_at(&self) -> Timestamp {
        self.idle_expires_at.min(self.absolute_expires_at)
    }

    /// Whether the session is over at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at()
    }
}
