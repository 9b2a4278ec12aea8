//! A real OpenID Connect provider for tests: panva's `oidc-provider` (npm, pinned by
//! `.ci/oidc-provider/package-lock.json`; `.ci/run` installs it), started by
//! `.ci/oidc-provider/provider.mjs` on a free port with the issuer
//! `http://127.0.0.1:PORT`. Its configuration: dynamic client registration, the code flow
//! with PKCE S256 required, the `iss` authorization response parameter, scopes
//! `openid email profile`, the claims `email`, `email_verified`, `preferred_username` and
//! `name` in the ID token and at userinfo, and the dev interactions (its built-in login
//! form, which takes any login and password, then its consent form), which
//! [`Provider::log_in`] fills in as a browser would.
//!
//! Beside the provider, on the same port, a test-only API under `/test/` sets the claims
//! of a subject ([`Provider::set_account`]) and counts the provider's requests by kind
//! ([`Provider::requests`]). A subject that was never set signs in all the same, with no
//! claim but `sub` (no email).

#![allow(dead_code)]

use super::ports;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// `.ci/oidc-provider`, where `provider.mjs` and its `node_modules` are.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/oidc-provider")
}

/// A port for a provider from the OpenID providers' range (see the allocation on
/// `free_address` in `common/mod.rs`).
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    ports::free_port_in(&ports::OIDC, &NEXT)
}

/// Whether the provider can run here (`node`, and `oidc-provider` installed in
/// `.ci/oidc-provider`); without it the OpenID tests are skipped, unless
/// `LATCHKEY_REQUIRE_SERVICES` is set (CI), where that is a failure.
pub fn available() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let installed = fixture_dir()
        .join("node_modules/oidc-provider/package.json")
        .is_file();
    let ok = node && installed;
    if !ok {
        let missing = if node {
            "oidc-provider is not installed (npm ci --prefix .ci/oidc-provider)"
        } else {
            "node is not installed"
        };
        assert!(
            std::env::var_os("LATCHKEY_REQUIRE_SERVICES").is_none(),
            "the OpenID provider is required: {missing}"
        );
        eprintln!("skipped: {missing}");
    }
    ok
}

