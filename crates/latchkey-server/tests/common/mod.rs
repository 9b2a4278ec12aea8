//! Starts the real `latchkey` binary on a free port for black-box HTTP tests.

#![allow(dead_code)]

pub mod flows;
pub mod oidc;
pub mod pages;
pub mod ports;
#[path = "../../../../tests/common/smtp.rs"]
pub mod smtp;
pub mod webdriver;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cheap hashing so tests run fast; production defaults are checked in unit tests.
pub const FAST_HASHING: [&str; 4] = ["--argon2-memory-kib", "64", "--argon2-iterations", "1"];

/// A running server process, killed on drop.
pub struct Server {
    child: Child,
    pub address: SocketAddr,
    pub database_url: String,
    output: Output,
}

/// Where a server's stderr goes: to a log file, or to this test's stderr, with a copy
/// kept for the message of a server that would not start.
enum Output {
    File(PathBuf),
    Captured(Arc<Mutex<Vec<u8>>>),
}

impl Output {
    /// What the server wrote so far.
    fn text(&self) -> String {
        match self {
            Output::File(path) => std::fs::read_to_string(path).unwrap_or_default(),
            Output::Captured(copy) => copy
                .lock()
                .map(|copy| String::from_utf8_lossy(&copy).into_owned())
                .unwrap_or_default(),
        }
    }

    /// Passes `stderr` on to this process's stderr, keeping the last MiB.
    fn capture(stderr: std::process::ChildStderr) -> Output {
        use std::io::Read;
        let copy = Arc::new(Mutex::new(Vec::new()));
        let kept = copy.clone();
        std::thread::spawn(move || {
            let mut stderr = stderr;
            let mut buffer = [0u8; 8192];
            while let Ok(read @ 1..) = stderr.read(&mut buffer) {
                let _ = std::io::stderr().write_all(&buffer[..read]);
                if let Ok(mut kept) = kept.lock() {
                    kept.extend_from_slice(&buffer[..read]);
                    let excess = kept.len().saturating_sub(1 << 20);
                    kept.drain(..excess);
                }
            }
        });
        Output::Captured(copy)
    }
}

/// A port for a process a test starts (`latchkey serve`, chromedriver, a private
/// redis-server) that no other test of this process is given and nothing listens on.
///
/// Ports are allocated in ranges that nothing else on the machine hands out, so that a
/// port found free stays free until the process binds it (`ports.rs` holds the ranges
/// and checks at compile time that they are disjoint):
///
/// | ports         | for                                                              |
/// |---------------|------------------------------------------------------------------|
/// | 10000–11999   | the shared Redis Cluster's nodes (`.ci/redis-cluster.sh`)        |
/// | 12000–12999   | PgBouncer, shared and private (`.ci/pgbouncer.sh`)               |
/// | 13000–14999   | private Redis Clusters' nodes (`faults.rs`, `--ports`)           |
/// | 18080         | `.ci/run`'s schemathesis server                                  |
/// | 20000–21999   | the shared cluster's bus ports (node port + 10000)               |
/// | 23000–24999   | the private clusters' bus ports                                  |
/// | 25000–29999   | this function                                                    |
/// | 30000–31999   | SMTP sinks (`tests/common/smtp.rs`)                              |
/// | 32000–32699   | OpenID providers (`tests/common/oidc.rs`)                        |
/// | 32768–60999   | the kernel's ephemeral ports (`net.ipv4.ip_local_port_range`),   |
/// |               | given to outgoing connections and `bind` to port 0               |
///
/// Every helper checks the kernel's range at run time and fails when it overlaps one of
/// these. A listener a test binds itself and keeps (`bind("127.0.0.1:0")` in-process)
/// needs no range: the kernel never hands out a port that is bound. Within a range, each
/// process starts at its own place; a port that another process still takes between the
/// check and the bind makes the child exit ("address already in use"), which every wait
/// (`ports::wait_until_listening`) notices, and [`Server`] starts again on another port.
pub fn free_address() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    SocketAddr::from(([127, 0, 0, 1], ports::free_port_in(&ports::SERVERS, &NEXT)))
}

/// Arguments for a server that guards one app, `http://wiki.apps.localhost`, for any
/// login (access rules written into `dir`; this test's loopback its trusted proxy).
pub fn guarding_one_app(dir: &Path) -> Vec<String> {
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nhost = \"wiki.apps.localhost\"\nschemes = [\"http\"]\npolicy = \"one_factor\"\n",
    )
    .expect("rules");
    vec![
        "--access-rules".to_string(),
        rules.display().to_string(),
        "--trusted-proxy".to_string(),
        "127.0.0.1".to_string(),
    ]
}

