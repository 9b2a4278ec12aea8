//! A real SMTP server for tests: Python's `aiosmtpd` (PyPI; `.ci/run` installs it),
//! started on a free port with a Maildir mailbox the test reads.

#![allow(dead_code)]

// The port helper, `crates/latchkey-server/tests/common/ports.rs`: a sibling module
// wherever this file is included (once per test crate, so one counter hands out ports).
use super::ports;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// A running `aiosmtpd`, killed on drop.
pub struct SmtpSink {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

/// A port for a sink that nothing listens on now, from the SMTP sinks' range (see the
/// allocation on `free_address` in `crates/latchkey-server/tests/common/mod.rs`): never
/// one the kernel hands out to connections, nor one given to another test of this
/// process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    ports::free_port_in(&ports::SMTP, &NEXT)
}

/// Whether `python3 -m aiosmtpd` can run here; without it the mail tests are skipped,
/// unless `LATCHKEY_REQUIRE_SERVICES` is set (CI), where that is a failure.
pub fn available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !ok {
        assert!(
            std::env::var_os("LATCHKEY_REQUIRE_SERVICES").is_none(),
            "aiosmtpd is required (pip install aiosmtpd)"
        );
        eprintln!("skipped: aiosmtpd is not installed (pip install aiosmtpd)");
    }
    ok
}

impl SmtpSink {
    /// A sink on a free port (another one when a process took it meanwhile).
    pub fn start() -> SmtpSink {
        for _ in 0..4 {
            match Self::try_start_on(free_port()) {
                Ok(sink) => return sink,
                Err(output) if ports::says_port_taken(&output) => continue,
                Err(output) => panic!("aiosmtpd did not start: {output}"),
            }
        }
        Self::start_on(free_port())
    }

    /// A sink on `port`; fails the test with aiosmtpd's output when it exits or does
    /// not listen within 15 s.
    pub fn start_on(port: u16) -> SmtpSink {
        Self::try_start_on(port)
            .unwrap_or_else(|output| panic!("aiosmtpd did not start on port {port}: {output}"))
    }

    /// A sink on `port`, or why not (its output).
    fn try_start_on(port: u16) -> Result<SmtpSink, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let maildir = dir.path().join("mail");
        let log = dir.path().join("aiosmtpd.log");
        let mut child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("aiosmtpd log"))
            .spawn()
            .expect("start aiosmtpd");
        let waited = ports::wait_until_listening(&mut child, port, Duration::from_secs(15));
        let output = || std::fs::read_to_string(&log).unwrap_or_default();
        match waited {
            Ok(()) => Ok(SmtpSink {
                child,
                port,
                maildir,
                _dir: dir,
            }),
            Err(ports::NotListening::Died(status)) => {
                Err(format!("exited ({status}): {}", output()))
            }
            Err(ports::NotListening::TimedOut) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("not listening after 15 s: {}", output()))
            }
        }
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, as raw text.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .collect()
    }

    /// Waits up to `timeout` for at least `count` messages; returns what arrived.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count || Instant::now() >= deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (the port is free again).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
