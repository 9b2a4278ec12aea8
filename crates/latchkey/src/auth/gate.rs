//! The gate: the one place that decides what a proof of identity is worth.
//!
//! Every way in (a password, a mailed code or link, a reset that logs in, a passkey,
//! remember-me, and whatever comes next) verifies its own secret, then hands the gate a
//! [`Proof`]: the method's name and the kind of evidence it is. The gate alone answers
//! whether that is a complete login, a login that waits for a second factor, or a
//! refusal; it writes the login (every method used, like OIDC's `amr`) or the pending
//! login into the session. A user with a second factor who proves only a mailbox gets
//! the second step, never a session.

use super::AuthError;
use crate::session::Authentication;
use crate::time::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::time::Duration;

/// What kind of evidence a proof is: the gate's whole vocabulary. Method names are open
/// (a new way in names its own); kinds are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Something the user knows (a password): one factor, and the person is here now.
    Knowledge,
    /// Control of the account's mailbox (a mailed code or link, a reset link): one
    /// factor, not a fresh login.
    Mailbox,
    /// Another identity provider vouches for the user: one factor, and fresh (the
    /// provider has just had the person sign in, so an account without a password can
    /// change what needs a fresh login, such as setting one).
    Delegated,
    /// A second factor (an authenticator code, a recovery code): completes a login that
    /// waits for one, and is no way in on its own.
    SecondFactor,
    /// Two factors at once (a user-verified passkey): a complete, fresh login.
    MultiFactor,
    /// A device that completed a login before (remember-me): restores a login, not fresh.
    /// A credential change ends every remembered device, so it never outlives the
    /// factors it was completed with.
    Remembered,
    /// A personal access token the user made after a complete login: a login for what
    /// the token's scopes allow, never fresh. A credential change that ends every
    /// session ends every token.
    Token,
}

/// A proof a way in verified, handed to the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    method: Cow<'static, str>,
    evidence: Evidence,
}

impl Proof {
    /// A proof named `method` (what the session's method list records) of the kind
    /// `evidence`.
    pub fn new(method: impl Into<Cow<'static, str>>, evidence: Evidence) -> Self {
        Proof {
            method: method.into(),
            evidence,
        }
    }

    /// A password checked.
    pub fn password() -> Self {
        Proof::new("password", Evidence::Knowledge)
    }

    /// A code mailed to the account's address, typed back.
    pub fn mailed_code() -> Self {
        Proof::new("email_code", Evidence::Mailbox)
    }

    /// A sign-in link mailed to the account's address, followed.
    pub fn mailed_link() -> Self {
        Proof::new("email_link", Evidence::Mailbox)
    }

    /// A password reset link followed (when a reset logs in).
    pub fn password_reset() -> Self {
        Proof::new("password_reset", Evidence::Mailbox)
    }

    /// Another identity provider vouching for the user (OpenID Connect, GitHub): the
    /// method is `provider:NAME`.
    pub fn delegated(provider: &str) -> Self {
        Proof::new(format!("provider:{provider}"), Evidence::Delegated)
    }

    /// A user-verified passkey.
    pub fn passkey() -> Self {
        Proof::new("passkey", Evidence::MultiFactor)
    }

    /// A time-based one-time code.
    pub fn totp() -> Self {
        Proof::new("totp", Evidence::SecondFactor)
    }

    /// A single-use recovery code.
    pub fn recovery_code() -> Self {
        Proof::new("recovery_code", Evidence::SecondFactor)
    }

    /// A remember-me cookie.
    pub fn remembered() -> Self {
        Proof::new("remember_me", Evidence::Remembered)
    }

    /// A personal access token (`Authorization: Bearer lk_…`).
    pub fn api_token() -> Self {
        Proof::new("api_token", Evidence::Token)
    }

    /// The method's name.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The kind of evidence.
    pub fn evidence(&self) -> Evidence {
        self.evidence
    }
}

/// Which second factors a user has set up, by method name (`totp`, `recovery_code`,
/// `passkey`): what the gate asks before it lets a one-factor proof in. Give one to
/// [`super::Authenticator::with_second_factors`]; without one no user has any.
#[async_trait]
pub trait SecondFactorSource: Send + Sync + 'static {
    /// The second factors of `user_id`; empty when none.
    async fn second_factors(&self, user_id: &str) -> Result<Vec<String>, AuthError>;
}

