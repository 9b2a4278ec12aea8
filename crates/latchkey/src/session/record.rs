//! What a store keeps for one session.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a login was proven, as the auth floor's gate decided it: the methods used (open
/// names: a new way in adds no code here) and what they add up to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Authentication {
    /// The methods, first to last, like OIDC's `amr`: `["password", "totp"]`.
    pub methods: Vec<String>,
    /// Whether the person proved they are there now (a password or a passkey in this
    /// session): what fresh-login guards ask for.
    pub fresh: bool,
    /// Whether a second factor completed the login (or the method was two factors at
    /// once, as a user-verified passkey is).
    pub multi_factor: bool,
}

/// When and how the session's user authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "AuthInfoWire")]
pub struct AuthInfo {
    /// The user's id, as [`crate::AuthUser::user_id`] gives it.
    pub user_id: String,
    /// When the login happened.
    pub authenticated_at: Timestamp,
    /// The methods the login used, first to last (`["password", "totp"]`).
    pub methods: Vec<String>,
    /// The user's credential version at login; every credential change bumps the user's
    /// version, which ends this session on its next use.
    pub credential_version: i64,
    /// Whether the login proved presence in this session (see [`Authentication::fresh`]).
    #[serde(default)]
    pub fresh: bool,
    /// Whether a second factor completed the login.
    #[serde(default)]
    pub multi_factor: bool,
}

impl AuthInfo {
    /// A login of `user_id` at `at`, proven as `how` says.
    pub fn new(user_id: &str, at: Timestamp, credential_version: i64, how: Authentication) -> Self {
        AuthInfo {
            user_id: user_id.to_string(),
            authenticated_at: at,
            methods: how.methods,
            credential_version,
            fresh: how.fresh,
            multi_factor: how.multi_factor,
        }
    }

    /// Which methods the login used, like OIDC's `amr`.
    pub fn factors(&self) -> Vec<&str> {
        self.methods.iter().map(String::as_str).collect()
    }

    /// The first method (how the login started), `""` for none.
    pub fn first_method(&self) -> &str {
        self.methods.first().map_or("", String::as_str)
    }
}

/// An [`AuthInfo`] as stored, now or before method names were open: a record written
/// with `method` and `second_factor` reads as the same login.
#[derive(Deserialize)]
struct AuthInfoWire {
    user_id: String,
    authenticated_at: Timestamp,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    second_factor: Option<String>,
    credential_version: i64,
    #[serde(default)]
    fresh: Option<bool>,
    #[serde(default)]
    multi_factor: Option<bool>,
}

impl From<AuthInfoWire> for AuthInfo {
    fn from(wire: AuthInfoWire) -> Self {
        let methods = wire.methods.unwrap_or_else(|| {
            wire.method
                .iter()
                .chain(wire.second_factor.iter())
                .cloned()
                .collect()
        });
        // Before `fresh` was stored, a password or passkey login was fresh.
        let fresh = wire.fresh.unwrap_or(matches!(
            wire.method.as_deref(),
            Some("password" | "passkey")
        ));
        let multi_factor = wire.multi_factor.unwrap_or(wire.second_factor.is_some());
        AuthInfo {
            user_id: wire.user_id,
            authenticated_at: wire.authenticated_at,
            methods,
            credential_version: wire.credential_version,
            fresh,
            multi_factor,
        }
    }
}

/// Everything a store keeps for one session. Stores treat it as a value: they key it by
/// [`crate::session::SessionId`], compare-and-swap on [`SessionRecord::version`], and index
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_with_closed_method_names_still_read() {
        let old = r#"{"user_id":"7","authenticated_at":5,"method":"password","credential_version":2,"second_factor":"totp"}"#;
        let auth: AuthInfo = serde_json::from_str(old).expect("old record");
        assert_eq!(auth.factors(), ["password", "totp"]);
        assert!(auth.fresh && auth.multi_factor);
        let mailed =
            r#"{"user_id":"7","authenticated_at":5,"method":"email_code","credential_version":2}"#;
        let auth: AuthInfo = serde_json::from_str(mailed).expect("old record");
        assert_eq!(auth.factors(), ["email_code"]);
        assert!(!auth.fresh && !auth.multi_factor);
    }

    #[test]
    fn open_method_names_round_trip() {
        let how = Authentication {
            methods: vec!["oidc:corp".into(), "totp".into()],
            fresh: true,
            multi_factor: true,
        };
        let auth = AuthInfo::new("7", Timestamp(5), 3, how);
        let text = serde_json::to_string(&auth).expect("json");
        assert_eq!(serde_json::from_str::<AuthInfo>(&text).expect("read"), auth);
    }
}