pub fn database_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("latchkey.db").display())
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_latchkey"))
}

impl Server {
    /// Starts `latchkey serve` with its database in `dir`, plus `extra` arguments.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Self::launch_with(&database_url(dir), None, extra, None, None, &[])
    }

    pub fn start_at(dir: &Path, address: SocketAddr, extra: &[&str]) -> Server {
        Self::launch_with(&database_url(dir), Some(address), extra, None, None, &[])
    }

    /// Starts `latchkey serve` in `dir` at `address` with the secret keys `keys`
    /// (`LATCHKEY_SECRET_KEY`, comma-separated, newest first).
    pub fn start_with_keys(dir: &Path, address: SocketAddr, extra: &[&str], keys: &str) -> Server {
        Self::launch_with(
            &database_url(dir),
            Some(address),
            extra,
            None,
            Some(keys),
            &[],
        )
    }

    /// Starts `latchkey serve` in `dir` logging everything (`debug`) to `log`.
    pub fn start_logging(dir: &Path, extra: &[&str], log: &Path) -> Server {
        Self::launch_with(&database_url(dir), None, extra, Some(log), None, &[])
    }

    /// Starts `latchkey serve` on the database at `database_url` with the secret key
    /// `keys` (processes that share a database share it, as a deployment would).
    pub fn start_on_with_keys(database_url: &str, extra: &[&str], keys: &str) -> Server {
        Self::launch_with(database_url, None, extra, None, Some(keys), &[])
    }

    /// Starts `latchkey serve` in `dir` at `address` with the environment variables `env`
    /// set (secrets that never stand on a command line: an OpenID client's, say).
    pub fn start_at_with_env(
        dir: &Path,
        address: SocketAddr,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Self::launch_with(&database_url(dir), Some(address), extra, None, None, env)
    }

    /// Starts `latchkey serve` on the database at `database_url` (PostgreSQL, say).
    pub fn start_on(database_url: &str, extra: &[&str]) -> Server {
        Self::launch_with(database_url, None, extra, None, None, &[])
    }

    /// [`Server::start_on`], logging everything (`debug`) to `log`.
    pub fn start_on_logging(database_url: &str, extra: &[&str], log: &Path) -> Server {
        Self::launch_with(database_url, None, extra, Some(log), None, &[])
    }

    /// Starts `latchkey serve` at `address`, or on a port of [`free_address`] when
    /// `None` (another one when a process took that port meanwhile), and waits until it
    /// listens; fails with its output when it exits or does not listen within 30 s.
    fn launch_with(
        database_url: &str,
        address: Option<SocketAddr>,
        extra: &[&str],
        log: Option<&Path>,
        keys: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let at = address.unwrap_or_else(free_address);
            let mut server = Self::spawn(database_url, at, extra, log, keys, env);
            let waited =
                ports::wait_until_listening(&mut server.child, at.port(), Duration::from_secs(30));
            let status = match waited {
                Ok(()) => return server,
                Err(ports::NotListening::Died(status)) => status.to_string(),
                Err(ports::NotListening::TimedOut) => "still running".to_string(),
            };
            let output = server.output.text();
            if address.is_none() && attempt < 5 && ports::says_port_taken(&output) {
                eprintln!(
                    "port {} was taken meanwhile: latchkey starts on another",
                    at.port()
                );
                continue;
            }
            panic!(
                "latchkey did not come to listen on {at} ({status}); its output:\n{}",
                ports::tail(&output, 16_000)
            );
        }
    }

    fn spawn(
        database_url: &str,
        address: SocketAddr,
        extra: &[&str],
        log: Option<&Path>,
        keys: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        let database_url = database_url.to_string();
        let address_text = address.to_string();
        let mut args = vec![
            "serve",
            "--bind",
            &address_text,
            "--database-url",
            &database_url,
        ];
        // Cheap hashing unless the test sets its own cost.
        if !extra.contains(&"--argon2-memory-kib") {
            args.extend_from_slice(&FAST_HASHING);
        }
        // Every test signs up from 127.0.0.1, and servers on the shared PostgreSQL or
        // Redis count those sign-ups together (across runs, within the hour): lift the
        // per-IP cap unless the test is about it.
        if !extra.contains(&"--signups-per-ip-hourly") {
            args.extend_from_slice(&["--signups-per-ip-hourly", "1000000"]);
        }
        // The same for the per-IP caps on mail requests and mailed codes.
        if !extra.contains(&"--mail-requests-per-ip-hourly") {
            args.extend_from_slice(&["--mail-requests-per-ip-hourly", "1000000"]);
        }
        if !extra.contains(&"--codes-per-ip-hourly") {
            args.extend_from_slice(&["--codes-per-ip-hourly", "1000000"]);
        }
        if !extra.contains(&"--new-sessions-per-ip-hourly") {
            args.extend_from_slice(&["--new-sessions-per-ip-hourly", "1000000"]);
        }
        args.extend_from_slice(extra);
        let (level, stderr) = match log {
            Some(path) => (
                "debug",
                Stdio::from(std::fs::File::create(path).expect("log file")),
            ),
            None => ("warn", Stdio::piped()),
        };
        let mut command = Command::new(binary());
        match keys {
            Some(keys) => command.env("LATCHKEY_SECRET_KEY", keys),
            None => command.env_remove("LATCHKEY_SECRET_KEY"),
        };
        command.envs(env.iter().copied());
        let mut child = command
            .args(&args)
            .env("LATCHKEY_LOG", level)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start latchkey");
        let output = match (log, child.stderr.take()) {
            (Some(path), _) => Output::File(path.to_path_buf()),
            (None, Some(stderr)) => Output::capture(stderr),
            (None, None) => Output::Captured(Arc::default()),
        };
        Server {
            child,
            address,
            database_url,
            output,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// Sends the server the signal `name` (`HUP`, say) and lets it run on.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Kills the server with SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server with SIGTERM (graceful) and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("latchkey did not stop on SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `latchkey` with `args`, feeding `stdin`; returns (success, stdout, stderr).
pub fn cli(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut all = args.to_vec();
    all.extend_from_slice(&FAST_HASHING);
    let mut child = Command::new(binary())
        .args(&all)
        .env("LATCHKEY_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run latchkey");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    let output = child.wait_with_output().expect("wait");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A client with its own cookie jar.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client")
}

/// A client that keeps no cookies (to send hand-made `Cookie` headers).
pub fn bare_client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

/// The value of the session cookie in a response's `Set-Cookie` headers.
pub fn session_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    set_cookie_headers(response)
        .into_iter()
        .find(|header| header.starts_with(&format!("{name}=")))
}

pub fn set_cookie_headers(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_string))
        .collect()
}

