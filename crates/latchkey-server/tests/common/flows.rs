//! The JSON API as a client uses it, and the mail a real SMTP sink received: the steps
//! the server's tests share.

use super::smtp::SmtpSink;
use super::{bare_client, client, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The password every account of these tests signs up with.
pub const PASSWORD: &str = "correct horse battery staple";
/// A second strong password (for resets and changes).
pub const NEW_PASSWORD: &str = "tangerine submarine chorus 42";
/// How long a test waits for a mail.
pub const MAIL_WAIT: Duration = Duration::from_secs(15);

/// `POST path` with the JSON `body`: the whole response (for its headers and cookies).
pub async fn post_response(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    body: Value,
) -> reqwest::Response {
    client
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// `POST path` with the JSON `body`: the status and the JSON answer (`null` if none).
pub async fn post(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = post_response(client, server, path, body).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `method path` with `accept: application/json` and the JSON `body` if any: the status
/// and the JSON answer (`null` if none). For the routes that answer a page unless asked
/// for JSON.
pub async fn call(
    client: &reqwest::Client,
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client
        .request(method, server.url(path))
        .header("accept", "application/json");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `POST /login` with `name` and `password` as JSON: the whole response (its status,
/// its session cookie).
pub async fn login(
    client: &reqwest::Client,
    server: &Server,
    name: &str,
    password: &str,
) -> reqwest::Response {
    post_response(
        client,
        server,
        "/login",
        json!({ "username": name, "password": password }),
    )
    .await
}

/// The status of `POST /login` with `name` and `password` as JSON.
pub async fn login_status(
    client: &reqwest::Client,
    server: &Server,
    name: &str,
    password: &str,
) -> StatusCode {
    login(client, server, name, password).await.status()
}

/// The status of `GET /home`.
pub async fn home(client: &reqwest::Client, server: &Server) -> StatusCode {
    client
        .get(server.url("/home"))
        .send()
        .await
        .expect("home")
        .status()
}

/// `GET /home`: the status and the JSON body, which it must have (fails otherwise).
pub async fn home_answer(client: &reqwest::Client, server: &Server) -> (StatusCode, Value) {
    let response = client.get(server.url("/home")).send().await.expect("home");
    let status = response.status();
    (status, response.json().await.expect("json body"))
}

/// `GET /home` with the session `cookie` from a client without a jar: the status and the
/// JSON answer (`null` if none, as when a store is down).
pub async fn home_answer_with_cookie(server: &Server, cookie: &str) -> (StatusCode, Value) {
    let response = bare_client()
        .get(server.url("/home"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("home: the server answers even when its stores are down");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The status of `GET /home` with the session `cookie` from a client without a jar.
pub async fn home_with_cookie(server: &Server, cookie: &str) -> StatusCode {
    home_answer_with_cookie(server, cookie).await.0
}

/// Signs `name` up with `email` and [`PASSWORD`]; the client, logged in.
pub async fn sign_up(server: &Server, name: &str, email: &str) -> reqwest::Client {
    let browser = client();
    let (status, body) = post(
        &browser,
        server,
        "/signup",
        json!({ "username": name, "email": email, "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "sign-up of {name}: {body}");
    browser
}

/// A client logged in as `login` with `password`.
pub async fn logged_in(server: &Server, login: &str, password: &str) -> reqwest::Client {
    let client = client();
    let (status, body) = post(
        &client,
        server,
        "/login",
        json!({ "username": login, "password": password }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "login of {login}: {body}");
    client
}

/// A raw message with quoted-printable soft line breaks joined.
pub fn unfold(raw: &str) -> String {
    raw.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

/// The mails to `to` whose subject contains `subject`, unfolded: waits up to
/// [`MAIL_WAIT`] for `count` of them, and fails if they do not come.
pub fn mails(sink: &SmtpSink, to: &str, subject: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + MAIL_WAIT;
    loop {
        let found = mails_now(sink, to, subject);
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{count} mail(s) to {to} about {subject:?}; got {:?}",
            sink.messages()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The mails to `to` whose subject contains `subject` received so far, unfolded.
pub fn mails_now(sink: &SmtpSink, to: &str, subject: &str) -> Vec<String> {
    sink.messages()
        .into_iter()
        .map(|raw| unfold(&raw))
        .filter(|mail| {
            mail.lines()
                .any(|line| line.starts_with("To:") && line.contains(to))
                && mail
                    .lines()
                    .any(|line| line.starts_with("Subject:") && line.contains(subject))
        })
        .collect()
}

/// The first mail to `to` about `subject` (waits for it).
pub fn mail(sink: &SmtpSink, to: &str, subject: &str) -> String {
    mails(sink, to, subject, 1).remove(0)
}

/// The `token=` of the first link in `mail`.
pub fn token_in(mail: &str) -> String {
    let start = mail.find("token=").expect("a link with a token") + "token=".len();
    mail[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The 6-digit code in a sign-in mail: in its body, never in its subject (which lock
/// screens show).
pub fn code_in(mail: &str) -> String {
    let subject = mail
        .lines()
        .find(|line| line.starts_with("Subject:"))
        .expect("subject");
    assert!(
        !subject.chars().any(|c| c.is_ascii_digit()),
        "the code stands in the subject: {subject}"
    );
    let line = mail
        .lines()
        .find(|line| {
            line.contains("code") && line.chars().filter(char::is_ascii_digit).count() == 6
        })
        .expect("a line with the code");
    line.chars().filter(char::is_ascii_digit).collect()
}

/// Seconds since the epoch (what a TOTP code is computed at).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs()
}

/// Logs `name` in with [`PASSWORD`] in `browser` (fresh) and turns on its authenticator
/// app: the app, to compute codes with.
pub async fn enable_totp(
    browser: &reqwest::Client,
    server: &Server,
    name: &str,
) -> latchkey::factors::Totp {
    let (status, _) = post(
        browser,
        server,
        "/login",
        json!({ "username": name, "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, setup) = post(browser, server, "/account/totp", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{setup}");
    let secret = setup["secret"].as_str().expect("secret");
    let app = latchkey::factors::Totp::from_base32(secret, "latchkey", name).expect("secret");
    let (status, body) = post(
        browser,
        server,
        "/account/totp/confirm",
        json!({ "code": app.code_at(now_secs()) }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app
}
