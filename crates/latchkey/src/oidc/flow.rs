//! A sign-in's state between its two steps, sealed into the flow cookie, and the checks
//! every provider's callback goes through before anything is sent to the provider.

use super::{Begun, Callback, OidcError, FLOW_LIFETIME};
use crate::secret_box::SecretBox;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// What waits in the flow cookie.
#[derive(Serialize, Deserialize)]
pub(super) struct Flow {
    pub provider: String,
    pub state: String,
    /// The OpenID Connect nonce (empty for OAuth 2 providers, which have none).
    pub nonce: String,
    pub verifier: String,
    pub next: Option<String>,
    pub connect_for: Option<String>,
    pub started_at: i64,
}

impl Flow {
    /// The flow of a sign-in starting now at `provider`.
    pub fn starting(
        provider: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
        next: Option<&str>,
        connect_for: Option<&str>,
    ) -> Self {
        Flow {
            provider: provider.to_string(),
            state: state.to_string(),
            nonce: nonce.to_string(),
            verifier: verifier.to_string(),
            next: next.map(str::to_string),
            connect_for: connect_for.map(str::to_string),
            started_at: Timestamp::now().as_millis(),
        }
    }
}

/// Seals flows under a key derived from the server's secret, and opens them.
pub(super) struct FlowSeal(SecretBox);

impl FlowSeal {
    pub fn new(secret: &[u8]) -> Self {
        FlowSeal(SecretBox::new(secret, "latchkey oidc flow"))
    }

    /// The sign-in begun at `authorize_url`, its `flow` sealed for the cookie.
    pub fn begun(&self, authorize_url: String, flow: &Flow) -> Result<Begun, OidcError> {
        let plain = serde_json::to_vec(flow)
            .map_err(|error| OidcError::Misconfigured(error.to_string()))?;
        let sealed = self
            .0
            .seal(&plain, b"oidc flow")
            .ok_or_else(|| OidcError::Misconfigured("the flow did not seal".into()))?;
        Ok(Begun {
            authorize_url,
            flow: sealed,
        })
    }

    /// The flow the cookie `sealed` holds, after the checks every provider shares: it
    /// opens, it was started for `provider`, it is at most [`FLOW_LIFETIME`] old, and
    /// the callback's `state` is its own (compared in constant time).
    pub fn open_checked(
        &self,
        sealed: Option<&str>,
        provider: &str,
        callback: &Callback,
    ) -> Result<Flow, OidcError> {
        let plain = sealed
            .and_then(|sealed| self.0.open(sealed, b"oidc flow"))
            .ok_or(OidcError::NoFlow)?;
        let flow: Flow = serde_json::from_slice(&plain).map_err(|_| OidcError::NoFlow)?;
        if flow.provider != provider {
            return Err(OidcError::Mismatch("another provider's sign-in"));
        }
        if Timestamp::now().since(Timestamp(flow.started_at)) > FLOW_LIFETIME {
            return Err(OidcError::Expired);
        }
        let state_matches = callback
            .state
            .as_deref()
            .is_some_and(|state| bool::from(state.as_bytes().ct_eq(flow.state.as_bytes())));
        if !state_matches {
            return Err(OidcError::Mismatch("state"));
        }
        Ok(flow)
    }
}

impl Callback {
    /// The code, or the provider's refusal (`error`), or that there is neither.
    pub(super) fn code(&self) -> Result<String, OidcError> {
        if let Some(error) = &self.error {
            return Err(OidcError::Refused(error.chars().take(100).collect()));
        }
        self.code
            .clone()
            .ok_or(OidcError::Invalid("no code".into()))
    }
}
