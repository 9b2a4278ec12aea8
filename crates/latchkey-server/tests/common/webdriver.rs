//! A minimal W3C WebDriver client over reqwest, enough to drive headless Chromium
//! through the HTML pages: navigate, type, click, read the page, drop a cookie, take
//! screenshots.

#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Debian installs the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser tests can run here.
pub fn browser_available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// Whether a browser test should run: `true` when Chromium and chromedriver are here;
/// otherwise says the test is skipped and returns `false`, or fails when
/// `LATCHKEY_REQUIRE_SERVICES` is set. Start every browser test with
/// `if !browser_or_skip() { return; }`.
pub fn browser_or_skip() -> bool {
    if browser_available() {
        return true;
    }
    assert!(
        std::env::var("LATCHKEY_REQUIRE_SERVICES").is_err(),
        "chromium and chromedriver are required (LATCHKEY_REQUIRE_SERVICES is set)"
    );
    println!(
        "skipped: {CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)"
    );
    false
}

/// A running chromedriver, killed on drop.
pub struct Driver {
    child: Child,
    pub url: String,
    /// Its output.
    _log: tempfile::NamedTempFile,
}

impl Driver {
    /// Starts chromedriver on a free port (another one when a process took it
    /// meanwhile); fails with its output when it exits or does not listen within 20 s.
    pub fn start() -> Driver {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let address = super::free_address();
            let log = tempfile::NamedTempFile::new().expect("chromedriver log");
            let mut child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={}", address.port()))
                .stdout(log.reopen().expect("chromedriver log"))
                .stderr(log.reopen().expect("chromedriver log"))
                .spawn()
                .expect("start chromedriver");
            let waited = super::ports::wait_until_listening(
                &mut child,
                address.port(),
                Duration::from_secs(20),
            );
            let status = match waited {
                Ok(()) => {
                    return Driver {
                        child,
                        url: format!("http://{address}"),
                        _log: log,
                    }
                }
                Err(super::ports::NotListening::Died(status)) => status.to_string(),
                Err(super::ports::NotListening::TimedOut) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    "still running".to_string()
                }
            };
            let output = std::fs::read_to_string(log.path()).unwrap_or_default();
            if attempt < 5 && super::ports::says_port_taken(&output) {
                continue;
            }
            panic!("chromedriver did not listen on {address} ({status}): {output}");
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window (a WebDriver session with its own profile and cookies).
pub struct Browser {
    http: reqwest::Client,
    session: String,
    screenshots: PathBuf,
    name: String,
}

impl Browser {
    /// Opens headless Chromium; screenshots go to `screenshots/<name>-<step>.png`.
    pub async fn open(driver: &Driver, name: &str, screenshots: &Path) -> Browser {
        let http = reqwest::Client::new();
        let profile = tempfile::tempdir().expect("profile").keep();
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", "--disable-quic",
                        "--window-size=1000,800",
                        format!("--user-data-dir={}", profile.display()),
                    ]
                }
            }}
        });
        let response: Value = http
            .post(format!("{}/session", driver.url))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {response}"))
            .to_string();
        std::fs::create_dir_all(screenshots).expect("screenshot folder");
        Browser {
            http,
            session: format!("{}/session/{session}", driver.url),
            screenshots: screenshots.to_path_buf(),
            name: name.to_string(),
        }
    }

    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response: Value = request
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("json");
        match response["value"].get("error") {
            Some(error) => Err(format!(
                "WebDriver {path}: {error} {}",
                response["value"]["message"]
            )),
            None => Ok(response["value"].clone()),
        }
    }

    /// Gives this window a virtual WebAuthn authenticator (CTAP2, built in, with
    /// resident keys and user verification that always succeeds), as WebDriver's
    /// WebAuthn extension defines it; its id.
    pub async fn add_virtual_authenticator(&self) -> String {
        let options = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
        });
        let value = self
            .call(
                reqwest::Method::POST,
                "/webauthn/authenticator",
                Some(options),
            )
            .await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// Grants this page's origin the permission `name` (`clipboard-read`, …), as a
    /// person would in the browser's prompt.
    pub async fn grant_permission(&self, name: &str) {
        let grant = json!({ "descriptor": { "name": name }, "state": "granted" });
        self.call(reqwest::Method::POST, "/permissions", Some(grant))
            .await;
    }

    /// Runs `script` in the page; it calls its last argument with the answer.
    pub async fn run_async(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.call(reqwest::Method::POST, "/execute/async", Some(body))
            .await
    }

    /// The credentials the virtual authenticator `id` holds.
    pub async fn authenticator_credentials(&self, id: &str) -> Vec<Value> {
        let path = format!("/webauthn/authenticator/{id}/credentials");
        let value = self.call(reqwest::Method::GET, &path, None).await;
        value.as_array().cloned().unwrap_or_default()
    }

    /// Calls the driver, retrying for up to 30 s while the page is still loading (an
    /// element not there yet); then the driver's error fails the test.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_call(method.clone(), path, body.as_ref()).await {
                Ok(value) => return value,
                Err(error) if error.contains("no such element") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("{error}"),
            }
        }
    }

    /// Waits until the current document has finished loading; a document still loading
    /// after 60 s fails the test (it used to be given up on silently after 10 s).
    pub async fn wait_loaded(&self) {
        let started = Instant::now();
        loop {
            let state = self
                .call(
                    reqwest::Method::POST,
                    "/execute/sync",
                    Some(json!({ "script": "return document.readyState", "args": [] })),
                )
                .await;
            if state == json!("complete") {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the page did not finish loading within 60 s (readyState {state})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn page_text(&self) -> String {
        let body = self.find("body").await;
        self.call(reqwest::Method::GET, &format!("/element/{body}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn find(&self, css: &str) -> String {
        let element = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        element[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css:?}: {element}"))
            .to_string()
    }

    /// A DOM property of the element (`type`, `value`, …) as text.
    pub async fn property(&self, css: &str, name: &str) -> String {
        let element = self.find(css).await;
        let value = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/property/{name}"),
                None,
            )
            .await;
        match value {
            Value::String(text) => text,
            other => other.to_string(),
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Ticks a checkbox (or clicks anything that does not navigate).
    pub async fn tick(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clicks the element, then waits for the page it leads to.
    pub async fn click(&self, css: &str) {
        let before = self.current_url().await;
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.current_url().await == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.wait_loaded().await;
    }

    pub async fn delete_cookie(&self, name: &str) {
        self.call(reqwest::Method::DELETE, &format!("/cookie/{name}"), None)
            .await;
    }

    pub async fn cookie_names(&self) -> Vec<String> {
        let cookies = self.call(reqwest::Method::GET, "/cookie", None).await;
        cookies
            .as_array()
            .map(|cookies| {
                cookies
                    .iter()
                    .filter_map(|cookie| cookie["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saves a PNG of the window as `<name>-<step>.png`.
    pub async fn screenshot(&self, step: &str) -> PathBuf {
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = STANDARD
            .decode(data.as_str().expect("base64"))
            .expect("png");
        let path = self.screenshots.join(format!("{}-{step}.png", self.name));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}
