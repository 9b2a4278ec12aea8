//! Slow and greedy clients over raw TCP against the real binary (issue 15, item 4): an
//! idle socket, a half request line, headers dribbled, an unfinished body and a
//! kept-alive connection left idle are each closed by the server once its (short,
//! configured) timeout passes; a huge declared `Content-Length` is refused at once; with
//! `--max-connections N`, connection N+1 is answered 503 and closed while N are held.
//! The bounds below are generous liveness bounds (the server must act at all), not
//! timing claims.

mod common;

use common::Server;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Much longer than every timeout the tests configure (1 s): the server must close the
/// connection well before this.
const BOUND: Duration = Duration::from_secs(8);

const SHORT_TIMEOUTS: [&str; 6] = [
    "--header-read-timeout",
    "1s",
    "--body-read-timeout",
    "1s",
    "--connection-idle-timeout",
    "1s",
];

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    stream
}

/// What the server sent until it closed the connection; panics if it is still open
/// after [`BOUND`]. Calls `meanwhile` between reads (to keep dribbling, say).
fn read_until_closed(stream: &mut TcpStream, mut meanwhile: impl FnMut(&mut TcpStream)) -> String {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while start.elapsed() < BOUND {
        match stream.read(&mut buffer) {
            Ok(0) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                meanwhile(stream)
            }
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return String::from_utf8_lossy(&received).into_owned()
            }
            Err(error) => panic!("read: {error}"),
        }
    }
    panic!(
        "the server left the connection open for {BOUND:?} (received {:?})",
        String::from_utf8_lossy(&received)
    );
}

/// One whole answer (headers and `Content-Length` bytes of body) on a kept-alive
/// connection.
fn read_answer(stream: &mut TcpStream) -> String {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while start.elapsed() < BOUND {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) => panic!("closed before a whole answer: {text:?}"),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => panic!("read: {error}"),
        }
    }
    panic!("no whole answer within {BOUND:?}");
}

const GET_HOME: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n";

#[test]
fn slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &SHORT_TIMEOUTS);

    // An idle socket that never sends a byte.
    let mut idle = connect(&server);
    assert_eq!(read_until_closed(&mut idle, |_| {}), "", "idle socket");

    // Half a request line.
    let mut half = connect(&server);
    half.write_all(b"GET /ho").expect("write");
    read_until_closed(&mut half, |_| {});

    // Headers dribbled one every 200 ms: never finished, but always "active".
    let mut dribble = connect(&server);
    dribble
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .expect("write");
    let mut sent = 0;
    read_until_closed(&mut dribble, |stream| {
        sent += 1;
        let _ = stream.write_all(format!("X-Dribble-{sent}: 1\r\n").as_bytes());
    });
    assert!(
        sent >= 3,
        "the dribbling went on for a while first ({sent})"
    );

    // A body that never finishes: 408, then the connection is closed.
    let mut unfinished = connect(&server);
    unfinished
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"username\"",
        )
        .expect("write");
    let answer = read_until_closed(&mut unfinished, |_| {});
    assert!(
        answer.starts_with("HTTP/1.1 408 "),
        "unfinished body: {answer:?}"
    );
    assert!(answer.contains("did not arrive"), "{answer}");

    // A kept-alive connection is served twice, then closed once left idle.
    let mut kept = connect(&server);
    for _ in 0..2 {
        kept.write_all(GET_HOME).expect("write");
        let answer = read_answer(&mut kept);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    }
    assert_eq!(
        read_until_closed(&mut kept, |_| {}),
        "",
        "kept-alive, then idle"
    );
}

#[test]
fn a_huge_declared_body_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Long timeouts: the refusal must not come from a timeout.
    let server = Server::start(
        dir.path(),
        &[
            "--body-read-timeout",
            "10m",
            "--connection-idle-timeout",
            "10m",
        ],
    );
    for path in ["/login", "/signup", "/logout", "/home", "/nowhere"] {
        let mut stream = connect(&server);
        stream
            .write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                     Content-Length: 10000000000\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .expect("write");
        let answer = read_until_closed(&mut stream, |_| {});
        assert!(answer.starts_with("HTTP/1.1 413 "), "{path}: {answer:?}");
        assert!(answer.contains("larger than"), "{path}: {answer}");
        assert!(
            answer.contains("x-content-type-options: nosniff"),
            "{answer}"
        );
    }
}

#[test]
fn connections_over_the_limit_are_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &["--max-connections", "3", "--connection-idle-timeout", "10m"],
    );
    let serve = |stream: &mut TcpStream| -> bool {
        if stream.write_all(GET_HOME).is_err() {
            return false;
        }
        read_answer(stream).starts_with("HTTP/1.1 200 ")
    };
    // Three connections, each served once and then held open.
    let mut held = Vec::new();
    let start = Instant::now();
    while held.len() < 3 {
        assert!(start.elapsed() < BOUND, "three connections are not served");
        let mut stream = connect(&server);
        // The start-up probe's connection may still be counted for a moment.
        let mut probe = [0u8; 1];
        if stream.peek(&mut probe).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        if serve(&mut stream) {
            held.push(stream);
        }
    }
    // The fourth: a 503, and closed, without sending a byte.
    let mut fourth = connect(&server);
    let answer = read_until_closed(&mut fourth, |_| {});
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    assert!(answer.contains("too many connections"), "{answer}");
    // The held ones are still served.
    assert!(serve(&mut held[0]), "a held connection is still served");
    // One closed: a new connection is served again.
    drop(held.pop());
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < BOUND, "a freed place is not reused");
        let mut stream = connect(&server);
        let mut probe = [0u8; 1];
        if stream.peek(&mut probe).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        assert!(serve(&mut stream));
        break;
    }
}