/// The token part of a `Set-Cookie: name=token; …` header.
pub fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap_or_default();
    pair.split_once('=')
        .map(|(_, value)| value.to_string())
        .unwrap_or_default()
}

/// Real services for tests: skipped when unset, required under LATCHKEY_REQUIRE_SERVICES.
#[allow(unused_imports)]
pub use latchkey::store::conformance::service_url;

/// A name no earlier run used (PostgreSQL and Redis keep data between runs).
pub fn unique(stem: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    format!("{stem}{:x}{}", nanos, std::process::id())
}

/// Signs `name` up with `password` through the JSON API and logs in; returns the
/// `id=…` cookie header value of the new session.
pub async fn signup_and_login(server: &Server, name: &str, password: &str) -> String {
    let credentials = serde_json::json!({ "username": name, "password": password });
    let client = bare_client();
    let signup = client
        .post(server.url("/signup"))
        .json(&credentials)
        .send()
        .await
        .expect("signup");
    assert_eq!(
        signup.status(),
        reqwest::StatusCode::CREATED,
        "sign-up of {name}"
    );
    let login = client
        .post(server.url("/login"))
        .json(&credentials)
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), reqwest::StatusCode::OK, "login of {name}");
    let header = session_cookie(&login, "id").expect("session cookie");
    format!("id={}", cookie_value(&header))
}

/// A raw HTTP/1.1 `POST` of the JSON `body` to `path`, closing the connection after the
/// answer, with `headers` (name, value) added.
pub fn raw_json_post(path: &str, body: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request.into_bytes()
}

/// Sends each of `requests` on its own connection to `address`, all at once as an
/// attacker would: every request but its last byte first, then, once all of them wait
/// in the server, the last bytes together (last-byte synchronisation). The status code
/// of each answer, in order.
pub async fn last_byte_burst(address: SocketAddr, requests: &[Vec<u8>]) -> Vec<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut streams = Vec::new();
    for request in requests {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .write_all(&request[..request.len() - 1])
            .await
            .expect("write all but the last byte");
        streams.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (stream, request) in streams.iter_mut().zip(requests) {
        stream
            .write_all(&request[request.len() - 1..])
            .await
            .expect("write the last byte");
    }
    let mut statuses = Vec::new();
    for mut stream in streams {
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read answer");
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        statuses.push(status);
    }
    statuses
}

/// How many of `statuses` are `status`.
pub fn count_of(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&code| code == status).count()
}
