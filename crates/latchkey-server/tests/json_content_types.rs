//! The JSON branch of every state-changing endpoint takes JSON or no body at all (issue
//! 15, item 12): `POST /logout` without `Origin` or `Sec-Fetch-Site` used to accept a
//! `text/plain` body, which any page can send cross-site without a preflight. Each
//! refusal is a JSON 415 and changes nothing.

mod common;

use common::{bare_client, signup_and_login, unique, Server};
use reqwest::{Method, StatusCode};

const PASSWORD: &str = "correct horse battery";

/// The user's live sessions, as `GET /sessions` lists them (ids).
async fn session_ids(server: &Server, cookie: &str) -> Vec<String> {
    let list: serde_json::Value = bare_client()
        .get(server.url("/sessions"))
        .header("accept", "application/json")
        .header("cookie", cookie)
        .send()
        .await
        .expect("sessions")
        .json()
        .await
        .expect("sessions JSON");
    list["sessions"]
        .as_array()
        .expect("a list of sessions")
        .iter()
        .map(|session| session["id"].as_str().expect("an id").to_string())
        .collect()
}

/// Sends `method path` with the session `cookie`, the `content_type` (if any) and
/// `body` (if any), and no `Origin` or `Sec-Fetch-Site`; returns the status and the
/// JSON answer.
async fn send(
    server: &Server,
    method: Method,
    path: &str,
    cookie: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut request = bare_client()
        .request(method, server.url(path))
        .header("cookie", cookie);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let answer = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, answer)
}

async fn logged_in(server: &Server) -> String {
    signup_and_login(server, &unique("ct"), PASSWORD).await
}

#[tokio::test]
async fn non_json_bodies_are_refused_on_the_json_branch_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let cookie = logged_in(&server).await;
    let other = logged_in(&server).await;
    let second_of_other = {
        // A second session of `other`, for revoke-others and DELETE /sessions/{id}.
        let name_and_login = bare_client()
            .get(server.url("/account"))
            .header("accept", "application/json")
            .header("cookie", &other)
            .send()
            .await
            .expect("account")
            .json::<serde_json::Value>()
            .await
            .expect("account JSON");
        let name = name_and_login["username"].as_str().expect("username");
        let login = bare_client()
            .post(server.url("/login"))
            .json(&serde_json::json!({ "username": name, "password": PASSWORD }))
            .send()
            .await
            .expect("second login");
        assert_eq!(login.status(), StatusCode::OK);
        let header = common::session_cookie(&login, "id").expect("session cookie");
        format!("id={}", common::cookie_value(&header))
    };
    let sessions_of_other = session_ids(&server, &other).await;
    assert_eq!(sessions_of_other.len(), 2);
    let revoke_path = format!("/sessions/{}", sessions_of_other[0]);

    let not_json = [
        (Some("text/plain"), Some("x")),
        (Some("text/plain;charset=UTF-8"), Some("{}")),
        (Some("multipart/form-data; boundary=b"), Some("--b--\r\n")),
        (Some("text/plain"), None),
        (None, Some("{}")),
    ];
    for (content_type, body) in not_json {
        for (method, path, who) in [
            (Method::POST, "/logout", &cookie),
            (Method::POST, "/sessions/revoke-others", &other),
            (Method::DELETE, revoke_path.as_str(), &other),
            (Method::POST, "/password", &cookie),
        ] {
            let (status, answer) =
                send(&server, method.clone(), path, who, content_type, body).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{method} {path} with {content_type:?} and body {body:?}: {answer}"
            );
            assert!(
                answer["error"]
                    .as_str()
                    .is_some_and(|error| error.contains("JSON")),
                "{method} {path}: a JSON error naming the problem, got {answer}"
            );
        }
    }
    // Nothing changed: both users are still logged in, every session is still there.
    for who in [&cookie, &other, &second_of_other] {
        let home = send(&server, Method::GET, "/home", who, None, None).await;
        assert_eq!(home.0, StatusCode::OK, "still logged in");
    }
    assert_eq!(session_ids(&server, &other).await.len(), 2);

    // A sign-up or login in text/plain is refused as well, and creates no user.
    let name = unique("plain");
    let credentials = serde_json::json!({ "username": name, "password": PASSWORD }).to_string();
    for path in ["/signup", "/login"] {
        let (status, _) = send(
            &server,
            Method::POST,
            path,
            "",
            Some("text/plain"),
            Some(&credentials),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
    }
    let (status, _) = send(
        &server,
        Method::POST,
        "/login",
        "",
        Some("application/json"),
        Some(&credentials),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the text/plain sign-up created no user"
    );

    // A form-urlencoded logout goes to the form branch, which wants its CSRF token.
    let (status, _) = send(
        &server,
        Method::POST,
        "/logout",
        &cookie,
        Some("application/x-www-form-urlencoded"),
        Some("x=1"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a form without a CSRF token");
    assert_eq!(
        send(&server, Method::GET, "/home", &cookie, None, None)
            .await
            .0,
        StatusCode::OK
    );

    // What the JSON branch takes: no body and no content type, or JSON.
    let (status, _) = send(
        &server,
        Method::DELETE,
        &revoke_path,
        &other,
        Some("application/json"),
        Some("{}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "DELETE with a JSON body");
    let (status, answer) = send(&server, Method::POST, "/logout", &cookie, None, None).await;
    assert_eq!(status, StatusCode::OK, "a bodiless logout: {answer}");
    assert_eq!(answer["message"], "Logged out");
    assert_eq!(
        send(&server, Method::GET, "/home", &cookie, None, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "the bodiless logout ended the session"
    );
}
