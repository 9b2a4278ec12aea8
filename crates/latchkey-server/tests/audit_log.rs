//! The audit log: every security event is a structured `latchkey::audit` event, and no
//! password, session token, remember-me token or password hash reaches any log line,
//! even at debug level.

mod common;

use common::{bare_client, Server};
use reqwest::StatusCode;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";
const WRONG: &str = "a wrong password, typed";
/// The login name, which must never reach the log: a word no log line holds otherwise
/// (the debug log prints the migrations' SQL, comments and all).
const LOGIN_NAME: &str = "zq-login-name-7";

#[tokio::test]
async fn security_events_are_logged_and_secrets_never_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let server = Server::start_logging(dir.path(), &[], &log);
    let client = bare_client();
    let post = |path: &str, body: serde_json::Value, cookie: Option<&str>| {
        let mut request = client.post(server.url(path)).json(&body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let credentials = json!({ "username": LOGIN_NAME, "password": PASSWORD });
    assert_eq!(
        post("/signup", credentials.clone(), None)
            .await
            .expect("signup")
            .status(),
        StatusCode::CREATED
    );
    let wrong = json!({ "username": LOGIN_NAME, "password": WRONG });
    // Six wrong passwords start a 1 s lockout, in which the right one is refused (and
    // audited as throttled). Wall-clock, so measured: a round whose right password was
    // sent a second or more after the sixth wrong one proves nothing (it logs in and
    // clears the count) and is done again.
    let mut rounds = 0;
    loop {
        for _ in 0..5 {
            post("/login", wrong.clone(), None).await.expect("login");
        }
        let sixth = std::time::Instant::now();
        post("/login", wrong.clone(), None).await.expect("login");
        let status = post("/login", credentials.clone(), None)
            .await
            .expect("login")
            .status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert!(
            sixth.elapsed() >= std::time::Duration::from_secs(1),
            "the right password inside the lockout answered {status}"
        );
        rounds += 1;
        assert!(
            rounds < 5,
            "no round fit in the 1 s lockout: too slow to tell"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let login = post("/login", credentials.clone(), None)
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let set_cookie = common::session_cookie(&login, "id").expect("cookie");
    let token = common::cookie_value(&set_cookie);
    let cookie = format!("id={token}");
    assert_eq!(
        post("/logout", json!({}), Some(&cookie))
            .await
            .expect("logout")
            .status(),
        StatusCode::OK
    );
    server.stop();

    let text = std::fs::read_to_string(&log).expect("log");
    for event in [
        "signup",
        "login_failed",
        "login_throttled",
        "login",
        "logout",
    ] {
        let marker = format!("event=\"{event}\"");
        assert!(
            text.lines()
                .any(|line| line.contains("latchkey::audit") && line.contains(&marker)),
            "no {event} audit event in:\n{text}"
        );
    }
    for secret in [PASSWORD, WRONG, token.as_str(), "$argon2id$"] {
        assert!(
            !text.contains(secret),
            "{secret:?} reached the log:\n{text}"
        );
    }
    // The login name is not logged either (people type passwords into it).
    assert!(
        !text.contains(LOGIN_NAME),
        "a login name reached the log:\n{text}"
    );
}

#[tokio::test]
async fn a_flood_of_refusals_cannot_flood_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let server = Server::start_logging(dir.path(), &[], &log);
    let client = bare_client();
    let refused = || {
        client
            .post(server.url("/logout"))
            .header("origin", "https://evil.example")
            .header("sec-fetch-site", "cross-site")
            .json(&json!({}))
            .send()
    };
    // 400 cross-site requests, no login needed.
    let started = std::time::Instant::now();
    for _ in 0..400 {
        let response = refused().await.expect("refused");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    // Once the budget refills, the next line says how many were left out.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    refused().await.expect("refused");
    // The budget (50 at once, then 5 a second) allows this many lines in the time the
    // flood took, however long that was on this machine (and one for rounding).
    let allowed = 50 + 5 * started.elapsed().as_secs() + 5 + 1;
    assert!(
        allowed < 401,
        "the flood took {:?}: too slow to tell a budget from none",
        started.elapsed()
    );
    server.stop();

    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("event=\"cross_site_refused\""))
        .collect();
    let dropped: u64 = lines
        .iter()
        .filter_map(|line| {
            let (_, rest) = line.split_once("dropped=")?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        lines.len() as u64 <= allowed,
        "{} lines for 401 refusals, more than the {allowed} the budget allows: the log is \
         not rate-limited",
        lines.len()
    );
    assert_eq!(
        lines.len() as u64 + dropped,
        401,
        "every refusal is accounted for"
    );
}
