//! What the CLI's integration tests share: running the real binary, its output as text, and
//! scratch directories.

// Each test file uses part of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `hookguard` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_hookguard");

/// Runs `hookguard ARGS` to completion, with `stdin` as its input (none: `/dev/null`), without
/// the secret or log settings of the test's own environment.
pub fn hookguard(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("HOOKGUARD_SECRET")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hookguard");
    if let Some(input) = stdin {
        // A command that refuses its configuration before reading closes stdin first.
        match child.stdin.take().unwrap().write_all(input) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.unwrap(),
        }
    }
    child.wait_with_output().expect("wait hookguard")
}

/// Runs `hookguard ARGS` (no input) expecting it to exit by itself within 20 s, as a refused
/// configuration does; a process still running then (a `serve` that started) is killed, and the
/// test fails on that rather than waiting for ever.
pub fn hookguard_exits(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("HOOKGUARD_SECRET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hookguard");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("wait hookguard").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hookguard {args:?} did not exit: it started instead of refusing its configuration");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait hookguard")
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The exit code (the process must have exited, not been killed).
pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

/// A private scratch directory for one test, removed on drop.
pub struct Scratch(pub PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, empty scratch directory named after the test.
pub fn scratch(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("hookguard-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}
