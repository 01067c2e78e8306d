//! `hookguard __exec-guard PARENT CMD` (hidden): how `serve --exec` starts a command on Linux,
//! so that the command dies with `serve` even when `serve` is killed -9.
//!
//! `serve` starts this guard as the leader of a new process group; the guard asks the kernel
//! for SIGTERM when its parent goes (a parent-death signal), then runs `sh -c CMD` in the same
//! group and relays its exit status. When the signal comes, the guard kills the whole group
//! (the command, whatever it started, and the guard itself). Without it, a command orphaned by
//! a killed `serve` would run on beside the next `serve`, which runs the delivery again once
//! its lease expires: two copies of one handler at once.
//!
//! A SIGTERM to the guard itself while `serve` lives is ignored: `serve`'s threads end one by
//! one when it dies, and each passes the guard on with a signal while `getppid` still names
//! `serve` (passing such a signal on to `sh` would end `sh` and leave its children behind).
//! Processes the command leaves running in the background after `sh` exits (`job &`) are ended
//! then (SIGTERM, which the guard itself survives, then SIGKILL for those still there), with a
//! line on stderr: the delivery is recorded done when the command exits, so work left running
//! is not tracked — and once the guard is gone nothing would end it with `serve`, and a
//! restarted `serve` could run beside it.

use std::process::ExitCode;

use clap::Args;

/// The guard's arguments (internal: `serve` passes them).
#[derive(Args)]
pub struct ExecGuardArgs {
    /// The process id of the `serve` that started this guard.
    parent: u32,
    /// The command, run as `sh -c CMD`.
    cmd: String,
}

/// Runs the guard to the end: the command's exit code, or 128 + the signal that ended it.
pub fn run(a: &ExecGuardArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return failed(format_args!("cannot start: {e}")),
    };
    rt.block_on(guard(a))
}

async fn guard(a: &ExecGuardArgs) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    // The handler first: the parent-death signal must never take SIGTERM's default action,
    // which would end the guard alone and leave the command running.
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => return failed(format_args!("cannot watch signals: {e}")),
    };
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM)) {
        return failed(format_args!("no parent-death signal: {e}"));
    }
    // `serve` may have gone before the line above: then no signal would ever come.
    if parent_pid() != Some(a.parent) {
        return ExitCode::from(1);
    }
    // stdin (the body), stdout and stderr are the guard's own, as `serve` set them.
    let mut child = match tokio::process::Command::new("sh").arg("-c").arg(&a.cmd).spawn() {
        Ok(c) => c,
        Err(e) => return failed(format_args!("cannot start sh: {e}")),
    };
    // A check once a second as well, in case a signal is ever missed.
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            status = child.wait() => {
                end_left_behind().await;
                return match status {
                    Ok(s) => exit_code(s),
                    Err(_) => ExitCode::from(1),
                };
            }
            _ = term.recv() => {}
            _ = tick.tick() => {}
        }
        // The kernel reparents the guard before it sends the parent-death signal. While
        // `serve` dies, its threads end one by one and the guard passes from one to the next,
        // with a signal each time, `getppid` still `serve`: only a parent other than `serve`
        // means it is gone. Any other SIGTERM to the guard itself is ignored (the command is
        // reached through its own pid or the group).
        if parent_pid() != Some(a.parent) {
            kill_own_group();
            return ExitCode::from(1);
        }
    }
}

/// Says why the guard gives up, on stderr (the command's stderr too), and fails.
fn failed(why: std::fmt::Arguments<'_>) -> ExitCode {
    crate::common::write_stderr(format_args!("hookguard: --exec guard: {why}"));
    ExitCode::from(1)
}

fn parent_pid() -> Option<u32> {
    let p = rustix::process::getppid()?;
    u32::try_from(p.as_raw_nonzero().get()).ok()
}

/// The command's exit code, or 128 + the signal that ended it (as a shell reports it).
fn exit_code(s: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)),
        (None, None) => ExitCode::from(1),
    }
}

/// The other processes of this guard's group (the guard leads it: its pid is the group's),
/// from `/proc` (at most [`MAX_SCANNED`] entries read).
fn group_members() -> Vec<rustix::process::Pid> {
    let me = rustix::process::getpid();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .take(MAX_SCANNED)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me.as_raw_nonzero().get())
        .filter(|pid| {
            // `pid (comm) state ppid pgrp …`: the fields after the last `)`.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<i32>().ok())
                    == Some(me.as_raw_nonzero().get())
            })
        })
        .filter_map(rustix::process::Pid::from_raw)
        .collect()
}

/// How many `/proc` entries [`group_members`] reads at most.
const MAX_SCANNED: usize = 1 << 16;

/// Ends what the command left running in the background once `sh` has exited: SIGTERM to the
/// group (the guard handles SIGTERM, so it stays), then, a moment later, SIGKILL to each
/// member still there. Says so on stderr (the command's own).
async fn end_left_behind() {
    use rustix::process::{getpid, kill_process, kill_process_group, Signal};
    let left = group_members();
    if left.is_empty() {
        return;
    }
    crate::common::write_stderr(format_args!(
        "hookguard: --exec guard: the command left {} process(es) running after it exited; they are ended \
         (a handler's work must be done when its command exits: the delivery is then done)",
        left.len()
    ));
    let _ = kill_process_group(getpid(), Signal::TERM);
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if group_members().is_empty() {
            return;
        }
    }
    // Members of this group only: the group's id is the guard's own pid, alive meanwhile.
    for pid in group_members() {
        let _ = kill_process(pid, Signal::KILL);
    }
}

/// SIGKILL to this guard's process group: the command, its children and the guard.
fn kill_own_group() {
    use rustix::process::{getpid, kill_process_group, Signal};
    let _ = kill_process_group(getpid(), Signal::KILL);
}
