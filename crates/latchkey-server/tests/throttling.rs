//! Throttling over HTTP: per-account lockouts with Retry-After that refuse even the
//! right password, unknown names throttled exactly like known ones, per-IP bursts,
//! X-Forwarded-For believed only from trusted proxies, sign-ups per IP, and counters
//! shared by two processes. Then the attacks that beat it once, replayed: simultaneous
//! bursts (last-byte synchronised) that all read the counters before any failure was
//! recorded, forwarding headers with junk and ports, one account under several names,
//! and the current-password check of `/password` as an oracle.

mod common;

use common::{bare_client, count_of, last_byte_burst, raw_json_post, service_url, unique, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

async fn signup(server: &Server, name: &str) -> StatusCode {
    bare_client()
        .post(server.url("/signup"))
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .expect("signup")
        .status()
}

/// `POST /login`: status, `Retry-After` and body.
async fn login(
    server: &Server,
    name: &str,
    password: &str,
    forwarded: Option<&str>,
) -> (StatusCode, Option<u64>, Value) {
    let mut request = bare_client()
        .post(server.url("/login"))
        .json(&json!({ "username": name, "password": password }));
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let response = request.send().await.expect("login");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Five free failures, a sixth that starts a 1 s lockout, then: what the next attempt
/// (with `password`) gets inside that second. Wall-clock, so measured: `None` when the
/// attempt was answered a second or more after the sixth failure was sent (the lockout
/// may have been over when it was checked: nothing to tell).
async fn after_six_failures(
    server: &Server,
    name: &str,
    password: &str,
) -> Option<(StatusCode, Option<u64>, Value)> {
    for attempt in 1..=5 {
        let (status, _, _) = login(server, name, "wrong password!", None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "failure {attempt} of {name}"
        );
    }
    let sixth = std::time::Instant::now();
    let (status, _, _) = login(server, name, "wrong password!", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "failure 6 of {name}");
    let answer = login(server, name, password, None).await;
    (sixth.elapsed() < Duration::from_secs(1)).then_some(answer)
}

/// [`after_six_failures`] for `victim` (whose password is [`PASSWORD`]) until a round
/// fits in the lockout's second (five rounds at most); after a round that did not,
/// the lockout is waited out and the right password clears the count.
async fn victim_within_the_lockout(
    server: &Server,
    password: &str,
) -> (StatusCode, Option<u64>, Value) {
    for _ in 0..5 {
        if let Some(answer) = after_six_failures(server, "victim", password).await {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            login(server, "victim", PASSWORD, None).await.0,
            StatusCode::OK
        );
    }
    panic!("no round fit in the 1 s lockout: too slow to tell");
}

#[tokio::test]
async fn an_account_locks_out_with_retry_after_even_for_the_right_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The per-address cap (30 a minute) out of the way of the rounds tried again.
    let server = Server::start(dir.path(), &["--login-ip-burst", "200"]);
    assert_eq!(signup(&server, "victim").await, StatusCode::CREATED);
    let (status, retry_after, body) = victim_within_the_lockout(&server, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(retry_after, Some(1));
    assert!(body["error"]
        .as_str()
        .is_some_and(|error| error.contains("Too many attempts")));

    // An unknown name goes through exactly the same steps and gets the same answer (a
    // fresh unknown name for a round that did not fit in the second).
    let mut ghost = None;
    for round in 0..5 {
        ghost = after_six_failures(&server, &format!("ghost{round}"), PASSWORD).await;
        if ghost.is_some() {
            break;
        }
    }
    let ghost = ghost.expect("no round fit in the 1 s lockout: too slow to tell");
    assert_eq!(ghost, (status, retry_after, body));

    // Once the lockout is over the right password works and clears the failures.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        login(&server, "victim", PASSWORD, None).await.0,
        StatusCode::OK
    );

    // Browsers get the login page with the same status and Retry-After.
    let mut rounds = 0;
    loop {
        for attempt in 1..=5 {
            let (status, _, _) = login(&server, "victim", "wrong password!", None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "failure {attempt}");
        }
        let sixth = std::time::Instant::now();
        login(&server, "victim", "wrong password!", None).await;
        let page = reqwest::Client::new()
            .post(server.url("/login"))
            .header("accept", "text/html")
            .json(&json!({ "username": "victim", "password": PASSWORD }))
            .send()
            .await
            .expect("login");
        if sixth.elapsed() < Duration::from_secs(1) {
            assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
            assert!(page.headers().contains_key("retry-after"));
            break;
        }
        rounds += 1;
        assert!(
            rounds < 5,
            "no round fit in the 1 s lockout: too slow to tell"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            login(&server, "victim", PASSWORD, None).await.0,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn one_address_cannot_spray_many_accounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--login-ip-burst", "3"]);
    for name in ["a1", "a2", "a3"] {
        assert_eq!(
            login(&server, name, "guess guess guess", None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, retry_after, _) = login(&server, "a4", "guess guess guess", None).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "a fourth account from the same address"
    );
    assert!(
        retry_after.is_some_and(|seconds| (1..=60).contains(&seconds)),
        "{retry_after:?}"
    );
    // A forged X-Forwarded-For from an untrusted peer changes nothing.
    let (status, _, _) = login(&server, "a5", "guess guess guess", Some("203.0.113.9")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn forwarded_for_is_believed_from_a_trusted_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &["--login-ip-burst", "3", "--trusted-proxy", "127.0.0.1"],
    );
    for name in ["b1", "b2", "b3"] {
        let (status, _, _) = login(&server, name, "guess guess guess", Some("203.0.113.1")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = login(&server, "b4", "guess guess guess", Some("203.0.113.1")).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the client behind the proxy is limited"
    );
    // Another client behind the same proxy is counted on its own, and a spoofed hop
    // to the left of the proxy's entry is ignored.
    let (status, _, _) = login(
        &server,
        "b5",
        "guess guess guess",
        Some("203.0.113.1, 203.0.113.2"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_ups_are_limited_per_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--signups-per-ip-hourly", "2"]);
    assert_eq!(signup(&server, "first").await, StatusCode::CREATED);
    assert_eq!(signup(&server, "second").await, StatusCode::CREATED);
    assert_eq!(
        signup(&server, "third").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&server, "third", PASSWORD, None).await.0,
        StatusCode::UNAUTHORIZED,
        "the refused sign-up created nothing"
    );
}

#[tokio::test]
async fn two_processes_count_failures_together() {
    failures_counted_together_through("database").await;
}

#[tokio::test]
async fn two_processes_on_a_redis_cluster_count_failures_together() {
    let Some(cluster) = service_url("LATCHKEY_TEST_REDIS_CLUSTER") else {
        return;
    };
    failures_counted_together_through(&cluster).await;
}

/// Two servers whose throttle counters live beside sessions in `store`: failures on
/// either lock the account out on both.
async fn failures_counted_together_through(store: &str) {
    let Some(postgres) = service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let a = Server::start_on(&postgres, &["--session-store", store]);
    let b = Server::start_on(&postgres, &["--session-store", store]);
    let name = unique("shared");
    assert_eq!(signup(&a, &name).await, StatusCode::CREATED);
    for attempt in 0..6 {
        let server = if attempt % 2 == 0 { &a } else { &b };
        assert_eq!(
            login(server, &name, "wrong password!", None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&a, &name, PASSWORD, None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&b, &name, PASSWORD, None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// The server's real argon2id cost (the defaults), for attacks whose point is that
/// checking a password takes time.
const REAL_COST: [&str; 4] = ["--argon2-memory-kib", "19456", "--argon2-iterations", "2"];

fn login_request(name: &str, password: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let body = json!({ "username": name, "password": password }).to_string();
    raw_json_post("/login", &body, headers)
}

#[tokio::test]
async fn a_simultaneous_burst_at_one_account_gets_exactly_the_allowance() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The per-IP burst (30 a minute) would refuse some of the 40 first: lifted, so that
    // only the account's own allowance stands in the way.
    let mut flags = REAL_COST.to_vec();
    flags.extend(["--login-ip-burst", "1000"]);
    let server = Server::start(dir.path(), &flags);
    assert_eq!(signup(&server, "victim").await, StatusCode::CREATED);
    // 40 guesses on 40 connections at once.
    let requests: Vec<Vec<u8>> = (0..40)
        .map(|guess| login_request("victim", &format!("guess number {guess}"), &[]))
        .collect();
    let statuses = last_byte_burst(server.address, &requests).await;
    // Five free failures and the sixth that starts the lockouts are checked (six at a
    // time at most, the rest waiting for a slot); every other attempt is refused by the
    // lockout their failures started, before its password is looked at.
    assert_eq!(count_of(&statuses, 401), 6, "{statuses:?}");
    assert_eq!(count_of(&statuses, 429), 34, "{statuses:?}");
    // The right password right after is refused too, while the lockout lasts.
    let (status, retry_after, _) = login(&server, "victim", PASSWORD, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some());
}

#[tokio::test]
async fn a_simultaneous_burst_from_one_address_gets_exactly_its_allowance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &["--login-ip-burst", "1000", "--login-ip-hourly", "20"],
    );
    // 40 guesses at 40 different accounts.
    let requests: Vec<Vec<u8>> = (0..40)
        .map(|account| login_request(&format!("user{account}"), "guess guess guess", &[]))
        .collect();
    let statuses = last_byte_burst(server.address, &requests).await;
    assert_eq!(count_of(&statuses, 401), 20, "{statuses:?}");
    assert_eq!(count_of(&statuses, 429), 20, "{statuses:?}");
    assert_eq!(
        login(&server, "one-more", "guess guess guess", None)
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_simultaneous_burst_of_sign_ups_gets_exactly_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--signups-per-ip-hourly", "10"]);
    let requests: Vec<Vec<u8>> = (0..30)
        .map(|index| {
            let body = json!({ "username": format!("new{index}"), "password": PASSWORD });
            raw_json_post("/signup", &body.to_string(), &[])
        })
        .collect();
    let statuses = last_byte_burst(server.address, &requests).await;
    assert_eq!(count_of(&statuses, 201), 10, "{statuses:?}");
    assert_eq!(count_of(&statuses, 429), 20, "{statuses:?}");
}

#[tokio::test]
async fn the_client_address_cannot_be_chosen_behind_a_trusted_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &["--login-ip-burst", "3", "--trusted-proxy", "127.0.0.1"],
    );
    // Each shape: the attacker changes what it controls on every try; three failures
    // from the real client, then 429.
    let shapes: [fn(usize) -> String; 3] = [
        // Junk between the spoofed entry and the one the proxy wrote.
        |try_| format!("198.51.100.{try_}, junk, 203.0.113.50"),
        // A proxy that appends the port.
        |try_| format!("198.51.100.{try_}, junk, 203.0.113.51:4567"),
        // Junk in the right-most place: counted under the proxy, not the spoofed entry.
        |try_| format!("198.51.100.{try_}, junk"),
    ];
    for (index, shape) in shapes.iter().enumerate() {
        for try_ in 0..4 {
            let name = format!("s{index}x{try_}");
            let (status, _, _) =
                login(&server, &name, "guess guess guess", Some(&shape(try_))).await;
            let expected = if try_ < 3 {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            assert_eq!(status, expected, "shape {index}, try {try_}");
        }
    }
}

#[tokio::test]
async fn the_forwarded_header_is_read_the_same_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &[
            "--login-ip-burst",
            "3",
            "--trusted-proxy",
            "127.0.0.1",
            "--forwarded-header",
            "forwarded",
        ],
    );
    let send = |name: String, forwarded: String, spoofed_xff: String| {
        let request = bare_client()
            .post(server.url("/login"))
            .header("forwarded", forwarded)
            .header("x-forwarded-for", spoofed_xff)
            .json(&json!({ "username": name, "password": "guess guess guess" }));
        async move { request.send().await.expect("login").status() }
    };
    for try_ in 0..4 {
        let status = send(
            format!("f{try_}"),
            format!("for=198.51.100.{try_}, for=\"203.0.113.70:99\";proto=https"),
            // Only the configured header is read: a different X-Forwarded-For each time
            // changes nothing.
            format!("203.0.113.{try_}"),
        )
        .await;
        let expected = if try_ < 3 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, expected, "try {try_}");
    }
    // Another client behind the proxy has its own count.
    let status = send(
        "other".into(),
        "for=203.0.113.71".into(),
        "203.0.113.70".into(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_account_has_one_counter_whichever_name_is_typed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let created = bare_client()
        .post(server.url("/signup"))
        .json(&json!({ "username": "Victim", "email": "victim@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect("signup");
    assert_eq!(created.status(), StatusCode::CREATED);
    let names = ["victim", "VICTIM", "victim@example.com"];
    for attempt in 0..6 {
        let (status, _, _) = login(&server, names[attempt % 3], "wrong password!", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "failure {attempt}");
    }
    for name in names {
        assert_eq!(
            login(&server, name, PASSWORD, None).await.0,
            StatusCode::TOO_MANY_REQUESTS,
            "{name}"
        );
    }
}

/// `POST /password` with `current` as the current password, in the session `cookie`.
async fn change_password(server: &Server, cookie: &str, current: &str) -> (StatusCode, Value) {
    let response = bare_client()
        .post(server.url("/password"))
        .header("cookie", cookie)
        .json(&json!({ "current": current, "new": "a brand new passphrase" }))
        .send()
        .await
        .expect("password");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_current_password_check_is_no_oracle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let server = Server::start_logging(dir.path(), &[], &log);
    let cookie = common::signup_and_login(&server, "owner", PASSWORD).await;
    // A stolen, fresh session guessing the current password: checked like logins.
    let mut statuses = Vec::new();
    for guess in 0..10 {
        statuses.push(
            change_password(&server, &cookie, &format!("guess {guess} guess"))
                .await
                .0,
        );
    }
    assert_eq!(&statuses[..6], &[StatusCode::FORBIDDEN; 6], "{statuses:?}");
    assert_eq!(
        &statuses[6..],
        &[StatusCode::TOO_MANY_REQUESTS; 4],
        "{statuses:?}"
    );
    // The right one is refused too until the lockout ends, and so is a login.
    let (status, body) = change_password(&server, &cookie, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(
        login(&server, "owner", PASSWORD, None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Every wrong guess is in the audit log.
    let text = std::fs::read_to_string(&log).expect("log");
    let refused = text
        .lines()
        .filter(|line| line.contains("password_change_refused"))
        .count();
    assert_eq!(refused, 6, "{text}");
    assert!(text.contains("password_change_throttled"));
}

/// `--fresh-login-window 2s`: the password page opens for a session whose login is
/// younger than that, and the password change is refused once it is older. Wall-clock
/// time, so measured rather than assumed: a page answered within the window of sending
/// the login was asked for inside it, however slow the machine (a slower round proves
/// nothing and is tried again); a change sent once the window has passed since the
/// login's answer is outside it, however fast.
#[tokio::test]
async fn a_password_login_is_fresh_only_for_a_while() {
    let window = Duration::from_secs(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--fresh-login-window", "2s"]);
    assert_eq!(signup(&server, "owner").await, StatusCode::CREATED);
    let mut rounds = 0;
    let (cookie, answered) = loop {
        let sent = std::time::Instant::now();
        let response = bare_client()
            .post(server.url("/login"))
            .json(&json!({ "username": "owner", "password": PASSWORD }))
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), StatusCode::OK);
        let answered = std::time::Instant::now();
        let header = common::session_cookie(&response, "id").expect("session cookie");
        let cookie = format!("id={}", common::cookie_value(&header));
        let page = bare_client()
            .get(server.url("/password"))
            .header("accept", "text/html")
            .header("cookie", &cookie)
            .send()
            .await
            .expect("password page")
            .status();
        if sent.elapsed() + Duration::from_millis(20) < window {
            assert_eq!(page, StatusCode::OK, "the password page for a fresh login");
            break (cookie, answered);
        }
        rounds += 1;
        assert!(
            rounds < 10,
            "no login and page fit in {window:?} in ten rounds: too slow to tell"
        );
    };
    tokio::time::sleep_until((answered + window + Duration::from_millis(20)).into()).await;
    let (status, body) = change_password(&server, &cookie, PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "fresh login required");
}