/// A client as a browser on the provider: its own cookie jar (the provider's session and
/// interaction cookies, none of them `Secure` over http) and no redirect followed
/// ([`Provider::log_in_with`] follows the provider's own and stops at the relying
/// party's).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A running provider, killed on drop. Its state (clients, sessions, codes, accounts)
/// lives in that process and goes with it.
pub struct Provider {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub issuer: String,
    /// The port it listens on.
    pub port: u16,
    child: Child,
    /// For the test-only API and registration.
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Provider {
    /// A provider on a free port (another one when a process took it meanwhile); fails
    /// the test with node's output when it exits or does not listen within 15 s.
    pub fn start() -> Provider {
        for _ in 0..4 {
            match Self::try_start_on(free_port()) {
                Ok(provider) => return provider,
                Err(output) if ports::says_port_taken(&output) => continue,
                Err(output) => panic!("the OpenID provider did not start: {output}"),
            }
        }
        let port = free_port();
        Self::try_start_on(port).unwrap_or_else(|output| {
            panic!("the OpenID provider did not start on port {port}: {output}")
        })
    }

    /// A provider on `port`, or why not (its output).
    fn try_start_on(port: u16) -> Result<Provider, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("provider.log");
        let log_file = std::fs::File::create(&log).expect("provider log");
        let mut child = Command::new("node")
            .arg(fixture_dir().join("provider.mjs"))
            .args(["--port", &port.to_string()])
            .stdout(log_file.try_clone().expect("provider log"))
            .stderr(log_file)
            .spawn()
            .expect("start node");
        let waited = ports::wait_until_listening(&mut child, port, Duration::from_secs(15));
        let output =
            || ports::tail(&std::fs::read_to_string(&log).unwrap_or_default(), 16_000).to_string();
        match waited {
            Ok(()) => Ok(Provider {
                issuer: format!("http://127.0.0.1:{port}"),
                port,
                child,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client"),
                _dir: dir,
            }),
            Err(ports::NotListening::Died(status)) => {
                Err(format!("exited ({status}): {}", output()))
            }
            Err(ports::NotListening::TimedOut) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("not listening after 15 s: {}", output()))
            }
        }
    }

    /// `issuer` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Registers a confidential client (RFC 7591) for the code flow with the one
    /// `redirect_uri`, authenticating at the token endpoint with `client_secret_basic`:
    /// its client id and secret.
    pub async fn register_client(&self, redirect_uri: &str) -> (String, String) {
        let response = self
            .http
            .post(self.url("/reg"))
            .json(&serde_json::json!({
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
            }))
            .send()
            .await
            .expect("registration request");
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("registration answer");
        assert_eq!(status, reqwest::StatusCode::CREATED, "registration: {body}");
        let field = |name: &str| {
            body[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {body}"))
                .to_string()
        };
        (field("client_id"), field("client_secret"))
    }

    /// Sets (replaces) the claims of subject `sub`: `email` (none when `None`),
    /// `email_verified` and `preferred_username`; no `name`.
    pub async fn set_account(
        &self,
        sub: &str,
        email: Option<&str>,
        email_verified: bool,
        preferred_username: &str,
    ) {
        self.set_claims(
            sub,
            serde_json::json!({
                "email": email,
                "email_verified": email_verified,
                "preferred_username": preferred_username,
            }),
        )
        .await;
    }

    /// Sets (replaces) the claims of subject `sub` to those of `claims` among `email`,
    /// `email_verified`, `preferred_username` and `name`: one that is null or absent is
    /// not issued.
    pub async fn set_claims(&self, sub: &str, claims: serde_json::Value) {
        let mut url = reqwest::Url::parse(&self.url("/test/accounts")).expect("provider URL");
        url.path_segments_mut().expect("provider URL").push(sub);
        let response = self
            .http
            .put(url)
            .json(&claims)
            .send()
            .await
            .expect("set account");
        let status = response.status();
        assert_eq!(
            status,
            reqwest::StatusCode::NO_CONTENT,
            "set account {sub}: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// The provider's requests served so far (or since [`Provider::reset_requests`]), by
    /// kind: `{"discovery", "jwks", "token", "auth", "userinfo", "other"}`, each a
    /// number. `auth` counts `/auth` and its resumptions (`/auth/{uid}`); `other` the
    /// interaction pages, registration and the rest; the test-only API is not counted.
    pub async fn requests(&self) -> serde_json::Value {
        self.http
            .get(self.url("/test/requests"))
            .send()
            .await
            .expect("request counts")
            .error_for_status()
            .expect("request counts")
            .json()
            .await
            .expect("request counts")
    }

    /// Sets the request counts back to zero.
    pub async fn reset_requests(&self) {
        self.http
            .delete(self.url("/test/requests"))
            .send()
            .await
            .expect("reset request counts")
            .error_for_status()
            .expect("reset request counts");
    }

    /// Signs in as `sub` at `authorize_url` (the relying party's authorization request to
    /// this provider's `/auth`) with a browser of its own ([`browser`]): see
    /// [`Provider::log_in_with`].
    pub async fn log_in(&self, authorize_url: &str, sub: &str) -> String {
        self.log_in_with(&browser(), authorize_url, sub).await
    }

    /// Drives the provider's dev interactions for `authorize_url` with `client` (a
    /// [`browser`]: cookie store on, redirects off), as user `sub`: follows the
    /// provider's redirects, fills in its login form (`login` = `sub`, any password)
    /// and its consent form when it shows them, and returns the first redirect off the
    /// provider's origin, unrequested: the relying party's redirect URI with `code`,
    /// `state` and `iss` (or `error`).
    ///
    /// A client that already signed in at this provider carries its session: the
    /// provider then skips the login form (and the consent form once this client was
    /// granted the scopes), and the session's subject signs in, whatever `sub` says.
    pub async fn log_in_with(
        &self,
        client: &reqwest::Client,
        authorize_url: &str,
        sub: &str,
    ) -> String {
        let origin = reqwest::Url::parse(&self.issuer)
            .expect("issuer URL")
            .origin();
        let mut url = reqwest::Url::parse(authorize_url).expect("authorization URL");
        assert_eq!(
            url.origin(),
            origin,
            "{authorize_url} is not at the provider {}",
            self.issuer
        );
        let mut trail = Vec::new();
        for _ in 0..16 {
            trail.push(url.to_string());
            let response = client.get(url.clone()).send().await.expect("provider page");
            let response = if response.status() == reqwest::StatusCode::OK
                && url.path().starts_with("/interaction/")
            {
                let page = response.text().await.expect("interaction page");
                let form: Vec<(&str, &str)> = if page.contains(r#"name="prompt" value="login""#) {
                    vec![("prompt", "login"), ("login", sub), ("password", "x")]
                } else if page.contains(r#"name="prompt" value="consent""#) {
                    vec![("prompt", "consent")]
                } else {
                    panic!("an interaction page with neither form at {url}: {page}");
                };
                // The forms post to their own page (`submitUrl`, the route `submit`:
                // POST /interaction/{uid}).
                trail.push(format!("POST {url} prompt={}", form[0].1));
                client
                    .post(url.clone())
                    .form(&form)
                    .send()
                    .await
                    .expect("interaction form")
            } else {
                response
            };
            let status = response.status();
            if !status.is_redirection() {
                let body = response.text().await.unwrap_or_default();
                panic!(
                    "the provider answered {status} at the end of {trail:?}, not a redirect: {}",
                    ports::tail(&body, 8_000)
                );
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_else(|| panic!("a {status} without Location after {trail:?}"));
            let next = response
                .url()
                .join(location)
                .unwrap_or_else(|error| panic!("Location {location:?}: {error}"));
            if next.origin() != origin {
                return next.to_string();
            }
            url = next;
        }
        panic!("no redirect off the provider after {trail:?}");
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