/// How the gate answered.
#[derive(Debug)]
pub enum SignIn<U> {
    /// A complete login: the session has a new token and records every method used.
    LoggedIn(U),
    /// The account needs more: the login waits in the session (nobody is logged in) for
    /// one of these second factors.
    Pending {
        /// The second factors that complete it.
        methods: Vec<String>,
    },
    /// Nobody was logged in, for this reason.
    Refused(Refusal),
}

/// Whose second step a session can take ([`crate::AuthSession::second_step_user`]),
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondStepFor {
    /// A login of this user waits in the session for its second factor.
    WaitingLogin(String),
    /// This user is logged in, but the login lacks a second factor: a step up.
    StepUp(String),
}

impl SecondStepFor {
    /// The user's id.
    pub fn user_id(&self) -> &str {
        match self {
            SecondStepFor::WaitingLogin(user_id) | SecondStepFor::StepUp(user_id) => user_id,
        }
    }
}

/// Why the gate refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The account is disabled or gone.
    Inactive,
    /// The authenticator requires a verified email address and this account's is not.
    EmailUnverified,
    /// No login waits for a second factor in this session (none, or it expired).
    NothingPending,
    /// The account's credentials changed since the waiting login's first step.
    CredentialsChanged,
    /// The proof cannot start a login (a second factor on its own).
    NotAWayIn,
}

/// The gate's settings, held by the [`super::Authenticator`].
pub(crate) struct GateSettings {
    pub second_factors: Option<Box<dyn SecondFactorSource>>,
    pub require_verified_email: bool,
    pub second_step_within: Duration,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            second_factors: None,
            require_verified_email: false,
            second_step_within: DEFAULT_SECOND_STEP_WITHIN,
        }
    }
}

/// How long a login may wait for its second factor, unless configured otherwise.
pub const DEFAULT_SECOND_STEP_WITHIN: Duration = Duration::from_secs(5 * 60);

/// The session key of a login that waits for its second factor.
pub(crate) const PENDING_KEY: &str = "latchkey.pending_login";

/// A login that waits for its second factor, as the session keeps it: stamped with the
/// user's credential version, so any credential change ends it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PendingLogin {
    pub user_id: String,
    pub credential_version: i64,
    /// When the first step passed (milliseconds since the epoch).
    pub at: i64,
    /// The proofs so far.
    pub proofs: Vec<(String, Evidence)>,
    /// Remember the device for this many days once complete.
    #[serde(default)]
    pub remember_days: Option<u32>,
}

impl PendingLogin {
    pub(crate) fn is_live(&self, now: Timestamp, within: Duration) -> bool {
        let at = Timestamp(self.at);
        at <= now && now.since(at) <= within
    }
}

/// The gate's verdict on a list of proofs, before anything is written.
pub(crate) enum Verdict {
    Complete(Authentication),
    Pending(Vec<String>),
    Refused(Refusal),
}

impl GateSettings {
    /// What `proofs` (first to last) are worth for the user `user_id` (active or not,
    /// email verified or not): the one rule every way in passes.
    pub(crate) async fn judge(
        &self,
        user_id: &str,
        active: bool,
        email_verified: bool,
        proofs: &[(&str, Evidence)],
    ) -> Result<Verdict, AuthError> {
        if !active {
            return Ok(Verdict::Refused(Refusal::Inactive));
        }
        if self.require_verified_email && !email_verified {
            return Ok(Verdict::Refused(Refusal::EmailUnverified));
        }
        let has = |kind: Evidence| proofs.iter().any(|(_, evidence)| *evidence == kind);
        match proofs.first() {
            None | Some((_, Evidence::SecondFactor)) => {
                return Ok(Verdict::Refused(Refusal::NotAWayIn))
            }
            Some(_) => {}
        }
        let multi_factor = has(Evidence::MultiFactor) || has(Evidence::SecondFactor);
        if !multi_factor && !has(Evidence::Remembered) && !has(Evidence::Token) {
            let needed = match &self.second_factors {
                Some(source) => source.second_factors(user_id).await?,
                None => Vec::new(),
            };
            if !needed.is_empty() {
                return Ok(Verdict::Pending(needed));
            }
        }
        Ok(Verdict::Complete(Authentication {
            methods: proofs.iter().map(|(name, _)| name.to_string()).collect(),
            fresh: has(Evidence::Knowledge)
                || has(Evidence::MultiFactor)
                || has(Evidence::Delegated),
            multi_factor,
        }))
    }
}
