//! The JSON API as a client uses it, and the mail a real SMTP sink received: the steps
//! the mail, gate and attack tests share.

use super::smtp::SmtpSink;
use super::{client, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The password every account of these tests signs up with.
pub const PASSWORD: &str = "correct horse battery staple";
/// A second strong password (for resets and changes).
pub const NEW_PASSWORD: &str = "tangerine submarine chorus 42";
/// How long a test waits for a mail.
pub const MAIL_WAIT: Duration = Duration::from_secs(15);

/// `POST path` with the JSON `body`: the status and the JSON answer (`null` if none).
pub async fn post(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = client
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
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
