//! The test helpers' waits tell a child that listens from one that died: a server whose
//! port another process holds fails its start with its own output (it used to be taken
//! as started, the other process answering in its place), and a child that exits fails
//! the wait at once rather than after the timeout.

mod common;

use common::{ports, Server};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_server_whose_port_is_taken_fails_with_its_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Someone else listens on the port (this process).
    let taken = TcpListener::bind(common::free_address()).expect("bind");
    let address = taken.local_addr().expect("address");
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| Server::start_at(dir.path(), address, &[]));
    let Err(panic) = outcome else {
        panic!("latchkey was taken as listening on {address}, which this test holds");
    };
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("did not come to listen") && ports::says_port_taken(&message),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{message}");
    // The same directory serves on a free port.
    let server = Server::start(dir.path(), &[]);
    assert_ne!(server.address, address);
}

#[test]
fn a_child_that_exits_fails_the_wait_at_once() {
    let mut child = Command::new("sh")
        .args(["-c", "exit 3"])
        .spawn()
        .expect("sh");
    let port = common::free_address().port();
    let started = Instant::now();
    let waited = ports::wait_until_listening(&mut child, port, Duration::from_secs(30));
    assert!(
        matches!(&waited, Err(ports::NotListening::Died(status)) if status.code() == Some(3)),
        "{waited:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_child_listening_itself_is_ready() {
    let port = common::free_address().port();
    let mut child = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', {port}))\n\
                 s.listen()\ntime.sleep(30)"
            ),
        ])
        .spawn()
        .expect("python3");
    let waited = ports::wait_until_listening(&mut child, port, Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    assert!(waited.is_ok(), "{waited:?}");
}
