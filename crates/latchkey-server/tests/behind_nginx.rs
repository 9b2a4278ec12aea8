//! latchkey in front of an app through a real nginx (Debian's `nginx-light`, which
//! `.ci/run` installs), with the shipped `examples/forward-auth/nginx.conf`'s server
//! blocks: nobody logged in is sent to the login page with `rd`; a session cookie
//! reaches the app as its user, with `Remote-*` headers nginx set from latchkey's
//! answer; a client's own `Remote-User` never reaches the app as that user; a logout
//! ends access at once.

mod common;

use common::flows::PASSWORD;
use common::{free_address, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// nginx, or `None` (the test then passes unless services are required).
fn nginx() -> Option<PathBuf> {
    let binary = PathBuf::from("/usr/sbin/nginx");
    if binary.exists() {
        return Some(binary);
    }
    assert!(
        std::env::var_os("LATCHKEY_REQUIRE_SERVICES").is_none(),
        "nginx is required (apt-get install nginx-light)"
    );
    None
}

/// The app behind the proxy: answers every request with the `Remote-*` headers it got.
async fn start_app() -> SocketAddr {
    async fn echo(headers: axum::http::HeaderMap) -> axum::Json<Value> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        axum::Json(json!({
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

/// nginx running the shipped config's server blocks, on `listen`, in front of `app`,
/// asking `latchkey`; killed on drop.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nginx(
    binary: &Path,
    dir: &Path,
    listen: SocketAddr,
    latchkey: SocketAddr,
    app: SocketAddr,
) -> Nginx {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/forward-auth/nginx.conf"),
    )
    .expect("the shipped nginx.conf");
    let servers = shipped
        .replace("listen 443 ssl;", &format!("listen {listen};"))
        .replace("app.example.com", "app.localhost")
        .replace("login.example.com", "login.localhost")
        .replace("127.0.0.1:8080", &latchkey.to_string())
        .replace("127.0.0.1:3000", &app.to_string());
    let prefix = dir.display();
    let config = format!(
        "daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n\
         events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  \
         proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fastcgi;\n  \
         uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n{servers}\n}}\n"
    );
    let file = dir.join("nginx.conf");
    std::fs::write(&file, config).expect("nginx.conf");
    let child = Command::new(binary)
        .args([
            "-p",
            &dir.display().to_string(),
            "-c",
            &file.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return nginx;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(nginx);
    panic!(
        "nginx did not listen on {listen}: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
}

#[tokio::test]
async fn an_app_behind_nginx_sees_only_who_latchkey_let_in() {
    let Some(binary) = nginx() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nhost = \"app.localhost\"\nschemes = [\"http\"]\npolicy = \"one_factor\"\n",
    )
    .expect("rules");
    let rules_arg = rules.display().to_string();
    let latchkey = Server::start(
        dir.path(),
        &[
            "--access-rules",
            rules_arg.as_str(),
            "--trusted-proxy",
            "127.0.0.1",
        ],
    );
    let app = start_app().await;
    let listen = free_address();
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).expect("nginx dir");
    let _nginx = start_nginx(&binary, &nginx_dir, listen, latchkey.address, app);

    // A browser that reaches app.localhost through nginx, following no redirect.
    let browser = reqwest::Client::builder()
        .resolve("app.localhost", listen)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let app_url = format!("http://app.localhost:{}/dashboard?tab=1", listen.port());
    let visit = |cookie: Option<String>, forged: bool| {
        let mut request = browser.get(&app_url).header("accept", "text/html");
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if forged {
            request = request
                .header("remote-user", "admin")
                .header("remote-groups", "admins");
        }
        request.send()
    };

    // Nobody logged in, even claiming to be admin: to the login page, with rd.
    for forged in [false, true] {
        let answer = visit(None, forged).await.expect("through nginx");
        assert_eq!(answer.status(), StatusCode::FOUND, "forged: {forged}");
        let location = answer
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let rd: String = url::form_urlencoded::byte_serialize(app_url.as_bytes()).collect();
        assert!(location.ends_with(&format!("/login?rd={rd}")), "{location}");
    }

    // Logged in (at latchkey): the app sees the user, whatever the client claimed.
    let cookie = common::signup_and_login(&latchkey, "ada", PASSWORD).await;
    for forged in [false, true] {
        let answer = visit(Some(cookie.clone()), forged)
            .await
            .expect("through nginx");
        assert_eq!(answer.status(), StatusCode::OK, "forged: {forged}");
        let seen: Value = answer.json().await.expect("the app's echo");
        assert_eq!(seen["remote_user"], "ada", "forged: {forged}");
        // No groups: nginx sends no header with an empty value, and the client's own
        // `Remote-Groups: admins` is replaced by that nothing.
        assert_eq!(seen["remote_groups"], Value::Null, "forged: {forged}");
    }

    // A logout ends access through the proxy at once.
    let logout = common::bare_client()
        .post(latchkey.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);
    let answer = visit(Some(cookie), false).await.expect("through nginx");
    assert_eq!(answer.status(), StatusCode::FOUND);
}
